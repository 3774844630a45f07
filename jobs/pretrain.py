"""Phase 1: full-parameter code pretraining (schema understanding) with Ray Train + DeepSpeed ZeRO.
With `tiny_model` in the config, first creates the tiny CPU model from the built corpora."""
from common import artifact, job_main, knowcoder, overrides


def run(cfg: dict) -> None:
    p = cfg["pretrain"]
    model = p.get("model")
    if "tiny_model" in cfg:
        model = artifact(cfg, "tiny_model")
        knowcoder("model", "tiny", "--out", model, "--corpus", artifact(cfg, "understanding"),
                  "--corpus", artifact(cfg, "following"), "--vocab-size", cfg["tiny_model"].get("vocab_size", 1024))
    knowcoder("train", "pretrain", "--config", p["config"],
              *overrides({"model": model, "data.path": artifact(cfg, "understanding"),
                          "output_dir": artifact(cfg, "pretrained"), "storage_path": artifact(cfg, "checkpoints"),
                          **p.get("set", {})}))


if __name__ == "__main__":
    job_main(run, __doc__)
