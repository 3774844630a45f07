"""Scoring a predictions file without running a model (`knowcoder score`).

Two row layouts are read, one JSON object per line:

- items: `{"task": "ner"|"re"|"ed"|"eae", "sentence": str, "gold": [...], "pred": [...]}` with items
  `[type, span]` (NER), `[type, head, tail]` (RE), `[type, trigger]` (ED), `[type, trigger, role, argument]`
  (EAE, one argument per item); an optional "source" names the row's dataset.
- the evaluation's `predictions.jsonl` as written (`{"dataset", "id", "text", "prediction", "gold"}` with
  record dicts); its tasks are the benchmark's (or, for other names, those its gold annotates).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from knowcoder_ray.data.benchmarks import BENCHMARKS, annotated_tasks
from knowcoder_ray.data.readers import json_lines
from knowcoder_ray.eval.metrics import METRICS, Score, score
from knowcoder_ray.records import Argument, EntityMention, EventMention, Record, RelationMention

ITEM_WIDTH = {"ner": 2, "re": 3, "ed": 2, "eae": 4}
Groups = dict[object, tuple[list[Record], list[Record]]]  # dataset, or (task, source) -> (golds, predictions)


class ScoreFileError(ValueError):
    """A row of a predictions file that cannot be scored; the message names the line."""


def _add(groups: Groups, key, gold: Record, pred: Record) -> None:
    golds, preds = groups.setdefault(key, ([], []))
    golds.append(gold)
    preds.append(pred)


def _items_record(id: str, task: str, sentence: str, items, source: str, where: str) -> Record:
    if not isinstance(items, list):
        raise ScoreFileError(f"{where}: expected a list of items, got {type(items).__name__}")
    r = Record(id, sentence, source=source)
    for item in items:
        if (not isinstance(item, list) or len(item) != ITEM_WIDTH[task]
                or not all(isinstance(x, str) for x in item)):
            raise ScoreFileError(f"{where}: a {task} item is a list of {ITEM_WIDTH[task]} strings, got {item!r}")
        if task == "ner":
            r.entities.append(EntityMention(item[1], item[0]))
        elif task == "re":
            r.relations.append(RelationMention(item[0], EntityMention(item[1]), EntityMention(item[2])))
        else:
            r.events.append(EventMention(item[0], item[1], (Argument(item[2], item[3]),) if task == "eae" else ()))
    return r


def _evaluation_row(d: dict, n: int, where: str) -> tuple[str, Record, Record]:
    try:
        gold, pred = Record.from_dict(d["gold"]), Record.from_dict(d["prediction"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ScoreFileError(f"{where}: malformed record ({e!r})") from None
    for what, r in (("gold", gold), ("prediction", pred)):  # (else a TypeError deep in the metrics)
        strings = [*((m.text, m.type) for m in r.entities),
                   *((x.type, x.head.text, x.head.type, x.tail.text, x.tail.type) for x in r.relations),
                   *((e.type, e.trigger, *(f for a in e.arguments for f in (a.role, a.text, a.type)))
                     for e in r.events)]
        if bad := [x for fields in strings for x in fields if not isinstance(x, str)]:  # (None and 0 included)
            raise ScoreFileError(f"{where}: {what}: every type, role and mention text must be a string, "
                                 f"got {bad[0]!r}")
    if not isinstance(gold.text, str):
        raise ScoreFileError(f"{where}: gold: 'text' must be a string")
    dataset = str(d.get("dataset") or gold.source or "records")
    pred.text, pred.id, gold.id = gold.text, str(n), str(n)  # one line, one sentence
    return dataset, gold, pred


def read_predictions(path: str | Path) -> tuple[Groups, list[dict]]:
    """The evaluation layout only: per dataset in file order, gold and predicted records; and the raw outputs
    of every record's prompts."""
    datasets: Groups = {}
    outputs: list[dict] = []
    for n, where, d in _objects(path):
        if "prediction" not in d or "gold" not in d:
            raise ScoreFileError(f"{where}: expected an evaluation row with 'prediction' and 'gold'")
        _add(datasets, *_evaluation_row(d, n, where))
        outputs.extend(d.get("outputs") or [])
    return datasets, outputs


def _objects(path: str | Path):
    """(line number, "path:line", JSON object) of each line."""
    for n, line in json_lines(path):  # a line that is not UTF-8: json_lines' ValueError names it
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ScoreFileError(f"{where}: not JSON ({e.msg})") from None
        except RecursionError:
            raise ScoreFileError(f"{where}: not JSON (nested too deeply to decode)") from None
        if not isinstance(d, dict):
            raise ScoreFileError(f"{where}: expected a JSON object")
        yield n, where, d


def read_rows(path: str | Path) -> Groups:
    """Gold and predicted records of one file, grouped by (task, source)."""
    rows: Groups = {}
    evaluation: Groups = {}  # dataset -> evaluation rows, scored on the tasks of the whole dataset
    seen: dict[tuple[str, str], int] = {}  # (dataset, id) -> line
    for n, where, d in _objects(path):
        if "task" in d:
            task = d["task"]
            if not isinstance(task, str) or task not in ITEM_WIDTH:  # (a list or object is not hashable)
                raise ScoreFileError(f"{where}: task must be one of {sorted(ITEM_WIDTH)}, got {task!r}")
            sentence = d.get("sentence")
            if not isinstance(sentence, str):
                raise ScoreFileError(f"{where}: 'sentence' must be a string")
            source = str(d.get("source") or task)
            _add(rows, (task, source), _items_record(str(n), task, sentence, d.get("gold"), source, where + " gold"),
                     _items_record(str(n), task, sentence, d.get("pred"), source, where + " pred"))
        elif "prediction" in d and "gold" in d:
            dataset, gold, pred = _evaluation_row(d, n, where)
            if (key := (dataset, str(d.get("id")))) in seen and "id" in d:  # (else scored twice: files joined)
                raise ScoreFileError(f"{where}: dataset {dataset!r} id {key[1]!r} repeats line {seen[key]}")
            seen[key] = n
            _add(evaluation, dataset, gold, pred)
        else:
            raise ScoreFileError(f"{where}: expected 'task'/'sentence'/'gold'/'pred' or an evaluation row "
                                 "with 'prediction' and 'gold'")
    for dataset, (golds, preds) in evaluation.items():
        tasks = BENCHMARKS[dataset].tasks if dataset in BENCHMARKS else annotated_tasks(golds)
        if not tasks:  # (its rows were dropped: a sentence without gold lost its predictions' false positives)
            raise ScoreFileError(f"{path}: dataset {dataset!r} is not a known benchmark and its gold annotates "
                                 "nothing, so its tasks are unknown")
        for task in tasks:
            for gold, pred in zip(golds, preds):
                _add(rows, (task, dataset), gold, pred)
    if not rows:
        raise ScoreFileError(f"{path}: no rows")
    return rows


def score_rows(rows: Groups, mode: str = "official", filter_outlier: bool = False,
               schema_types: Iterable[str] | None = None, schemas: dict[str, list[str]] | None = None
               ) -> dict[str, dict[str, Score]]:
    """{source: {metric: Score}} plus "all" summed over sources. `schemas` (source -> class names) wins
    over `schema_types` for filter_outlier's type check."""
    out: dict[str, dict[str, Score]] = {}
    for (task, source), (golds, preds) in rows.items():
        types = (schemas or {}).get(source, schema_types)
        scores = score(golds, preds, METRICS[task], mode=mode, filter_outlier=filter_outlier, schema_types=types)
        out.setdefault(source, {}).update(scores)
    total: dict[str, Score] = {}
    for scores in out.values():
        for m, s in scores.items():
            total[m] = total[m] + s if m in total else s
    return {**out, "all": total} if len(out) > 1 else {"all": total}


def table(results: dict[str, dict[str, Score]], per_type: bool = False) -> str:
    lines = [f"{'source':<24} {'metric':<6} {'type':<24} {'P':>7} {'R':>7} {'F1':>7} {'tp':>7} {'pred':>7} {'gold':>7}"]
    for source, scores in results.items():
        for m, s in scores.items():
            rows = [("", s.overall)] + (sorted(s.per_type.items()) if per_type else [])
            for t, c in rows:
                lines.append(f"{source:<24} {m:<6} {t:<24} {100 * c.precision:7.2f} {100 * c.recall:7.2f} "
                             f"{100 * c.f1:7.2f} {c.tp:7d} {c.pred:7d} {c.gold:7d}")
    return "\n".join(lines)


def to_json(results: dict[str, dict[str, Score]], per_type: bool = False) -> dict:
    return {source: {m: s.to_dict() if per_type else {"overall": s.overall.to_dict()} for m, s in scores.items()}
            for source, scores in results.items()}
