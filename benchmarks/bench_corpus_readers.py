"""The corpus pipeline's own shard planner against Ray Data's own readers and writers, measured in one run
(issue #17 asked for the latter; data/pipeline.py's docstring says why we kept the former).

Both build the understanding corpus from the same KELM-format JSON-lines file (written from the real
CoNLL04 and NYT sentences of ../shared/data, `--scale` copies) with the same UnderstandingTransform and
token counter, on the same local Ray cluster:

  pipeline   pipeline.run: byte-range shards of the file, one actor per CPU, per-shard commit
  ray-data   ray.data.read_text -> map_batches(parse + transform, a bad record set aside with its reason)
             -> write_parquet (Ray's default save mode, APPEND). Ray 2.60's text reader reads each file
             whole in one task, decodes it at once and cuts it with str.splitlines().

Printed: seconds and the ratio; records in = written + quarantined; what one line that is not UTF-8, one
line that is not JSON and one record holding an unescaped U+2028 do to each; what a second run into the
same folder adds; whether two runs give the same file names and bytes. Timings on this shared 2-core
machine are noisy.

    python benchmarks/bench_corpus_readers.py [--data-dir ../shared/data] [--scale 10] [--cpus 2]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.pop("RAY_ADDRESS", None)


class TransformBatch:
    """The Ray Data map stage: parse each line, run the transform, count tokens; a malformed record goes
    to the quarantine column with its reason (Ray Data gives no line number or byte offset to name)."""

    def __init__(self, data_dir: str) -> None:
        from bench_corpora import build

        from knowcoder_ray.tokens import TokenCounter

        self.transform, specs = build("understanding", data_dir, {"kelm": []}, 1 << 20)
        self.counter = TokenCounter()

    def __call__(self, batch: dict) -> dict:
        from knowcoder_ray.data.pipeline import MALFORMED, Item, ShardSpec

        spec, texts, bad = ShardSpec("ray-data", "kelm", "lines"), [], []
        for line in batch["text"]:
            try:
                pairs = self.transform.rows(spec, Item("", json.loads(line)))
                texts += [row["text"] for _, row in pairs]
                if not pairs:
                    bad.append("the record gives no row")
            except MALFORMED as e:
                bad.append(f"{type(e).__name__}: {e}")
        n = self.counter(texts)
        # one output table per batch: the rows, then the reasons as rows of their own kind
        return {"text": texts + [""] * len(bad), "n_tokens": list(n) + [0] * len(bad),
                "quarantine": [""] * len(texts) + bad}


def ray_data_build(path: str, out: str, data_dir: str, cpus: int) -> dict:
    import pyarrow.parquet as pq
    import ray.data

    t0 = time.perf_counter()
    try:
        ds = ray.data.read_text(path).map_batches(TransformBatch, fn_constructor_kwargs={"data_dir": data_dir},
                                                   batch_size=256, concurrency=(1, cpus), num_cpus=1)
        ds.write_parquet(out)
    except Exception as e:  # what a bad byte does to the whole run
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e).splitlines()[0])  # without the terminal colours
        return {"seconds": time.perf_counter() - t0, "error": f"{type(e).__name__}: {first[:160]}"}
    files = sorted(p for p in os.listdir(out) if p.endswith(".parquet"))
    table = pq.read_table(out)
    q = table.column("quarantine").to_pylist()
    return {"seconds": time.perf_counter() - t0, "files": files, "rows": sum(1 for x in q if not x),
            "quarantined": sum(1 for x in q if x), "digest": _digest(out, files)}


def pipeline_build(path: str, out: str, data_dir: str, cpus: int) -> dict:
    from bench_corpora import build

    from knowcoder_ray.data.pipeline import PipelineError, run

    transform, specs = build("understanding", data_dir, {"kelm": [path]}, 1 << 20)
    t0 = time.perf_counter()
    try:
        m = run(transform, specs, out, workers=cpus)
    except PipelineError as e:
        return {"seconds": time.perf_counter() - t0, "error": str(e)[:160]}
    files = sorted(os.listdir(Path(out) / "data"))
    return {"seconds": time.perf_counter() - t0, "files": files, "rows": m["rows"], "quarantined": m["quarantined"],
            "records": m["records"], "digest": _digest(Path(out) / "data", files)}


def _digest(folder, files) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update((Path(folder) / f).read_bytes())
    return h.hexdigest()[:12]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--cpus", type=int, default=2)
    args = p.parse_args()
    import ray
    from bench_corpora import make_inputs

    tmp = Path(tempfile.mkdtemp(prefix="bench-readers-"))
    clean = make_inputs(args.data_dir, tmp / "in", args.scale)["understanding"]["kelm"][0]
    lines = Path(clean).read_bytes().splitlines(keepends=True)
    print(f"input: {len(lines):,} KELM lines, {Path(clean).stat().st_size / 2**20:.1f} MiB, one file; "
          f"{args.cpus} CPUs", flush=True)
    mid = len(lines) // 2
    inputs = {"clean": clean}
    # JSON lets a string hold U+2028 unescaped; str.splitlines() cuts there, "\n" does not
    u2028 = lines[0].replace(b'"gen_sentence": "', '"gen_sentence": "\u2028'.encode(), 1)
    for name, bad in (("one line not UTF-8", b'{"gen_sentence": "caf\xe9", "triples": []}\n'),
                      ("one line not JSON", b'{"gen_sentence": "cut here\n'), ("U+2028 inside a record", u2028)):
        inputs[name] = str(tmp / "in" / f"{name.replace(' ', '_')}.jsonl")
        Path(inputs[name]).write_bytes(b"".join(lines[:mid] + [bad] + lines[mid:]))

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    builders = {"pipeline": pipeline_build, "ray-data": ray_data_build}
    res = {}
    for case, path in inputs.items():
        for name, fn in builders.items():
            res[case, name] = fn(path, str(tmp / f"{name}-{case.replace(' ', '_')}"), args.data_dir, args.cpus)
    for name, fn in builders.items():  # a second run: into the same folder, and into a fresh one
        res["rerun", name] = fn(clean, str(tmp / f"{name}-clean"), args.data_dir, args.cpus)
        res["again", name] = fn(clean, str(tmp / f"{name}-again"), args.data_dir, args.cpus)
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)  # inputs and outputs: several copies of the input

    print(f"\n{'input':22s} {'builder':9s} {'seconds':>8s} {'rows':>7s} {'quarant.':>8s}  outcome")
    for (case, name), r in res.items():
        if case in ("rerun", "again"):
            continue
        outcome = r.get("error") or f"{len(r['files'])} files"
        print(f"{case:22s} {name:9s} {r['seconds']:8.1f} {r.get('rows', '-'):>7} {r.get('quarantined', '-'):>8}  "
              f"{outcome}")
    a, b = res["clean", "pipeline"], res["clean", "ray-data"]
    print(f"\nclean input, ray-data seconds / pipeline seconds: {b['seconds'] / a['seconds']:.2f}x "
          f"(same rows: {a['rows'] == b['rows']})")
    for name in builders:
        first, rerun, again = res["clean", name], res["rerun", name], res["again", name]
        print(f"{name}: a second run into the same folder -> {len(rerun.get('files', []))} files, "
              f"{rerun.get('rows', '-')} rows (first run: {len(first['files'])} files, {first['rows']} rows); "
              f"a run into a new folder: same file names {first['files'] == again.get('files')}, "
              f"same bytes {first['digest'] == again.get('digest')}")


if __name__ == "__main__":
    main()
