"""Paths that may be local folders or URIs (s3://, gs://, ...): copy folders in either direction."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def is_uri(path: str) -> bool:
    return "://" in str(path)


def filesystem(path: str):
    """(pyarrow FileSystem, path inside it) for a local path or URI."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(path) if is_uri(path) else (pafs.LocalFileSystem(), os.path.abspath(path))


def write_text(folder: str, name: str, text: str) -> None:
    fs, root = filesystem(str(folder))
    with fs.open_output_stream(f"{root.rstrip('/')}/{name}") as f:
        f.write(text.encode())


def copy_dir(src: str, dst: str) -> str:
    """Copy the folder `src` to `dst` (each a local path or URI); returns `dst`."""
    import pyarrow.fs as pafs

    src_fs, src_path = filesystem(str(src))
    dst_fs, dst_path = filesystem(str(dst))
    dst_fs.create_dir(dst_path, recursive=True)
    pafs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)
    return str(dst)


def ensure_local(path: str) -> str:
    """A local folder holding `path`: the path itself, or for a URI a per-node cached download."""
    if not is_uri(path):
        if not Path(path).exists():
            raise FileNotFoundError(f"model folder {path} does not exist")
        return str(path)
    key = hashlib.sha1(str(path).encode()).hexdigest()[:16]
    local = Path(tempfile.gettempdir()) / "knowcoder_models" / key
    if not local.exists():  # per-node cache, filled by an atomic rename of a complete download
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=key + ".", dir=local.parent))
        copy_dir(path, str(tmp))
        try:
            os.replace(tmp, local)
        except OSError:  # another process on this node finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return str(local)
