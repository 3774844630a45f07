"""Distributed benchmark evaluation of every checkpoint of the run, with the plotly report."""
import yaml
from common import job_main

from knowcoder_ray import storage
from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.eval.evaluate import evaluate


def run(cfg: PipelineConfig) -> None:
    config = cfg.eval_config()
    # the settings beside the outputs: `knowcoder eval --config` reruns it
    storage.write_text(storage.join(config.output_dir, "eval_config.yaml"),
                       yaml.safe_dump(config.model_dump(exclude_unset=True), sort_keys=False))
    evaluate(config)


if __name__ == "__main__":
    job_main(run, __doc__)
