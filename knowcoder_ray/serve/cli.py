"""`knowcoder serve`: run the extraction service locally (loopback by default) until Ctrl-C.

For a cluster, deploy knowcoder_ray/serve/serve_config.yaml with `serve deploy` or a RayService.
"""
from __future__ import annotations

import argparse
import os
import signal
import time

DEFAULT_HOST = "127.0.0.1"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the extraction service (Ray Serve + FastAPI) on this machine")
    p.add_argument("--config", help="YAML of ServeConfig fields; the flags below override it")
    p.add_argument("--model", dest="model_dir", help="HF model folder")
    p.add_argument("--adapter", dest="adapter_dir", help="PEFT LoRA adapter folder trained on --model")
    p.add_argument("--library", help="schema library: a .parquet table or a folder of Entities.py / Relations.py / Events.py")
    p.add_argument("--replicas", dest="num_replicas", type=int, help="fixed engine replica count (default: autoscale)")
    p.add_argument("--max-new-tokens", type=int, help="generation limit (default 640)")
    p.add_argument("--host", default=DEFAULT_HOST, help="HTTP bind address (default %(default)s: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    p.set_defaults(func=_serve)


def config_from_args(args: argparse.Namespace):
    from knowcoder_ray.serve.config import ServeConfig

    fields = {}
    if args.config:
        import yaml

        from knowcoder_ray.storage import read_text

        fields = dict(yaml.safe_load(read_text(args.config)) or {})
    for name in ("model_dir", "adapter_dir", "library", "num_replicas"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.max_new_tokens is not None:
        fields["engine"] = {**fields.get("engine", {}), "max_new_tokens": args.max_new_tokens}
    return ServeConfig.from_dict(fields)


def _serve(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    # A local Ray stays on loopback (DESIGN.md section 6); set before Ray is imported.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    from knowcoder_ray.serve.app import build_app

    ray.init(address=args.address, include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(cfg.to_dict()), name=cfg.app_name)
    print(f"knowcoder serve: http://{args.host}:{args.port}/docs (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:  # on a shared cluster remove only our application
        serve.delete(cfg.app_name) if args.address else serve.shutdown()
    return 0
