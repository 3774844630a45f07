"""A path that is not there, a YAML file or `--set` value that does not parse, a folder that is not a model:
every `knowcoder` command and `jobs/pipeline.py --check` ends with a message naming it and exit status 2 (1 for
the job), never a traceback (in this process, no Ray)."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from knowcoder_ray.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "bad.yaml").write_text("engine: [\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.txt").write_text("not a model")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00 not text")  # (UTF-16 BOM then garbage: not UTF-8)
    (tmp_path / "c.jsonl.parquet").write_text("not parquet")
    (tmp_path / "fake-model").mkdir()
    (tmp_path / "fake-model/config.json").write_text('{"max_position_embeddings": 4096}')
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/Entities.py").write_text("class Person(Entity):\n\tpass\n")
    (tmp_path / "numbers.yaml").write_text("workdir: x\nray: {num_cpus: 0}\ntiny_model: {vocab_size: -5}\n"
                                           "serve: {port: 70000}\n")
    (tmp_path / "bench.yaml").write_text("workdir: x\nfollowing: {benchmarks: [conll04, ace05]}\n")
    (tmp_path / "c.jsonl").write_text("".join(f'{{"text": "class Person{i}(Entity): pass"}}\n' for i in range(20)))
    for name, config in (("adapter", '{"base_model_name_or_path": "/x"}'), ("adapter-bad", "nope")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(config)
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["eval", "--config", "{t}/bad.yaml"], "knowcoder eval: {t}/bad.yaml: not valid YAML (expected the node content, "
                                           "but found '<stream end>' at line 2, column 1)"),
    (["train", "sft", "--config", "{t}/bad.yaml"], "knowcoder train: {t}/bad.yaml: not valid YAML"),
    (["eval", "--set", "limit=["], "knowcoder eval: override 'limit=[': not valid YAML (expected the node content"),
    (["serve", "--config", "{t}/missing.yaml"], "knowcoder serve: No such file or directory: {t}/missing.yaml"),
    (["serve", "--config", "{t}/notes"], "knowcoder serve: Is a directory: {t}/notes"),
    (["report", "{t}/notes"], "knowcoder report: {t}/notes/summary.json not found: run `knowcoder eval` first"),
    (["schema", "to-py", "{t}/missing.parquet", "{t}/out"], "knowcoder schema: not found: {t}/missing.parquet"),
    (["extract", "--model", "{t}/notes", "Ada was here."],
     "knowcoder extract: {t}/notes is not a model folder: it holds no config.json or adapter_config.json"),
    (["extract", "--model", "{t}/missing", "--schema-code", "{t}/missing.py", "Ada was here."],
     "knowcoder extract: No such file or directory: {t}/missing.py"),
    (["extract", "--model", "{t}/notes", "--data-dir", "{t}/no-data", "Ada was here."],  # one line per folder
     "knowcoder extract: benchmark data missing under {t}/no-data (set `data_dir` in the config or "
     "KNOWCODER_DATA_DIR):\n  {t}/no-data/crossner: CrossNER: crossner/<domain>/{{train,dev,test}}.txt"),
    (["data", "following", "--executor", "local", "--out", "{t}/out", "--lsee", "{t}/c.jsonl", "--library",
      "{t}/lib.parquet"], "knowcoder data: not found: {t}/lib.parquet\n"),  # before: the bare path
    # numbers that would stop the build with a Python error, or build part of the corpus and say nothing
    (["data", "understanding", "--executor", "local", "--out", "{t}/out", "--max-group", "0"],
     "knowcoder data understanding: max_group: Input should be greater than or equal to 1"),
    (["data", "understanding", "--executor", "local", "--out", "{t}/out", "--max-shards", "-1", "--block-mb", "-1"],
     "knowcoder data understanding: block_mb: Input should be greater than 0\n"
     "max_shards: Input should be greater than or equal to 1"),
    (["data", "following", "--executor", "local", "--out", "{t}/out", "--set", "block_mb=.inf", "--workers", "0"],
     "knowcoder data following: block_mb: Input should be a finite number\n"
     "workers: Input should be greater than or equal to 1"),
    (["data", "understanding", "--executor", "local", "--out", "{t}/out", "--kelm", "{t}/empty.jsonl",
      "--no-definitions"],  # before: "give at least one input", when one was given
     "knowcoder data understanding: nothing to build: the input files hold no records ({t}/empty.jsonl)"),
    # a cluster address that nothing answers (ray.init retried for minutes before it said so)
    (["data", "following", "--out", "{t}/out", "--benchmark", "conll04", "--address", "127.0.0.1:1"],
     "knowcoder data: no Ray cluster answers at '127.0.0.1:1' (Connection refused)"),
    (["merge", "--adapter", "{t}/notes", "--out", "{t}/m"],
     "knowcoder merge: {t}/notes is not a PEFT adapter folder (no adapter_config.json)"),
    (["merge", "--adapter", "{t}/adapter", "--out", "{t}/m"],
     "knowcoder merge: {t}/adapter holds no adapter weights (adapter_model.safetensors or adapter_model.bin)"),
    (["merge", "--adapter", "{t}/adapter-bad", "--out", "{t}/m"],
     "knowcoder merge: {t}/adapter-bad/adapter_config.json is not a JSON object"),
    (["model", "tiny", "--out", "{t}/m", "--corpus", "{t}/empty.jsonl"],
     "knowcoder model tiny: {t}/empty.jsonl is not a readable Parquet or JSON-lines corpus ("),
    (["model", "tiny", "--out", "{t}/bad.yaml", "--corpus", "{t}/c.jsonl"],
     "knowcoder model: output folder is a file: {t}/bad.yaml"),
    (["train", "sft", "--config", "tiny_sft", "--set", "lr=-1", "--set", "max_steps=-3", "--set", "keep_checkpoints=0"],
     "knowcoder train: lr: Input should be greater than 0\nmax_steps: Input should be greater than or equal to 0\n"
     "keep_checkpoints: Input should be greater than or equal to 1"),
    # evaluation and serving numbers: -1 dropped a benchmark's last sentence, a head + tail over the cut
    # repeated the prompt's middle tokens, a dtype reached getattr(torch, ...) inside an actor
    (["eval", "--checkpoint", "{t}/m", "--dataset", "conll04", "--limit", "-1", "--num-actors", "0"],
     "knowcoder eval: limit: Input should be greater than or equal to 1\n"
     "num_actors: Input should be greater than or equal to 1"),
    (["eval", "--checkpoint", "{t}/m", "--dataset", "conll04", "--set", "engine_config.keep_head=5000"],
     "knowcoder eval: engine_config: keep_head + keep_tail (5000 + 2000) exceeds max_prompt_tokens (3500)"),
    (["eval", "--checkpoint", "{t}/m", "--dataset", "conll04", "--set", "engine_config.dtype=nn"],
     "knowcoder eval: engine_config.dtype: Input should be 'auto', 'float32', 'bfloat16' or 'float16'"),
    (["serve", "--model", "{t}/m", "--library", "{t}/l", "--set", "prompt_timeout_s=0", "--set", "retries=-1"],
     "knowcoder serve: prompt_timeout_s: Input should be greater than 0\n"
     "retries: Input should be greater than or equal to 0"),
    # a file that is not UTF-8 text: named, no UnicodeDecodeError traceback
    (["score", "{t}/bin.yaml"], "knowcoder score: {t}/bin.yaml"),  # (then "not UTF-8")
    (["extract", "--model", "{t}/m", "--schema-code", "{t}/bin.yaml", "Ada"],
     "knowcoder extract: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte "
     "({t}/bin.yaml is not UTF-8 text)"),
    (["eval", "--config", "{t}/bin.yaml"], "knowcoder eval: 'utf-8' codec can't decode byte 0xff in position 0"),
    (["serve", "--config", "{t}/bin.yaml"], "knowcoder serve: 'utf-8' codec can't decode byte 0xff in position 0"),
    (["schema", "build", "{t}/c.jsonl", "--out", "{t}/o", "--local", "--types-file", "{t}/bin.yaml"],
     "knowcoder schema: 'utf-8' codec can't decode byte 0xff"),
    # serve: what every replica would fail on is refused before Ray starts (before: a ValueError traceback, or
    # Serve retrying the deployment for minutes, then RuntimeError "Deploying application knowcoder failed")
    (["serve", "--model", "{t}/missing", "--library", "{t}/l"],
     "knowcoder serve: model folder {t}/missing does not exist"),
    (["serve", "--model", "{t}/notes", "--library", "{t}/l"],
     "knowcoder serve: model_dir {t}/notes is not a model folder: it holds no config.json"),
    (["serve", "--model", "{t}/fake-model", "--adapter", "{t}/notes", "--library", "{t}/l"],
     "knowcoder serve: serve config: adapter_dir {t}/notes holds no adapter_config.json"),
    (["serve", "--model", "{t}/fake-model", "--library", "{t}/lib", "--max-new-tokens", "100000"],  # before: an
     "knowcoder serve: max_new_tokens 100000 exceeds the model's context of 4096 tokens"),  # engine replica died
    (["serve", "--model", "{t}/fake-model", "--library", "{t}/c.jsonl"],
     "knowcoder serve: schema library '{t}/c.jsonl': expected a .parquet table or a folder of"),
    (["serve", "--model", "{t}/fake-model", "--library", "{t}/bad.parquet"],
     "knowcoder serve: not found: {t}/bad.parquet"),
    (["serve", "--model", "{t}/fake-model", "--library", "{t}/c.jsonl.parquet"],
     "knowcoder serve: Could not open Parquet input source '{t}/c.jsonl.parquet'"),
])
def test_one_line_and_status_2(files, capsys, argv, message):
    assert main([a.format(t=files) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(t=files)) and "Traceback" not in err, err


@pytest.mark.parametrize("argv, message", [
    (["model", "tiny", "--out", "{t}/m", "--corpus", "{t}/c.jsonl", "--vocab-size", "-5"],
     "argument --vocab-size: expected a whole number of at least 1, got '-5'"),
    (["data", "following", "--out", "{t}/out", "--num-cpus", "0"],
     "argument --num-cpus: expected a whole number of at least 1, got '0'"),
    (["merge", "--adapter", "{t}/adapter", "--out", "{t}/m", "--dtype", "bogus"], "argument --dtype: invalid choice"),
    (["extract", "--model", "{t}/m", "--max-new-tokens", "0", "Ada"],  # before: after the model had loaded
     "argument --max-new-tokens: expected a whole number of at least 1, got '0'"),
])
def test_bad_flag_is_a_usage_error(files, capsys, argv, message):
    with pytest.raises(SystemExit) as e:  # argparse: usage, the message, status 2
        main([a.format(t=files) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("config, message", [
    ("bad.yaml", "{t}/bad.yaml: not valid YAML (expected the node content"),
    ("missing.yaml", "[Errno 2] No such file or directory: '{t}/missing.yaml'"),
    ("numbers.yaml", "{t}/numbers.yaml: ray.num_cpus: Input should be greater than or equal to 1\n"  # 0: a hang
                     "{t}/numbers.yaml: tiny_model.vocab_size: Input should be greater than or equal to 1\n"
                     "{t}/numbers.yaml: serve.port: Input should be less than or equal to 65535"),
    ("bench.yaml", "{t}/bench.yaml: following.benchmarks: unknown benchmark 'ace05'; known: conll04,"),
])
def test_pipeline_check_names_an_unreadable_config(files, config, message):
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/pipeline.py"), "--config", str(files / config), "--check"],
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith(message.format(t=files)), proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_names_a_corpus_without_data_files(files, capsys, monkeypatch):
    # the package exports the function `connect` under its module's name: patch the module itself
    monkeypatch.setattr(importlib.import_module("knowcoder_ray.connect"), "connect", lambda *a, **k: None)
    argv = ["train", "pretrain", "--config", "tiny_pretrain"] + [
        a for k in ("model", "data.path", "output_dir", "storage_path") for a in ("--set", f"{k}={files}/notes")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"knowcoder train: no .parquet or .json/.jsonl files at {files}/notes\n", err


@pytest.mark.parametrize("checkpoint, dataset, message", [
    # before: the tokenizer's multi-line ValueError (a folder without config.json; "" is the working folder)
    ("{t}/notes", "conll04", "checkpoint 'notes': {t}/notes is not a model folder: it holds no config.json or "
                             "adapter_config.json"),
    # before: every actor died at its first batch (the engine's cache could not be allocated): ActorDiedError
    ("{t}/fake-model --set engine_config.max_new_tokens=100000", "conll04",
     "checkpoint 'fake-model': max_new_tokens 100000 exceeds the model's context of 4096 tokens"),
    # before: RuntimeError "the Ray pipeline wrote no .../predictions.jsonl" (no record could be read)
    ("{t}/fake-model", "records:{t}/c.jsonl", "dataset 'records:{t}/c.jsonl': no records to evaluate "
                                              "(20 malformed; line 1: ValueError: 'id' must be a non-empty string "
                                              "or an integer, got None)"),
])
def test_eval_names_a_folder_that_is_no_model_and_a_dataset_without_records(files, capsys, monkeypatch, checkpoint,
                                                                             dataset, message):
    monkeypatch.setattr(importlib.import_module("knowcoder_ray.connect"), "connect", lambda *a, **k: None)
    argv = ["eval", "--checkpoint", *checkpoint.split(), "--dataset", dataset, "--output-dir", "{t}/run",
            "--set", "report=false"]
    assert main([a.format(t=files) for a in argv]) == 2
    assert capsys.readouterr().err == f"knowcoder eval: {message.format(t=files)}\n"


def test_serve_names_a_host_or_port_it_cannot_listen_on_before_ray_starts(files, capsys):
    """Before: a port in use made HAProxy fail inside an actor (a remote traceback after Ray had started); a
    host that does not resolve was reported as served (`knowcoder serve: http://256.1.1.1:8000/docs`)."""
    import socket

    base = ["serve", "--model", f"{files}/fake-model", "--library", f"{files}/lib"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([*base, "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err == f"knowcoder serve: cannot listen on 127.0.0.1:{port}: Address already in use\n", err
    assert main([*base, "--host", "256.1.1.1"]) == 2
    assert capsys.readouterr().err.startswith("knowcoder serve: --host '256.1.1.1': ")


def test_a_model_folder_that_is_a_file_is_named_so(files):  # --tokenizer, --model, merge --base: local_copy
    from knowcoder_ray.storage import local_copy

    with pytest.raises(FileNotFoundError, match=f"^model folder {files}/bad.yaml is a file, not a folder$"):
        local_copy(f"{files}/bad.yaml")


@pytest.mark.parametrize("argv, message", [
    (["schema", "build", "dump.json", "--out", "o", "--num-cpus", "0"],  # 0 CPUs: a local Ray that never ran a task
     "argument --num-cpus: expected a whole number of at least 1, got '0'"),
    (["schema", "build", "dump.json", "--out", "o", "--max-roles", "-1"],
     "argument --max-roles: expected a whole number of at least 0, got '-1'"),
])
def test_schema_build_flags_are_checked_before_ray_starts(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_schema_build_settings_are_checked_before_ray_starts(tmp_path, capsys):
    assert main(["schema", "build", str(tmp_path / "dump.json"), "--out", str(tmp_path / "o"),
                 "--min-role-support", "1.5"]) == 2
    assert capsys.readouterr().err == "knowcoder schema: min_role_support: Input should be less than or equal to 1\n"


def test_merge_damaged_adapter_or_base_is_one_line(tmp_path, capsys):
    """before: a SafetensorError or KeyError traceback, exit status 1."""
    import json

    import torch
    from safetensors.torch import save_file

    from knowcoder_ray.train.tiny import make_tiny_model

    base = make_tiny_model(tmp_path / "base", ["class Person(Entity): pass"] * 20, seed=0)
    capsys.readouterr()  # its progress bar
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights/config.json").write_text("{}")
    cases = [("corrupt", base, "LORA", b"garbage",
              "knowcoder merge: model weights {t}/corrupt/adapter_model.safetensors are not a readable safetensors"),
             ("bare-base", tmp_path / "no-weights", "LORA", None,
              "knowcoder merge: model {t}/no-weights holds no weights (*.safetensors or *.bin)"),
             ("kind", base, "NOPE", None, "knowcoder merge: {t}/kind/adapter_config.json names an unknown peft_type")]
    for name, base_dir, kind, weights, message in cases:
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps(
            {"base_model_name_or_path": str(base_dir), "peft_type": kind, "r": 4, "target_modules": ["q_proj"]}))
        if weights is None:
            save_file({"x": torch.zeros(1)}, tmp_path / name / "adapter_model.safetensors")
        else:
            (tmp_path / name / "adapter_model.safetensors").write_bytes(weights)
        assert main(["merge", "--adapter", str(tmp_path / name), "--out", str(tmp_path / "m")]) == 2, name
        err = capsys.readouterr().err  # after the base model's loading bar ("\r" lines) where it was loaded
        assert err.splitlines()[-1].startswith(message.format(t=tmp_path)) and "Traceback" not in err, err


def test_model_tiny_names_a_corpus_that_is_not_utf8(tmp_path, capsys):
    corpus = tmp_path / "latin1.jsonl"  # before: "'utf-8' codec can't decode byte 0xe9 ...", no file named
    corpus.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert main(["model", "tiny", "--out", str(tmp_path / "m"), "--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"knowcoder model tiny: {corpus} is not a readable Parquet or JSON-lines corpus"), err
