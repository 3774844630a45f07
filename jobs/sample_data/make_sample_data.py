"""Write the demo's bundled sample data: short sentences written for this project about well-known
people, places and organizations, annotated once here and rendered into the real source formats the
corpus pipelines read. Run it to regenerate the files beside it:

    python jobs/sample_data/make_sample_data.py

- kelm.jsonl          KELM generated-corpus lines (triples incl. "instance of", gen_sentence)
- pile_ner.json       UniversalNER / Pile-NER-type conversations (NER)
- instructie.jsonl    InstructIE records (RE)
- lsee.tsv            LSEE wiki_sentence_annotated.with_trigger lines (events)
- eval.jsonl          the same sentences as unified records, for the demo's evaluation

Types and relation labels are Wikidata's English labels, as in the bundled Wikidata sample dump
(tests/fixtures/wikidata_dump.json.bz2), so the schema slice built from that dump covers them.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (sentence, entities [(text, type label)], relations [(head, relation label, tail)],
#  events [(type, trigger, [(role, text)])])
SENTENCES = [
    ("Barack Obama was born in Honolulu.", [("Barack Obama", "human"), ("Honolulu", "city")],
     [("Barack Obama", "place of birth", "Honolulu")], []),
    ("Barack Obama married Michelle Obama in 1992.", [("Barack Obama", "human"), ("Michelle Obama", "human")],
     [("Barack Obama", "spouse", "Michelle Obama")],
     [("marriage", "married", [("spouse", "Barack Obama"), ("spouse", "Michelle Obama")])]),
    ("Paris is the capital of France.", [("Paris", "city"), ("France", "country")],
     [("France", "capital", "Paris")], []),
    ("Berlin is the capital of Germany.", [("Berlin", "city"), ("Germany", "country")],
     [("Germany", "capital", "Berlin")], []),
    ("London is the capital of the United Kingdom.", [("London", "city"), ("United Kingdom", "country")],
     [("United Kingdom", "capital", "London")], []),
    ("Lionel Messi played for FC Barcelona.", [("Lionel Messi", "human"), ("FC Barcelona", "association football club")],
     [("Lionel Messi", "member of sports team", "FC Barcelona")],
     [("sports team roster", "played", [("player", "Lionel Messi"), ("team", "FC Barcelona")])]),
    ("Cristiano Ronaldo joined Manchester United F.C. as a teenager.",
     [("Cristiano Ronaldo", "human"), ("Manchester United F.C.", "association football club")],
     [("Cristiano Ronaldo", "member of sports team", "Manchester United F.C.")],
     [("sports team roster", "joined", [("player", "Cristiano Ronaldo"), ("team", "Manchester United F.C.")])]),
    ("Cristiano Ronaldo later signed with Real Madrid CF.",
     [("Cristiano Ronaldo", "human"), ("Real Madrid CF", "association football club")],
     [("Cristiano Ronaldo", "member of sports team", "Real Madrid CF")],
     [("sports team roster", "signed", [("player", "Cristiano Ronaldo"), ("team", "Real Madrid CF")])]),
    ("Albert Einstein studied at ETH Zurich.", [("Albert Einstein", "human"), ("ETH Zurich", "university")],
     [("Albert Einstein", "educated at", "ETH Zurich")],
     [("education", "studied", [("student", "Albert Einstein"), ("institution", "ETH Zurich")])]),
    ("Douglas Adams graduated from the University of Cambridge.",
     [("Douglas Adams", "human"), ("University of Cambridge", "university")],
     [("Douglas Adams", "educated at", "University of Cambridge")],
     [("education", "graduated", [("student", "Douglas Adams"), ("institution", "University of Cambridge")])]),
    ("Barack Obama studied law at Harvard University.", [("Barack Obama", "human"), ("Harvard University", "university")],
     [("Barack Obama", "educated at", "Harvard University")],
     [("education", "studied", [("student", "Barack Obama"), ("institution", "Harvard University")])]),
    ("Douglas Adams wrote The Hitchhiker's Guide to the Galaxy.",
     [("Douglas Adams", "human"), ("The Hitchhiker's Guide to the Galaxy", "novel")],
     [("The Hitchhiker's Guide to the Galaxy", "author", "Douglas Adams")], []),
    ("Google has its headquarters in New York City and in California.",
     [("Google", "company"), ("New York City", "city")],
     [("Google", "headquarters location", "New York City")], []),
    ("Apple Inc. sells phones in France and Germany.",
     [("Apple Inc.", "company"), ("France", "country"), ("Germany", "country")], [], []),
    ("Microsoft opened a research lab at the University of Cambridge.",
     [("Microsoft", "company"), ("University of Cambridge", "university")], [], []),
    ("Marie Curie worked in Paris for most of her life.", [("Marie Curie", "human"), ("Paris", "city")], [], []),
    ("Johann Sebastian Bach was born in Germany.", [("Johann Sebastian Bach", "human"), ("Germany", "country")],
     [("Johann Sebastian Bach", "place of birth", "Germany")], []),
    ("Inception was filmed in Paris and London.", [("Inception", "film"), ("Paris", "city"), ("London", "city")], [], []),
    ("2001: A Space Odyssey is a film that Douglas Adams admired.",
     [("2001: A Space Odyssey", "film"), ("Douglas Adams", "human")], [], []),
    ("Michelle Obama spoke at Harvard University in 2011.",
     [("Michelle Obama", "human"), ("Harvard University", "university")], [], []),
    ("Lionel Messi was born in Argentina and lives in France.",
     [("Lionel Messi", "human"), ("Argentina", "country"), ("France", "country")],
     [("Lionel Messi", "place of birth", "Argentina")], []),
    ("Albert Einstein worked for the University of Oxford as a visitor.",
     [("Albert Einstein", "human"), ("University of Oxford", "university")],
     [("Albert Einstein", "employer", "University of Oxford")],
     [("employment", "worked", [("person", "Albert Einstein"), ("company", "University of Oxford")])]),
    ("Marie Curie married Pierre Curie in Paris.", [("Marie Curie", "human"), ("Pierre Curie", "human"), ("Paris", "city")],
     [("Marie Curie", "spouse", "Pierre Curie")],
     [("marriage", "married", [("spouse", "Marie Curie"), ("spouse", "Pierre Curie"), ("location", "Paris")])]),
    ("FC Barcelona beat Real Madrid CF in Berlin.",
     [("FC Barcelona", "association football club"), ("Real Madrid CF", "association football club"), ("Berlin", "city")],
     [], []),
    ("Honolulu is a city in the United States.", [("Honolulu", "city"), ("United States", "country")],
     [("Honolulu", "country", "United States")], []),
    ("New York City is the largest city of the United States.",
     [("New York City", "city"), ("United States", "country")],
     [("New York City", "country", "United States")], []),
    ("Microsoft hired Douglas Adams to write a game.", [("Microsoft", "company"), ("Douglas Adams", "human")],
     [("Douglas Adams", "employer", "Microsoft")],
     [("employment", "hired", [("person", "Douglas Adams"), ("company", "Microsoft")])]),
    ("Google was founded by two students.", [("Google", "company")], [], []),
    ("Manchester United F.C. plays in the United Kingdom.",
     [("Manchester United F.C.", "association football club"), ("United Kingdom", "country")],
     [("Manchester United F.C.", "country", "United Kingdom")], []),
    ("Cristiano Ronaldo married nobody in this sentence.", [("Cristiano Ronaldo", "human")], [], []),
]

ENTITY_QID = {"human": "Q5", "city": "Q515", "country": "Q6256", "association football club": "Q476028",
              "university": "Q3918", "company": "Q783794", "film": "Q11424", "novel": "Q8261"}
RELATION_PID = {"place of birth": "P19", "spouse": "P26", "capital": "P36", "member of sports team": "P54",
                "educated at": "P69", "author": "P50", "headquarters location": "P159", "employer": "P108",
                "country": "P17"}
LSEE_TYPE = {"marriage": "people.marriage", "sports team roster": "sports.sports_team_roster",
             "education": "education.education", "employment": "business.employment_tenure"}


def _find(sentence: str, text: str) -> tuple[int, int]:
    start = sentence.index(text)  # raises if the annotation is not in its sentence
    return start, start + len(text)


def kelm_lines() -> list[dict]:
    out = []
    for sentence, ents, rels, _ in SENTENCES:
        if not rels:
            continue
        types = dict(ents)
        triples = [[h, r, t] for h, r, t in rels]
        for name in dict.fromkeys(x for h, _, t in rels for x in (h, t)):
            triples.append([name, "instance of", types[name]])
        out.append({"triples": triples, "serialized_triples": " ".join(" ".join(t) for t in triples),
                    "gen_sentence": sentence})
    return out


def pile_ner() -> list[dict]:
    labels = sorted({t for _, ents, _, _ in SENTENCES for _, t in ents})
    out = []
    for i, (sentence, ents, _, _) in enumerate(SENTENCES):
        conv = [{"from": "human", "value": f"Text: {sentence}"}, {"from": "gpt", "value": "I've read this text."}]
        asked = [t for _, t in ents] + [labels[i % len(labels)]]  # one type the sentence may not have
        for label in dict.fromkeys(asked):
            conv.append({"from": "human", "value": f"What describes {label} in the text?"})
            conv.append({"from": "gpt", "value": json.dumps([e for e, t in ents if t == label])})
        out.append({"conversations": conv, "id": f"ner_{i}"})
    return out


def instructie() -> list[dict]:
    out = []
    for i, (sentence, ents, rels, _) in enumerate(SENTENCES):
        types = dict(ents)
        out.append({"id": f"ie_{i}", "cate": "Person", "text": sentence,
                    "relation": [{"head": h, "head_type": types[h], "relation": r, "tail": t, "tail_type": types[t]}
                                 for h, r, t in rels]})
    return out


def lsee() -> list[str]:
    lines = []
    for i, (sentence, ents, _, events) in enumerate(SENTENCES):
        mids = {e: f"m.0demo{j}{i}" for j, (e, _) in enumerate(ents)}
        key = [mids[e] for e, _ in ents[:2]] + [mids[ents[0][0]]] * (2 - len(ents[:2]))
        if not events:
            anns = [f"{mids[e]},{s},{t}" for e, _ in ents for s, t in [_find(sentence, e)]]
            lines.append("\t".join([*key, "negative", sentence, *anns]))
            continue
        for k, (etype, trigger, args) in enumerate(events):
            base = LSEE_TYPE[etype]
            anns = []
            for role, text in args:
                s, t = _find(sentence, text)
                anns.append(f"{base}.{role},{mids.get(text, 'm.0demo')},{s},{t}")
            s, t = _find(sentence, trigger)
            anns.append(f"{base}.trigger,{trigger},{s},{t}")
            lines.append("\t".join([*key, f"m.0demoevent{i}_{k}", sentence, *anns]))
    return lines


def eval_records() -> list[dict]:
    """Unified records (knowcoder_ray.records.Record.to_dict layout) with class names as types, named
    as the schema builder names them: a relation whose name an entity class holds gets its PID appended."""
    def cls(label: str) -> str:
        return "".join(w[:1].upper() + w[1:] for w in label.replace("-", " ").split())

    entity_classes = {cls(t) for _, ents, _, _ in SENTENCES for _, t in ents}

    def rel_cls(label: str) -> str:
        return cls(label) + (RELATION_PID[label] if cls(label) in entity_classes else "")

    out = []
    for i, (sentence, ents, rels, events) in enumerate(SENTENCES):
        types = dict(ents)

        def mention(text):
            s, e = _find(sentence, text)
            return {"text": text, "type": cls(types[text]) if text in types else "Entity",
                    "start": s, "end": e}
        out.append({
            "id": f"sample-{i}", "text": sentence, "source": "sample",
            "entities": [mention(t) for t, _ in ents],
            "relations": [{"type": rel_cls(r), "head": mention(h), "tail": mention(t)} for h, r, t in rels],
            "events": [{"type": cls(et), "trigger": trig, "start": _find(sentence, trig)[0], "end": _find(sentence, trig)[1],
                        "arguments": [{"role": role, "text": text, "type": "Entity",
                                       "start": _find(sentence, text)[0], "end": _find(sentence, text)[1]}
                                      for role, text in args]} for et, trig, args in events],
        })
    return out


def main() -> None:
    for sentence, ents, rels, events in SENTENCES:  # every annotation must lie in its sentence
        for text, _ in ents:
            _find(sentence, text)
        for _, trigger, args in events:
            _find(sentence, trigger)
            for _, text in args:
                _find(sentence, text)
    (HERE / "kelm.jsonl").write_text("".join(json.dumps(x) + "\n" for x in kelm_lines()))
    (HERE / "pile_ner.json").write_text(json.dumps(pile_ner(), indent=1) + "\n")
    (HERE / "instructie.jsonl").write_text("".join(json.dumps(x) + "\n" for x in instructie()))
    (HERE / "lsee.tsv").write_text("\n".join(lsee()) + "\n")
    (HERE / "eval.jsonl").write_text("".join(json.dumps(x) + "\n" for x in eval_records()))
    print(f"wrote sample data for {len(SENTENCES)} sentences to {HERE}")


if __name__ == "__main__":
    main()
