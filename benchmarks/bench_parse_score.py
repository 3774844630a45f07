"""Parse + score throughput (records/s) on predictions made from the real test files.

Predictions are the gold outputs rendered by the codec and then damaged the way model outputs are
(an item dropped, a type swapped, the text cut mid-item), so the parser sees realistic input.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from knowcoder_ray.codec import Parser, render_output
from knowcoder_ray.data.benchmarks import BENCHMARKS, load_benchmark
from knowcoder_ray.eval.metrics import METRICS, score

DATA = Path(os.environ.get("KNOWCODER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
KIND = {"ner": "entity", "re": "relation", "ed": "event", "eae": "event"}


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


def main() -> None:
    rng = random.Random(0)
    rows = []
    total_records = total_parse = total_score = 0.0
    for name, bench in sorted(BENCHMARKS.items()):
        records, schema = load_benchmark(name, DATA)
        for task in bench.tasks:
            types = [t for t in schema if t.kind == KIND[task]]
            names = [t.name for t in types]
            outputs = [damage(render_output(task, r), names, rng) for r in records]
            parser = Parser.for_types(task, types, schema)
            t0 = time.perf_counter()
            preds = [parser.parse(o).to_record(r.id, r.text, r.source) for o, r in zip(outputs, records)]
            t1 = time.perf_counter()
            s = score(records, preds, METRICS[task], filter_outlier=True, schema_types=names)
            t2 = time.perf_counter()
            rows.append((f"{name}/{task}", len(records), len(records) / (t1 - t0), len(records) / (t2 - t1),
                         len(records) / (t2 - t0), {m: round(100 * v.overall.f1, 1) for m, v in s.items()}))
            total_records += len(records)
            total_parse += t1 - t0
            total_score += t2 - t1
    print(f"{'benchmark/task':32} {'records':>8} {'parse r/s':>10} {'score r/s':>10} {'both r/s':>10}  F1 of damaged preds")
    for name, n, p, s, b, f1 in rows:
        print(f"{name:32} {n:8d} {p:10.0f} {s:10.0f} {b:10.0f}  {f1}")
    print(f"{'all':32} {int(total_records):8d} {total_records / total_parse:10.0f} {total_records / total_score:10.0f} "
          f"{total_records / (total_parse + total_score):10.0f}")
    print(f"parse share of parse+score time: {total_parse / (total_parse + total_score):.2f}")


if __name__ == "__main__":
    sys.exit(main())
