"""Merge the LoRA adapter into its base: a plain HF model folder for engines without adapter support."""
from common import job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.train.merge import merge_lora


def run(cfg: PipelineConfig) -> None:
    merge_lora(cfg.artifact("adapter"), cfg.artifact("merged"), base_dir=cfg.artifact("pretrained"))


if __name__ == "__main__":
    job_main(run, __doc__)
