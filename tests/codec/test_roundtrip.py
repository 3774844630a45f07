"""Round trip on every record of every real test file: record -> rendered output -> parser -> the same
annotations. Rates are printed per benchmark and task."""
from collections import Counter

import pytest

from knowcoder_ray.codec import Parser, render_output
from knowcoder_ray.data.benchmarks import BENCHMARKS, load_benchmark


def annotations(record, task):
    if task == "ner":
        return Counter((e.type, e.text) for e in record.entities)
    if task == "re":
        return Counter((r.type, r.head.text, r.tail.text) for r in record.relations)
    if task == "ed":
        return Counter((e.type, e.trigger) for e in record.events)
    return Counter((e.type, e.trigger, tuple(sorted((a.role, a.text) for a in e.arguments))) for e in record.events)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_test_record_round_trips(data_dir, name):
    records, schema = load_benchmark(name, data_dir, "test")
    assert records
    for task in BENCHMARKS[name].tasks:
        types = [t for t in schema if t.kind == {"ner": "entity", "re": "relation"}.get(task, "event")]
        parser = Parser.for_types(task, types, schema)
        ok = 0
        failures = []
        for r in records:
            out = render_output(task, r)
            parsed = parser.parse(out)
            got = parsed.to_record(r.id, r.text)
            if annotations(got, task) == annotations(r, task) and not parsed.errors and not parsed.hallucinated:
                ok += 1
            else:
                failures.append((r.id, out[:200], parsed.errors[:2]))
        rate = ok / len(records)
        print(f"\nround trip {name}/{task}: {ok}/{len(records)} = {100 * rate:.2f}%")
        assert rate == 1.0, failures[:3]
