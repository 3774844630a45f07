"""The extraction service on real Ray Serve (127.0.0.1) with the tiny model and a LoRA adapter: every task
end to end over sharded schemas, the bad-input suite (never a 5xx), the docs, and a replica killed in the
middle of a stream of requests."""
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowcoder_ray.codec.parse import Parser
from knowcoder_ray.infer.extraction import dedupe
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import SchemaLibrary
from knowcoder_ray.schema.classcode import read_class_code

APP = "knowcoder_test"
TEXTS = ["Ada Lovelace worked with Charles Babbage in London.", "Rebels attacked the town of Homs on Monday."]
CODE = '''class Chemist(Scientist):
\t"""
\tDescription: A scientist who studies chemistry.
\tExamples: Marie Curie, Linus Pauling
\t"""
\tpass

class Dish(Entity):
\tpass
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lora_adapter(model_dir, out_dir):
    """A real PEFT LoRA adapter of the tiny model (random B, so it changes the outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    peft.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def served(ray_cluster, data_dir, tmp_path_factory):
    from ray import serve

    from knowcoder_ray.data.benchmarks import BENCHMARKS
    from engine_helpers import make_engine_test_model
    from knowcoder_ray.schema.table import write_parquet
    from knowcoder_ray.serve.app import build_app

    root = tmp_path_factory.mktemp("serve")
    model = make_engine_test_model(root / "model", data_dir)
    adapter = _lora_adapter(model, root / "adapter")
    library = SchemaLibrary()
    for b in BENCHMARKS.values():  # every benchmark schema: ~180 types, far more than one prompt holds
        library = library.merged(b.schema(data_dir))
    write_parquet(library, str(root / "library.parquet"))
    config = {"model_dir": str(model), "adapter_dir": str(adapter), "library": str(root / "library.parquet"),
              "engine_config": {"max_new_tokens": 12}, "shard_tokens": 400, "num_replicas": 2,
              "max_text_chars": 300, "max_texts": 8, "max_code_chars": 5000, "app_name": APP,
              "health_check_period_s": 1.0}
    port = _free_port()
    serve.shutdown()  # a Serve left by another module would keep its own port
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name=APP, route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    yield SimpleNamespace(client=client, library=library, config=config, port=port)
    client.close()
    serve.shutdown()


def _extract(served, **body):
    r = served.client.post("/v1/extract", json={"texts": TEXTS, "return_raw": True, **body})
    assert r.status_code == 200, r.text
    return r.json()


def _check_against_parser(body, library, kind):
    """Each shard was asked once per text, and the response's mentions are exactly what an independent
    Parser reads from the returned raw outputs, merged in order without duplicates."""
    stage1 = {"ner": "ner", "re": "re", "ed": "ed", "eae": "ed"}[body["task"]]
    assert sum(len(r["raw"]) for r in body["results"]) == body["prompts"]
    for result in body["results"]:
        for stage, shards in body["shards"].items():
            asked = [[n for n in raw["types"] if library[n].kind == kind] for raw in result["raw"] if raw["stage"] == stage]
            assert asked == shards if stage == stage1 else all(a in shards for a in asked)
        parsed = [Parser.for_types(raw["stage"], [library[n] for n in raw["types"]], library).parse(raw["output"])
                  for raw in result["raw"]]
        assert result["errors"] == [e for p in parsed for e in p.errors]
        assert result["hallucinated"] == dedupe(h for p in parsed for h in p.hallucinated)
        assert result["truncated"] == any(p.truncated for p in parsed)
        if body["task"] == "eae" and "ed" in body["shards"]:
            continue  # two stages: final events mix both (checked on scripted outputs in test_serve_unit)
        record = Record("x", "", dedupe(e for p in parsed for e in p.entities),
                        dedupe(r for p in parsed for r in p.relations), dedupe(e for p in parsed for e in p.events))
        expected = record.to_dict()
        assert (_unplaced(result["entities"]), _unplaced(result["relations"]), _unplaced(result["events"])) == (
            expected["entities"], expected["relations"], expected["events"])
        _check_spans(result)


def _unplaced(value):
    """The mentions without the character spans the service adds (the parser reads none)."""
    if isinstance(value, list):
        return [_unplaced(v) for v in value]
    if isinstance(value, dict):
        return {k: (None if k in ("start", "end") else _unplaced(v)) for k, v in value.items()}
    return value


def _check_spans(result):
    """Every span points at its mention in the text; a mention without a span does not occur in it."""
    text = result["text"]
    mentions = [(m, "text") for m in result["entities"]]
    mentions += [(m, "text") for r in result["relations"] for m in (r["head"], r["tail"])]
    mentions += [(e, "trigger") for e in result["events"]] + [(a, "text") for e in result["events"] for a in e["arguments"]]
    for m, key in mentions:
        if m["start"] is None:
            assert m[key] not in text or not m[key]
        else:
            assert text[m["start"]:m["end"]] == m[key]


@pytest.mark.parametrize("task, kind, schema", [
    ("ner", "entity", {"types": ["Person", "Location", "Organization"]}),
    ("ner", "entity", {}),  # the whole library, sharded
    ("ner", "entity", {"schema_code": CODE, "types": ["Person"]}),
    ("re", "relation", {"types": ["WorkFor", "LiveIn", "LocatedIn", "PersonNationality"]}),
    ("ed", "event", {}),
    ("eae", "event", {}),  # two stages: ED over coarse types, EAE over what it found
    ("eae", "event", {"triggers": [[], [{"type": "Attack", "trigger": "attacked"}]]}),
])
def test_extraction_for_each_task(served, task, kind, schema):
    body = _extract(served, task=task, **schema)
    library = served.library
    if "schema_code" in schema:
        library = SchemaLibrary(read_class_code(CODE, library)).merged(library)
        assert body["shards"]["ner"][0][:2] == ["Chemist", "Dish"]
    assert body["task"] == task and body["model"] == "model+adapter"
    assert [r["text"] for r in body["results"]] == TEXTS
    stage1 = "ed" if task == "eae" and "triggers" not in schema else task
    if "triggers" in schema:
        assert body["shards"] == {"eae": [["Attack"]]} and body["prompts"] == 1  # only the text with a trigger
    else:
        assert body["prompts"] >= len(body["shards"][stage1]) * len(TEXTS)
        if task != "eae":
            assert body["prompts"] == len(body["shards"][stage1]) * len(TEXTS)
    if not schema:  # the whole library: more than one shard, and every type of the kind in one of them
        assert len(body["shards"][stage1]) > 1
        if task in ("ner", "ed"):
            wanted = library.names("entity") if task == "ner" else [
                t.name for t in library.of_kind("event") if not library.children(t.name)]
            assert sorted(sum(body["shards"][stage1], [])) == sorted(wanted)
    _check_against_parser(body, library, kind)


def test_dynamic_batching_spreads_prompts_over_both_replicas(served):
    from ray import serve

    body = _extract(served, task="ner", texts=TEXTS * 4, return_raw=False)
    assert body["prompts"] > 8
    handle = serve.get_deployment_handle("Engine", app_name=APP)
    infos = {}
    for _ in range(40):
        info = handle.info.remote().result()
        infos[info["pid"]] = info
        if len(infos) == 2:
            break
    assert len(infos) == 2
    sizes = [n for info in infos.values() for n in info["batch_sizes"]]
    assert max(sizes) > 1, infos  # prompts of concurrent calls were gathered into one generate call


def test_docs_health_and_schema_search(served):
    c = served.client
    health = c.get("/healthz").json()
    assert health["status"] == "ok" and health["library_types"] == len(served.library)
    assert health["adapter"] == served.config["adapter_dir"]
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/v1/extract", "/v1/schemas", "/healthz"} <= set(paths)
    assert c.get("/docs").status_code == 200
    found = c.get("/v1/schemas", params={"q": "person", "kind": "entity"}).json()
    assert found["types"][0]["name"] == "Person" and all(t["kind"] == "entity" for t in found["types"])
    assert found["total"] >= len(found["types"]) > 1
    page = c.get("/v1/schemas", params={"q": "person", "kind": "entity", "limit": 1, "offset": 1}).json()
    assert [t["name"] for t in page["types"]] == [found["types"][1]["name"]]
    attack = c.get("/v1/schemas", params={"q": "Attack", "kind": "event"}).json()["types"][0]
    assert attack["name"] == "Attack" and {r["name"] for r in attack["roles"]} >= {"attacker", "target"}


BAD = [  # (body or raw bytes, status, words in the response)
    ({"task": "ner", "text": "x" * 301}, 413, "longer than 300"),
    ({"task": "ner", "texts": ["a"] * 9}, 413, "limit is 8"),
    ({"task": "ner", "text": "a", "schema_code": "class A(Entity):\n\tpass\n" * 300}, 413, "schema_code longer"),
    ({"task": "ner", "text": "a", "types": ["Person", "Spaceship", "Dragon"]}, 400, "Spaceship, Dragon"),
    ({"task": "re", "text": "a", "types": ["Person"]}, 400, "takes relation types"),
    ({"task": "eae", "text": "a", "triggers": [[{"type": "Dragon", "trigger": "a"}]]}, 400, "Dragon"),
    ({"task": "ner", "text": "a", "schema_code": "class A(Entity)\n\tpass\n"}, 400, '"line":1'),
    ({"task": "ner", "text": "a", "schema_code": "class A(Entity):\n\tpass\nclass B(Nope):\n\tpass\n"}, 400, '"line":3'),
    ({"task": "ner", "text": "a", "schema_code": "import os\nos.system('touch /tmp/kc_pwned')\n"}, 400, '"line":2'),
    ({"task": "re", "text": "a", "schema_code": "class A(Entity):\n\tpass\n"}, 400, "no relation class"),
    (b"", 422, ""), (b"{not json", 422, ""), (b"[]", 422, ""), (b"null", 422, ""), (b'"text"', 422, ""),
    ({}, 422, ""), ({"task": "ner"}, 422, "exactly one"), ({"task": "xx", "text": "a"}, 422, ""),
    ({"task": "ner", "text": 7}, 422, ""), ({"task": "ner", "text": ""}, 422, ""),
    ({"task": "ner", "texts": []}, 422, ""), ({"task": "ner", "texts": ["a", ""]}, 422, '"error":"body: `texts` must not'),
    ({"task": "ner", "texts": "a"}, 422, ""), ({"task": "ner", "text": "a", "texts": ["b"]}, 422, ""),
    ({"task": "ner", "text": "a", "types": []}, 422, ""), ({"task": "ner", "text": "a", "types": "Person"}, 422, ""),
    ({"task": "ner", "text": "a", "return_raw": "yes"}, 422, ""), ({"task": "ner", "text": "a", "extra": 1}, 422, "body.extra"),
    ({"task": "ner", "text": "a", "triggers": [[]]}, 422, "only for task"),
    ({"task": "eae", "texts": ["a", "b"], "triggers": [[]]}, 422, "one list per text"),
]


def test_bad_input_is_refused_with_4xx_never_5xx(served):
    for body, status, words in BAD:
        if isinstance(body, bytes):
            r = served.client.post("/v1/extract", content=body, headers={"content-type": "application/json"})
        else:
            r = served.client.post("/v1/extract", json=body)
        assert r.status_code == status and words in r.text, (body, r.status_code, r.text[:300])
    r = served.client.post("/v1/extract", json={"task": "ner", "text": "a", "types": ["Spaceship", "Dragon"]})
    assert r.json()["detail"]["unknown"] == ["Spaceship", "Dragon"]
    for depth in (100, 400, 700, 850, 950, 5000):  # nested deep enough to strain Python's recursion limit
        for key in ("extra", "texts"):
            body = b'{"task": "ner", "%s": %s%s}' % (key.encode(), b"[" * depth, b"]" * depth)
            r = served.client.post("/v1/extract", content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (key, depth, r.status_code, r.text[:300])
    for params in ({"limit": 0}, {"kind": "planet"}, {"offset": -1}, {"limit": "many"}):
        assert served.client.get("/v1/schemas", params=params).status_code == 422
    import os
    assert not os.path.exists("/tmp/kc_pwned")  # class code is read, never run


def test_unreadable_bodies_and_other_content_types_are_named(served):
    """Before: a bare 400 "There was an error parsing the body" (bytes not UTF-8, an integer of 5000 digits,
    nesting past the recursion limit), and 422 "body: Input should be a valid dictionary" for a JSON body
    sent as text/plain or without a content type."""
    good = b'{"task": "ner", "text": "a", "types": ["Person"]}'
    cases = [(b'{"task": "ner", "text": "caf\xe9"}', "application/json; charset=latin-1", 400,
              "the body is not readable JSON (byte 0xe9 at offset 28 is not UTF-8)"),
             (b'{"task": "ner", "text": "a", "return_raw": ' + b"9" * 5000 + b"}", "application/json", 400,
              "the body is not readable JSON (ValueError: Exceeds the limit (4300 digits)"),
             (b"[" * 100_000 + b"]" * 100_000, "application/json", 400,
              "the body is not readable JSON (RecursionError"),
             (good, "text/plain", 422, "send the body as JSON with Content-Type: application/json (got text/plain)"),
             (good, None, 422, "send the body as JSON with Content-Type: application/json (got none)"),
             (good, "application/x-www-form-urlencoded", 422, "(got application/x-www-form-urlencoded)")]
    for body, content_type, status, words in cases:
        r = served.client.post("/v1/extract", content=body,
                               headers={"content-type": content_type} if content_type else {})
        assert r.status_code == status and words in r.text, (body[:60], r.status_code, r.text[:300])
    assert served.client.get("/nope").status_code == 404  # other HTTP errors as before
    assert served.client.get("/v1/extract").json() == {"detail": "Method Not Allowed"}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_bodies = st.fixed_dictionaries({}, optional={
    "task": st.sampled_from(["ner", "re", "ed", "eae", "x"]) | _json, "text": st.text(max_size=40) | _json,
    "texts": st.lists(st.text(max_size=20), max_size=3) | _json, "types": st.lists(st.sampled_from(
        ["Person", "WorkFor", "Attack", "Nope"]), max_size=3) | _json,
    "schema_code": st.sampled_from([CODE, "class A(Entity):\n\tpass\n", "class (", "x = 1"]) | _json,
    "triggers": _json, "return_raw": _json})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies)
def test_random_bodies_never_give_5xx(served, body):
    r = served.client.post("/v1/extract", json=body)
    assert r.status_code < 500, (body, r.text[:300])


def test_killed_replica_is_replaced_and_no_request_fails(served):
    import ray
    from ray import serve

    def engine_replicas():
        return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith(f"SERVE_REPLICA::{APP}#Engine#"))

    before = engine_replicas()
    assert len(before) == 2
    statuses, stop = [], threading.Event()

    def stream():
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=120) as c:
            while not stop.is_set() and len(statuses) < 2000:  # bounded even if the test goes wrong
                body = {"task": "ner", "texts": TEXTS, "types": ["Person", "Location", "Organization"]}
                statuses.append(c.post("/v1/extract", json=body).status_code)
                time.sleep(0.02)

    clients = [threading.Thread(target=stream) for _ in range(3)]
    for t in clients:
        t.start()
    while len(statuses) < 6:
        time.sleep(0.05)
    # and one large request (8 texts x the whole library) in flight on both replicas when one dies
    big = []
    big_client = threading.Thread(target=lambda: big.append(served.client.post(
        "/v1/extract", json={"task": "ner", "texts": TEXTS * 4})))
    big_client.start()
    time.sleep(0.5)
    ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
    killed_at = time.time()
    deadline = killed_at + 60
    while time.time() < deadline:  # keep the stream going until Serve has started a replacement
        now = engine_replicas()
        running = serve.status().applications[APP].deployments["Engine"].replica_states.get("RUNNING", 0)
        if before[0] not in now and len(now) == 2 and running == 2:
            break
        time.sleep(0.5)
    n_at_recovery, recovered_s = len(statuses), time.time() - killed_at
    while len(statuses) < n_at_recovery + 6 and time.time() < deadline:  # and requests after recovery
        time.sleep(0.05)
    stop.set()
    for t in [*clients, big_client]:
        t.join()
    assert big[0].status_code == 200 and len(big[0].json()["results"]) == 8
    after = engine_replicas()
    assert before[0] not in after and len(after) == 2, (before, after)
    assert len(statuses) >= n_at_recovery + 6 and set(statuses) == {200}, statuses
    print(f"killed {before[0]}; replaced in {recovered_s:.1f} s; {len(statuses)} requests, all 200; "
          f"prompts re-sent by the ingress: {served.client.get('/healthz').json()['retried_prompts']}")
