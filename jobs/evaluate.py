"""Distributed benchmark evaluation of every checkpoint of the run, with the plotly report."""
import yaml
from common import artifact, base_model, job_main, knowcoder, require_benchmarks

from knowcoder_ray import storage


def run(cfg: dict) -> None:
    e = dict(cfg["eval"])
    starts_from_base = "tiny_model" in cfg or "base_model" in cfg
    which = e.pop("checkpoints", ["base", "pretrained", "merged"] if starts_from_base else ["pretrained", "merged"])
    e["checkpoints"] = [base_model(cfg) if c == "base" else artifact(cfg, c) for c in which]
    if any(not str(d).startswith("records:") for d in e["datasets"]):
        e["data_dir"] = require_benchmarks(cfg, e["datasets"]) if "data_dir" not in e else e["data_dir"]
    e["labels"] = list(which)
    e["output_dir"] = artifact(cfg, "eval")
    settings = storage.join(artifact(cfg, "eval"), "eval_config.yaml")  # beside its outputs, in the workdir
    storage.write_text(settings, yaml.safe_dump(e, sort_keys=False))
    knowcoder("eval", "--config", settings)


if __name__ == "__main__":
    job_main(run, __doc__)
