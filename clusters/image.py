"""The one image setting of every cluster config: set REGISTRY to your registry, then run

    python clusters/image.py --write     # point clusters/aws.yaml, gcp.yaml and kuberay/*.yaml at IMAGE

`python clusters/image.py` prints IMAGE (for `docker build -t` / `docker push`). tests/platform/test_clusters.py
checks that every config names exactly this image.
"""
import re
import sys
from pathlib import Path

REGISTRY = "ghcr.io/your-org"        # <- the one setting: e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com
TAG = "0.1.0-gpu"                    # knowcoder-ray version + variant, built from clusters/Dockerfile
IMAGE = f"{REGISTRY}/knowcoder-ray:{TAG}"

HERE = Path(__file__).resolve().parent
CONFIGS = [HERE / "aws.yaml", HERE / "gcp.yaml", *sorted((HERE / "kuberay").glob("*.yaml"))]
# `image: <anything>/knowcoder-ray:<tag>` lines of the launcher YAMLs (docker.image) and pod templates
IMAGE_LINE = re.compile(r"^(\s*(?:-\s+)?image:\s*)\S*knowcoder-ray:\S+\s*$", re.M)


def write(image: str = IMAGE, configs: list[Path] = CONFIGS) -> int:
    """Rewrite every image reference of `configs` to `image`; returns how many were rewritten."""
    count = 0
    for path in configs:
        text, n = IMAGE_LINE.subn(lambda m: m.group(1) + image, path.read_text())
        path.write_text(text)
        count += n
    return count


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print(f"{write()} image references now name {IMAGE}")
    else:
        print(IMAGE)
