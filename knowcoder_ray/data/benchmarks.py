"""The benchmark datasets of ../shared/data: where each lives, how to read it, and its schema.

Each dataset's labels are mapped to KnowCoder-style class names with a short description (the class
docstring the prompt shows); `load_benchmark` returns a benchmark's Records and SchemaLibrary.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from knowcoder_ray import storage
from knowcoder_ray.data import readers
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import Role, SchemaLibrary, SchemaType, to_class_name, to_role_name


def default_data_dir() -> str:
    """Where the benchmark folders are unless a command names one: $KNOWCODER_DATA_DIR, else ../shared/data."""
    return os.environ.get("KNOWCODER_DATA_DIR") or "../shared/data"


# Where each benchmark folder of the data directory comes from (its SOURCE.md there tells more).
DATA_SOURCES = {
    "conll04": "CoNLL04, SpERT split: conll04/conll04_{train,dev,test}.json "
               "(http://lavis.cs.hs-rm.de/storage/spert/public/datasets/conll04/)",
    "crossner": "CrossNER: crossner/<domain>/{train,dev,test}.txt (https://github.com/zliucr/CrossNER, ner_data/)",
    "conll2003": "CoNLL-2003: conll2003/{dev,test}.txt (token TAB BIO tag)",
    "mit_restaurant": "MIT Restaurant: mit_restaurant/restauranttest.txt (tag TAB token; "
                      "https://groups.csail.mit.edu/sls/downloads/restaurant/)",
    "mit_movie_trivia10k13": "MIT Movie trivia10k13: mit_movie_trivia10k13/trivia10k13test.txt (tag TAB token; "
                             "https://groups.csail.mit.edu/sls/downloads/movie/)",
    "nyt": "NYT (CopyRE split): nyt/test.{sent,tup,pointer}",
    "phee": "PHEE: phee/{dev,test}.json (https://github.com/ZhaoyueSun/PHEE)",
    "wikievents": "WikiEvents: wikievents/{dev,test}.jsonl + event_role_KAIROS.json (https://github.com/raspberryice/gen-arg)",
}


def require_benchmarks(root: str, names: Iterable[str]) -> str:
    """`root`, after checking that it holds every benchmark in `names` (e.g. conll04, crossner_ai,
    conll04:train); FileNotFoundError says which folders are missing and where each comes from."""
    folders = dict.fromkeys("crossner" if n.startswith("crossner") else n.partition(":")[0]
                            for n in names if not n.startswith("records:"))
    if missing := [f for f in folders if not storage.isdir(storage.join(root, f))]:
        lines = "\n".join(f"  {storage.join(root, f)}: {DATA_SOURCES.get(f, 'see knowcoder_ray/data/benchmarks.py')}"
                           for f in missing)
        raise FileNotFoundError(f"benchmark data missing under {root} (set `data_dir` in the config or "
                                f"KNOWCODER_DATA_DIR):\n{lines}")
    return root

# label -> (class name, description)
ENTITY_LABELS: dict[str, tuple[str, str]] = {
    "person": ("Person", "A human being."),
    "location": ("Location", "A place, such as a geographic area, region or site."),
    "organisation": ("Organization", "A group of people with a particular purpose, such as a company or institution."),
    "misc": ("Miscellaneous", "A named entity that is not a person, location or organization."),
    "country": ("Country", "A distinct territorial body or political entity."),
    "algorithm": ("Algorithm", "A finite sequence of well-defined instructions to solve a class of problems."),
    "conference": ("Conference", "A meeting of people to discuss a topic, such as an academic conference."),
    "field": ("Field", "An area of academic study or research."),
    "metrics": ("Metric", "A measure used to evaluate performance."),
    "product": ("Product", "An artifact or service offered for use, such as software or a device."),
    "programlang": ("ProgrammingLanguage", "A language for writing computer programs."),
    "researcher": ("Researcher", "A person who carries out research."),
    "task": ("Task", "A problem that a system is built to solve."),
    "university": ("University", "An institution of higher education and research."),
    "award": ("Award", "Something given in recognition of an achievement."),
    "book": ("Book", "A written work published as a volume."),
    "event": ("EventEntity", "A named occurrence, such as a festival, war or competition."),
    "literarygenre": ("LiteraryGenre", "A category of literary composition."),
    "magazine": ("Magazine", "A periodical publication."),
    "poem": ("Poem", "A literary work in verse."),
    "writer": ("Writer", "A person who writes literary works."),
    "album": ("Album", "A collection of recorded music released as a unit."),
    "band": ("Band", "A group of musicians performing together."),
    "musicalartist": ("MusicalArtist", "A person who performs or composes music."),
    "musicalinstrument": ("MusicalInstrument", "A device created to make musical sounds."),
    "musicgenre": ("MusicGenre", "A category of music."),
    "song": ("Song", "A musical composition for voice."),
    "election": ("Election", "A formal decision-making process by vote."),
    "politicalparty": ("PoliticalParty", "An organization that seeks political power."),
    "politician": ("Politician", "A person active in politics."),
    "academicjournal": ("AcademicJournal", "A peer-reviewed periodical of scholarly research."),
    "astronomicalobject": ("AstronomicalObject", "A naturally occurring physical body in the universe."),
    "chemicalcompound": ("ChemicalCompound", "A substance made of several chemical elements."),
    "chemicalelement": ("ChemicalElement", "A species of atoms with the same number of protons."),
    "discipline": ("Discipline", "A branch of knowledge."),
    "enzyme": ("Enzyme", "A protein that acts as a biological catalyst."),
    "protein": ("Protein", "A biomolecule made of chains of amino acids."),
    "scientist": ("Scientist", "A person who does scientific research."),
    "theory": ("Theory", "A well-substantiated explanation of some aspect of the natural world."),
    # MIT Restaurant
    "Amenity": ("Amenity", "A feature or service a restaurant offers."),
    "Cuisine": ("Cuisine", "A style of cooking."),
    "Dish": ("Dish", "A specific food preparation."),
    "Hours": ("OpeningHours", "The time when a restaurant is open."),
    "Price": ("Price", "The cost of a meal or restaurant."),
    "Rating": ("Rating", "An evaluation of a restaurant's quality."),
    "Restaurant_Name": ("RestaurantName", "The name of a restaurant."),
    # MIT Movie trivia10k13
    "Actor": ("Actor", "A person who acts in films."),
    "Character_Name": ("Character", "A fictional character in a film."),
    "Director": ("Director", "A person who directs films."),
    "Genre": ("Genre", "A category of film."),
    "Opinion": ("Opinion", "A judgement about a film."),
    "Origin": ("Origin", "The source a film is based on or where it comes from."),
    "Plot": ("Plot", "Events that make up the story of a film."),
    "Quote": ("Quote", "A line spoken in a film."),
    "Relationship": ("Relationship", "A relation of a film to other films, such as sequel or remake."),
    "Soundtrack": ("Soundtrack", "Recorded music accompanying a film."),
    "Year": ("Year", "The year or period of a film's release."),
    # CoNLL04
    "Other": ("Other", "A named entity that is not a person, organization or location."),
}
# MIT Restaurant's Location, MIT Movie's Award, CoNLL04's Peop, Org and Loc: classes of labels above
ENTITY_LABELS |= {label: ENTITY_LABELS[same] for label, same in {
    "Location": "location", "Award": "award", "Peop": "person", "Org": "organisation", "Loc": "location"}.items()}
ENTITY_NAMES = {k: v[0] for k, v in ENTITY_LABELS.items()}  # label -> class name

CONLL04_RELATIONS: dict[str, tuple[str, str, str, str]] = {  # label -> (class, description, head, tail)
    "Work_For": ("WorkFor", "A person works for an organization.", "Person", "Organization"),
    "Kill": ("Kill", "A person killed another person.", "Person", "Person"),
    "OrgBased_In": ("OrgBasedIn", "An organization is based in a location.", "Organization", "Location"),
    "Live_In": ("LiveIn", "A person lives in a location.", "Person", "Location"),
    "Located_In": ("LocatedIn", "A location is located in another location.", "Location", "Location"),
}

# KAIROS argument entity types (WikiEvents) -> class names
KAIROS_ENTITY = {
    "per": "Person", "org": "Organization", "gpe": "GeopoliticalEntity", "loc": "Location", "fac": "Facility",
    "veh": "Vehicle", "wea": "Weapon", "com": "Commodity", "mon": "Money", "val": "Value", "ttl": "Title",
    "abs": "AbstractConcept", "bod": "BodyPart", "bal": "Ballot", "aml": "Animal", "inf": "Information",
    "law": "Law", "mhi": "MedicalHealthIssue", "nat": "NaturalResource", "pla": "Plant", "pth": "Pathogen",
    "res": "Result", "sen": "JudicialSentence", "sid": "Side", "side": "Side", "event": "Occurrence",
    "crm": "Crime",
}

PHEE_EVENTS = {
    "Adverse_event": ("AdverseEvent", "A patient suffers an unwanted effect of a drug or treatment.",
                      ("adverse", "induced", "developed", "associated")),
    "Potential_therapeutic_event": ("PotentialTherapeuticEvent",
                                    "A drug or treatment has a potentially beneficial effect on a patient.",
                                    ("treated", "therapy", "response", "improved")),
}
PHEE_ROLES = ("subject", "treatment", "effect", "severity", "age", "gender", "population", "race", "disorder",
              "drug", "dosage", "route", "freq", "duration", "time_elapsed", "combination")


def entity_schema(labels) -> SchemaLibrary:
    named = [(label, *ENTITY_LABELS.get(label, (to_class_name(label), ""))) for label in labels]
    return SchemaLibrary({n: SchemaType(n, "entity", label=lab, description=d) for lab, n, d in named}.values())


def kairos_schema(ontology_path: str) -> tuple[SchemaLibrary, dict[str, str]]:
    """Event classes of the KAIROS ontology with their roles and role entity types, and the class name
    of each label: 'Conflict.Attack.DetonateExplode' -> 'DetonateExplode', '.Unspecified' leaves take
    the middle part ('Conflict.Attack.Unspecified' -> 'Attack'), name clashes fall back to the full path.
    Each leaf type's parent is its top-level category (e.g. 'ConflictEvent'), used by two-stage event
    extraction."""
    onto = json.loads(storage.read_text(str(ontology_path)))
    short = {label: to_class_name(label.removesuffix(".Unspecified").split(".")[-1]) for label in onto}
    uses = Counter(short.values())
    names = {k: (to_class_name(k) if uses[v] > 1 else v) for k, v in short.items()}
    role_types = {KAIROS_ENTITY.get(t, to_class_name(t)) for v in onto.values() for ts in v["role_types"] for t in ts}
    # the data also types mentions as e.g. crm
    types = {e: SchemaType(e, "entity") for e in sorted(role_types | set(KAIROS_ENTITY.values()))}
    for label, v in onto.items():
        top = to_class_name(label.split(".")[0]) + "Event"
        types.setdefault(top, SchemaType(top, "event", label=label.split(".")[0],
                                         description=f"An event of the KAIROS category {label.split('.')[0]}."))
        roles = tuple(Role(to_role_name(r), tuple(dict.fromkeys(KAIROS_ENTITY.get(t, to_class_name(t)) for t in ts)))
                      for r, ts in zip(v["roles"], v["role_types"]))
        template = v.get("template", "").replace("<", "").replace(">", "")
        types[names[label]] = SchemaType(names[label], "event", parents=(top,), label=label,
                                         description=f"{label}: {template}.", examples=tuple(v.get("keywords", ())),
                                         roles=roles)
    return SchemaLibrary(types.values()), names


@dataclass(frozen=True)
class Benchmark:
    name: str
    tasks: tuple[str, ...]
    read: Callable[[str, str, list], Iterator[Record]]  # (data_dir, split, bad) -> records
    schema: Callable[[str], SchemaLibrary]
    splits: tuple[str, ...] = ("test",)


def _reader(read: Callable[..., Iterator[Record]], rel: str, **kw) -> Callable[[str, str, list], Iterator[Record]]:
    """A `Benchmark.read`: `read` of the file at `rel` (with {split}) of the data directory."""
    return lambda data_dir, split, bad: read(storage.join(data_dir, rel.format(split=split)), bad=bad, **kw)


def _bio(name: str, rel: str, tag_first: bool, splits: tuple[str, ...] = ("test",)) -> Benchmark:
    """An NER benchmark of BIO column files at `rel` (with {split}); its schema: the labels of the test split."""
    def schema(data_dir: str) -> SchemaLibrary:
        test = readers.read_bio(storage.join(data_dir, rel.format(split="test")), tag_first=tag_first, raw_labels=True)
        return entity_schema(sorted({e.type for r in test for e in r.entities}))
    read = _reader(readers.read_bio, rel, tag_first=tag_first, source=name, label_map=ENTITY_NAMES)
    return Benchmark(name, ("ner",), read, schema, splits)


def _conll04_schema(data_dir: str) -> SchemaLibrary:
    ents = entity_schema(["Peop", "Org", "Loc", "Other"])
    rels = [SchemaType(c, "relation", label=k, description=d, head_types=(h,), tail_types=(t,))
            for k, (c, d, h, t) in CONLL04_RELATIONS.items()]
    return ents.merged(SchemaLibrary(rels))


def _nyt_read(data_dir: str, split: str, bad: list) -> Iterator[Record]:
    return readers.read_nyt(storage.join(data_dir, f"nyt/{split}.sent"), storage.join(data_dir, f"nyt/{split}.pointer"),
                            relation_map={t.label: t.name for t in _nyt_schema(data_dir)}, bad=bad)


def _nyt_schema(data_dir: str) -> SchemaLibrary:
    # '/people/person/place_of_birth' -> 'PersonPlaceOfBirth' (the last two path parts)
    labels = storage.read_text(storage.join(data_dir, "nyt/relations.txt")).split()
    return SchemaLibrary(SchemaType(to_class_name(" ".join(lab.strip("/").split("/")[-2:])), "relation", label=lab,
                                    description=f"The Freebase relation {lab}.") for lab in labels)


def _phee_schema(data_dir: str) -> SchemaLibrary:
    roles = tuple(Role(r) for r in PHEE_ROLES)
    return SchemaLibrary(SchemaType(c, "event", label=k, description=d, examples=ex, roles=roles)
                         for k, (c, d, ex) in PHEE_EVENTS.items())


def _wikievents_read(data_dir: str, split: str, bad: list) -> Iterator[Record]:
    _, names = kairos_schema(storage.join(data_dir, "wikievents/event_role_KAIROS.json"))
    return readers.read_wikievents(storage.join(data_dir, f"wikievents/{split}.jsonl"), event_map=names,
                                   entity_map={k.upper(): v for k, v in KAIROS_ENTITY.items()}, bad=bad)


def _wikievents_schema(data_dir: str) -> SchemaLibrary:
    """The KAIROS ontology plus the few event types the data uses without listing them in the ontology
    (e.g. Contact.RequestCommand.Correspondence), with the roles the data gives them."""
    library, names = kairos_schema(storage.join(data_dir, "wikievents/event_role_KAIROS.json"))
    extra: dict[str, dict[str, None]] = {}

    def unlisted(_lineno: int, doc: dict) -> list[tuple[str, list[str]]]:  # a malformed line: the reader reports it
        return [(ev["event_type"], [to_role_name(a["role"]) for a in ev["arguments"]]) for ev in doc["event_mentions"]
                if ev["event_type"] not in names]
    for split in ("dev", "test"):
        for events in readers.parse_json_lines(storage.join(data_dir, f"wikievents/{split}.jsonl"), unlisted, []):
            for label, roles in events:
                extra.setdefault(label, {}).update(dict.fromkeys(roles))
    for label, roles in sorted(extra.items()):
        top = to_class_name(label.split(".")[0]) + "Event"
        library = library.with_type(SchemaType(to_class_name(label), "event", parents=(top,), label=label,
                                               description=f"{label}.", roles=tuple(Role(r) for r in roles)))
    return library


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    *(_bio(f"crossner_{d}", f"crossner/{d}/{{split}}.txt", False, ("train", "dev", "test"))
      for d in ("ai", "literature", "music", "politics", "science")),
    _bio("conll2003", "conll2003/{split}.txt", False, ("dev", "test")),
    _bio("mit_restaurant", "mit_restaurant/restauranttest.txt", True),
    _bio("mit_movie_trivia10k13", "mit_movie_trivia10k13/trivia10k13test.txt", True),
    Benchmark("conll04", ("ner", "re"), _reader(readers.read_spert_json, "conll04/conll04_{split}.json",
                                                source="conll04", entity_map=ENTITY_NAMES,
                                                relation_map={k: v[0] for k, v in CONLL04_RELATIONS.items()}),
              _conll04_schema, splits=("train", "dev", "test")),
    Benchmark("nyt", ("re",), _nyt_read, _nyt_schema),
    Benchmark("phee", ("ed", "eae"), _reader(readers.read_phee, "phee/{split}.json",
                                             event_map={k: v[0] for k, v in PHEE_EVENTS.items()}),
              _phee_schema, splits=("dev", "test")),
    Benchmark("wikievents", ("ed", "eae"), _wikievents_read, _wikievents_schema, splits=("dev", "test")),
]}


def schema_of_records(records: Iterable[Record]) -> SchemaLibrary:
    """The schema a set of records uses: its entity, relation and event classes, with the relation
    head/tail types and event roles seen in the data."""
    ents: dict[str, None] = {}
    rels: dict[str, tuple[dict, dict]] = {}
    events: dict[str, dict[str, None]] = {}
    for r in records:
        ents.update(dict.fromkeys(e.type for e in r.entities if e.type != "Entity"))
        for rel in r.relations:
            for ends, m in zip(rels.setdefault(rel.type, ({}, {})), (rel.head, rel.tail)):
                ends.update(dict.fromkeys([m.type] if m.type != "Entity" else []))
        for e in r.events:
            events.setdefault(e.type, {}).update(dict.fromkeys(a.role for a in e.arguments))
    ents.update(dict.fromkeys(t for heads, tails in rels.values() for t in (*heads, *tails)))
    return SchemaLibrary([
        *(SchemaType(n, "entity") for n in ents),
        *(SchemaType(n, "relation", head_types=tuple(h), tail_types=tuple(t)) for n, (h, t) in rels.items()),
        *(SchemaType(n, "event", roles=tuple(Role(x) for x in roles)) for n, roles in events.items()),
    ])


def _check_mention(text: object, typ: object, start: object, end: object, sentence: str, what: str) -> None:
    """A mention's text and type are non-empty strings; its offsets, when given, select its text in `sentence`."""
    if not isinstance(text, str) or not text.strip() or not isinstance(typ, str) or not typ:
        raise ValueError(f"{what}: text and type must be non-empty strings, got {text!r} ({typ!r})")
    if (start, end) != (None, None) and not (type(start) is type(end) is int and 0 <= start < end <= len(sentence)
                                             and sentence[start:end] == text):
        raise ValueError(f"{what} {text!r}: offsets {start!r}:{end!r} do not select it in the text")


def checked_record(lineno: int, d: object, seen: dict[str, int]) -> Record:
    """One line of a `records:` file as a Record, after checking what `Record.from_dict` takes on trust:
    a string or integer id not seen before (`seen`: id -> line), a non-empty text, string types and
    mention offsets within the text. A ValueError (the line is set aside) names what is wrong."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    if not isinstance(d.get("id"), (str, int)) or isinstance(d["id"], bool) or str(d["id"]) == "":
        raise ValueError(f"'id' must be a non-empty string or an integer, got {d.get('id')!r}")
    if not isinstance(d.get("text"), str) or not d["text"].strip():
        raise ValueError(f"'text' must be a non-empty string, got {d.get('text')!r}")
    if not isinstance(d.get("source") or "", str):
        raise ValueError(f"'source' must be a string, got {d['source']!r}")
    for key in ("entities", "relations", "events"):
        if not isinstance(d.get(key) or [], list) or not all(isinstance(x, dict) for x in d.get(key) or []):
            raise ValueError(f"'{key}' must be a list of objects")
    r = Record.from_dict(d)
    for m in r.entities:
        _check_mention(m.text, m.type, m.start, m.end, r.text, "entity")
    for rel in r.relations:
        for end, m in (("head", rel.head), ("tail", rel.tail)):
            _check_mention(m.text, m.type, m.start, m.end, r.text, f"relation {rel.type!r} {end}")
        if not isinstance(rel.type, str) or not rel.type:
            raise ValueError(f"a relation type must be a non-empty string, got {rel.type!r}")
    for e in r.events:
        _check_mention(e.trigger, e.type, e.start, e.end, r.text, "event trigger")
        for a in e.arguments:
            if not isinstance(a.role, str) or not a.role:
                raise ValueError(f"event {e.type!r}: an argument role must be a non-empty string, got {a.role!r}")
            _check_mention(a.text, a.type, a.start, a.end, r.text, f"event {e.type!r} argument")
    if r.id in seen:
        raise ValueError(f"duplicate id {r.id!r} (first on line {seen[r.id]})")
    seen[r.id] = lineno
    return r


def get_benchmark(name: str) -> Benchmark:
    """A registered benchmark by name, or `records:<path>`: a JSON-lines file of unified records
    (`Record.to_dict`) whose tasks are those the records annotate and whose schema is the one they use
    (`schema_of_records`)."""
    if not name.startswith("records:"):
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}, or records:<path.jsonl>")
        return BENCHMARKS[name]
    path = name.partition(":")[2]
    if not storage.isfile(path):
        raise FileNotFoundError(f"records benchmark file not found: {path}")

    # the file is parsed once: its records give the tasks and the schema, and every read replays them
    malformed: list[readers.Malformed] = []
    seen: dict[str, int] = {}
    records = list(readers.parse_json_lines(path, lambda n, d: checked_record(n, d, seen), malformed))

    def read(data_dir: str, split: str, bad: list) -> Iterator[Record]:
        bad.extend(malformed)
        return iter(records)

    return Benchmark(name, annotated_tasks(records), read, lambda _d: schema_of_records(records))


def annotated_tasks(records: list[Record]) -> tuple[str, ...]:
    """The tasks `records` annotate: the tasks of a `records:` file (and of a scored file's dataset)."""
    has = {"ner": any(r.entities for r in records), "re": any(r.relations for r in records),
           "ed": any(r.events for r in records), "eae": any(e.arguments for r in records for e in r.events)}
    return tuple(t for t in has if has[t])


# ---- the released evaluation's class names -----------------------------------------------------------
# Our class name -> (the Wikidata-aligned class name the released KnowCoder evaluation uses for the same
# benchmark label, as listed in its eval/src/class_defs, and a description written here). Labels with no
# counterpart there (e.g. CoNLL's misc, most CrossNER and KAIROS types, PHEE) keep our names. Where the
# match is by analogy rather than by the same label, the comment says so.
OFFICIAL_CLASSES: dict[str, tuple[str, str]] = {
    "Person": ("Human", "A person: an individual member of the species Homo sapiens."),
    "Location": ("SpatialEntity", "A place or region: a geographic area, site, address or landmark."),
    "Organization": ("Organization", "A group of people with a particular purpose, such as a company or institution."),
    "EventEntity": ("Event", "A named occurrence, such as a festival, war, election or competition."),
    "Product": ("Product", "An artifact or service offered for use, such as software or a device."),
    "Protein": ("Protein", "A biomolecule made of chains of amino acids."),
    "AstronomicalObject": ("AstronomicalObject", "A naturally occurring physical body in the universe."),
    # MIT Restaurant
    "OpeningHours": ("OpeningHours", "The time when a restaurant is open."),
    "Rating": ("UserRating", "How guests rate a restaurant's quality."),
    "RestaurantName": ("Name", "The name of a restaurant."),
    # MIT Movie trivia10k13 (Song and Review: by analogy with MIT Movie's SONG and REVIEW labels)
    "Character": ("Character", "A fictional character in a film."),
    "Soundtrack": ("Song", "Music heard in a film, such as its soundtrack or theme song."),
    "Opinion": ("Review", "A judgement or opinion about a film."),
    # CoNLL04 relations
    "OrgBasedIn": ("HeadquartersLocation", "An organization is based or headquartered in a location."),
    "LiveIn": ("Residence", "A person lives or has lived in a location."),
}
# NYT relation label -> official class name (NYT's labels keep their Freebase description)
OFFICIAL_NYT: dict[str, str] = {
    "/business/company/founders": "FoundedBy", "/people/person/place_of_birth": "PlaceOfBirth",
    "/people/deceased_person/place_of_death": "PlaceOfDeath",
    "/business/company_shareholder/major_shareholder_of": "CompanyShareholderAmongMajorShareholders",
    "/people/ethnicity/people": "EthnicityOfPeople", "/location/neighborhood/neighborhood_of": "NeighborhoodOf",
    "/sports/sports_team/location": "SportsTeamOfLocation", "/business/person/company": "WorkFor",
    "/business/company/industry": "Industry", "/business/company/place_founded": "CompanyFoundedPlace",
    "/location/administrative_division/country": "CountryOfAdministrativeDivisions",
    "/sports/sports_team_location/teams": "SportsTeamLocationOfTeams", "/people/person/nationality": "CountryOfCitizenship",
    "/people/person/religion": "ReligionOrWorldview", "/business/company/advisors": "CompanyAdvisors",
    "/people/person/ethnicity": "EthnicGroup", "/people/ethnicity/geographic_distribution": "GeographicDistribution",
    "/people/person/place_lived": "Residence", "/business/company/major_shareholders": "CompanyMajorShareholders",
    "/people/person/profession": "Occupation", "/location/country/capital": "Capital",
    "/location/location/contains": "Container", "/location/country/administrative_divisions": "AdministrativeDivisionOfCountry",
    "/people/person/children": "Child",
}
CLASS_NAMINGS = ("project", "official")


def with_official_names(records: list[Record], library: SchemaLibrary) -> tuple[list[Record], SchemaLibrary]:
    """The records and schema of a benchmark under the released evaluation's class names."""
    # our name -> (official name, new description or None)
    renames = {t.name: OFFICIAL_CLASSES.get(t.name) or (OFFICIAL_NYT[t.label], None) for t in library
               if t.name in OFFICIAL_CLASSES or (t.kind == "relation" and t.label in OFFICIAL_NYT)}
    new = {k: v[0] for k, v in renames.items()}
    if len(set(new.values()) | (set(library.names()) - set(new))) != len(library):
        raise ValueError("official class names collide in this schema")

    def n(name: str) -> str:
        return new.get(name, name)

    def m(x):  # a mention, relation, event or argument with its type renamed
        return replace(x, type=n(x.type))

    types = [replace(t, name=n(t.name), description=renames.get(t.name, (None, None))[1] or t.description,
                     parents=tuple(map(n, t.parents)), head_types=tuple(map(n, t.head_types)),
                     tail_types=tuple(map(n, t.tail_types)),
                     roles=tuple(Role(r.name, tuple(map(n, r.entity_types))) for r in t.roles)) for t in library]
    out = [Record(r.id, r.text, [m(e) for e in r.entities],
                  [replace(m(x), head=m(x.head), tail=m(x.tail)) for x in r.relations],
                  [replace(m(e), arguments=tuple(map(m, e.arguments))) for e in r.events], r.source)
           for r in records]
    return out, SchemaLibrary(types)


def load_benchmark(name: str, data_dir: str | Path, split: str = "test",
                   bad: list | None = None, class_names: str = "project") -> tuple[list[Record], SchemaLibrary]:
    """Records and schema of one benchmark (see `get_benchmark`). Malformed input goes to `bad` (a list
    of readers.Malformed). class_names: "project" (ours) or "official" (the released evaluation's
    Wikidata-aligned names, `OFFICIAL_CLASSES`)."""
    if class_names not in CLASS_NAMINGS:
        raise ValueError(f"class_names must be one of {CLASS_NAMINGS}, got {class_names!r}")
    b = get_benchmark(name)
    if name.startswith("records:"):
        split = b.splits[0]
    if split not in b.splits:
        raise ValueError(f"benchmark {name!r} has splits {b.splits}, not {split!r}")
    data_dir = str(data_dir)  # a folder or URI: readers go through knowcoder_ray.storage
    records, library = list(b.read(data_dir, split, bad if bad is not None else [])), b.schema(data_dir)
    if class_names == "official":
        records, library = with_official_names(records, library)
    return records, library


def few_shot_records(name: str, data_dir: str | Path, k: int, eval_split: str = "test",
                     class_names: str = "project") -> list[Record]:
    """The first `k` annotated records of the benchmark's train split (else dev), for first-k-shot
    prompts as the released evaluation runs them; never the evaluated split."""
    b = get_benchmark(name)
    if (split := next((s for s in ("train", "dev") if s in b.splits and s != eval_split), None)) is None:
        raise ValueError(f"benchmark {name!r} has no train or dev split to take few-shot examples from "
                         f"(splits: {', '.join(b.splits)})")
    records, _ = load_benchmark(name, data_dir, split, [], class_names)
    return [r for r in records if r.entities or r.relations or r.events][:k]
