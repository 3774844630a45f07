"""Load test of the extraction service on loopback: latency (p50/p99), throughput and errors for 1 and N
concurrent clients (default 16) against one engine replica (optionally 2), compared with the same
extraction run in-process (same planning, parsing and engine code, no Serve): the endpoint's p50 overhead
at 1 client (target <= 10 ms) and its throughput at N clients over the in-process engine's serial
throughput (target >= 0.9x, no errors).

Everything is bounded: at most --requests per client and --seconds per phase. The tiny random model
stands in for KnowCoder-7B, so generation is cheap and the figures mostly measure the serving path.
On a 2-core machine a second replica adds little: both share the cores with the ingress and the clients.
Prints figures; asserts nothing.

    python benchmarks/bench_serve.py [--clients 16] [--requests 25] [--seconds 60] [--max-new-tokens 16] [--replicas 1 2]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # engine_helpers: the tiny engine test model

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only (DESIGN.md section 6)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)

DATA = Path(os.environ.get("KNOWCODER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
APP = "knowcoder_bench"
BODY = {"task": "ner", "text": "Ada Lovelace worked with Charles Babbage in London.",
        "types": ["Person", "Location", "Organization"]}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def load(port: int, clients: int, requests: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            for _ in range(requests):
                if time.perf_counter() > deadline:
                    return
                t = time.perf_counter()
                try:
                    r = c.post("/v1/extract", json=BODY)
                    key = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                with lock:
                    if key is None:
                        latencies.append(time.perf_counter() - t)
                    else:
                        errors[key] = errors.get(key, 0) + 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"ok": len(latencies), "errors": errors, "wall": wall, "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99), "rps": len(latencies) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1], help="engine replica counts to load")
    ap.add_argument("--requests", type=int, default=25, help="per client")
    ap.add_argument("--seconds", type=float, default=60, help="per load phase")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()

    import ray
    from ray import serve

    from knowcoder_ray.data.benchmarks import BENCHMARKS
    from knowcoder_ray.infer.engine import EngineConfig, TransformersEngine
    from knowcoder_ray.infer.extraction import local_executor
    from engine_helpers import make_engine_test_model
    from knowcoder_ray.tokens import TokenCounter
    from knowcoder_ray.schema.table import write_parquet
    from knowcoder_ray.schema.types import SchemaLibrary
    from knowcoder_ray.serve.app import build_app
    from knowcoder_ray.serve.extract import make_plan, resolve_schema, run
    from knowcoder_ray.serve.models import ExtractRequest

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    model = make_engine_test_model(tmp / "model", DATA)
    library = SchemaLibrary()
    for b in BENCHMARKS.values():
        library = library.merged(b.schema(DATA))
    write_parquet(library, str(tmp / "library.parquet"))
    config = {"model_dir": str(model), "library": str(tmp / "library.parquet"),
              "engine_config": {"max_new_tokens": args.max_new_tokens}, "app_name": APP}

    # In-process reference: the same request through the same planning, engine and parsing, no Serve.
    import torch

    torch.set_num_threads(1)  # as one replica runs
    engine = TransformersEngine(model, EngineConfig(max_new_tokens=args.max_new_tokens))
    req = ExtractRequest(**BODY)
    lib, types = resolve_schema(req, library)
    from transformers import AutoTokenizer

    plan = make_plan(req, lib, types, 1500, TokenCounter(AutoTokenizer.from_pretrained(model)))
    execute = local_executor(engine.generate, [plan])
    run(req, plan, execute)  # warm
    local = []
    start = time.perf_counter()
    for _ in range(args.requests):
        t = time.perf_counter()
        run(req, plan, execute)
        local.append(time.perf_counter() - t)
    local_rps = args.requests / (time.perf_counter() - start)
    del engine

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    assert ray.util.get_node_ip_address() == "127.0.0.1", "Ray is not on loopback"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rows = []
    try:
        for replicas in args.replicas:
            serve.run(build_app({**config, "num_replicas": replicas}), name=APP, route_prefix="/")
            load(port, 2 * replicas, 3, 30)  # warm every replica
            if replicas == args.replicas[0]:
                single = load(port, 1, args.requests, args.seconds)
            rows.append((replicas, load(port, args.clients, args.requests, args.seconds)))
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"bench_serve: tiny model, NER with 3 types (1 prompt per request), max_new_tokens={args.max_new_tokens}, "
          f"{args.clients} clients x <= {args.requests} requests, <= {args.seconds:.0f} s per phase, 127.0.0.1")
    print(f"{'replicas':>8} {'clients':>7} {'ok':>5} {'errors':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    for replicas, r, clients in [(args.replicas[0], single, 1)] + [(n, r, args.clients) for n, r in rows]:
        errs = sum(r["errors"].values())
        print(f"{replicas:>8} {clients:>7} {r['ok']:>5} {errs:>8} {1000 * r['p50']:>8.1f} {1000 * r['p99']:>8.1f} "
              f"{r['rps']:>7.2f}" + (f"  {r['errors']}" if errs else ""))
    p50_local = statistics.median(local)
    print(f"in-process extraction (same request, same code, no Serve): p50 {1000 * p50_local:.1f} ms, "
          f"{local_rps:.2f} req/s serially")
    over = 1000 * (single["p50"] - p50_local)
    print(f"endpoint p50 overhead over in-process (1 client, {args.replicas[0]} replica): {over:+.1f} ms "
          f"({single['p50'] / p50_local:.2f}x)  target <= 10 ms: {'met' if over <= 10 else 'NOT met'}")
    first = rows[0][1]
    ratio = first["rps"] / local_rps
    errs = sum(first["errors"].values())
    print(f"throughput at {args.clients} clients ({args.replicas[0]} replica) / in-process serial: {ratio:.2f}x, "
          f"{errs} errors  target >= 0.9x, 0 errors: {'met' if ratio >= 0.9 and not errs else 'NOT met'}")
    if len(rows) > 1:
        print(f"throughput {rows[-1][0]} replicas / {rows[0][0]} replica ({args.clients} clients): "
              f"{rows[-1][1]['rps'] / rows[0][1]['rps']:.2f}x")


if __name__ == "__main__":
    main()
