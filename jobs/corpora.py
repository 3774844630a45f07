"""Phase 1 data: the schema-understanding corpus (definition + instance codes) and the schema-following
corpus ({prompt, output} for NER, RE, ED, EAE), both with Ray Data, resumable."""
from common import artifact, job_main, knowcoder, require_benchmarks


def _inputs(flag: str, paths) -> list[str]:
    return [flag, *paths] if paths else []


def run(cfg: dict) -> None:
    u, f = cfg.get("understanding", {}), cfg.get("following", {})
    data = require_benchmarks(cfg, f.get("benchmarks") or [])
    # `library: benchmarks` uses the classes of the benchmarks in the data folder, as the evaluation does
    libraries = {"schema": ["--library", f"{artifact(cfg, 'schema')}/schema.parquet"], "benchmarks": []}
    lib_u, lib_f = (libraries[c.get("library", "schema")] for c in (u, f))
    knowcoder("data", "understanding", "--out", artifact(cfg, "understanding"), *lib_u, "--data-dir", data,
              *_inputs("--kelm", u.get("kelm")), "--max-group", u.get("max_group", 16), *u.get("args", []))
    knowcoder("data", "following", "--out", artifact(cfg, "following"), *lib_f, "--data-dir", data,
              *_inputs("--universalner", f.get("universalner")), *_inputs("--instructie", f.get("instructie")),
              *_inputs("--lsee", f.get("lsee")), *_inputs("--benchmark", f.get("benchmarks")),
              "--shard-size", f.get("shard_size", 8), "--distractors", f.get("distractors", 4),
              "--seed", f.get("seed", 0), *f.get("args", []))


if __name__ == "__main__":
    job_main(run, __doc__)
