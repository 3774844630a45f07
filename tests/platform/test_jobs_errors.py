"""A job whose training corpus cannot be trained on ends with one line naming it (exit 1), not a traceback:
`jobs/common.missing_inputs_end_the_job` turns the train package's DataError into the job's message."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pretrain_job_names_a_corpus_without_data_files(tmp_path):
    (tmp_path / "empty").mkdir()
    config = tmp_path / "job.yaml"
    config.write_text(f"workdir: {tmp_path}/run\nray: {{num_cpus: 1}}\n"
                      f"paths: {{understanding: {tmp_path}/empty}}\n"
                      f"pretrain: {{config: tiny_pretrain, model: {tmp_path}/empty}}\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local cluster, not one a shell names
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/pretrain.py"), "--config", str(config)], cwd=ROOT,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"error: no .parquet or .json/.jsonl files at {tmp_path}/empty", proc.stderr
    assert "Traceback" not in proc.stderr


def test_schema_job_names_an_empty_dump(tmp_path):
    """The schema phase on an empty dump (or a folder) ended in a DumpError / IsADirectoryError traceback."""
    (tmp_path / "empty.json").write_bytes(b"")
    config = tmp_path / "job.yaml"
    config.write_text(f"workdir: {tmp_path}/run\nray: {{num_cpus: 1}}\nschema: {{dump: {tmp_path}/empty.json}}\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/schema_build.py"), "--config", str(config)], cwd=ROOT,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"error: {tmp_path}/empty.json: the dump is empty (no line)", proc.stderr
    assert "Traceback" not in proc.stderr
