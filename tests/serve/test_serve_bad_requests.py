"""A bad day for the extraction service: hundreds of bad requests against `knowcoder serve` (its own local
Ray, real Serve with the HAProxy ingress on 127.0.0.1, the tiny model). Zero 5xx; every 4xx names the
problem; a good request is answered after each batch; no connection is held past the client timeout.

Batches: non-finite numbers, lone surrogates, long `|` chains, class code refused with a reason (statements
in class bodies, inheritance cycles, unknown head types, lowercase names), classic malformed bodies,
malformed JSON bytes, and raw-socket requests that stall (partial headers, partial body, chunked bodies).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

CLIENT_TIMEOUT_S = 5
SLACK_S = 4  # scheduling on a busy 2-core machine
GOOD = {"task": "ner", "text": "Ada Lovelace lived in London.", "types": ["Person", "Location"]}
HEAD_OK = "class Person(Entity):\n\tpass\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(data_dir, tmp_path_factory):
    """`knowcoder serve` in a subprocess (a fresh local Ray of its own), stopped with SIGTERM."""
    from knowcoder_ray.data.sources import benchmark_library
    from engine_helpers import make_engine_test_model
    from knowcoder_ray.schema.table import write_parquet

    root = tmp_path_factory.mktemp("badday")
    model = make_engine_test_model(root / "model", data_dir)
    library = benchmark_library(data_dir)
    write_parquet(library, str(root / "library.parquet"))
    cfg = {"model_dir": str(model), "library": str(root / "library.parquet"), "engine_config": {"max_new_tokens": 4},
           "num_replicas": 1, "max_text_chars": 300, "max_texts": 8, "max_code_chars": 120_000,
           "app_name": "badday", "engine_threads": 1}
    (root / "serve.yaml").write_text(yaml.safe_dump(cfg))
    port = _free_port()
    env = {**os.environ, "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
           "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()), "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
           "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
           # patience for a loaded test machine: HAProxy start and proxy health checks
           "RAY_SERVE_HAPROXY_STARTUP_TIMEOUT_S": "120", "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
           "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30"}
    env.pop("RAY_ADDRESS", None)
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from knowcoder_ray.cli import main; sys.exit(main())",
                             "serve", "--config", str(root / "serve.yaml"), "--port", str(port),
                             "--client-timeout", str(CLIENT_TIMEOUT_S)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # A fresh connection per request: the server closes a connection idle for CLIENT_TIMEOUT_S (that is what
    # these tests check), so a pooled one reused near that moment races the close (RFC 9112 section 9.3.1).
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          limits=httpx.Limits(max_keepalive_connections=0))
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (root / "serve.log").read_text()[-3000:]
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, (root / "serve.log").read_text()[-3000:]
            time.sleep(1)
        yield type("Service", (), {"client": client, "port": port, "library": library})
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own process group only
            proc.wait(10)
        log.close()


# ---- the cases --------------------------------------------------------------------------------------------

def _non_finite() -> list:
    """Raw JSON bodies with NaN / Infinity / 1e400 in every field."""
    out = []
    for v in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999", "1.8e308", "-123e456"):
        for tmpl in ('{"task": "ner", "text": %s}', '{"task": %s, "text": "a"}', '{"task": "ner", "texts": [%s]}',
                     '{"task": "ner", "texts": ["a", %s]}', '{"task": "ner", "text": "a", "types": [%s]}',
                     '{"task": "ner", "text": "a", "schema_code": %s}', '{"task": "ner", "text": "a", "return_raw": %s}',
                     '{"task": "ner", "text": "a", "extra": %s}', '{"task": "eae", "text": "a", "triggers": [[%s]]}',
                     '{"task": "eae", "text": "a", "triggers": [[{"type": "Attack", "trigger": %s}]]}',
                     '{"task": "ner", "text": "a", "nested": {"x": [1, {"y": %s}]}}', '[%s]', '%s'):
            out.append(((tmpl % v).encode(), "finite"))
    return out


def _surrogates() -> list:
    out = []
    for s in ("\\ud800", "\\udfff", "a\\udc00b", "x\\ud83d", "\\ud83d\\ud83d", "\\udbff\\u0041", "\\udd1e",
              "\\ud800\\ud800\\udc00"):
        for tmpl, where in (('{"task": "ner", "text": "%s"}', "text"), ('{"task": "ner", "texts": ["ok", "%s"]}', "texts[1]"),
                            ('{"task": "ner", "text": "a", "types": ["%s"]}', "types[0]"),
                            ('{"task": "ner", "text": "a", "schema_code": "class A(Entity):\\n\\t\\"\\"\\"%s\\"\\"\\"\\n\\tpass\\n"}', "schema_code"),
                            ('{"task": "ner", "text": "a", "schema_code": "# %s\\nclass A(Entity):\\n\\tpass\\n"}', "schema_code"),
                            ('{"task": "eae", "text": "a", "triggers": [[{"type": "Attack", "trigger": "%s"}]]}', "trigger"),
                            ('{"task": "ner", "text": "a", "%s": 1}', "surrogate")):
            out.append(((tmpl % s).encode(), where if where == "surrogate" else "surrogate"))
    return out


def _code(code: str, task: str = "ner", **extra) -> dict:
    return {"task": task, "text": "Ada Lovelace lived in London.", "schema_code": code, **extra}


def _rel(head: str, tail: str = "Person") -> str:
    return (HEAD_OK + "class Knows(Relation):\n\tdef __init__(self, head_entity: %s, tail_entity: %s):\n\t\tpass\n"
            % (head, tail))


def _schema_code(library) -> list:
    out = []
    for n in (1000, 1500, 2000):  # long `|` chains of unknown and of known types
        out.append((_code(_rel(" | ".join(f"T{i}" for i in range(n))), "re"), "schema_code"))
        out.append((_code(_rel("List[" + " | ".join(f"U{i}" for i in range(n)) + "]"), "re"), "schema_code"))
    for body, word in (("\tx = 1", "Assign"), ("\tprint('hi')", "Expr"), ("\timport os", "Import"),
                       ("\tdef f(self):\n\t\tpass", "method f"), ("\tclass Inner:\n\t\tpass", "ClassDef"),
                       ("\tfor i in range(3):\n\t\tpass", "For"), ("\tasync def g(self):\n\t\tpass", "method g"),
                       ("\t@staticmethod\n\tdef __init__():\n\t\tpass", "method __init__"),
                       ("\tif True:\n\t\tpass", "If"), ("\twith open('x') as f:\n\t\tpass", "With"),
                       ("\tx: int = 3", "AnnAssign"), ("\tdel x", "Delete"), ("\tglobal g", "Global"),
                       ("\ttry:\n\t\tpass\n\texcept Exception:\n\t\tpass", "Try"), ("\twhile False:\n\t\tpass", "While"),
                       ("\tassert False", "Assert"), ("\traise SystemExit", "Raise"), ("\tx += 1", "AugAssign"),
                       ('\t"""doc"""\n\tos.system("touch /tmp/kc_pwned")', "Expr")):
        out.append((_code(f"class Dish(Entity):\n{body}\n"), word))
    chains = [t for t in library if t.parents and t.kind == "entity"][:4]
    for t in chains:  # redefining an ancestor as a child of its descendant closes a cycle
        out.append((_code(f"class {t.parents[0]}({t.name}):\n\tpass\n"), "inheritance cycle"))
    out.append((_code("class Person(Person):\n\tpass\n"), "inheritance cycle"))
    for head in ("Spaceship", "Person | Spaceship", "List[Dragon]", "'Unicorn'", "Entities.Nope", "WorkFor"):
        out.append((_code(_rel(head), "re"), "signature"))
    out.append((_code(HEAD_OK + "class Attack2(Event):\n\tdef __init__(self, trigger: str, attacker: List[Ghost]):\n\t\tpass\n",
                      "eae"), "Ghost"))
    for name in ("person", "dish", "_Hidden", "x1", "lowerCase", "ñandu"):
        out.append((_code(f"class {name}(Entity):\n\tpass\n"), "uppercase"))
    out.append((_code("class A(Entity)\n\tpass\n"), "syntax error"))
    out.append((_code("x = 1\n"), "only class definitions"))
    out.append((_code("class A(Entity):\n\tpass\nclass A(Entity):\n\tpass\n"), "defined twice"))
    out.append((_code("class A(Nope):\n\tpass\n"), "unknown base class"))
    out.append((_code("class A(Entity, WorkFor):\n\tpass\n"), "mixed kinds"))
    out.append((_code("@dataclass\nclass A(Entity):\n\tpass\n"), "decorators"))
    out.append((_code("class A(Entity, metaclass=M):\n\tpass\n"), "class keywords"))
    out.append((_code("class A(x.y):\n\tpass\n"), "plain name"))
    out.append((_code("class A(Entity):\n\tpass\n" + "(" * 300 + ")" * 300 + "\n"), "schema_code"))
    out.append((_code("class A(Entity):\n\tpass\n\x00"), "schema_code"))
    out.append((_code("class A(Entity):\n\tpass\n", "re"), "no relation class"))
    return out


def _classic() -> list:
    out = [({"task": "ner", "text": "x" * 301}, "longer than 300"), ({"task": "ner", "texts": ["a"] * 9}, "limit is 8"),
           ({"task": "ner", "text": "a", "schema_code": "class A(Entity):\n\tpass\n" * 6000}, "schema_code longer"),
           ({"task": "ner", "text": "a", "types": ["Person", "Spaceship"]}, "Spaceship"),
           ({"task": "re", "text": "a", "types": ["Person"]}, "takes relation types"),
           ({"task": "ner", "text": "a", "types": ["WorkFor"]}, "takes entity types"),
           ({"task": "eae", "text": "a", "triggers": [[{"type": "Dragon", "trigger": "a"}]]}, "Dragon"),
           ({}, "task"), ({"task": "ner"}, "exactly one"), ({"task": "ner", "text": "a", "texts": ["b"]}, "exactly one"),
           ({"task": "ner", "text": "a", "triggers": [[]]}, "only for task"),
           ({"task": "eae", "texts": ["a", "b"], "triggers": [[]]}, "one list per text"),
           ({"task": "ner", "texts": ["a", ""]}, "empty strings")]
    for task in ("xx", "NER", "", 1, None, [], {}, True):
        out.append(({"task": task, "text": "a"}, "task"))
    for text in (7, 1.5, True, [], {}, ["a"], ""):
        out.append(({"task": "ner", "text": text}, "text"))
    for texts in ("a", [], [1], [None], [["a"]], {"a": 1}, 3):
        out.append(({"task": "ner", "texts": texts}, "texts"))
    for types in ([], "Person", [1], [None], [["Person"]], {"Person": 1}):
        out.append(({"task": "ner", "text": "a", "types": types}, "types"))
    for code in ("", 1, ["class A(Entity): pass"], {"a": 1}):
        out.append(({"task": "ner", "text": "a", "schema_code": code}, "schema_code"))
    for raw in ("yes", 1, 0, None, [], "true"):
        out.append(({"task": "ner", "text": "a", "return_raw": raw}, "return_raw"))
    for trig in ("x", [1], [[1]], [["Attack"]], [[{"type": "Attack"}]], [[{"type": "", "trigger": "a"}]],
                 [[{"type": "Attack", "trigger": "a", "x": 1}]], [[{"type": 1, "trigger": "a"}]]):
        out.append(({"task": "eae", "text": "a", "triggers": trig}, "triggers"))
    for task, wrong in (("ner", "WorkFor"), ("ner", "Attack"), ("re", "Attack"), ("re", "Location"),
                        ("ed", "Person"), ("ed", "WorkFor"), ("eae", "Person"), ("eae", "LiveIn")):
        out.append(({"task": task, "text": "a", "types": [wrong]}, "takes"))
        out.append(({"task": task, "texts": ["a", "b" * 301]}, "longer than 300"))
    for key in ("Text", "schema", "type", "texts ", "\u0000", "é"):
        out.append(({"task": "ner", "text": "a", key: 1}, "xtra"))
    return out


def _bad_json() -> list:
    return [(b"", "required"), (b"{not json", "JSON"), (b'{"task": "ner", "text": "a"', "JSON"),
            (b'{"task": "ner", "text": "a"}garbage', "JSON"), (b"[]", "dict"), (b"null", "dict"), (b'"text"', "dict"),
            (b"1", "dict"), (b"true", "dict"), (b'{"task": "ner", "text": "\xff\xfe"}', "error"),
            (b'{"task": "ner", "text": "a",}', "JSON"),
            (b"{'task': 'ner'}", "JSON"), (b'{"task": "ner", "text": "\\x41"}', "JSON"),
            (b'{"task": "ner", "text": "a\x00"}', "JSON"), (b"[" * 100_000 + b"]" * 100_000, "error"),
            (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "error"), (b'{"task": "ner", "text": 1' + b"0" * 5000 + b"}", "error"),
            (b'{"task": "ner", "texts": ["a"' + b', "a"' * 5000 + b"]}", "limit is 8")]


def _send(service, case):
    body, word = case
    if isinstance(body, bytes):
        return service.client.post("/v1/extract", content=body, headers={"content-type": "application/json"})
    return service.client.post("/v1/extract", json=body)


def _names_problem(r, word: str) -> bool:
    return bool(r.text) and word.lower() in r.text.lower()


def _good(service) -> None:
    r = service.client.post("/v1/extract", json=GOOD)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["results"][0]["text"] == GOOD["text"]


def _run_batch(service, cases) -> list:
    failures = []
    for case in cases:
        r = _send(service, case)
        if r.status_code >= 500 or r.status_code < 400 or not _names_problem(r, case[1]):
            failures.append((repr(case[0])[:160], r.status_code, r.text[:200]))
    _good(service)
    return failures


def test_count_of_bad_requests(service):
    n = len(_non_finite()) + len(_surrogates()) + len(_schema_code(service.library)) + len(_classic()) + len(_bad_json())
    print(f"{n} bad requests in the JSON batches")
    assert n >= 300


@pytest.mark.parametrize("batch", ["non_finite", "surrogates", "classic", "bad_json"])
def test_bad_bodies_give_4xx_naming_the_problem(service, batch):
    cases = {"non_finite": _non_finite, "surrogates": _surrogates, "classic": _classic, "bad_json": _bad_json}[batch]()
    failures = _run_batch(service, cases)
    assert not failures, f"{len(failures)}/{len(cases)} failed: {failures[:8]}"


def test_bad_schema_code_gives_400_naming_the_problem(service):
    cases = _schema_code(service.library)
    failures = _run_batch(service, cases)
    assert not failures, f"{len(failures)}/{len(cases)} failed: {failures[:8]}"
    assert not os.path.exists("/tmp/kc_pwned")
    r = _send(service, (_code(_rel("Spaceship"), "re"), ""))
    assert r.status_code == 400 and "Spaceship" in r.json()["detail"]["error"]
    r = _send(service, (_code(_rel(" | ".join(["Person"] * 2000)), "re"), ""))  # long, but every type exists
    assert r.status_code in (200, 400), r.text[:300]


def test_other_methods_and_paths(service):
    c = service.client
    cases = [c.get("/v1/extract"), c.put("/v1/extract", json=GOOD), c.delete("/v1/extract"), c.get("/nope"),
             c.post("/v1/extract", content=json.dumps(GOOD), headers={"content-type": "text/plain"}),
             c.post("/v1/extract", content=b"task=ner&text=a", headers={"content-type": "application/x-www-form-urlencoded"}),
             c.get("/v1/schemas", params={"limit": 0}), c.get("/v1/schemas", params={"kind": "planet"}),
             c.get("/v1/schemas", params={"offset": -1}), c.get("/v1/schemas", params={"q": "x" * 201}),
             c.get("/v1/schemas", params={"limit": "NaN"}), c.get("/v1/schemas", params={"limit": "1e400"}),
             c.get("/v1/schemas", params={"q": "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")})]
    assert all(400 <= r.status_code < 500 and r.text for r in cases[:-1]), [(r.status_code, r.text[:100]) for r in cases]
    assert cases[-1].status_code < 500
    _good(service)


# ---- raw sockets: stalled and malformed HTTP ----------------------------------------------------------------

def _open(service, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", service.port))
    s.sendall(data)
    return s


def _held_for(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (reading what it sent), capped at `limit`."""
    s.settimeout(0.5)
    t0, got = time.time(), b""
    while time.time() - t0 < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    s.close()
    return time.time() - t0, got


STALLED = [
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Le",                       # headers never finish
    b"POST /v1/extract HTTP/1.1\r\n",
    b"P",
    b"",                                                                            # connects, says nothing
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"task\"",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"tas",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",                                 # answered, then idle keep-alive
]
MALFORMED = [  # answered with a 4xx at once (no waiting for the client timeout)
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nabc",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"BREW /v1/extract HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/extract HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
]


def test_stalled_connections_are_closed_after_the_client_timeout(service):
    socks = [_open(service, data) for data in STALLED * 3]  # 21 at once
    limit = CLIENT_TIMEOUT_S + SLACK_S
    held = [_held_for(s, limit + 5) for s in socks]
    over = [(STALLED[i % len(STALLED)][:50], round(t, 1)) for i, (t, _) in enumerate(held) if t > limit]
    assert not over, f"held beyond {limit} s: {over}"
    for (t, got), data in zip(held, STALLED * 3):
        if got:
            status = int(got.split(b" ", 2)[1])
            assert status < 500, got[:200]
    _good(service)


def test_malformed_http_is_refused_quickly(service):
    for data in MALFORMED:
        s = _open(service, data)
        t, got = _held_for(s, CLIENT_TIMEOUT_S + SLACK_S + 5)
        assert got.startswith(b"HTTP/1."), (data[:60], got[:100])
        status = int(got.split(b" ", 2)[1])
        assert 400 <= status < 500, (data[:60], got[:200])
        assert t < CLIENT_TIMEOUT_S + SLACK_S, (data[:60], t)
    s = _open(service, MALFORMED[0])
    t, got = _held_for(s, 10)
    assert t < 2 and b" 400 " in got.split(b"\r\n")[0], (t, got[:200])  # the huge chunk size: 400 at once
    _good(service)


def test_a_small_chunked_body_is_answered_not_held(service):
    body = json.dumps(GOOD).encode()
    s = _open(service, b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    t, got = _held_for(s, CLIENT_TIMEOUT_S + SLACK_S + 5)
    status = int(got.split(b" ", 2)[1])
    assert status == 411 and b"Content-Length" in got and t < CLIENT_TIMEOUT_S + SLACK_S, got[:300]
