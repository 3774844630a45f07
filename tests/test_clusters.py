"""Cluster launcher YAMLs pass Ray's own cluster-config schema validation (offline), and the KubeRay
manifests carry the fields and images they need."""
import copy
import importlib.util
import re
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = sorted((ROOT / "clusters").glob("*.yaml"))
KUBERAY = ROOT / "clusters" / "kuberay"


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_launcher_config_passes_ray_schema_validation(path):
    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert {"cpu_worker", "gpu_train_worker", "gpu_serve_worker"} <= set(types)
    for name, t in types.items():
        if name != config["head_node_type"]:
            assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"], name
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}")
    assert any("pip install" in c and "knowcoder-ray" in c for c in config["setup_commands"])


def test_validation_really_rejects_a_broken_config():
    config = yaml.safe_load(LAUNCHER[0].read_text())
    config["available_node_types"]["cpu_worker"]["min_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(config))


def _manifests():
    return {yaml.safe_load(p.read_text())["kind"]: yaml.safe_load(p.read_text()) for p in KUBERAY.glob("*.yaml")}


def _cluster_spec(doc):
    return {"RayCluster": lambda d: d["spec"], "RayJob": lambda d: d["spec"]["rayClusterSpec"],
            "RayService": lambda d: d["spec"]["rayClusterConfig"]}[doc["kind"]](doc)


def _base_image():
    text = (KUBERAY / "Dockerfile").read_text()
    return re.search(r"^FROM (\S+)", text, re.M).group(1)


def test_kuberay_manifests_fields_and_images():
    docs = _manifests()
    assert set(docs) == {"RayCluster", "RayJob", "RayService"}
    assert _base_image() == f"rayproject/ray:{ray.__version__}-py311-gpu"
    for kind, doc in docs.items():
        assert doc["apiVersion"] == "ray.io/v1", kind
        spec = _cluster_spec(doc)
        assert spec["rayVersion"] == ray.__version__, kind
        assert spec["enableInTreeAutoscaling"] is True, kind
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert head["image"].startswith("knowcoder-ray:"), kind
        ports = {p["containerPort"] for p in head["ports"]}
        assert {6379, 8265} <= ports, kind
        groups = spec["workerGroupSpecs"]
        assert any(int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) > 0
                   for g in groups), kind
        for g in groups:
            assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], (kind, g["groupName"])
            c = g["template"]["spec"]["containers"][0]
            assert c["image"] == head["image"] and "requests" in c["resources"], (kind, g["groupName"])


def test_rayjob_runs_the_pipeline_with_an_existing_config():
    job = _manifests()["RayJob"]
    m = re.fullmatch(r"python (jobs/pipeline\.py) --config (\S+)", job["spec"]["entrypoint"])
    assert m and (ROOT / m.group(1)).is_file() and (ROOT / m.group(2)).is_file()
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayservice_serves_an_importable_application():
    svc = _manifests()["RayService"]
    apps = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"]
    assert apps and apps[0]["route_prefix"] == "/"
    module, _, attr = apps[0]["import_path"].partition(":")
    assert attr and importlib.util.find_spec(module) is not None
    head = svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 8000 in {p["containerPort"] for p in head["ports"]}


def test_rayservice_app_args_are_valid_serve_config():
    from knowcoder_ray.serve.config import ServeConfig

    svc = _manifests()["RayService"]
    serve_cfg = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert serve_cfg["http_options"]["host"] == "0.0.0.0"  # a pod serves its Service, not loopback
    cfg = ServeConfig.from_dict(dict(serve_cfg["applications"][0]["args"]))
    assert cfg.engine_kind == "vllm"
