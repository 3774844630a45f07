"""Phase 2: LoRA instruction tuning (schema following) on the pretrained model, PEFT adapter out."""
from common import artifact, job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.train.run import train


def run(cfg: PipelineConfig) -> None:
    train(cfg.sft.build({"model": artifact(cfg, "pretrained"), "data.path": artifact(cfg, "following"),
                         "output_dir": artifact(cfg, "adapter"), "storage_path": artifact(cfg, "checkpoints")}))


if __name__ == "__main__":
    job_main(run, __doc__)
