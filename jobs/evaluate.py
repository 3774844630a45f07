"""Distributed benchmark evaluation of every checkpoint of the run, with the plotly report."""
import yaml
from common import artifact, job_main, knowcoder

from knowcoder_ray import storage

CHECKPOINTS = {"base": "tiny_model", "pretrained": "pretrained", "merged": "merged"}


def run(cfg: dict) -> None:
    e = dict(cfg["eval"])
    which = e.pop("checkpoints", ["base", "pretrained", "merged"] if "tiny_model" in cfg else ["pretrained", "merged"])
    e["checkpoints"] = [artifact(cfg, CHECKPOINTS[c]) for c in which]
    e["labels"] = list(which)
    e["output_dir"] = artifact(cfg, "eval")
    settings = storage.join(artifact(cfg, "eval"), "eval_config.yaml")  # beside its outputs, in the workdir
    storage.write_text(settings, yaml.safe_dump(e, sort_keys=False))
    knowcoder("eval", "--config", settings)


if __name__ == "__main__":
    job_main(run, __doc__)
