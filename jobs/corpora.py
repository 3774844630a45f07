"""Phase 1 data: the schema-understanding corpus (definition + instance codes) and the schema-following
corpus ({prompt, output} for NER, RE, ED, EAE), both with Ray Data, resumable."""
from common import job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.data.corpora import build_corpora


def run(cfg: PipelineConfig) -> None:
    build_corpora(cfg.corpus_config("understanding"), cfg.corpus_config("following"))


if __name__ == "__main__":
    job_main(run, __doc__)
