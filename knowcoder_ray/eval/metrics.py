"""KnowCoder metrics (DESIGN.md section 3): micro P/R/F1, matching by string, not offsets.

| task | identification   | classification              |
| NER  | EI: span          | EC: (type, span)            |
| RE   | RI: (head, tail)  | RC: (type, head, tail)      |
| ED   | TI: trigger       | TC: (type, trigger)         |
| EAE  | AI: (type, arg)   | AC: (type, arg, role)       |

Two named modes:

`official` reproduces the released KnowCoder scorer (its `eval/src/metric.py` and `convert/*.py`), quirks
included, so figures compare with the paper's. Every way it differs from `strict` is listed here, once:

  O1 counting: a prediction is correct when its tuple is in the sentence's gold list (membership, not
     one-to-one); duplicate predictions each count, both as predictions and as hits, so recall can exceed
     100. Duplicate gold tuples each count as gold.
  O2 empty spans (entity, head, tail, trigger, argument) are dropped before counting, gold and predicted.
  O3 types and roles are compared after `norm_name` (schema.types): `-` or else `_` become spaces, else
     camelCase is split; then lower-cased (`Restaurant_Name` and `RestaurantName` -> `restaurant name`).
  O4 NER: entities whose normalised type is `other` are dropped, gold and predicted.
  O5 ED: ACE 2005 subtypes map to their coarse type (`ACE_COARSE`), gold and predicted, after O3.
  O6 filter_outlier (predictions only; schema checks compare normalised names):
       NER: drop a span that is empty or not a substring of the sentence (so `" "` stays), and a type
            outside the schema (so `Entity` goes);
       RE:  drop empty heads or tails, head == tail, spans not in the sentence, types outside the schema;
       ED:  drop an empty trigger or one not in the sentence; no type check;
       EAE: drop an event whose type is outside the schema or whose trigger (O9) is empty or not in
            the sentence; arguments are never filtered (not-in-sentence arguments stay).
  O7 per type: gold and predicted tuples are deduplicated per sentence; a prediction whose type has not
     yet been seen in gold (sentences taken in order) is ignored; only gold types are reported.
  O8 wikidata_upper (NER): a prediction is correct when its type or any ancestor type equals the gold
     type; per type it is credited to its own (predicted) type.
  O9 an event written without a trigger has, for the official readers, the first quoted string of its
     call as trigger, i.e. its first argument (ED scoring and the EAE filter).

`strict` is our cleaner definition: exact type names, one-to-one matching per sentence (a gold tuple
matches at most one prediction), empty spans count as predictions, no `other`/ACE mapping; its
filter_outlier drops empty or out-of-sentence spans (arguments included), types outside the schema
(`Entity` allowed) and head == tail relations; per type counts every tuple, a prediction credited through
an ancestor counts for the gold type it matched.

Hallucinated types and roles are predictions in both modes: they count as false positives unless
filter_outlier removes them. Counts add up, so shards can be scored apart and summed.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass

from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import norm_name  # O3

METRICS = {"ner": ("EI", "EC"), "re": ("RI", "RC"), "ed": ("TI", "TC"), "eae": ("AI", "AC")}
TASK_OF = {m: t for t, ms in METRICS.items() for m in ms}
TYPED = {"EC", "RC", "TC", "AI", "AC"}  # metrics whose tuples start with a type (per-type scores)
MODES = ("official", "strict")

# O5: ACE 2005 event subtypes (normalised) -> coarse type
ACE_COARSE = {sub: coarse for coarse, subs in {
    "business": ("declare bankruptcy", "end organization", "merge organization", "start organization"),
    "conflict": ("attack", "demonstrate"),
    "contact": ("meet", "phone write"),
    "justice": ("acquit", "appeal", "arrest jail detain", "charge indict", "convict", "execute", "extradite",
                "fine", "pardon", "release parole", "sentence", "sue", "trial hearing"),
    "life": ("be born", "die", "divorce", "injure", "marry"),
    "movement": ("transportation",),
    "personnel": ("elect", "end position", "nominate", "start position"),
    "transaction": ("transfer money", "transfer ownership"),
}.items() for sub in subs}


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
        return {"p": self.precision, "r": self.recall, "f1": self.f1, **asdict(self)}


@dataclass(frozen=True)
class _Upper:
    """O8: a predicted type with its ancestors (all normalised); `own` is the predicted type."""
    types: frozenset
    own: str


def tuples(record: Record, metric: str, *, official: bool = False, pred: bool = False, filter_outlier: bool = False,
           schema: Collection[str] | None = None,
           ancestors: Callable[[str], Iterable[str]] | None = None) -> list[tuple]:
    """The scored tuples of one record, the type first where the metric has one: as written (strict, the
    default) or as the official scorer builds them (O2-O6, O9; gold with pred=False). filter_outlier
    (predictions only) checks types against `schema` (None: no type check; official: normalised class
    names; strict: class names and `Entity`); `ancestors`: O8, official predictions only."""
    task, text, out = TASK_OF[metric], record.text, []
    drop = pred and filter_outlier
    check_type = drop and schema is not None
    norm = norm_name if official else str

    def keep(span: str) -> bool:
        """O2 (official: an empty span never counts), then filter_outlier's span check."""
        if drop:
            return bool(span if official else span.strip()) and span in text
        return bool(span) or not official

    if task == "ner":
        for e in record.entities:
            t = norm(e.type)
            if (official and t == "other") or not keep(e.text) or (check_type and t not in schema):
                continue
            if metric == "EI":
                out.append((e.text,))
            elif official and pred and ancestors is not None:
                out.append((_Upper(frozenset([*map(norm_name, ancestors(e.type)), t]), t), e.text))
            else:
                out.append((t, e.text))
    elif task == "re":
        for r in record.relations:
            t, h, tl = norm(r.type), r.head.text, r.tail.text
            if not keep(h) or not keep(tl) or (drop and h == tl) or (check_type and t not in schema):
                continue
            out.append((h, tl) if metric == "RI" else (t, h, tl))
    elif task == "ed":
        for e in record.events:
            t = norm(e.type)
            t = ACE_COARSE.get(t, t) if official else t
            trigger = _trigger(e) if official and pred else e.trigger
            if not keep(trigger) or (check_type and not official and t not in schema):  # official: no type check
                continue
            out.append((trigger,) if metric == "TI" else (t, trigger))
    else:
        for e in record.events:
            t = norm(e.type)
            if drop and ((check_type and t not in schema) or not keep(_trigger(e) if official else e.trigger)):
                continue
            for a in e.arguments:  # O6: the official filter keeps every argument
                if bool(a.text) if official else keep(a.text):
                    out.append((t, a.text) if metric == "AI" else (t, a.text, norm(a.role)))
    return out


def _trigger(e) -> str:
    """O9: the trigger as the official readers take it."""
    return e.trigger or (e.arguments[0].text if e.arguments else "")


def _member(p: tuple, gold: list[tuple]) -> bool:
    """O1 (with O8's ancestor types): is the prediction in the gold list?"""
    if p and isinstance(p[0], _Upper):
        return any(g[1:] == p[1:] and g[0] in p[0].types for g in gold)
    return p in gold


def _match(gold: list[tuple], pred: list[tuple], same_type: Callable[[str, str], bool] | None) -> list[tuple | None]:
    """Strict mode: for each prediction, the still-unmatched gold tuple it matched (one-to-one), or None."""
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


def score(golds: Sequence[Record], preds: Sequence[Record], metrics: Iterable[str], *, mode: str = "official",
          filter_outlier: bool = False, schema_types: Iterable[str] | None = None,
          ancestors: Callable[[str], Iterable[str]] | None = None) -> dict[str, Score]:
    """Score predictions against gold records (paired by id; a missing prediction scores as empty).
    filter_outlier checks types against `schema_types` (None: no type check). ancestors: `wikidata_upper`
    (NER, e.g. `library.ancestors`): an ancestor of the predicted type may match."""
    if mode not in MODES:
        raise ValueError(f"unknown metric mode {mode!r}; expected one of {MODES}")
    by_id = {p.id: p for p in preds}
    schema = None if schema_types is None else (  # filter_outlier's type check (`tuples`)
        frozenset(map(norm_name, schema_types)) if mode == "official" else {*schema_types, "Entity"})
    out = {}
    for metric in metrics:
        if metric not in TASK_OF:
            raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(TASK_OF)}")
        # a generator, not a list: fewer live objects, fewer garbage-collector passes
        pairs = ((g, by_id.get(g.id) or Record(g.id, g.text, source=g.source)) for g in golds)
        out[metric] = _score_pairs(pairs, metric, mode == "official", filter_outlier, schema,
                                   ancestors if metric == "EC" else None)
    return out


def _score_pairs(pairs, metric, official, filter_outlier, schema, ancestors) -> Score:
    same_type = None if ancestors is None else (lambda pred_t, gold_t: gold_t in ancestors(pred_t))
    per_type: dict[str, Counts] = defaultdict(Counts)
    per_source: dict[str, list[int]] = {}  # source -> [tp, pred, gold] (plain ints: no object per sentence)
    typed, plain = metric in TYPED, ancestors is None  # official, plain tuples: membership is `in` (O1)
    for g, p in pairs:
        gt = tuples(g, metric, official=official)
        pt = tuples(p, metric, official=official, pred=True, filter_outlier=filter_outlier, schema=schema,
                    ancestors=ancestors)
        if official:
            hits = sum(map(gt.__contains__, pt)) if plain else sum(_member(x, gt) for x in pt)
        else:
            matched = _match(gt, pt, same_type)
            hits = len(matched) - matched.count(None)
        per_source[g.source] = [a + b for a, b in zip(per_source.get(g.source, (0, 0, 0)), (hits, len(pt), len(gt)))]
        if typed and official:  # O7
            for x in dict.fromkeys(gt):
                per_type[x[0]].gold += 1
            for x in dict.fromkeys(pt):
                c = per_type.get(x[0] if plain else x[0].own)
                if c is not None:
                    c.pred += 1
                    c.tp += _member(x, gt)
        elif typed:
            for t in gt:
                per_type[t[0]].gold += 1
            for t, hit in zip(pt, matched):
                # a prediction credited through an ancestor counts for the gold type it matched
                key = hit[0] if hit is not None else t[0]
                per_type[key].pred += 1
                per_type[key].tp += hit is not None
    overall = Counts(*map(sum, zip(*per_source.values()))) if per_source else Counts()
    return Score(overall, dict(per_type), {k: Counts(*v) for k, v in per_source.items()})


def summary(scores: dict[str, Score]) -> dict[str, float]:
    """Overall F1 (in percent) per metric: the figures a report table shows."""
    return {m: round(100 * s.overall.f1, 2) for m, s in scores.items()}
