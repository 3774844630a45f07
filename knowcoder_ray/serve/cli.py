"""`knowcoder serve`: run the extraction service locally (loopback by default) until Ctrl-C. For a
cluster, deploy knowcoder_ray/serve/serve_config.yaml with `serve deploy` or a RayService.

Ray Serve's own HTTP proxy (uvicorn) holds a socket forever for a request that never finishes, so `knowcoder
serve` starts its local Ray with Serve's HAProxy ingress: a connection silent for `--client-timeout` seconds gets
408 (incomplete headers) or 400 (incomplete body) and is closed, as is an idle keep-alive connection. On a
cluster started by `ray start`, set the same environment there (see serve_config.yaml).
"""
from __future__ import annotations

import argparse
import os
import socket
import tempfile

from knowcoder_ray.settings import UsageError, add_set_option, load, whole_number

CLIENT_TIMEOUT_S = 30


def haproxy_env(client_timeout_s: int, state_dir: str) -> dict[str, str]:
    """Environment of a Ray whose Serve fronts its HTTP proxies with HAProxy, closing silent clients after
    `client_timeout_s` (HAProxy's `timeout client`, also `timeout http-request`)."""
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": str(client_timeout_s),
            # per-run files, so two services on one machine do not share HAProxy's config or admin socket
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(state_dir, "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(state_dir, "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": state_dir,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(state_dir, "server-state")}


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the extraction service (Ray Serve + FastAPI) on this machine")
    p.add_argument("--config", help="YAML of ServeConfig fields; --set and the flags below override it")
    add_set_option(p)
    p.add_argument("--model", dest="model_dir", help="HF model folder")
    p.add_argument("--adapter", dest="adapter_dir", help="PEFT LoRA adapter folder trained on --model")
    p.add_argument("--library", help="schema library: a .parquet table or a folder of Entities.py / Relations.py / Events.py")
    p.add_argument("--replicas", dest="num_replicas", type=int, help="fixed engine replica count (default: autoscale)")
    p.add_argument("--max-new-tokens", type=int, help="generation limit (default 640)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default %(default)s: loopback only)")
    p.add_argument("--port", type=whole_number(1, 65535), default=8000)
    p.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    p.add_argument("--client-timeout", type=whole_number(1, 86400), default=CLIENT_TIMEOUT_S,
                   help="seconds a client may stay silent mid-request or idle between requests before its "
                        "connection is closed (local cluster only; default %(default)s)")
    p.set_defaults(func=_serve)


def config_from_args(args: argparse.Namespace):
    from knowcoder_ray.serve.config import ServeConfig

    flags = {name: getattr(args, name) for name in ("model_dir", "adapter_dir", "library", "num_replicas")
             if getattr(args, name) is not None}
    if args.max_new_tokens is not None:
        flags["engine_config.max_new_tokens"] = args.max_new_tokens
    return load(ServeConfig, args.config, args.overrides, flags)


def _preflight(cfg) -> None:
    """What every replica would fail on (model, adapter, max_new_tokens over the context, library), refused
    before Ray starts: Serve would retry the deployment for minutes and end in a traceback."""
    from knowcoder_ray.infer.engine import check_context
    from knowcoder_ray.schema.table import load_library
    from knowcoder_ray.storage import isdir, isfile, join, local_copy

    if "://" not in cfg.model_dir:  # (a URI is checked by the replicas, which download it)
        local_copy(cfg.model_dir)  # a FileNotFoundError naming a missing folder, or a file
    if isdir(cfg.model_dir) and not isfile(join(cfg.model_dir, "config.json")):
        raise UsageError(f"model_dir {cfg.model_dir} is not a model folder: it holds no config.json")
    try:
        check_context(cfg.engine_path(), cfg.engine_config.max_new_tokens)
        load_library(cfg.library)
    except ValueError as e:  # (a missing file is knowcoder's "not found")
        raise UsageError(e) from None


def _check_listen(host: str, port: int) -> None:
    """A host that does not resolve or a port in use is one line before Ray starts (else HAProxy fails to
    bind inside an actor: a remote traceback, or the service reports a URL nothing answers on)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r}: {e.strerror}") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a closed port in TIME_WAIT is free
        try:
            s.bind(address)
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def _serve(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    _preflight(cfg)
    if not args.address:  # our own local Ray: its Serve gets the HAProxy ingress and our client timeout
        _check_listen(args.host, args.port)  # (on a cluster, its Serve may hold the port already)
        for k, v in haproxy_env(args.client_timeout, tempfile.mkdtemp(prefix="kc-hap-", dir="/tmp")).items():  # short: socket paths max 97
            os.environ.setdefault(k, v)
    from knowcoder_ray.connect import connect
    from knowcoder_ray.serve.run import deploy, serve_until_stopped

    connect(args.address, new_local=True)  # our own Ray, with the HAProxy settings above
    try:
        url = deploy(cfg, args.host, args.port, keep_alive_timeout_s=args.client_timeout)
    except RuntimeError as e:  # Serve's "Deploying application ... failed", or a Ray actor's error with its traceback
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        raise UsageError(f"{last[0]} (the errors are in the log above)") from None
    print(f"knowcoder serve: {url}/docs (Ctrl-C to stop)", flush=True)
    serve_until_stopped(cfg, shutdown=not args.address)
    return 0
