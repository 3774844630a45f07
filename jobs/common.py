"""What every job shares: the pipeline YAML, artifact paths under `workdir`, Ray start-up, and running a
`knowcoder` subcommand in this process (the jobs are thin: the CLI is the library's front door)."""
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

from knowcoder_ray.config import ARTIFACTS, set_items, validate  # noqa: E402  (after the sys.path line)


def load_config(path: str | os.PathLike) -> dict:
    """The pipeline YAML, from a local path or a bucket URI, validated (knowcoder_ray/config.py): a misspelled
    or misplaced key stops here, naming its location, before any cluster time is spent."""
    from knowcoder_ray.storage import read_text

    cfg = yaml.safe_load(read_text(str(path)))
    try:
        validate(cfg, str(path))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return cfg


def artifact(cfg: dict, name: str) -> str:
    """Path (or URI) of an artifact: `workdir/<layout>`, unless the config names one in `paths`. Local
    paths are made absolute: Ray Train workers and Ray Data actors run in other working directories."""
    path = (cfg.get("paths") or {}).get(name) or f"{str(cfg['workdir']).rstrip('/')}/{ARTIFACTS[name]}"
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


def data_dir(cfg: dict) -> str:
    """The benchmark data folder: `data_dir` of the config, else $KNOWCODER_DATA_DIR, else ../shared/data
    (relative to the working directory), made absolute for the Ray workers."""
    value = str(cfg.get("data_dir") or os.environ.get("KNOWCODER_DATA_DIR") or "../shared/data")
    return value if "://" in value else str(Path(value).resolve())


def require_benchmarks(cfg: dict, names) -> str:
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


def base_model(cfg: dict) -> str:
    """The model the run starts from: the tiny model it creates, a model imported once from a GGUF file
    or an installed package (`base_model.import`, cached by `knowcoder model import`), or a model folder
    (`pretrain.model`)."""
    if "tiny_model" in cfg:
        return artifact(cfg, "tiny_model")
    source = (cfg.get("base_model") or {}).get("import")
    if source:
        from knowcoder_ray.train.hub import import_model

        started = time.perf_counter()
        path = str(import_model(source, cache_dir=cfg["base_model"].get("cache_dir")))
        print(f"base model {source} -> {path} ({time.perf_counter() - started:.0f} s)", flush=True)
        return path
    return cfg["pretrain"]["model"]


def init_ray(cfg: dict) -> None:
    """Join the cluster of `ray job submit` (RAY_ADDRESS), else start a local one on loopback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from knowcoder_ray.connect import connect

    connect(num_cpus=(cfg.get("ray") or {}).get("num_cpus"))  # worker output (training progress) shown here


def knowcoder(*argv: object) -> None:
    """Run one `knowcoder ...` command in this process; a non-zero exit stops the job."""
    from knowcoder_ray.cli import main

    args = [str(a) for a in argv]
    print(f"\n$ knowcoder {' '.join(args)}", flush=True)
    started = time.perf_counter()
    rc = main(args)
    if rc:
        raise SystemExit(f"knowcoder {args[0]} failed with exit code {rc}")
    print(f"[{args[0]} done in {time.perf_counter() - started:.0f} s]", flush=True)


def overrides(settings: dict | None) -> list[str]:
    """{"data.seq_len": 512} -> ["--set", "data.seq_len=512", ...] for `knowcoder train`."""
    return [arg for item in set_items(settings) for arg in ("--set", item)]


def job_main(run, description: str) -> None:
    """`python jobs/<phase>.py --config jobs/configs/tiny.yaml`: one phase on its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="pipeline YAML (jobs/configs/*.yaml)")
    cfg = load_config(parser.parse_args().config)
    init_ray(cfg)
    run(cfg)
