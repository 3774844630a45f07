"""The .py library reader on files in the released layout: Python keywords as role names, the
`from: List[ Entity ]` hint (not valid Python), `class Event(Entity)`, a broken class reported and skipped,
a relation hint of thousands of `|` terms, and `schema from-py` ending in one line when nothing loads."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowcoder_ray.cli import main
from knowcoder_ray.schema import Role
from knowcoder_ray.schema.classcode import ClassCodeError, read_class_code
from knowcoder_ray.schema.pyfile import read_pyfile, read_pyfiles

ENTITIES = '''class Entity:
\t"""
\tThe base class for all entities.
\t"""
\tdef __init__(self, name: str):
\t\tself.name = name

class Event(Entity):
\t"""
\tDescription: Something that happens at a given place and time.
\tExamples: harvest festival, the 1999 flood
\t"""
\tpass

class Lake(Entity):
\t"""
\tDescription: A body of standing water.
\tExamples: Lake Ohrid, Crater Lake
\t"""
\tpass

class Broken(Entity):
\t"""
\tDescription: This class is cut short
\tpass

class River(Lake):
\t"""
\tDescription: A flowing body of water.
\tExamples: Drina
\t"""
\tpass
'''

EVENTS_EAE = '''class Entity:
\t"""
\tThe base class for all entities.
\t"""
\tdef __init__(self, name: str):
\t\tself.name = name

class Event:
\t"""
\tThe base class for all events.
\t"""
\tdef __init__(self, trigger: str):
\t\tself.trigger = trigger

class Apprenticeship(Event):
\t"""
\tDescription: A person learns a trade from a master.
\t"""
\tdef __init__(
\t\tself,
\t\ttrigger: str, # Examples: apprenticed, trained, 
\t\tapprentice: List[ Entity ],
\t\tmaster: List[ Lake | River ],
\t\tfrom: List[ Entity ],
\t\tto: List[ Entity ]
\t):
\t\tsuper().__init__(trigger = trigger)
\t\tself.apprentice = apprentice
\t\tself.master = master
\t\tself.from = from
\t\tself.to = to
'''

EVENTS_ED = '''class Voyage(Event):
\t"""
\tDescription: A long journey by sea.
\tExamples: sailed, voyage, 
\t"""
\tdef __init__(self, trigger: str, *args):
\t\targ_names = ["vessel", "from", "to"]
\t\tsuper().__init__(trigger = trigger, arg_names = arg_names, *args)
'''


def test_released_layout_with_keyword_roles_event_entity_and_a_broken_class(tmp_path):
    (tmp_path / "Entities.py").write_text(ENTITIES)
    (tmp_path / "Events.py").write_text(EVENTS_EAE)
    problems = []
    lib = read_pyfiles(str(tmp_path), problems)
    assert [(p.name, p.line) for p in problems] == [("Broken", 22)]
    assert "not valid Python" in problems[0].reason and "Entities.py" in str(problems[0])
    assert lib.names("entity") == ["Event", "Lake", "River"]   # `class Event(Entity)` is a type
    assert lib["Event"].description == "Something that happens at a given place and time."
    assert lib["River"].parents == ("Lake",)
    (app,) = lib.of_kind("event")
    assert [(r.name, r.entity_types) for r in app.roles] == [
        ("apprentice", ()), ("master", ("Lake", "River")), ("from", ()), ("to", ())]
    assert app.examples == ("apprenticed", "trained")


def test_ed_form_keyword_roles():
    (voyage,) = read_pyfile(EVENTS_ED, "event", "Events.py", [])
    assert [r.name for r in voyage.roles] == ["vessel", "from", "to"] and voyage.examples == ("sailed", "voyage")


def test_without_a_problems_list_each_skipped_class_is_a_warning():
    with pytest.warns(UserWarning, match="class Broken"):
        types = read_pyfile(ENTITIES, "entity", "Entities.py")
    assert [t.name for t in types] == ["Event", "Lake", "River"]


def test_a_class_with_a_bad_role_is_reported_and_the_rest_load():
    source = EVENTS_ED + '''
class Odd(Event):
\t"""
\tDescription: A role that is not a name.
\t"""
\tdef __init__(self, trigger: str, *args):
\t\targ_names = ["two words"]
\t\tsuper().__init__(trigger = trigger, arg_names = arg_names, *args)
'''
    problems = []
    assert [t.name for t in read_pyfile(source, "event", "Events.py", problems)] == ["Voyage"]
    assert [(p.name, p.line) for p in problems] == [("Odd", 10)] and "role 'two words'" in problems[0].reason


@pytest.mark.parametrize("terms", [1000, 2000, 20_000])
def test_relation_hint_of_thousands_of_terms(terms):
    hint = " | ".join(f"T{i}" for i in range(terms))
    source = f'class Near(Relation):\n\tdef __init__(self, head_entity: {hint}, tail_entity: Entity):\n\t\tpass\n'
    problems = []
    types = read_pyfile(source, "relation", "Relations.py", problems)
    if types:
        assert types[0].head_types[:3] == ("T0", "T1", "T2") and len(types[0].head_types) == min(terms, 10_000)
    else:  # a hint too deep for Python's own parser is one class reported, never an exception
        assert [p.name for p in problems] == ["Near"]
    assert terms > 2000 or types


def test_from_py_ends_in_one_line_when_nothing_loads(tmp_path, capsys):
    (tmp_path / "Entities.py").write_text("class Broken(Entity):\n\t\"\"\"\n\tDescription: cut\n")
    assert main(["schema", "from-py", str(tmp_path), str(tmp_path / "lib.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("knowcoder schema from-py: no class could be read under")
    assert "class Broken" in err[0] and len(err) == 2
    assert main(["schema", "from-py", str(tmp_path / "nowhere"), str(tmp_path / "lib.parquet")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("odd", ["\x0c", "\u2028", "\x85", "\x1c"])
def test_eae_trigger_examples_survive_line_breaks_python_does_not_count(odd):
    """A description may hold characters str.splitlines breaks at but Python's parser does not; the EAE
    form's trigger examples (a comment on the `trigger` line) are still found, in user code and in files."""
    from dataclasses import replace

    from knowcoder_ray.schema.classcode import read_class_code, render_class
    from knowcoder_ray.schema.pyfile import render_file
    from knowcoder_ray.schema.types import Role, SchemaType

    wedding = SchemaType("Marriage", "event", description=f"Two people{odd} marry.", examples=("wed", "married"),
                         roles=(Role("spouse"), Role("from")))
    user_code = render_class(replace(wedding, roles=(Role("spouse"),)), "eae")  # user code: no keyword roles
    (read,) = read_class_code(user_code)
    assert read.examples == ("wed", "married") and read.description == wedding.description
    for text in (render_file("event", [wedding]), render_file("event", [wedding]).replace("\n", "\r\n")):
        assert read_pyfile(text, "event", "Events.py", []) == [wedding]


def test_a_class_with_bytes_that_are_not_utf8_is_reported_and_the_rest_load(tmp_path):
    classes = [f'class {name}(Entity):\n\t"""\n\tDescription: A {name.lower()}.\n\t"""\n\tpass\n'
               for name in ("Lake", "Pond", "River")]
    source = "\n".join(classes).encode().replace(b"A pond", b"A p\xffnd")
    (tmp_path / "Entities.py").write_bytes(source)
    problems = []
    lib = read_pyfiles(str(tmp_path), problems)
    assert [(p.name, p.line, p.reason) for p in problems] == [("Pond", 7, "holds bytes that are not UTF-8")]
    assert lib.names("entity") == ["Lake", "River"] and lib["River"].description == "A river."



def _table(path, **columns) -> str:
    """A Parquet table of schema rows ("A", an entity, empty fields) with these columns' values."""
    row = {"name": "A", "kind": "entity", "parents": [], "wikidata_id": None, "label": "", "description": "",
           "examples": [], "head_types": [], "tail_types": []}
    rows = [{**row, **dict(zip(columns, values))} for values in zip(*columns.values())]
    pq.write_table(pa.Table.from_pylist(rows), str(path))
    return str(path)


def _not_a_schema(path) -> str:
    pq.write_table(pa.table({"x": [1]}), str(path))
    return str(path)


@pytest.mark.parametrize("make, words", [
    (lambda d: str(d / "notes.txt"), "notes.txt"),
    (lambda d: _not_a_schema(d / "t.parquet"), "not a schema table, missing columns ['name'"),
    (lambda d: str(d), "Is this a 'parquet' file?"),  # a folder holding Parquet and other files
    (lambda d: _table(d / "t.parquet", name=["A"], kind=["thing"]), "row 1: type 'A': kind must be one of"),
    (lambda d: _table(d / "t.parquet", name=["A", "bad name"]), "row 2: type name 'bad name' is not a valid"),
    (lambda d: _table(d / "t.parquet", name=["A", None]), "row 2: type without a name"),
    (lambda d: _table(d / "t.parquet", name=["A", "A"], label=["a", "b"]), "duplicate type name 'A'"),
    (lambda d: _table(d / "t.parquet", description=['says """ this']), "triple quotes"),
])
def test_to_py_on_a_table_it_cannot_read_or_render_ends_in_one_line(tmp_path, capsys, make, words):
    (tmp_path / "notes.txt").write_text("not parquet")
    src = make(tmp_path)
    assert main(["schema", "to-py", src, str(tmp_path / "py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("knowcoder schema to-py: ") and words in err and "\n" not in err


def test_a_file_saved_with_a_byte_order_mark_loads_whole(tmp_path):
    """Python runs a file that starts with a UTF-8 BOM; its first class used to be skipped as not valid Python."""
    (tmp_path / "Entities.py").write_bytes(b"\xef\xbb\xbf" + ENTITIES.replace("\n", "\r\n").encode())
    problems = []
    assert read_pyfiles(str(tmp_path), problems).names() == ["Event", "Lake", "River"]
    assert [p.name for p in problems] == ["Broken"]
    assert [t.name for t in read_pyfile("\ufeff" + EVENTS_ED, "event", "Events.py", [])] == ["Voyage"]


@pytest.mark.parametrize("entry, words", [
    ("{'wikidata_id': 5}", "wikidata_id: Input should be a valid string"),
    ("{'examples': 'abc'}", "examples: Input should be a valid list"),
    ("{'parents': 5}", "parents: Input should be a valid list"),
    ("{'role_names': ['a'], 'role_types': [5]}", "role_types.0: Input should be a valid list"),
    ("{'name': 'Other'}", "unknown setting 'name'"),
    ("{'kind': 'relation'}", "unknown setting 'kind'"),
    ("{'colour': 'red'}", "unknown setting 'colour'"),
    ("'Q5'", "Input should be a valid dictionary"),
])
def test_schema_metadata_of_the_wrong_shape_is_reported(tmp_path, capsys, entry, words):
    """A hand-edited SCHEMA_METADATA entry used to rename or re-kind a class, split a string into letters,
    or end `schema from-py` in an Arrow traceback: now the class is reported, the others load."""
    source = ENTITIES + f"\nSCHEMA_METADATA = {{\n\t'Lake': {entry},\n}}\n"
    problems = []
    assert [t.name for t in read_pyfile(source, "entity", "Entities.py", problems)] == ["Event", "River"]
    assert [p.name for p in problems] == ["Broken", "Lake"] and words in problems[1].reason
    (tmp_path / "Entities.py").write_text(source)
    assert main(["schema", "from-py", str(tmp_path), str(tmp_path / "lib.parquet")]) == 0
    assert "class Lake" in capsys.readouterr().err


def test_user_class_code_forward_references_keyword_roles_and_keyword_only_parameters():
    """Idiomatic and released signatures a user pastes as schema_code: a string annotation holding a union
    (was read as one type named 'Place | Person'), the released EAE form's `from: List[ Entity ]` (was a
    syntax error) and keyword-only roles after `*` (were dropped silently)."""
    code = '''class Lives(Relation):
    def __init__(self, head_entity: "Person", tail_entity: "Place | Person"): ...

class Marriage(Event):
    def __init__(
        self,
        trigger: str,  # Examples: married, wedding,
        spouse: List["Person"],
        from: List[ Place ],
    ):
        super().__init__(trigger=trigger)
        self.spouse = spouse
        self.from = from

class Move(Event):
    def __init__(self, trigger: str, *, mover: List[Person], to: List[Place]): ...
'''
    lives, marriage, move = read_class_code(code)
    assert (lives.head_types, lives.tail_types) == (("Person",), ("Place", "Person"))
    assert marriage.roles == (Role("spouse", ("Person",)), Role("from", ("Place",)))
    assert marriage.examples == ("married", "wedding")
    assert move.roles == (Role("mover", ("Person",)), Role("to", ("Place",)))
    (types,) = read_pyfile(code.split("\n\n")[0], "relation", "Relations.py", [])
    assert types.tail_types == ("Place", "Person")


def test_user_class_code_with_a_role_twice_is_refused_with_its_line():
    code = "class Move(Event):\n    def __init__(self, trigger: str, to: List[Place], to: List[Person]): ...\n"
    with pytest.raises(ClassCodeError, match="class Move: role 'to' twice") as e:
        read_class_code(code)
    assert e.value.line == 1


def test_a_docstring_line_that_looks_like_a_statement_does_not_split_its_class_in_a_broken_file():
    """In a file with a broken class, each top-level statement is read apart; a description continued at
    column 0 with "from ..." or "import ... =" cut its class in pieces, all reported, the class lost."""
    dog = ('class Dog(Entity):\n\t"""\n\tDescription: A breed originating\nfrom Germany, kept\nimport ant = as a'
           ' guard dog.\n\tExamples: Rex, Fido\n\t"""\n\tpass\n\n')
    problems = []
    types = read_pyfile(ENTITIES.replace("class River(Lake)", dog + "class River(Lake)"), "entity", "E.py", problems)
    assert [t.name for t in types] == ["Event", "Lake", "Dog", "River"]
    assert types[2].description == "A breed originating from Germany, kept import ant = as a guard dog."
    assert [(p.name, p.reason) for p in problems] == [
        ("Broken", "not valid Python at line 23: unterminated triple-quoted string literal (detected at line 26)")]


def test_to_py_escapes_what_python_refuses_in_a_file_and_reads_it_back_exactly(tmp_path):
    """A NUL or a backslash that is no escape in a description (a table from elsewhere) was a SchemaError."""
    src = _table(tmp_path / "t.parquet", name=["A", "B"], description=["nul \x00 here", r"C:\xampp \N"],
                 examples=[["x\x85y"], [r"\u12"]])
    assert main(["schema", "to-py", src, str(tmp_path / "py")]) == 0
    from knowcoder_ray.schema.table import read_parquet
    assert read_pyfiles(str(tmp_path / "py"), problems := []) == read_parquet(src) and problems == []


def test_a_file_with_a_coding_declaration_is_decoded_as_python_would(tmp_path):
    """`# -*- coding: latin-1 -*-` (PEP 263): Python reads the file; its non-ASCII classes were skipped."""
    source = '# -*- coding: latin-1 -*-\nclass Cafe(Entity):\n\t"""\n\tDescription: A caf\xe9.\n\t"""\n\tpass\n'
    (tmp_path / "Entities.py").write_bytes(source.encode("latin-1"))
    assert read_pyfiles(str(tmp_path), problems := [])["Cafe"].description == "A café." and problems == []
    (tmp_path / "Entities.py").write_bytes(source.replace("latin-1", "rot13").encode("latin-1"))  # no text codec
    assert read_pyfiles(str(tmp_path), problems := []).names() == [] and problems[0].name == "Cafe"


def test_a_class_defined_twice_in_a_file_is_reported_with_both_lines():
    """Both definitions were returned and read_pyfiles reported the second at line 0."""
    twice = ENTITIES + '\nclass Lake(Entity):\n\t"""\n\tDescription: Another lake.\n\t"""\n\tpass\n'
    same_again = ENTITIES[ENTITIES.index("class Lake"):ENTITIES.index("class Broken")]  # identical: dropped
    problems = []
    assert [t.name for t in read_pyfile(twice + same_again, "entity", "E.py", problems)] == ["Event", "Lake", "River"]
    assert [str(p) for p in problems[1:]] == [
        "E.py:34: class Lake: defined again (first at line 15); the first is kept"]
