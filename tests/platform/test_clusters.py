"""Cluster configs that would start: launcher YAMLs pass Ray's own cluster-config validation (offline);
KubeRay manifests pass the real CRD schemas (../shared/kuberay-crds) with unknown fields rejected, as
`kubectl apply --validate=strict` does; every config runs the one project image named in clusters/image.py,
installs nothing at start and reaches the bucket through a node or pod identity."""
import copy
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
LAUNCHER = sorted(CLUSTERS.glob("*.yaml"))
LAUNCHER = [p for p in LAUNCHER if p.name != "serve_config.yaml"]
KUBERAY = CLUSTERS / "kuberay"
CRDS = Path(__import__("os").environ.get("KUBERAY_CRDS_DIR", ROOT.parent / "shared" / "kuberay-crds"))
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}

sys.path.insert(0, str(CLUSTERS))
import image  # noqa: E402  (clusters/image.py: the one image setting)


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
    assert config["docker"]["image"] == image.IMAGE
    commands = [c for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                              "initialization_commands") for c in config.get(key) or []]
    assert not any("pip install" in c for c in commands), commands  # the project is in the image
    assert not config.get("file_mounts")
    for name, t in types.items():  # every node may reach the bucket
        nc = t["node_config"]
        if config["provider"]["type"] == "aws":
            assert nc["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
        elif name != config["head_node_type"]:  # GCP: the head keeps Ray's autoscaler service account
            assert nc["serviceAccounts"][0]["email"].endswith(".iam.gserviceaccount.com"), name


def test_validation_really_rejects_a_broken_config():
    config = yaml.safe_load(LAUNCHER[0].read_text())
    config["available_node_types"]["cpu_worker"]["min_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(config))


# ---- KubeRay ---------------------------------------------------------------------------------------------

def _strict(schema):
    """The CRD schema with unknown fields refused: every object schema that lists its properties and
    neither declares additionalProperties nor preserves unknown fields gets additionalProperties: false.
    (The API server prunes such fields silently; strict field validation rejects them, and so does this.)"""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


OBJECT_META = {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
    "name": {"type": "string"}, "namespace": {"type": "string"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}


@pytest.fixture(scope="module")
def validators():
    if not CRDS.is_dir():
        pytest.fail(f"KubeRay CRDs not found at {CRDS} (set KUBERAY_CRDS_DIR)")
    out = {}
    for kind, name in CRD_FILES.items():
        crd = yaml.load((CRDS / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1 MB each
        assert crd["spec"]["names"]["kind"] == kind
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
        schema["properties"]["metadata"] = OBJECT_META  # the CRD leaves ObjectMeta to the API server
        schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
        schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/v1"}
        schema["properties"]["kind"] = {"const": kind}
        out[kind] = jsonschema.Draft7Validator(schema)
    return out


def _manifests():
    return {doc["kind"]: doc for doc in (yaml.safe_load(p.read_text()) for p in sorted(KUBERAY.glob("*.yaml")))}


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _cluster_spec(doc):
    return {"RayCluster": lambda d: d["spec"], "RayJob": lambda d: d["spec"]["rayClusterSpec"],
            "RayService": lambda d: d["spec"]["rayClusterConfig"]}[doc["kind"]](doc)


def _pods(doc):
    spec = _cluster_spec(doc)
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_kuberay_manifest_passes_its_crd_schema(validators, kind):
    doc = _manifests()[kind]
    assert _errors(validators[kind], doc) == []


@pytest.mark.parametrize("kind,path,typo", [
    ("RayCluster", ["spec", "workerGroupSpecs", 0], ("replicas", "replica")),
    ("RayCluster", ["spec", "headGroupSpec", "template", "spec", "containers", 0], ("image", "imagee")),
    ("RayJob", ["spec"], ("shutdownAfterJobFinishes", "shutdownAfterJobFinished")),
    ("RayJob", ["spec", "rayClusterSpec", "headGroupSpec", "template", "spec"], ("serviceAccountName", "serviceAccount_name")),
    ("RayService", ["spec", "rayClusterConfig", "workerGroupSpecs", 1, "template", "spec", "volumes", 0],
     ("emptyDir", "emptydir")),
    ("RayService", ["metadata"], ("name", "nmae")),
])
def test_a_misspelled_field_fails_validation(validators, kind, path, typo):
    doc = copy.deepcopy(_manifests()[kind])
    node = doc
    for key in path:
        node = node[key]
    right, wrong = typo
    node[wrong] = node.pop(right)
    errors = _errors(validators[kind], doc)
    assert any(repr(wrong) in e or wrong in e for e in errors), errors


def test_a_wrong_type_fails_validation(validators):
    doc = copy.deepcopy(_manifests()["RayCluster"])
    doc["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "many"
    assert any("maxReplicas" in e for e in _errors(validators["RayCluster"], doc))


def test_kuberay_pods_run_the_image_with_bucket_identity_and_a_model_cache():
    docs = _manifests()
    assert set(docs) == {"RayCluster", "RayJob", "RayService", "ServiceAccount"}
    sa = docs["ServiceAccount"]
    assert sa["apiVersion"] == "v1" and sa["metadata"]["name"] == "knowcoder-ray"
    notes = sa["metadata"]["annotations"]
    assert notes["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")  # IRSA
    assert notes["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")  # Workload Identity
    dockerfile = (CLUSTERS / "Dockerfile").read_text()
    assert re.search(r"^FROM (\S+)", dockerfile, re.M).group(1) == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert "pip install" in dockerfile and "-e " not in dockerfile
    for kind in CRD_FILES:
        doc = docs[kind]
        spec = _cluster_spec(doc)
        assert spec["rayVersion"] == ray.__version__ and spec["enableInTreeAutoscaling"] is True, kind
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert {6379, 8265} <= {p["containerPort"] for p in head["ports"]}, kind
        for pod in _pods(doc):
            assert pod["serviceAccountName"] == sa["metadata"]["name"], kind
            (container,) = pod["containers"]
            assert container["image"] == image.IMAGE and "requests" in container["resources"], kind
            assert "command" not in container and "args" not in container, kind  # nothing installed at start
        for g in spec["workerGroupSpecs"]:
            assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], (kind, g["groupName"])
        gpu = [p for p in _pods(doc)[1:] if "nvidia.com/gpu" in p["containers"][0]["resources"]["limits"]]
        assert gpu, kind
        for pod in gpu + [_pods(doc)[0]]:  # engines and the driver cache models in a volume
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            assert mounts.get("/home/ray/knowcoder-cache") in {v["name"] for v in pod["volumes"]}, kind
    assert "KNOWCODER_CACHE_DIR=/home/ray/knowcoder-cache" in dockerfile


def test_one_setting_names_the_image_everywhere(tmp_path):
    copies = []
    for path in image.CONFIGS:
        copies.append(tmp_path / path.relative_to(CLUSTERS))
        copies[-1].parent.mkdir(exist_ok=True)
        shutil.copy(path, copies[-1])
    other = "123456789012.dkr.ecr.us-west-2.amazonaws.com/knowcoder-ray:0.1.0-gpu"
    # aws + gcp launcher YAMLs: 1 each; pods: RayCluster 3, RayJob 3, RayService 3
    assert image.write(other, copies) == 11
    for path in copies:
        assert image.IMAGE not in path.read_text()
    assert yaml.safe_load(copies[0].read_text())["docker"]["image"] == other


def test_rayjob_runs_the_pipeline_with_an_existing_bucket_config():
    job = _manifests()["RayJob"]
    m = re.fullmatch(r"python (jobs/pipeline\.py) --config (\S+)", job["spec"]["entrypoint"])
    assert m and (ROOT / m.group(1)).is_file() and (ROOT / m.group(2)).is_file()
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    cfg = yaml.safe_load((ROOT / m.group(2)).read_text())
    assert cfg["workdir"].startswith("s3://") and cfg["eval"]["data_dir"].startswith("s3://")
    assert cfg["pretrain"]["model"].startswith("s3://")


def test_cluster_serve_config_binds_every_interface_and_is_the_rayservice_config():
    from ray.serve.schema import ServeDeploySchema

    from knowcoder_ray.serve.config import ServeConfig

    serve_cfg = yaml.safe_load((CLUSTERS / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(serve_cfg)
    assert serve_cfg["http_options"]["host"] == "0.0.0.0"  # a cluster serves other machines, not loopback
    svc = _manifests()["RayService"]
    assert yaml.safe_load(svc["spec"]["serveConfigV2"]) == serve_cfg
    app = serve_cfg["applications"][0]
    assert app["route_prefix"] == "/"
    module, _, attr = app["import_path"].partition(":")
    assert attr and importlib.util.find_spec(module) is not None
    cfg = ServeConfig.model_validate(dict(app["args"]))
    assert cfg.engine == "vllm" and cfg.model_dir.startswith("s3://") and cfg.library.startswith("s3://")
    head = svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 8000 in {p["containerPort"] for p in head["ports"]}
