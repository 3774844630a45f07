"""`deploy(cfg)`: deploy the extraction service on the connected Ray cluster (`connect()` first)."""
from __future__ import annotations

import signal
import time

from knowcoder_ray.serve.config import ServeConfig


def deploy(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000, *, proxy_location: str = "EveryNode",
          keep_alive_timeout_s: int | None = None) -> str:
    """Start Ray Serve's HTTP proxies (loopback by default) and deploy the application; its URL."""
    from ray import serve as ray_serve

    from knowcoder_ray.serve.app import build_app

    http = {"host": host, "port": port, **({"keep_alive_timeout_s": keep_alive_timeout_s} if keep_alive_timeout_s else {})}
    ray_serve.start(proxy_location=proxy_location, http_options=http)
    ray_serve.run(build_app(cfg.model_dump()), name=cfg.app_name, route_prefix="/")
    return f"http://{host}:{port}"


def serve_until_stopped(cfg: ServeConfig, shutdown: bool = False) -> None:
    """Keep serving until Ctrl-C or SIGTERM; then remove the application (`shutdown`: all of Serve)."""
    from ray import serve as ray_serve

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:  # on a shared cluster remove only our application
        ray_serve.shutdown() if shutdown else ray_serve.delete(cfg.app_name)
