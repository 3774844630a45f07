"""One local Ray cluster per test session, on loopback only (DESIGN.md section 6)."""
import os
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)
# Test helpers (engine_helpers.OracleEngine, loaded by name) must import in Ray workers and subprocesses too.
TESTS = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p)

import pytest  # noqa: E402

DATA_DIR = Path(os.environ.get("KNOWCODER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"real benchmark data not found at {DATA_DIR} (set KNOWCODER_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """A real local Ray cluster bound to 127.0.0.1, shared by the whole session. Started after the S3
    server so that its worker processes inherit the AWS_* settings that point at it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    node_ip = ray.util.get_node_ip_address()
    assert node_ip == "127.0.0.1", f"Ray bound {node_ip}, not loopback"
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """Tiny matrices: thread start-up costs more than it saves, and on a busy 2-core machine spinning
    OpenMP threads slow generation down by an order of magnitude. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1 with a bucket; AWS_* variables point this process
    (and anything it starts) at it. Yields (endpoint URL, bucket, the environment it set)."""
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="knowcoder-test")
    yield env["AWS_ENDPOINT_URL"], "knowcoder-test", env
    server.stop()
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def fail_once_at():
    """A training step hook for fault tests: the last worker raises at `step` on an attempt that did not
    resume from a checkpoint (so the restarted attempt goes on)."""
    def make(step: int):
        def hook(s: dict) -> None:  # a closure: Ray ships it to the workers by value
            if s["step"] == step and s["resumed_at"] is None and s["rank"] == s["world_size"] - 1:
                raise RuntimeError(f"injected failure at step {step}")
        return hook
    return make
