"""The pipeline config is validated before anything starts: every shipped config passes, and a misspelled
key anywhere (top level, a section, a training override, eval, its engine settings, serve) fails with one
message naming the key and where it is (pure Python, no Ray)."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from knowcoder_ray.config import validate

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "jobs/configs").glob("*.yaml"))


def _demo() -> dict:
    return yaml.safe_load((ROOT / "jobs/configs/demo.yaml").read_text())


def test_every_shipped_config_validates():
    assert {p.stem for p in CONFIGS} >= {"tiny", "demo", "7b"}
    for path in CONFIGS:
        validate(yaml.safe_load(path.read_text()), str(path))


@pytest.mark.parametrize("where, typo, expected", [
    ((), "workdr", "demo.yaml: unknown setting 'workdr' (known: workdir,"),
    (("following",), "distractor", "demo.yaml: following: unknown setting 'distractor' (known: out, library,"),
    (("sft",), "confg", "demo.yaml: sft: unknown setting 'confg' (known: config, set)"),
    (("sft", "set"), "max_stepz", "demo.yaml: sft.set: unknown setting 'max_stepz' (known: phase, model,"),
    (("pretrain", "set"), "data.seqlen", "demo.yaml: pretrain.set: data: unknown setting 'seqlen' (known: path,"),
    (("eval",), "num_actor", "demo.yaml: eval: unknown setting 'num_actor' (known: checkpoints,"),
    (("eval", "engine_config"), "max_new_token", "demo.yaml: eval.engine_config: unknown setting 'max_new_token' (known: max_new_tokens,"),
    (("serve",), "prot", "demo.yaml: serve: unknown setting 'prot' (known: model_dir,"),
    (("serve", "engine_config"), "batchsize", "demo.yaml: serve.engine_config: unknown setting 'batchsize' (known: max_new_tokens,"),
    (("base_model",), "imprt", "demo.yaml: base_model: unknown setting 'imprt' (known: import, cache_dir)"),
])
def test_misspelled_key_is_named_with_its_location(where, typo, expected):
    cfg = _demo()
    node = cfg
    for key in where:
        node = node[key]
    node[typo] = 1
    with pytest.raises(ValueError) as e:
        validate(cfg, "demo.yaml")
    assert str(e.value).startswith(expected), str(e.value)
    assert "\n" not in str(e.value) and "pydantic" not in str(e.value)  # one line, no validation dump


@pytest.mark.parametrize("change, expected", [
    (lambda c: c.pop("workdir"), "x.yaml: workdir: Field required"),
    (lambda c: c.update(workdir=" "), "x.yaml: workdir: is blank: name a path or URI"),  # was: artifacts under /
    (lambda c: c.update(paths={"merge": "/m"}), "x.yaml: paths: unknown setting 'merge' (known: schema,"),
    (lambda c: c["following"].update(library="wikidata"), "x.yaml: following.library: Input should be 'schema' or"),
    (lambda c: c["sft"].update(config="no_such"), "x.yaml: sft.config: config 'no_such' is neither a file nor"),
    (lambda c: c["sft"]["set"].update(lr="fast"), "x.yaml: sft.set: lr: Input should be a valid number"),
    (lambda c: c["eval"].update(checkpoints=["base", "merge"]), "x.yaml: eval.checkpoints.1: Input should be 'base',"),
    (lambda c: c["eval"].update(output_dir="/o"), "x.yaml: eval: output_dir is set by the job"),
    (lambda c: c["eval"].update(layout={"escap": True}), "x.yaml: eval.layout: unknown layout options ['escap']"),
    (lambda c: c["serve"].update(max_texts=0), "x.yaml: serve.max_texts: Input should be greater than or equal to 1"),
    (lambda c: c["serve"].update(port="http"), "x.yaml: serve.port: Input should be a valid integer"),
    (lambda c: c.pop("base_model"), "x.yaml: pretrain.model: needed when neither tiny_model nor base_model"),
    # evaluation's benchmarks, split and tasks: checked at submit, not after training
    (lambda c: c["eval"].update(datasets=["conll4"]), "x.yaml: eval: unknown benchmark 'conll4'; known: conll04,"),
    (lambda c: c["eval"].update(split="train", datasets=["phee"], tasks=None),
     "x.yaml: eval: benchmark 'phee' has no 'train' split (it has dev, test)"),
    (lambda c: c["eval"].update(tasks=["nre"]), "x.yaml: eval.tasks.0: Input should be 'ner', 're', 'ed' or 'eae'"),
    (lambda c: c["eval"].update(datasets=["conll04", "phee"]),
     "x.yaml: eval: benchmark 'phee' has none of the tasks ['ner'] (it has ed, eae)"),
])
def test_wrong_values_are_named_with_their_location(change, expected):
    cfg = _demo()
    change(cfg)
    with pytest.raises(ValueError) as e:
        validate(cfg, "x.yaml")
    assert str(e.value).startswith(expected), str(e.value)


def test_validation_leaves_the_mapping_as_written():
    cfg = _demo()
    validate(cfg)
    assert cfg == _demo()


# `python jobs/pipeline.py ARGS`, then whether Ray was even imported
RUN_PIPELINE = """import os, runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("ray imported:", "ray" in sys.modules)
"""


def _check(tmp_path, cfg) -> tuple[subprocess.CompletedProcess, float]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUN_PIPELINE, str(ROOT / "jobs/pipeline.py"), "--config", str(path),
                           "--check"], cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    return proc, time.perf_counter() - started


def test_pipeline_check_refuses_a_bad_config_without_starting_ray(tmp_path):
    cfg = _demo()
    cfg["sft"]["set"]["max_stepz"] = 5
    proc, seconds = _check(tmp_path, cfg)
    assert proc.returncode == 1 and seconds < 10
    assert proc.stderr.startswith(f"{tmp_path / 'pipeline.yaml'}: sft.set: unknown setting 'max_stepz'")
    assert "Traceback" not in proc.stderr and "ray imported: False" in proc.stdout


def test_pipeline_check_passes_a_good_config_without_starting_ray(tmp_path):
    proc, seconds = _check(tmp_path, _demo())
    assert proc.returncode == 0 and seconds < 10, proc.stderr
    assert f"{tmp_path / 'pipeline.yaml'}: config OK" in proc.stdout and "ray imported: False" in proc.stdout


def test_missing_benchmark_data_ends_a_phase_with_one_line(tmp_path):
    cfg = _demo()
    cfg.update(workdir=str(tmp_path / "run"), data_dir=str(tmp_path / "no-data"), ray={"num_cpus": 1})
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/pipeline.py"), "--config", str(path), "--only", "eval"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"error: benchmark data missing under {tmp_path / 'no-data'} (set `data_dir`" in proc.stderr
    assert proc.stderr.rstrip().endswith("conll04_{train,dev,test}.json (http://lavis.cs.hs-rm.de/storage/spert/"
                                         "public/datasets/conll04/)") and "Traceback" not in proc.stderr


def test_the_splits_eval_accepts_are_the_real_data_folders(data_dir):
    """`eval.split` is checked against each benchmark's declared splits at submit: every declared split must
    load records from the real data folder, so the check refuses only splits that are not there."""
    from knowcoder_ray.data.benchmarks import BENCHMARKS, load_benchmark

    for name, benchmark in sorted(BENCHMARKS.items()):
        for split in benchmark.splits:
            records, _ = load_benchmark(name, str(data_dir), split)
            assert records, f"{name}:{split} holds no records in {data_dir}"
