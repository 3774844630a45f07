"""Phase 0: the code-style schema library from a Wikidata dump (a slice: the types a corpus uses + ancestors)."""
import json

from common import job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.schema.build import build_schema


def run(cfg: PipelineConfig) -> None:
    s = cfg.schema_
    report = build_schema(s.dump, cfg.artifact("schema"), s).report  # `s`: the BuildConfig fields + `dump`
    print(json.dumps(report.summary()), *report.notes, sep="\n", flush=True)
    if report.truncated:
        raise SystemExit(f"schema build: {s.dump}: {report.truncated}")


if __name__ == "__main__":
    job_main(run, __doc__)
