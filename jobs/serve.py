"""Deploy the extraction endpoint (Ray Serve) with the merged model and the built schema library,
then send it one request. `serve.keep_running: true` keeps it up (Ctrl-C / job stop to end)."""
import json
import time
import urllib.request

from common import artifact, job_main


def run(cfg: dict) -> None:
    from ray import serve

    from knowcoder_ray.serve.app import build_app

    s = dict(cfg.get("serve", {}))
    # loopback by default; `host: 0.0.0.0` on a cluster, where the proxy serves other machines
    host, port, proxies = s.pop("host", "127.0.0.1"), s.pop("port", 8000), s.pop("proxy_location", "EveryNode")
    keep, text = s.pop("keep_running", False), s.pop("smoke_text", "Barack Obama was born in Honolulu.")
    s.pop("enabled", None)
    app_cfg = {"model_dir": artifact(cfg, "merged"), "library": f"{artifact(cfg, 'schema')}/schema.parquet", **s}
    serve.start(proxy_location=proxies, http_options={"host": host, "port": port})
    serve.run(build_app(app_cfg), name="knowcoder", route_prefix="/")
    body = json.dumps({"texts": [text], "task": "ner"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/extract", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:  # loopback only
        print(f"POST /v1/extract -> {resp.status}: {resp.read().decode()[:400]}", flush=True)
    if keep:
        print(f"serving on http://{host}:{port}/docs", flush=True)
        while True:
            time.sleep(3600)
    serve.delete("knowcoder")


if __name__ == "__main__":
    job_main(run, __doc__)
