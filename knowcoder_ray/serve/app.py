"""The Ray Serve application: a FastAPI ingress in front of a model deployment.

    POST /v1/extract   texts + task + schema (library type names and/or the user's class code) -> mentions
    GET  /v1/schemas   search the served schema library by name or description
    GET  /healthz      liveness, model and library size
    GET  /docs         OpenAPI docs (/openapi.json)

A request's schema is split into prompt-sized shards; the ingress awaits every (text, shard) prompt at once
(async, bounded by Serve's `max_ongoing_requests`) and merges the parsed outputs per text. The model deployment
is a `ray.serve.llm` LLMServer (`engine: vllm`) or our `Engine` replica, whose `@serve.batch` gathers the prompts
of concurrent requests. A prompt whose replica dies is sent again: a crash costs latency only.
"""
import asyncio
import logging
import math
import os
from collections import Counter
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from knowcoder_ray.infer.engine import Prompt, encode_prompt, finish
from knowcoder_ray.infer.extraction import parse_rows, row_prompts
from knowcoder_ray.infer.llm import llm_config
from knowcoder_ray.serve.config import ServeConfig
from knowcoder_ray.serve.extract import RequestError, arun, check_limits, describe, make_plan, resolve_schema, search
from knowcoder_ray.schema.table import load_library
from knowcoder_ray.serve.models import ExtractRequest, ExtractResponse, Health, SchemaSearchResponse
from knowcoder_ray.settings import error_summary
from knowcoder_ray.storage import local_copy, name
from knowcoder_ray.tokens import TokenCounter

logger = logging.getLogger("ray.serve")

api = FastAPI(title="KnowCoder extraction service", version="0.1.0",
              description="Code-style universal information extraction (KnowCoder): NER, RE, ED and EAE against a "
                          "schema library or your own class code, sharded over engine replicas.")


def _json_safe(value, flags: set[str], depth: int = 0):
    """`value` with what JSON/UTF-8 cannot carry made visible: non-finite floats (Python's JSON reader takes NaN,
    Infinity, 1e400) as strings, lone surrogates backslash-escaped. Cut like the echo it is: 20 items, 300
    characters, 20 levels (a body nested hundreds deep would exhaust the recursion limit here: a 500)."""
    if depth > 20:
        return "..."
    if isinstance(value, float) and not math.isfinite(value):
        flags.add("non-finite")
        return repr(value)
    if isinstance(value, str):
        safe = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if safe != value:
            flags.add("surrogate")
        return safe[:300]
    if isinstance(value, dict):
        return {_json_safe(str(k), flags): _json_safe(v, flags, depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, flags, depth + 1) for v in list(value)[:20]]
    if value is None or isinstance(value, (bool, int)):
        return value
    return _json_safe(str(value), flags)


@api.middleware("http")
async def _refuse_chunked_bodies(request: Request, call_next):
    """A chunked body is read until its last chunk, however long that takes (a chunk size of
    FFFFFFFFFFFFFFFF waits forever): refuse it at once and close; JSON bodies carry a Content-Length."""
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        return JSONResponse({"error": "chunked request bodies are not accepted: send the JSON body with a "
                                      "Content-Length header"}, status_code=411, headers={"connection": "close"})
    return await call_next(request)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each problem. FastAPI's own handler echoes the input, which fails to encode (a 500)
    when the body held NaN/Infinity/1e400 or a lone surrogate; here the echo is made safe first."""
    flags: set[str] = set()
    errors = [{"loc": _json_safe(list(e.get("loc", ())), flags), "msg": _json_safe(e.get("msg", ""), flags),
               "type": e.get("type", ""), "input": _json_safe(e.get("input"), flags)} for e in exc.errors()]
    summary = error_summary(errors[:5], sep="; ")
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type and any(e["loc"] == ["body"] and isinstance(e["input"], str) for e in errors):
        # FastAPI reads a body of another content type as bytes: "should be a valid dictionary" says too little
        summary = f"send the body as JSON with Content-Type: application/json (got {content_type or 'none'}); {summary}"
    if "non-finite" in flags:
        summary = f"the body holds NaN, Infinity or a number out of range (e.g. 1e400); JSON numbers must be finite; {summary}"
    if "surrogate" in flags:
        summary = f"the body holds a lone surrogate (shown backslash-escaped), which is not Unicode text; {summary}"
    return JSONResponse({"error": summary, "detail": errors}, status_code=422)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI answers a body that `json.loads` fails on with other than a JSONDecodeError (bytes that are not
    UTF-8, an integer of over 4300 digits, nesting past the recursion limit) with a bare 400 "There was an
    error parsing the body": here it names the problem. Our own HTTPExceptions are raised `from None`."""
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None:
        why = (f"byte 0x{cause.object[cause.start]:02x} at offset {cause.start} is not UTF-8"
               if isinstance(cause, UnicodeDecodeError) else f"{type(cause).__name__}: {str(cause)[:200]}")
        return JSONResponse({"detail": {"error": f"the body is not readable JSON ({why})"}}, status_code=400)
    return await http_exception_handler(request, exc)


_ERRORS = {400: {"description": "unknown type names, wrong kind of types, or malformed schema_code"},
           413: {"description": "a text, the batch or the schema_code is over the configured limit"},
           503: {"description": "the engine replicas could not answer (after retries)"},
           504: {"description": "the engine did not answer within prompt_timeout_s"}}


# errors that mean "the replica went away", not "the prompt is bad": safe to send again
_RETRYABLE = (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError)


@serve.deployment(name="Engine")
class EngineReplica:
    """One inference engine; prompts from all requests are batched dynamically."""

    def __init__(self, config: dict) -> None:
        import torch

        cfg = ServeConfig.model_validate(config)
        torch.set_num_threads(cfg.engine_threads)  # replicas share the node's cores
        self.engine = cfg.engine_spec().load()
        self.generate.set_max_batch_size(cfg.max_batch_size)
        self.generate.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self.batch_sizes: Counter[int] = Counter()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def generate(self, prompts: list[Prompt]) -> list[str]:
        """Called with one prompt (`generate.remote(prompt)`); Serve gathers the concurrent calls."""
        self.batch_sizes[len(prompts)] += 1
        # Off the event loop, so the replica keeps answering health checks and queueing the next batch.
        return await asyncio.get_running_loop().run_in_executor(None, self.engine.generate, prompts)

    def info(self) -> dict:
        return {"pid": os.getpid(), "batch_sizes": dict(self.batch_sizes),
                "stats": dict(getattr(self.engine, "stats", {}))}


# (defined before the deployments: Serve pickles a deployment class when it is declared)
class LLMServerBackend:
    """Prompts to a `ray.serve.llm` LLMServer as OpenAI completion requests: token ids with the official
    cut (the engines' `encode_prompt`), greedy, stopping at the closing triple quote; an adapter checkpoint
    is a multiplexed LoRA model `<model_id>:<adapter folder name>` loaded from `lora_bucket`."""

    def __init__(self, handle: DeploymentHandle, cfg: ServeConfig, tokenizer) -> None:
        spec = cfg.engine_spec()
        self.model = cfg.llm_model_id + (f":{name(spec.adapter)}" if spec.adapter else "")
        self.handle = handle.options(stream=True, **({"multiplexed_model_id": self.model} if spec.adapter else {}))
        self.sampling = spec.sampling_params()
        self.tokenizer, self.config = tokenizer, spec.config

    async def generate(self, prompt: Prompt) -> str:
        from ray.serve.llm.openai_api_models import CompletionRequest

        request = CompletionRequest(model=self.model, prompt=encode_prompt(self.tokenizer, prompt.text, self.config),
                                    stream=False, **self.sampling)
        async for answer in self.handle.completions.remote(request):
            choices = getattr(answer, "choices", None)
            if not choices:  # an ErrorResponse
                raise RuntimeError(f"the LLM server answered {answer!r}")
            return finish(choices[0].text, self.config)
        raise RuntimeError("the LLM server returned no answer")


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, engine: DeploymentHandle, config: dict) -> None:
        from transformers import AutoTokenizer

        self.cfg = ServeConfig.model_validate(config)
        self.library = load_library(self.cfg.library)
        tokenizer = AutoTokenizer.from_pretrained(local_copy(self.cfg.model_dir))  # URI: per-node cache
        self.count = TokenCounter(tokenizer)
        self.model = name(self.cfg.model_dir) + (f"+{name(self.cfg.adapter_dir)}" if self.cfg.adapter_dir else "")
        # a prompt -> an awaitable of its text, from the LLM server or from our `Engine` deployment
        self.send = (LLMServerBackend(engine, self.cfg, tokenizer).generate if self.cfg.engine == "vllm"
                     else engine.generate.remote)
        self.retried = 0

    @api.post("/v1/extract", response_model=ExtractResponse, responses=_ERRORS)
    async def extract(self, req: ExtractRequest) -> dict:
        try:
            check_limits(req, self.cfg)
            library, types = resolve_schema(req, self.library)
            plan = make_plan(req, library, types, self.cfg.shard_tokens, self.count)
        except RequestError as e:
            raise HTTPException(e.status, e.detail) from None
        except (ValueError, KeyError) as e:  # any other schema problem is the request's, not ours
            raise HTTPException(400, {"error": str(e)}) from None

        async def execute(rows: list[dict]) -> list[dict]:  # every row's prompt to the deployment at once, parsed
            return parse_rows(rows, await asyncio.gather(*map(self._generate, row_prompts(rows))), {plan.key: plan.library})
        try:
            body = await arun(req, plan, execute)
        except _RETRYABLE as e:
            raise HTTPException(503, {"error": f"engine replicas unavailable: {type(e).__name__}"}) from None
        except TimeoutError:
            raise HTTPException(504, {"error": f"no answer from the engine within {self.cfg.prompt_timeout_s} s"}) from None
        return {**body, "model": self.model}

    async def _generate(self, prompt: Prompt) -> str:
        for attempt in range(self.cfg.retries):
            try:
                return await asyncio.wait_for(self.send(prompt), self.cfg.prompt_timeout_s)
            except _RETRYABLE as e:
                self.retried += 1
                logger.warning("engine replica lost (%s); resending prompt (attempt %d)", type(e).__name__, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        return await asyncio.wait_for(self.send(prompt), self.cfg.prompt_timeout_s)  # the last try: errors go up

    @api.get("/v1/schemas", response_model=SchemaSearchResponse)
    async def schemas(self, q: str = Query("", max_length=200, description="text to find in names or descriptions"),
                      kind: Literal["entity", "relation", "event"] | None = None,
                      limit: int = Query(20, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict:
        total, page = search(self.library, q, kind, limit, offset)
        return {"total": total, "types": [describe(t) for t in page]}

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> dict:
        return {"status": "ok", "model": self.model, "adapter": self.cfg.adapter_dir,
                "library_types": len(self.library), "retried_prompts": self.retried}


def build_app(args: dict):
    """The Serve application builder that serve_config.yaml names (`serve deploy`, RayService), also used by
    `knowcoder serve` and the tests; `args`: ServeConfig fields."""
    cfg = ServeConfig.model_validate(dict(args))
    cfg.engine_path()  # a mismatched adapter fails at deploy time, not in every replica
    if cfg.engine == "vllm":
        from ray.serve.llm import build_llm_deployment

        engine = build_llm_deployment(llm_config(cfg.engine_spec(), cfg.llm_model_id, cfg.scaling(),
                                                 cfg.vllm_placement, cfg.lora_bucket))
    else:
        engine = EngineReplica.options(**cfg.engine_options()).bind(cfg.model_dump())
    return Ingress.options(ray_actor_options={"num_cpus": cfg.ingress_num_cpus}).bind(engine, cfg.model_dump())
