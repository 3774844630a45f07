"""`ray job submit` of the whole pipeline with the tiny config onto a `ray start --head` cluster on
127.0.0.1; waits for SUCCEEDED, checks every artifact, then stops the cluster. This is the path of
`make demo-tiny` (same script, same config), run as a Ray job."""
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               RAY_TMPDIR=str(tmp),
               # Ray >= 2.59 turns on token auth for local clusters: give head and client one token
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    return env


@pytest.fixture
def head_node(tmp_path):
    """A separate Ray head on loopback (ports chosen free), stopped afterwards."""
    tmp = Path("/tmp") / f"kc{os.getpid()}"  # Ray's socket paths must stay short
    tmp.mkdir(exist_ok=True)
    env = _env(tmp)
    port, dash = _free_port(), _free_port()
    # every fixed default port gets a free one: the test session's own cluster already holds them
    ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "runtime-env-agent-port", "metrics-export-port",
                                                      "ray-client-server-port")]
    subprocess.run([BIN / "ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=4", *ports,
                    "--include-dashboard=true", f"--temp-dir={tmp}", "--disable-usage-stats"],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        _stop_cluster(tmp)


def _stop_cluster(temp_dir: Path) -> None:
    """Stop only this head's processes (their command lines name its temp dir). `ray stop` would also
    kill the test session's own cluster, and with it this pytest process (a driver whose GCS is gone)."""
    import psutil

    procs = [p for p in psutil.process_iter(["cmdline"]) if str(temp_dir) in " ".join(p.info["cmdline"] or [])]
    for p in procs:
        p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=20)
    for p in alive:
        p.kill()


def submit_and_wait(address: str, env: dict, argv: list[str], runtime_env: dict, timeout: float = 1800):
    """`ray job submit --no-wait --working-dir .` of `argv` from the repository root (retried while the
    head's job agent registers), then wait for the job to end: (status, logs, client, submission id)."""
    for _ in range(40):  # the head's job agent registers a few seconds after `ray start` returns
        sub = subprocess.run(
            [BIN / "ray", "job", "submit", "--address", address, "--no-wait", "--working-dir", ".",
             "--runtime-env-json", json.dumps(runtime_env), "--", *argv],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        if sub.returncode == 0 or "No available agent" not in sub.stderr:
            break
        time.sleep(3)
    assert sub.returncode == 0, sub.stderr[-2000:]
    submission_id = re.search(r"raysubmit_[A-Za-z0-9]+", sub.stdout).group(0)
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_job_status(submission_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(5)
    return status, client.get_job_logs(submission_id), client, submission_id


def test_pipeline_job_succeeds_and_writes_every_artifact(head_node, tmp_path):
    address, env = head_node
    cfg = yaml.safe_load((ROOT / "jobs/configs/tiny.yaml").read_text())
    workdir = tmp_path / "run"
    cfg["workdir"] = str(workdir)
    cfg["serve"]["port"] = _free_port()
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(cfg))
    runtime_env = {"excludes": [".venv", ".venv-vllm", "build", ".git", "**/__pycache__", ".hypothesis"]}
    status, logs, _, _ = submit_and_wait(address, env, ["python", "jobs/pipeline.py", "--config", str(config)],
                                         runtime_env)
    from ray.job_submission import JobStatus

    assert status == JobStatus.SUCCEEDED, logs[-4000:]

    # every phase's artifacts
    schema = workdir / "schema"
    for name in ("schema.parquet", "Entities.py", "Relations.py", "Events.py", "report.json", "malformed.jsonl"):
        assert (schema / name).is_file(), name
    assert json.loads((schema / "report.json").read_text())["summary"]["malformed"] > 0  # the dump has some
    for corpus in ("understanding", "following"):
        manifest = json.loads((workdir / "corpus" / corpus / "manifest.json").read_text())
        assert manifest["rows"] > 0 and list((workdir / "corpus" / corpus / "data").iterdir())
    for model in ("tiny-base", "pretrained", "merged"):
        folder = workdir / "models" / model
        assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors")), model
    assert (workdir / "models" / "sft-adapter" / "adapter_config.json").is_file()
    summary = json.loads((workdir / "eval" / "summary.json").read_text())
    assert [c["checkpoint"] for c in summary["checkpoints"]] == ["base", "pretrained", "merged"]
    for c in summary["checkpoints"]:
        assert (workdir / "eval" / c["predictions"]).is_file() and (workdir / "eval" / c["metrics"]).is_file()
    assert (workdir / "eval" / "report.html").stat().st_size > 10_000
    assert "POST /v1/extract -> 200" in logs
    assert "checkpoint" in logs and "report:" in logs  # the metrics table and the report path were printed
