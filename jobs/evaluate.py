"""Distributed benchmark evaluation of every checkpoint of the run, with the plotly report."""
import yaml
from common import job_main

from knowcoder_ray import storage
from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.eval.evaluate import EvalConfig, evaluate


def run(cfg: PipelineConfig) -> None:
    e = cfg.eval
    which = e.checkpoints or (["base", "pretrained", "merged"] if cfg.tiny_model or cfg.base_model
                              else ["pretrained", "merged"])
    settings = e.model_dump(exclude_unset=True, exclude={"checkpoints"})
    if "data_dir" not in settings and any(not d.startswith("records:") for d in e.datasets):
        settings["data_dir"] = cfg.benchmark_dir(e.datasets)
    config = EvalConfig(**settings, checkpoints=[cfg.start_model() if c == "base" else cfg.artifact(c) for c in which],
                        labels=list(which), output_dir=cfg.artifact("eval"))
    # the settings beside the outputs: `knowcoder eval --config` reruns it
    storage.write_text(storage.join(config.output_dir, "eval_config.yaml"),
                       yaml.safe_dump(config.model_dump(exclude_unset=True), sort_keys=False))
    evaluate(config)


if __name__ == "__main__":
    job_main(run, __doc__)
