"""What every job shares: `python jobs/<phase>.py --config X` loads the pipeline config (a bad key ends
the job with one line, no traceback), connects to Ray and runs the phase."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python jobs/x.py` from a checkout or a `ray job submit` working dir
    sys.path.insert(0, str(ROOT))

from knowcoder_ray.config import PipelineConfig  # noqa: E402  (after the sys.path line)


def load_config(path: str) -> PipelineConfig:
    try:
        return PipelineConfig.load(path)
    except (ValueError, FileNotFoundError, IsADirectoryError) as e:  # ConfigError is a ValueError
        raise SystemExit(str(e)) from None


def init_ray(cfg: PipelineConfig) -> None:
    """Join the cluster of `ray job submit` (RAY_ADDRESS), else start a local one on loopback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from knowcoder_ray.connect import connect

    connect(num_cpus=cfg.ray.num_cpus)  # worker output (training progress) shown here


@contextlib.contextmanager
def missing_inputs_end_the_job():
    """Input that is not there (benchmark data, a model folder, a dump) or a corpus that cannot be trained on
    ends the job with the message that names it and where it comes from, not a traceback."""
    from knowcoder_ray.schema.build import BuildInputError  # an empty dump, a descriptions TSV without its columns
    from knowcoder_ray.train.dataset import DataError  # imports Ray: only once a phase runs

    try:
        yield
    except (FileNotFoundError, IsADirectoryError, BuildInputError, DataError) as e:
        raise SystemExit(f"error: {e}") from None


def job_main(run, description: str) -> None:
    """`python jobs/<phase>.py --config jobs/configs/tiny.yaml`: one phase on its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="pipeline YAML (jobs/configs/*.yaml)")
    cfg = load_config(parser.parse_args().config)
    init_ray(cfg)
    with missing_inputs_end_the_job():
        run(cfg)
