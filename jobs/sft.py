"""Phase 2: LoRA instruction tuning (schema following) on the pretrained model, PEFT adapter out."""
from common import artifact, job_main, knowcoder, overrides


def run(cfg: dict) -> None:
    s = cfg["sft"]
    knowcoder("train", "sft", "--config", s["config"],
              *overrides({"model": artifact(cfg, "pretrained"), "data.path": artifact(cfg, "following"),
                          "output_dir": artifact(cfg, "adapter"), "storage_path": artifact(cfg, "checkpoints"),
                          **s.get("set", {})}))


if __name__ == "__main__":
    job_main(run, __doc__)
