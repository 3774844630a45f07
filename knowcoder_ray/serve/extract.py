"""From a request to a sharded extraction plan (infer.extraction) and from the merged results to the response
body: limits (413), the schema named or defined (400). Executing the prompts is handed in (Serve's engine
replicas, or an in-process engine in `KnowCoder.extract`). Also the schema search (GET /v1/schemas).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from knowcoder_ray.codec.render import TASK_KIND
from knowcoder_ray.infer.extraction import (STAGE1_TASK, ConfirmedTriggerPlan, Executor, Extraction, TaskPlan,
                                            extraction_steps)
from knowcoder_ray.records import Record, span_of
from knowcoder_ray.schema.types import SchemaLibrary, SchemaType
from knowcoder_ray.schema.classcode import ClassCodeError, check_references, read_class_code
from knowcoder_ray.serve.config import ServeConfig
from knowcoder_ray.serve.models import ExtractRequest
from knowcoder_ray.tokens import TokenCounter


class RequestError(Exception):
    """A request the service refuses: HTTP `status` with a JSON `detail`."""

    def __init__(self, status: int, detail: dict) -> None:
        super().__init__(detail.get("error", ""))
        self.status, self.detail = status, detail


def check_limits(req: ExtractRequest, cfg: ServeConfig) -> None:
    texts = req.all_texts()
    if len(texts) > cfg.max_texts:
        raise RequestError(413, {"error": f"{len(texts)} texts in one request; the limit is {cfg.max_texts}"})
    long = [i for i, t in enumerate(texts) if len(t) > cfg.max_text_chars]
    if long:
        raise RequestError(413, {"error": f"text longer than {cfg.max_text_chars} characters",
                                 "texts": long, "limit": cfg.max_text_chars})
    if req.schema_code is not None and len(req.schema_code) > cfg.max_code_chars:
        raise RequestError(413, {"error": f"schema_code longer than {cfg.max_code_chars} characters"})


def resolve_schema(req: ExtractRequest, library: SchemaLibrary) -> tuple[SchemaLibrary, list[SchemaType] | None]:
    """The library the request runs against (the served one, with the user's classes taking precedence)
    and the task's types it asks for (None: every type of the task's kind)."""
    kind = TASK_KIND[req.task]
    lib, chosen = library, []
    if req.schema_code is not None:
        try:
            user = read_class_code(req.schema_code, library)
            lib = SchemaLibrary(user).merged(library)
            check_references(user, lib)
        except ClassCodeError as e:
            raise RequestError(400, {"error": f"malformed schema_code: {e.message}", "line": e.line}) from None
        chosen = [t for t in user if t.kind == kind]
        if not chosen and req.types is None:
            raise RequestError(400, {"error": f"schema_code defines no {kind} class, which task {req.task!r} needs",
                                     "defined": [t.name for t in user]})
    names = [*(req.types or ()), *(t.type for per_text in req.triggers or () for t in per_text)]
    unknown = list(dict.fromkeys(n for n in names if n not in lib))
    if unknown:
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""  # all of them under "unknown"
        raise RequestError(400, {"error": f"unknown type names: {', '.join(unknown[:20])}{more}", "unknown": unknown})
    wrong = {n: lib[n].kind for n in names if lib[n].kind != kind}
    if wrong:
        raise RequestError(400, {"error": f"task {req.task!r} takes {kind} types; got "
                                          + ", ".join(f"{n} ({k})" for n, k in wrong.items()), "wrong_kind": wrong})
    chosen += [lib[n] for n in names]
    if not chosen:
        if not lib.of_kind(kind):
            raise RequestError(400, {"error": f"the schema library holds no {kind} types for task {req.task!r}"})
        return lib, None
    return lib, list({t.name: t for t in chosen}.values())


def make_plan(req: ExtractRequest, library: SchemaLibrary, types: list[SchemaType] | None, budget: int,
              count: TokenCounter) -> TaskPlan:
    if req.triggers is None:  # eae without confirmed triggers: two-stage events
        return TaskPlan("request", "ee" if req.task == "eae" else req.task, library, types, budget, count)
    triggers = {str(i): [(t.type, t.trigger) for t in per_text] for i, per_text in enumerate(req.triggers)}
    return ConfirmedTriggerPlan("request", library, triggers, budget, count)


def run(req: ExtractRequest, plan: TaskPlan, execute: Executor) -> dict:
    """Run the plan over the request's texts with `execute`; returns the response body (a dict)."""
    async def call(rows: list[dict]) -> list[dict]:
        return execute(rows)
    try:
        arun(req, plan, call).send(None)  # a coroutine that never suspends: one step runs it to the end
    except StopIteration as done:
        return done.value
    raise RuntimeError("the extraction waited on something: run() takes a synchronous executor, arun() an async one")


async def arun(req: ExtractRequest, plan: TaskPlan, execute: Callable[[list[dict]], Awaitable[list[dict]]]) -> dict:
    """`run` with an async executor (the Serve ingress awaits its deployment handles; no thread blocks)."""
    steps, seen = extraction_steps([("", plan, [Record(str(i), t) for i, t in enumerate(req.all_texts())])]), []
    try:
        rows = next(steps)
        while True:
            seen.extend(executed := await execute(rows))
            rows = steps.send(executed)
    except StopIteration as done:
        return build_response(req, plan, list(done.value.values()), seen)  # in text order


def build_response(req: ExtractRequest, plan: TaskPlan, extractions: Sequence[Extraction],
                   rows: list[dict]) -> dict:
    """The response body: each text's merged mentions located in it, with its rows' parse problems."""
    by_record: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["stage"], r["shard"])):
        by_record.setdefault(r["record_id"], []).append(r)
    shards = {}
    if not isinstance(plan, ConfirmedTriggerPlan):
        shards[STAGE1_TASK[plan.task]] = [list(s.names) for s in plan.shards1]
    # stage-2 shards depend on what stage 1 found in each text
    stage2 = dict.fromkeys(tuple(r["names"]) for ex in extractions for r in by_record.get(ex.record.id, ())
                           if r["stage"] == 2)
    if stage2:
        shards["eae"] = [list(names) for names in stage2]
    results = []
    for ex in extractions:
        record, text, mine = ex.record.to_dict(), ex.record.text, by_record.get(ex.record.id, ())
        result = {"text": text, "entities": [_located(e, text) for e in record["entities"]],
                  "relations": [{**r, "head": _located(r["head"], text), "tail": _located(r["tail"], text)}
                                for r in record["relations"]],
                  "events": [{**_located(e, text, "trigger"), "arguments": [_located(a, text) for a in e["arguments"]]}
                             for e in record["events"]],
                  "hallucinated": list(dict.fromkeys(h for r in mine for h in r["hallucinated"])),
                  "errors": [e for r in mine for e in r["errors"]], "truncated": any(r["truncated"] for r in mine)}
        if req.return_raw:
            result["raw"] = [{"stage": r["task"], "shard": r["shard"], "types": list(r["names"]),
                              "prompt_chars": len(r["prompt"]), "output": r["output"]} for r in mine]
        results.append(result)
    return {"task": req.task, "shards": shards, "prompts": len(rows), "results": results}


def _located(mention: dict, text: str, key: str = "text") -> dict:
    """The mention with the character span of its first occurrence in the text (None: not in the text;
    the model writes mention strings, not offsets)."""
    span = span_of(text, mention[key], mention.get("start"))
    return {**mention, "start": span[0] if span else None, "end": span[1] if span else None}


def describe(t: SchemaType) -> dict:
    """The public view of a type in API responses."""
    d = {"name": t.name, "kind": t.kind, "parents": list(t.parents), "label": t.label,
         "description": t.description, "wikidata_id": t.wikidata_id}
    if t.kind == "relation":
        d.update(head_types=list(t.head_types), tail_types=list(t.tail_types))
    if t.kind == "event":
        d["roles"] = [{"name": r.name, "entity_types": list(r.entity_types)} for r in t.roles]
    return d


def search(library: SchemaLibrary, query: str = "", kind: str | None = None, limit: int = 20,
           offset: int = 0) -> tuple[int, list[SchemaType]]:
    """Types whose name, label, Wikidata id or description contains `query` (case-insensitive), best
    first: exact name, name prefix, name substring, then label/id/description. Returns (total, page)."""
    q = query.strip().lower()
    ranked: list[tuple[int, SchemaType]] = []
    for t in library:
        if kind and t.kind != kind:
            continue
        name = t.name.lower()
        hits = (not q or name == q, name.startswith(q), q in name,
                q in t.label.lower() or q == (t.wikidata_id or "").lower(), q in t.description.lower())
        if any(hits):
            ranked.append((hits.index(True), t))
    ranked.sort(key=lambda r: r[0])  # stable: library order within a rank
    return len(ranked), [t for _, t in ranked[offset:offset + limit]]
