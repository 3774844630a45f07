"""Distributed benchmark evaluation of every checkpoint of the run, with the plotly report."""
from pathlib import Path

import yaml
from common import artifact, job_main, knowcoder

CHECKPOINTS = {"base": "tiny_model", "pretrained": "pretrained", "merged": "merged"}


def run(cfg: dict) -> None:
    e = dict(cfg["eval"])
    which = e.pop("checkpoints", ["base", "pretrained", "merged"] if "tiny_model" in cfg else ["pretrained", "merged"])
    e["checkpoints"] = [artifact(cfg, CHECKPOINTS[c]) for c in which]
    e["labels"] = list(which)
    e["output_dir"] = artifact(cfg, "eval")
    settings = Path(cfg["workdir"]) / "eval_config.yaml" if "://" not in str(cfg["workdir"]) else Path("eval_config.yaml")
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(yaml.safe_dump(e, sort_keys=False))
    knowcoder("eval", "--config", settings)


if __name__ == "__main__":
    job_main(run, __doc__)
