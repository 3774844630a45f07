"""What every job shares: the validated pipeline config, artifact paths under `workdir`, the benchmark data
folder, the base model and Ray start-up. A job is a recipe: the config in, phase function calls, artifacts out."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python jobs/x.py` from a checkout or a `ray job submit` working dir
    sys.path.insert(0, str(ROOT))

from knowcoder_ray.config import ARTIFACTS, PipelineConfig, validate  # noqa: E402  (after the sys.path line)


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """The pipeline YAML, from a local path or a bucket URI, validated (knowcoder_ray/config.py): a misspelled
    or misplaced key stops here, naming its location, before any cluster time is spent."""
    from knowcoder_ray.storage import read_text

    try:
        return validate(yaml.safe_load(read_text(str(path))), str(path))
    except ValueError as e:
        raise SystemExit(str(e)) from None


def artifact(cfg: PipelineConfig, name: str) -> str:
    """Path (or URI) of an artifact: `workdir/<layout>`, unless the config names one in `paths`. Local
    paths are made absolute: Ray Train workers and Ray Data actors run in other working directories."""
    path = getattr(cfg.paths, f"{name}_") or f"{cfg.workdir.rstrip('/')}/{ARTIFACTS[name]}"
    return str(path) if "://" in str(path) else str(Path(path).resolve())


# Where each benchmark folder of the data directory comes from (its SOURCE.md there tells more).
DATA_SOURCES = {
    "conll04": "CoNLL04, SpERT split: conll04/conll04_{train,dev,test}.json "
               "(http://lavis.cs.hs-rm.de/storage/spert/public/datasets/conll04/)",
    "crossner": "CrossNER: crossner/<domain>/{train,dev,test}.txt (https://github.com/zliucr/CrossNER, ner_data/)",
    "conll2003": "CoNLL-2003: conll2003/{dev,test}.txt (token TAB BIO tag)",
    "mit_restaurant": "MIT Restaurant: mit_restaurant/test.txt (https://groups.csail.mit.edu/sls/downloads/restaurant/)",
    "nyt": "NYT (CopyRE split): nyt/test.{sent,tup,pointer}",
    "phee": "PHEE: phee/{dev,test}.json (https://github.com/ZhaoyueSun/PHEE)",
    "wikievents": "WikiEvents: wikievents/{dev,test}.jsonl + event_role_KAIROS.json (https://github.com/raspberryice/gen-arg)",
}


def data_dir(cfg: PipelineConfig) -> str:
    """The benchmark data folder: `data_dir` of the config, else $KNOWCODER_DATA_DIR, else ../shared/data
    (relative to the working directory), made absolute for the Ray workers."""
    from knowcoder_ray.data.benchmarks import default_data_dir

    value = str(cfg.data_dir or default_data_dir())
    return value if "://" in value else str(Path(value).resolve())


def require_benchmarks(cfg: PipelineConfig, names) -> str:
    """The data folder, after checking that it holds every benchmark in `names` (e.g. conll04,
    crossner_ai, conll04:train); a clear error says which are missing and where each comes from."""
    from knowcoder_ray import storage

    root = data_dir(cfg)
    folders = dict.fromkeys(n.partition(":")[0].split("_")[0] if n.startswith("crossner") else n.partition(":")[0]
                            for n in names if not str(n).startswith("records:"))
    missing = [f for f in folders if not storage.isdir(storage.join(root, f))]
    if missing:
        lines = "\n".join(f"  {storage.join(root, f)}: {DATA_SOURCES.get(f, 'see knowcoder_ray/data/benchmarks.py')}"
                           for f in missing)
        raise SystemExit(f"benchmark data missing under {root} (set `data_dir` in the config or "
                         f"KNOWCODER_DATA_DIR):\n{lines}")
    return root


def base_model(cfg: PipelineConfig) -> str:
    """The model the run starts from: the tiny model it creates, a model imported once from a GGUF file
    or an installed package (`base_model.import`, cached by `knowcoder model import`), or a model folder
    (`pretrain.model`)."""
    if cfg.tiny_model:
        return artifact(cfg, "tiny_model")
    if cfg.base_model:
        from knowcoder_ray.train.hub import import_model

        started, source = time.perf_counter(), cfg.base_model.import_
        path = str(import_model(source, cache_dir=cfg.base_model.cache_dir))
        print(f"base model {source} -> {path} ({time.perf_counter() - started:.0f} s)", flush=True)
        return path
    return cfg.pretrain.model


def init_ray(cfg: PipelineConfig) -> None:
    """Join the cluster of `ray job submit` (RAY_ADDRESS), else start a local one on loopback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from knowcoder_ray.connect import connect

    connect(num_cpus=cfg.ray.num_cpus)  # worker output (training progress) shown here


def job_main(run, description: str) -> None:
    """`python jobs/<phase>.py --config jobs/configs/tiny.yaml`: one phase on its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="pipeline YAML (jobs/configs/*.yaml)")
    cfg = load_config(parser.parse_args().config)
    init_ray(cfg)
    run(cfg)
