"""Training faults: `knowcoder train sft` on a 2-CPU cluster (both CPUs taken by the 2 workers) finishes
instead of hanging, and a corrupt latest checkpoint is named with its problem and the run falls back to
the older whole checkpoint it kept."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from knowcoder_ray.train.config import CONFIG_DIR, load_config
from corpora_helpers import TRAIN_SEQ_LEN as SEQ_LEN

ROOT = Path(__file__).resolve().parents[2]


def _lines(log_file) -> list[dict]:
    return [json.loads(line) for line in open(log_file)]


def test_sft_on_a_two_cpu_cluster_does_not_hang(corpus, tmp_path):  # noqa: F811
    root, model = corpus
    script = textwrap.dedent(f"""
        import sys, ray
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        from knowcoder_ray.cli import main
        sys.exit(main(["train", "sft", "--config", "tiny_sft", "--set", "model={model}",
                       "--set", "data.path={root / 'following.jsonl'}", "--set", "data.seq_len={SEQ_LEN}",
                       "--set", "output_dir={tmp_path / 'adapter'}", "--set", "storage_path={tmp_path / 'ckpt'}",
                       "--set", "run_name=two-cpus", "--set", "max_steps=2", "--set", "deepspeed.stage=0"]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own process group (its Ray included)
        out, _ = proc.communicate()
        pytest.fail("knowcoder train sft hung on a 2-CPU cluster:\n" + out[-3000:])
    assert proc.returncode == 0, out[-3000:]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def _cfg(root, model, tmp_path, max_steps):
    return load_config(CONFIG_DIR / "tiny_sft.yaml", [
        f"model={model}", f"data.path={root / 'following.jsonl'}", f"data.seq_len={SEQ_LEN}",
        f"output_dir={tmp_path / 'adapter'}", f"storage_path={tmp_path / 'ckpt'}", "run_name=corrupt",
        "deepspeed.stage=0", f"max_steps={max_steps}", "save_every=2", "keep_checkpoints=2",
        f"log_file={tmp_path / 'log.jsonl'}"])


def _checkpoints(tmp_path) -> list[Path]:
    return sorted(p for p in (tmp_path / "ckpt" / "corrupt").glob("checkpoint_*") if p.is_dir())


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = os.urandom(64)  # same size, altered bytes
    path.write_bytes(bytes(data))


def test_corrupt_latest_checkpoint_falls_back_to_the_older_one(ray_cluster, corpus, tmp_path):  # noqa: F811
    from knowcoder_ray.train.run import train

    root, model = corpus
    train(_cfg(root, model, tmp_path, 4))
    older, latest = _checkpoints(tmp_path)
    _corrupt(latest / "deepspeed" / "mp_rank_00_model_states.pt")
    result = train(_cfg(root, model, tmp_path, 6))
    lines = _lines(tmp_path / "log.jsonl")
    events = [line for line in lines if "event" in line]
    assert events[0]["event"] == "checkpoint_skipped" and events[0]["checkpoint"].endswith(latest.name)
    assert "mp_rank_00_model_states.pt does not match the CRC32" in events[0]["problem"]
    assert events[-1]["event"] == "checkpoint_fallback" and events[-1]["checkpoint"].endswith(older.name)
    assert events[-1]["step"] == 2
    resumed = [(s["step"], s["resumed_at"]) for s in lines if "event" not in s and s["resumed_at"] is not None]
    assert resumed == [(3, 2), (4, 2), (5, 2), (6, 2)] and result.metrics["step"] == 6

    # no whole checkpoint left: a clear error naming every checkpoint and its problem
    for cp in _checkpoints(tmp_path):
        (cp / "rng_rank1.pt").write_bytes(b"not a checkpoint")  # cut and altered
    with pytest.raises(Exception) as e:
        train(_cfg(root, model, tmp_path, 8))
    text = str(e.value)
    assert "no usable checkpoint to resume from" in text and "rng_rank1.pt has 16 bytes" in text
    assert all(cp.name in text for cp in _checkpoints(tmp_path))
