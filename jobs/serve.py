"""Deploy the extraction endpoint (Ray Serve) with the merged model and the built schema library,
then send it one request. `serve.keep_running: true` keeps it up (Ctrl-C / job stop to end)."""
import json
import urllib.request

from common import job_main

from knowcoder_ray.config import PipelineConfig
from knowcoder_ray.serve.run import deploy, serve_until_stopped


def run(cfg: PipelineConfig) -> None:
    s, config = cfg.serve, cfg.serve_config()
    deploy(config, s.host, s.port, proxy_location=s.proxy_location)
    body = json.dumps({"texts": [s.smoke_text], "task": "ner"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{s.port}/v1/extract", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:  # loopback only
        print(f"POST /v1/extract -> {resp.status}: {resp.read().decode()[:400]}", flush=True)
    if s.keep_running:
        print(f"serving on http://{s.host}:{s.port}/docs", flush=True)
        serve_until_stopped(config)
    else:
        from ray import serve as ray_serve

        ray_serve.delete(config.app_name)


if __name__ == "__main__":
    job_main(run, __doc__)
