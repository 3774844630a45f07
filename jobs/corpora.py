"""Phase 1 data: the schema-understanding corpus (definition + instance codes) and the schema-following
corpus ({prompt, output} for NER, RE, ED, EAE), both with Ray Data, resumable."""
from common import artifact, job_main, require_benchmarks

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.data.corpora import FollowingCorpusConfig, UnderstandingConfig, build_corpora


def run(cfg: PipelineConfig) -> None:
    data = require_benchmarks(cfg, cfg.following.benchmarks)

    def corpus(kind, section, name):
        # `library: benchmarks` uses the classes of the benchmarks in the data folder, as the evaluation does
        library = f"{artifact(cfg, 'schema')}/schema.parquet" if section.library == "schema" else None
        return kind(**{"data_dir": data, **section.model_dump(exclude_unset=True), "out": artifact(cfg, name),
                       "library": library})

    build_corpora(corpus(UnderstandingConfig, cfg.understanding, "understanding"),
                  corpus(FollowingCorpusConfig, cfg.following, "following"))


if __name__ == "__main__":
    job_main(run, __doc__)
