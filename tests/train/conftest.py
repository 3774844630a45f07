"""The training tests' shared corpus and tiny model."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora_helpers import conll04_pairs
from knowcoder_ray.train.tiny import make_tiny_model



@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """Pretraining rows {"text"} (Parquet) and SFT rows {"prompt", "output"} (JSON lines, with two
    malformed rows), and a tiny model whose tokenizer was trained on them."""
    root = tmp_path_factory.mktemp("train")
    pairs = conll04_pairs(data_dir)
    pq.write_table(pa.table({"text": [p + o for p, o in pairs]}), root / "understanding.parquet")
    with open(root / "following.jsonl", "w") as f:
        for p, o in pairs[:288]:  # the NER prompts
            f.write(json.dumps({"prompt": p, "output": o, "task": "ner"}) + "\n")
        f.write(json.dumps({"prompt": None, "output": "results = []"}) + "\n")
        f.write(json.dumps({"prompt": "x " * 3000, "output": "results = []"}) + "\n")
    model = make_tiny_model(root / "tiny", [p + o for p, o in pairs], seed=0)
    return root, model
