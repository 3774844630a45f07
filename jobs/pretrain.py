"""Phase 1: full-parameter code pretraining (schema understanding) with Ray Train + DeepSpeed ZeRO.
With `tiny_model` in the config, first creates the tiny CPU model from the built corpora; with
`base_model.import`, starts from a pretrained model imported once from a GGUF file or package."""
from common import artifact, base_model, job_main, knowcoder, overrides


def run(cfg: dict) -> None:
    p = cfg["pretrain"]
    model = base_model(cfg)
    if "tiny_model" in cfg:
        knowcoder("model", "tiny", "--out", model, "--corpus", artifact(cfg, "understanding"),
                  "--corpus", artifact(cfg, "following"), "--vocab-size", cfg["tiny_model"].get("vocab_size", 1024))
    knowcoder("train", "pretrain", "--config", p["config"],
              *overrides({"model": model, "data.path": artifact(cfg, "understanding"),
                          "output_dir": artifact(cfg, "pretrained"), "storage_path": artifact(cfg, "checkpoints"),
                          **p.get("set", {})}))


if __name__ == "__main__":
    job_main(run, __doc__)
