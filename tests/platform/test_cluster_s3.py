"""The pipeline on a cluster whose nodes share nothing but object storage: a head and a worker node started
with `ray start` on 127.0.0.1, an S3-compatible server (moto) on 127.0.0.1, and `ray job submit` of
jobs/pipeline.py with the tiny config, its inputs, config and workdir all in the bucket. Every phase
must succeed, work must run on both nodes, every artifact must land in the bucket, and nothing but the
per-node model caches and Ray's own session files may be written to local disk. This is also the test of
the README's `ray job submit` of the pipeline (a one-node local-workdir run of the same script and config
is `make demo-tiny`)."""
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from knowcoder_ray import storage
from cluster_helpers import RERUN_IF_NEVER_STARTED, free_port, stop_cluster, submit_and_wait

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
AGENT_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
               "metrics-export-port")


def _node_env(base: dict, scratch: Path) -> dict:
    """A node's environment: its own TMPDIR (so its model cache and any stray temporary file are
    visible to the test) and the bucket's endpoint and credentials."""
    scratch.mkdir(parents=True, exist_ok=True)
    return {**base, "TMPDIR": str(scratch)}


def _ray_start(args: list[str], env: dict, cwd: Path) -> None:
    proc = subprocess.run([BIN / "ray", "start", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])


@pytest.fixture
def two_nodes(s3_server, tmp_path):
    """A head (2 CPUs) and a worker node (2 CPUs) on loopback, each with every port chosen free."""
    _, _, aws = s3_server
    # each node its own Ray temp dir (short: socket paths): nodes that shared one would unpack the job's
    # working dir into one folder, and a worker node's runtime-env agent would replace the driver's cwd
    temps = {n: Path("/tmp") / f"kc{os.getpid()}{n[0]}" for n in ("head", "worker")}
    for t in temps.values():
        t.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (what keeps a local ray.init on loopback) also forbids a node to
    # join a cluster: the nodes get 1 and stay on 127.0.0.1 by --node-ip-address; the job's processes get 0
    # (runtime env), so the addresses they pick for themselves (e.g. torch.distributed's) are loopback too
    env.update(aws, PATH=f"{BIN}:{env.get('PATH', '')}", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",
               DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    port, dash = free_port(), free_port()
    nodes = {"head": _node_env(env, tmp_path / "head-tmp"), "worker": _node_env(env, tmp_path / "worker-tmp")}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats", f"--object-store-memory={300 << 20}"]
    try:
        _ray_start(["--head", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                    "--include-dashboard=true", f"--ray-client-server-port={free_port()}",
                    *[f"--{p}={free_port()}" for p in AGENT_PORTS], f"--temp-dir={temps['head']}", *common],
                   nodes["head"], tmp_path)
        _ray_start([f"--address=127.0.0.1:{port}", *[f"--{p}={free_port()}" for p in AGENT_PORTS],
                    f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                    f"--temp-dir={temps['worker']}", *common],
                   nodes["worker"], tmp_path)
        yield f"http://127.0.0.1:{dash}", env, nodes, temps
    finally:
        stop_cluster(temps["worker"])
        stop_cluster(temps["head"])
        for t in temps.values():
            shutil.rmtree(t, ignore_errors=True)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".git" not in p.parts}


def _upload_inputs(cfg: dict, base: str) -> dict:
    """Every input of the tiny config copied to the bucket, and the config pointed at the copies."""
    def up(path: str) -> str:
        uri = storage.join(base, "inputs", Path(path).name)
        storage.write_bytes(uri, storage.read_bytes(str(ROOT / path)))
        return uri

    cfg["schema"]["dump"] = up(cfg["schema"]["dump"])
    cfg["schema"]["corpus"] = [up(p) for p in cfg["schema"]["corpus"]]
    cfg["understanding"]["kelm"] = [up(p) for p in cfg["understanding"]["kelm"]]
    for key in ("universalner", "instructie", "lsee"):
        cfg["following"][key] = [up(p) for p in cfg["following"][key]]
    cfg["eval"]["datasets"] = [f"records:{up(d.partition(':')[2])}" for d in cfg["eval"]["datasets"]]
    return cfg


def _nodes_that_ran(address: str, env: dict, job_id: str) -> dict[str, set[str]]:
    """node id -> names of this job's tasks and actors that ran there (Ray's state API, `ray list`)."""
    out: dict[str, set[str]] = {}
    for kind, label in (("tasks", "name"), ("actors", "class_name")):
        proc = subprocess.run([BIN / "ray", "list", kind, "--address", address, "--filter", f"job_id={job_id}",
                               "--detail", "--format", "json", "--limit", "10000"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for row in json.loads(proc.stdout):
            if row.get("node_id"):
                out.setdefault(row["node_id"], set()).add(row[label])
    return out


@pytest.mark.flaky(**RERUN_IF_NEVER_STARTED)
def test_pipeline_on_two_nodes_with_an_s3_workdir(two_nodes, s3_server, tmp_path):
    address, env, nodes, temps = two_nodes
    _, bucket, aws = s3_server
    base = f"s3://{bucket}/e2e-{uuid.uuid4().hex[:8]}"
    cfg = _upload_inputs(yaml.safe_load((ROOT / "jobs/configs/tiny.yaml").read_text()), base)
    cfg["workdir"] = storage.join(base, "run")
    cfg["serve"].update(port=free_port(), proxy_location="HeadOnly")  # one proxy: both nodes share 127.0.0.1
    # storage and placement are under test, not quality: the shortest training and generation that run
    cfg["pretrain"]["set"].update(epochs=1)
    cfg["sft"]["set"].update(epochs=2)
    cfg["eval"]["engine_config"].update(max_new_tokens=16)
    config_uri = storage.join(base, "pipeline.yaml")
    storage.write_text(config_uri, yaml.safe_dump(cfg))
    repo_before = {p: (ROOT / p).stat().st_mtime_ns for p in _files(ROOT) if not p.startswith((".venv", "build"))}

    runtime_env = {"excludes": [".venv", ".venv-vllm", "build", ".git", "**/__pycache__", ".hypothesis"],
                   "env_vars": {**aws, "PYTHONDONTWRITEBYTECODE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}}
    status, logs, client, submission_id = submit_and_wait(
        address, nodes["head"], ["python", "jobs/pipeline.py", "--config", config_uri], runtime_env, temps["head"])
    from ray.job_submission import JobStatus

    assert status == JobStatus.SUCCEEDED, logs[-6000:]

    # every phase ran and said so
    for phase in ("schema", "corpora", "pretrain", "sft", "merge", "eval", "serve"):
        assert re.search(rf"=== \[\d/7\] {phase} ", logs), phase
    assert "POST /v1/extract -> 200" in logs and "report: s3://" in logs
    assert re.search(r"^checkpoint +\|", logs, re.M) and re.search(r"^merged +\|", logs, re.M)  # the metrics table

    # work ran on both nodes
    ran = _nodes_that_ran(address, nodes["head"], client.get_job_info(submission_id).job_id)
    assert len(ran) == 2, ran
    print({node[:8]: sorted(names)[:12] for node, names in ran.items()})

    # every artifact is in the bucket
    run = cfg["workdir"]
    names = {f[len(run) + 1:] for f in storage.list_files(run)}
    for name in ("schema/schema.parquet", "schema/Entities.py", "schema/Relations.py", "schema/Events.py",
                 "schema/report.json", "schema/malformed.jsonl", "corpus/understanding/manifest.json",
                 "corpus/following/manifest.json", "models/sft-adapter/adapter_config.json",
                 "models/pretrained/training_summary.json", "eval/summary.json", "eval/report.html",
                 "eval/eval_config.yaml"):
        assert name in names, name
    for model in ("tiny-base", "pretrained", "merged"):
        assert f"models/{model}/config.json" in names and f"models/{model}/model.safetensors" in names, model
    assert json.loads(storage.read_text(f"{run}/schema/report.json"))["summary"]["malformed"] > 0  # the dump has some
    for corpus in ("understanding", "following"):
        assert json.loads(storage.read_text(f"{run}/corpus/{corpus}/manifest.json"))["rows"] > 0
        assert any(n.startswith(f"corpus/{corpus}/data/") for n in names), corpus
    assert len(storage.read_bytes(f"{run}/eval/report.html")) > 10_000
    summary = json.loads(storage.read_text(f"{run}/eval/summary.json"))
    assert [c["checkpoint"] for c in summary["checkpoints"]] == ["base", "pretrained", "merged"]
    assert all(c["path"].startswith("s3://") for c in summary["checkpoints"])
    for c in summary["checkpoints"]:
        assert f"eval/{c['predictions']}" in names and f"eval/{c['metrics']}" in names
    # the adapter names its base by URI, not by a node's cache folder
    adapter = json.loads(storage.read_text(f"{run}/models/sft-adapter/adapter_config.json"))
    assert adapter["base_model_name_or_path"] == f"{run}/models/pretrained"
    # the checkpoints (optimizer state included) stayed in the bucket
    assert any(n.startswith("checkpoints/") for n in names)

    # nothing written to local disk but the model caches and Ray's session files
    for node, node_env in nodes.items():
        scratch = Path(node_env["TMPDIR"])
        stray = sorted(p for p in _files(scratch) if not p.startswith("knowcoder-cache/"))
        assert not stray, (node, stray[:20])
    caches = [_files(Path(e["TMPDIR"]) / "knowcoder-cache") for e in nodes.values()]
    assert any(any("merged-" in p for p in c) for c in caches), "no node cached the merged model"
    working_dirs = [d for t in temps.values() for d in t.glob("session_*/runtime_resources/working_dir_files/*")
                    if d.is_dir()]  # the job's code, unpacked on each node: its processes' working directory
    assert working_dirs
    for d in working_dirs:
        assert _files(d) <= _files(ROOT), sorted(_files(d) - _files(ROOT))[:20]  # nothing written beside the code
    after = {p: (ROOT / p).stat().st_mtime_ns for p in _files(ROOT) if not p.startswith((".venv", "build"))}
    assert after == repo_before
