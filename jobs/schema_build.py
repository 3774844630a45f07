"""Phase 0: the code-style schema library from a Wikidata dump (a slice: the types a corpus uses + ancestors)."""
from common import artifact, job_main, knowcoder


def run(cfg: dict) -> None:
    s = cfg["schema"]
    argv = ["schema", "build", s["dump"], "--out", artifact(cfg, "schema")]
    for corpus in s.get("corpus", []):
        argv += ["--corpus", corpus]
    if s.get("types"):
        argv += ["--types", ",".join(s["types"])]
    if s.get("event_root"):
        argv += ["--event-root", s["event_root"]]
    knowcoder(*argv)


if __name__ == "__main__":
    job_main(run, __doc__)
