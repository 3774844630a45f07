"""Phase 2: LoRA instruction tuning (schema following) on the pretrained model, PEFT adapter out."""
from common import job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.train.run import train


def run(cfg: PipelineConfig) -> None:
    train(cfg.sft.build({"model": cfg.artifact("pretrained"), "data.path": cfg.artifact("following"),
                         "output_dir": cfg.artifact("adapter"), "storage_path": cfg.artifact("checkpoints")}))


if __name__ == "__main__":
    job_main(run, __doc__)
