"""One local Ray cluster per test session, on loopback only (DESIGN.md section 6)."""
import os
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)

import pytest  # noqa: E402

DATA_DIR = Path(os.environ.get("KNOWCODER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"real benchmark data not found at {DATA_DIR} (set KNOWCODER_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster bound to 127.0.0.1, shared by the whole session."""
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
