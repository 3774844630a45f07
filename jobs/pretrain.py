"""Phase 1: full-parameter code pretraining (schema understanding) with Ray Train + DeepSpeed ZeRO.
With `tiny_model` in the config, first creates the tiny CPU model from the built corpora; with
`base_model.import`, starts from a pretrained model imported once from a GGUF file or package."""
from common import job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.train.run import train


def run(cfg: PipelineConfig) -> None:
    model = cfg.start_model()
    if cfg.tiny_model:
        from knowcoder_ray.train.tiny import TinySpec, corpus_texts, make_tiny_model

        texts = [t for name in ("understanding", "following") for t in corpus_texts(cfg.artifact(name))]
        make_tiny_model(model, texts, seed=0, spec=TinySpec(vocab_size=cfg.tiny_model.vocab_size))
    train(cfg.pretrain.build({"model": model, "data.path": cfg.artifact("understanding"),
                              "output_dir": cfg.artifact("pretrained"), "storage_path": cfg.artifact("checkpoints")}))


if __name__ == "__main__":
    job_main(run, __doc__)
