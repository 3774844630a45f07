"""The official KnowCoder metrics (DESIGN.md section 3): micro P/R/F1, matching by string, not offsets.

| task | identification   | classification              |
| NER  | EI: span          | EC: (type, span)            |
| RE   | RI: (head, tail)  | RC: (type, head, tail)      |
| ED   | TI: trigger       | TC: (type, trigger)         |
| EAE  | AI: (type, arg)   | AC: (type, arg, role)       |

Matching is per sentence and one-to-one (a gold tuple matches at most one prediction), so repeated
predictions do not inflate precision. Counts add up, so shards can be scored apart and summed.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from knowcoder_ray.records import Record

METRICS = {"ner": ("EI", "EC"), "re": ("RI", "RC"), "ed": ("TI", "TC"), "eae": ("AI", "AC")}
TYPED = {"EC", "RC", "TC", "AI", "AC"}  # metrics whose tuples start with a type (per-type scores)


@dataclass
class Counts:
    tp: int = 0
    pred: int = 0
    gold: int = 0

    def __add__(self, o: "Counts") -> "Counts":
        return Counts(self.tp + o.tp, self.pred + o.pred, self.gold + o.gold)

    @property
    def precision(self) -> float:
        return self.tp / self.pred if self.pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict:
        return {"p": self.precision, "r": self.recall, "f1": self.f1, "tp": self.tp, "pred": self.pred, "gold": self.gold}


def tuples(record: Record, metric: str) -> list[tuple]:
    """The scored tuples of one record; the first element is the type where the metric has one."""
    if metric == "EI":
        return [(e.text,) for e in record.entities]
    if metric == "EC":
        return [(e.type, e.text) for e in record.entities]
    if metric == "RI":
        return [(r.head.text, r.tail.text) for r in record.relations]
    if metric == "RC":
        return [(r.type, r.head.text, r.tail.text) for r in record.relations]
    if metric == "TI":
        return [(e.trigger,) for e in record.events]
    if metric == "TC":
        return [(e.type, e.trigger) for e in record.events]
    if metric == "AI":
        return [(e.type, a.text) for e in record.events for a in e.arguments]
    if metric == "AC":
        return [(e.type, a.text, a.role) for e in record.events for a in e.arguments]
    raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(TYPED | {'EI', 'RI', 'TI'})}")


def filter_outliers(pred: Record, schema_types: Iterable[str] | None) -> Record:
    """The official `filter_outlier`: drop predicted spans that are empty or not in the sentence, types
    outside the dataset's schema, and relations whose head equals its tail."""
    allowed = None if schema_types is None else set(schema_types) | {"Entity"}

    def ok_span(s: str) -> bool:
        return bool(s.strip()) and s in pred.text

    def ok_type(t: str) -> bool:
        return allowed is None or t in allowed

    events = []
    for e in pred.events:
        if ok_span(e.trigger) and ok_type(e.type):
            args = tuple(a for a in e.arguments if ok_span(a.text))
            events.append(type(e)(e.type, e.trigger, args, e.start, e.end))
    return Record(
        pred.id, pred.text,
        [e for e in pred.entities if ok_span(e.text) and ok_type(e.type)],
        [r for r in pred.relations if ok_span(r.head.text) and ok_span(r.tail.text) and ok_type(r.type)
         and r.head.text != r.tail.text],
        events, pred.source,
    )


def _match(gold: list[tuple], pred: list[tuple], same_type: Callable[[str, str], bool] | None) -> list[tuple | None]:
    """For each prediction, the still-unmatched gold tuple it matched (one-to-one), or None."""
    free: list[tuple | None] = list(gold)
    out = []
    for p in pred:
        hit = None
        for i, g in enumerate(free):
            if g is not None and g[1:] == p[1:] and (g[0] == p[0] or (same_type is not None and same_type(p[0], g[0]))):
                hit, free[i] = g, None
                break
        out.append(hit)
    return out


@dataclass
class Score:
    """Counts overall, per type and per source, for one metric."""

    overall: Counts
    per_type: dict[str, Counts]
    per_source: dict[str, Counts]

    def __add__(self, o: "Score") -> "Score":
        def merge(a, b):
            return {k: a.get(k, Counts()) + b.get(k, Counts()) for k in a.keys() | b.keys()}
        return Score(self.overall + o.overall, merge(self.per_type, o.per_type), merge(self.per_source, o.per_source))

    def to_dict(self) -> dict:
        return {"overall": self.overall.to_dict(),
                "per_type": {k: v.to_dict() for k, v in sorted(self.per_type.items())},
                "per_source": {k: v.to_dict() for k, v in sorted(self.per_source.items())}}


def score(golds: Sequence[Record], preds: Sequence[Record], metrics: Iterable[str], *,
          filter_outlier: bool = False, schema_types: Iterable[str] | None = None,
          ancestors: Callable[[str], Iterable[str]] | None = None) -> dict[str, Score]:
    """Score predictions against gold records (paired by id; a missing prediction scores as empty).

    filter_outlier: apply `filter_outliers` with `schema_types` (the dataset's class names).
    ancestors: the `wikidata_upper` option (NER): a predicted type also counts as correct when one of
    its ancestors (e.g. `library.ancestors`) equals the gold type.
    """
    by_id = {p.id: p for p in preds}
    schema_types = None if schema_types is None else list(schema_types)
    same_type = None
    if ancestors is not None:
        def same_type(pred_t: str, gold_t: str) -> bool:
            return gold_t in ancestors(pred_t)
    out = {}
    for metric in metrics:
        overall, per_type, per_source = Counts(), defaultdict(Counts), defaultdict(Counts)
        for g in golds:
            p = by_id.get(g.id) or Record(g.id, g.text, source=g.source)
            if filter_outlier:
                p = filter_outliers(p, schema_types)
            gt, pt = tuples(g, metric), tuples(p, metric)
            hits = _match(gt, pt, same_type if metric == "EC" else None)
            c = Counts(sum(h is not None for h in hits), len(pt), len(gt))
            overall += c
            per_source[g.source] += c
            if metric in TYPED:
                for t in gt:
                    per_type[t[0]].gold += 1
                for t, hit in zip(pt, hits):
                    # a prediction credited through an ancestor counts for the gold type it matched
                    key = hit[0] if hit is not None else t[0]
                    per_type[key].pred += 1
                    per_type[key].tp += hit is not None
        out[metric] = Score(overall, dict(per_type), dict(per_source))
    return out


def summary(scores: dict[str, Score]) -> dict[str, float]:
    """Overall F1 (in percent) per metric: the figures a report table shows."""
    return {m: round(100 * s.overall.f1, 2) for m, s in scores.items()}
