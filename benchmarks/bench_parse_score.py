"""Parse + score throughput (records/s per core) on predictions made from the real test files.

Predictions are the gold outputs rendered by the codec and then damaged the way model outputs are
(an item dropped, a type swapped, the text cut mid-item), so the parser sees realistic input.
Each output is read twice, interleaved: by the parser as used (fast reader for the common shapes) and by
its `ast`-only reference (`Parser(fast=False)`); the results must be equal. Rates are records per second of
this process's CPU time (one core; the machine may be shared), the best of REPEATS runs; wall-clock
rates are printed too. Prints figures; asserts only that both readers agree.
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from knowcoder_ray.codec import TASK_KIND, Parser, render_output
from knowcoder_ray.data.benchmarks import BENCHMARKS, load_benchmark
from knowcoder_ray.eval.metrics import METRICS, score

DATA = Path(os.environ.get("KNOWCODER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
REPEATS = int(os.environ.get("BENCH_REPEATS", 3))


def damage(text: str, names: list[str], rng: random.Random) -> str:
    r = rng.random()
    if r < 0.15 and "\n\t" in text:
        lines = text.split("\n")
        del lines[rng.randrange(1, max(2, len(lines) - 1))]
        return "\n".join(lines)
    if r < 0.3 and names:
        for n in names:
            if n + "(" in text:
                return text.replace(n + "(", rng.choice(names) + "(", 1)
    if r < 0.4:
        return text[: rng.randrange(len(text) + 1)]
    return text


def timed(fn):
    """(result, cpu seconds, wall seconds) of fn()."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def main() -> None:
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rng = random.Random(0)
    rows = []
    cpu = {"ast": 0.0, "parse": 0.0, "score": 0.0}
    wall = dict(cpu)
    total = 0
    for name, bench in sorted(BENCHMARKS.items()):
        records, schema = load_benchmark(name, DATA)
        for task in bench.tasks:
            types = [t for t in schema if t.kind == TASK_KIND[task]]
            names = [t.name for t in types]
            outputs = [damage(render_output(task, r), names, rng) for r in records]
            fast = Parser.for_types(task, types, schema)
            reference = Parser.for_types(task, types, schema, fast=False)
            best = {k: (float("inf"), float("inf")) for k in cpu}
            for _ in range(REPEATS):  # interleaved: reference, fast, score
                ref_results, c_ast, w_ast = timed(lambda: [reference.parse(o) for o in outputs])
                results, c_parse, w_parse = timed(lambda: [fast.parse(o) for o in outputs])
                if results != ref_results:
                    bad = next(o for o, a, b in zip(outputs, results, ref_results) if a != b)
                    raise SystemExit(f"{name}/{task}: fast and ast readers differ on {bad!r}")
                preds = [p.to_record(r.id, r.text, r.source) for p, r in zip(results, records)]
                s, c_score, w_score = timed(lambda: score(records, preds, METRICS[task], filter_outlier=True,
                                                          schema_types=names))
                for k, c, w in (("ast", c_ast, w_ast), ("parse", c_parse, w_parse), ("score", c_score, w_score)):
                    best[k] = (min(best[k][0], c), min(best[k][1], w))
            n = len(records)
            rows.append((f"{name}/{task}", n, n / best["ast"][0], n / best["parse"][0], n / best["score"][0],
                         n / (best["parse"][0] + best["score"][0]),
                         {m: round(100 * v.overall.f1, 1) for m, v in s.items()}))
            total += n
            for k in cpu:
                cpu[k] += best[k][0]
                wall[k] += best[k][1]
    print("records/s per core (CPU time); 'ast parse' is the ast-only reference reader")
    print(f"{'benchmark/task':32} {'records':>8} {'ast parse':>10} {'parse':>10} {'score':>10} {'both':>10}  "
          "F1 of damaged preds")
    for name, n, a, p, s, b, f1 in rows:
        print(f"{name:32} {n:8d} {a:10.0f} {p:10.0f} {s:10.0f} {b:10.0f}  {f1}")
    print(f"{'all':32} {total:8d} {total / cpu['ast']:10.0f} {total / cpu['parse']:10.0f} "
          f"{total / cpu['score']:10.0f} {total / (cpu['parse'] + cpu['score']):10.0f}")
    print(f"{'all, wall clock':32} {total:8d} {total / wall['ast']:10.0f} {total / wall['parse']:10.0f} "
          f"{total / wall['score']:10.0f} {total / (wall['parse'] + wall['score']):10.0f}")
    print(f"fast reader = ast reader on all {total} outputs; parse speed-up {cpu['ast'] / cpu['parse']:.2f}x; "
          f"parse+score speed-up over ast parse+score {(cpu['ast'] + cpu['score']) / (cpu['parse'] + cpu['score']):.2f}x")
    print(f"parse share of parse+score time: {cpu['parse'] / (cpu['parse'] + cpu['score']):.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
