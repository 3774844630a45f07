"""Strict-mode metrics with hand-computed values for each task, options and granularities, and a check
against seqeval on a real BIO test file (official mode: tests/eval/test_eval_official.py)."""
import random

import pytest

from knowcoder_ray.data.benchmarks import load_benchmark
from knowcoder_ray.data.readers import bio_chunks, read_bio
from knowcoder_ray.eval.metrics import Counts, score, summary
from knowcoder_ray.records import Argument, EntityMention as E, EventMention, Record, RelationMention as R

TEXT = "Ann Lee met Bob in Paris , France ."


def rec(id="1", ents=(), rels=(), events=(), source="s1", text=TEXT):
    return Record(id, text, list(ents), list(rels), list(events), source)


def prf(c: Counts):
    return round(c.precision, 4), round(c.recall, 4), round(c.f1, 4)


def test_ner_ei_ec_hand_computed():
    gold = [rec(ents=[E("Ann Lee", "Person"), E("Bob", "Person"), E("Paris", "City")])]
    pred = [rec(ents=[E("Ann Lee", "Person"), E("Bob", "Location"), E("France", "Country"), E("Ann Lee", "Person")])]
    s = score(gold, pred, ["EI", "EC"], mode="strict")
    # EI: pred spans Ann Lee, Bob, France, Ann Lee(dup) -> tp 2 (dup unmatched), pred 4, gold 3
    assert (s["EI"].overall.tp, s["EI"].overall.pred, s["EI"].overall.gold) == (2, 4, 3)
    assert prf(s["EI"].overall) == (0.5, 0.6667, 0.5714)
    # EC: only (Person, Ann Lee) -> p 1/4, r 1/3, f1 = 2*(.25*.3333)/(.5833) = 0.2857
    assert prf(s["EC"].overall) == (0.25, 0.3333, 0.2857)
    assert s["EC"].per_type["Person"].to_dict()["tp"] == 1 and s["EC"].per_type["Person"].gold == 2
    assert s["EC"].per_type["Location"].pred == 1 and s["EC"].per_type["City"].gold == 1


def test_re_ri_rc_direction_matters_types_ignored():
    g = [rec(rels=[R("LocatedIn", E("Paris", "City"), E("France", "Country")), R("LiveIn", E("Bob"), E("Paris"))])]
    p = [rec(rels=[R("LocatedIn", E("Paris"), E("France")),            # RC hit (entity types ignored)
                   R("LiveIn", E("Paris"), E("Bob")),                  # reversed: RI miss, RC miss
                   R("WorkFor", E("Bob"), E("Paris"))])]               # RI hit, RC miss
    s = score(g, p, ["RI", "RC"], mode="strict")
    assert (s["RI"].overall.tp, s["RI"].overall.pred, s["RI"].overall.gold) == (2, 3, 2)
    assert (s["RC"].overall.tp, s["RC"].overall.pred, s["RC"].overall.gold) == (1, 3, 2)
    assert prf(s["RC"].overall) == (0.3333, 0.5, 0.4)


def test_ed_eae_hand_computed():
    g = [rec(events=[EventMention("Meet", "met", (Argument("entity", "Ann Lee"), Argument("entity", "Bob"),
                                                    Argument("place", "Paris")))])]
    p = [rec(events=[EventMention("Meet", "met", (Argument("entity", "Ann Lee"), Argument("place", "Bob"),
                                                    Argument("place", "France"))),
                     EventMention("Travel", "met", (Argument("place", "Paris"),))])]
    s = score(g, p, ["TI", "TC", "AI", "AC"], mode="strict")
    assert (s["TI"].overall.tp, s["TI"].overall.pred, s["TI"].overall.gold) == (1, 2, 1)
    assert (s["TC"].overall.tp, s["TC"].overall.pred) == (1, 2)
    # AI (event type, arg): Meet/Ann Lee hit, Meet/Bob hit, Meet/France miss, Travel/Paris miss -> 2/4, 2/3
    assert prf(s["AI"].overall) == (0.5, 0.6667, 0.5714)
    # AC (type, arg, role): only Meet/Ann Lee/entity -> 1/4, 1/3
    assert prf(s["AC"].overall) == (0.25, 0.3333, 0.2857)


def test_filter_outlier():
    g = [rec(ents=[E("Bob", "Person")], rels=[R("LiveIn", E("Bob"), E("Paris"))])]
    p = [rec(ents=[E("Bob", "Person"), E("", "Person"), E("Zed", "Person"), E("Paris", "Planet")],
             rels=[R("LiveIn", E("Bob"), E("Paris")), R("LiveIn", E("Bob"), E("Bob"))])]
    raw = score(g, p, ["EC", "RC"], mode="strict")
    assert raw["EC"].overall.pred == 4 and raw["RC"].overall.pred == 2
    f = score(g, p, ["EC", "RC"], filter_outlier=True, schema_types=["Person", "LiveIn"], mode="strict")
    assert f["EC"].overall.pred == 1 and f["EC"].overall.f1 == 1.0   # empty, not-in-sentence, unknown type dropped
    assert f["RC"].overall.pred == 1 and f["RC"].overall.f1 == 1.0   # head == tail dropped


def test_wikidata_upper_credits_ancestor_types():
    ancestors = {"Capital": ["City", "Location"], "Human": ["Person"]}.get
    g = [rec(ents=[E("Paris", "City"), E("Bob", "Person")])]
    p = [rec(ents=[E("Paris", "Capital"), E("Bob", "Location")])]
    assert score(g, p, ["EC"], mode="strict")["EC"].overall.tp == 0
    s = score(g, p, ["EC"], ancestors=lambda t: ancestors(t) or [], mode="strict")
    assert s["EC"].overall.tp == 1 and s["EC"].per_type["City"].tp == 1   # credited to the gold type
    assert s["EC"].per_type["Location"].pred == 1


def test_per_source_and_missing_predictions_and_summing():
    g = [rec("1", ents=[E("Bob", "Person")], source="a"), rec("2", ents=[E("Ann Lee", "Person")], source="b")]
    p = [rec("1", ents=[E("Bob", "Person")], source="a")]  # no prediction for id 2
    s = score(g, p, ["EC"], mode="strict")["EC"]
    assert s.per_source["a"].f1 == 1.0 and s.per_source["b"].recall == 0.0
    assert prf(s.overall) == (1.0, 0.5, 0.6667)
    halves = score(g[:1], p, ["EC"], mode="strict")["EC"] + score(g[1:], p, ["EC"], mode="strict")["EC"]
    assert halves.to_dict() == s.to_dict()
    assert summary({"EC": s}) == {"EC": 66.67}


def _perturb(tags, rng):
    """Plausible model errors on BIO tags: drop, retype, shift boundaries."""
    labels = sorted({t[2:] for t in tags if t != "O"}) or ["x"]
    out = list(tags)
    for label, s, e in bio_chunks(tags):
        r = rng.random()
        if r < 0.15:
            out[s:e] = ["O"] * (e - s)
        elif r < 0.3:
            lab = rng.choice(labels)
            out[s:e] = [f"B-{lab}"] + [f"I-{lab}"] * (e - s - 1)
        elif r < 0.4 and e < len(tags) and tags[e] == "O":
            out[e] = f"I-{label}"
    for i in range(len(out)):
        if out[i] == "O" and rng.random() < 0.02:
            out[i] = f"B-{rng.choice(labels)}"
    return out


@pytest.mark.parametrize("path,tag_first", [("crossner/politics/test.txt", False), ("mit_restaurant/restauranttest.txt", True)])
def test_ec_f1_equals_seqeval_on_real_bio(data_dir, path, tag_first):
    from seqeval.metrics import f1_score

    rng = random.Random(0)
    records = list(read_bio(data_dir / path, tag_first=tag_first))
    sentences, gold_tags = [], []
    cur_tokens, cur_tags = [], []
    for line in (data_dir / path).read_text().splitlines() + [""]:
        if not line.strip():
            if cur_tokens:
                sentences.append(cur_tokens)
                gold_tags.append(cur_tags)
            cur_tokens, cur_tags = [], []
            continue
        a, b = line.split("\t")
        tok, tag = (b, a) if tag_first else (a, b)
        cur_tokens.append(tok)
        cur_tags.append(tag)
    assert len(sentences) == len(records)
    pred_tags = [_perturb(t, rng) for t in gold_tags]

    def to_records(tag_seqs):
        out = []
        for i, (tokens, tags) in enumerate(zip(sentences, tag_seqs)):
            text = " ".join(tokens)
            # match by (type, span text) as the official scorer does; keep the token index in the
            # "text" so two equal strings at different places stay distinct, exactly as seqeval counts
            out.append(Record(str(i), text, [E(f"{s}:{' '.join(tokens[s:e])}", lab) for lab, s, e in bio_chunks(tags)]))
        return out

    ours = score(to_records(gold_tags), to_records(pred_tags), ["EC"], mode="strict")["EC"].overall.f1
    theirs = f1_score(gold_tags, pred_tags)
    print(f"\n{path}: EC F1 ours {ours:.6f} seqeval {theirs:.6f}")
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert 0.3 < ours < 0.95  # the perturbation really changed things


def test_ec_by_string_on_real_file_counts(data_dir):
    records, schema = load_benchmark("conll2003", data_dir)
    s = score(records, records, ["EI", "EC"], filter_outlier=True, schema_types=schema.names(), mode="strict")
    assert s["EC"].overall.gold == 5628 and s["EC"].overall.f1 == 1.0
