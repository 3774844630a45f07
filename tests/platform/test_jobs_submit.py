"""`ray job submit` of the whole pipeline with the tiny config onto a `ray start --head` cluster on
127.0.0.1; waits for SUCCEEDED, checks every artifact, then stops the cluster. This is the path of
`make demo-tiny` (same script, same config), run as a Ray job."""
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster_helpers import RERUN_IF_NEVER_STARTED, free_port, stop_cluster, submit_and_wait

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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
    tmp = Path("/tmp") / f"kc{os.getpid()}j"  # Ray's socket paths must stay short
    tmp.mkdir(exist_ok=True)
    env = _env(tmp)
    port, dash = free_port(), free_port()
    # every fixed default port gets a free one: the test session's own cluster already holds them
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "runtime-env-agent-port", "metrics-export-port",
                                                      "ray-client-server-port")]
    subprocess.run([BIN / "ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=4", *ports,
                    "--include-dashboard=true", f"--temp-dir={tmp}", "--disable-usage-stats"],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{dash}", env, tmp
    finally:
        stop_cluster(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.flaky(**RERUN_IF_NEVER_STARTED)
def test_pipeline_job_succeeds_and_writes_every_artifact(head_node, tmp_path):
    address, env, head_temp = head_node
    cfg = yaml.safe_load((ROOT / "jobs/configs/tiny.yaml").read_text())
    workdir = tmp_path / "run"
    cfg["workdir"] = str(workdir)
    cfg["serve"]["port"] = free_port()
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(cfg))
    runtime_env = {"excludes": [".venv", ".venv-vllm", "build", ".git", "**/__pycache__", ".hypothesis"]}
    status, logs, _, _ = submit_and_wait(address, env, ["python", "jobs/pipeline.py", "--config", str(config)],
                                         runtime_env, head_temp)
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
