"""Every file the project reads or writes, at a local path or a `file://`, `s3://` or `gs://` URI: one layer
over `pyarrow.fs`, which Ray Data and Ray Train resolve their paths with, so a URI means the same bucket,
credentials and endpoint in every phase. A path written on one node need not be visible on another: engines
that need a model folder on disk get a per-node cached copy (`local_copy`).
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import io
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

try:
    import pyarrow.fs as pafs
except ImportError:  # an engine-only environment (the vLLM test venv) still reads local folders
    pafs = None

log = logging.getLogger(__name__)
CACHE_ENV = "KNOWCODER_CACHE_DIR"  # where model folders are cached on a node (default: $TMPDIR/knowcoder-cache)


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def absolute(path: str | os.PathLike) -> str:
    """A local path made absolute (Ray workers and actors run in other working directories); a URI as it is."""
    return str(path) if is_uri(path) else os.path.abspath(path)


def _local(path: str | os.PathLike) -> str | None:
    """The absolute local path of a plain path or `file://` URI; None for any other URI."""
    path = str(path)
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if is_uri(path) else os.path.abspath(path)


def filesystem(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(pyarrow FileSystem, path inside it): local paths are made absolute, `file://` is local."""
    path = str(path)
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def outer_path(like: str, inner: str) -> str:
    """A path inside the file system of `like` as the caller's kind of path (URI or local)."""
    return inner if _local(like) is not None else str(like).split("://", 1)[0] + "://" + inner


def join(base: str | os.PathLike, *names: str) -> str:
    return "/".join([str(base).rstrip("/"), *(str(n).strip("/") for n in names)])


def name(path: str) -> str:
    """The last part of a path or URI (`s3://b/models/merged/` -> `merged`)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _type(path: str) -> str:
    local = _local(path)
    if local is not None:
        return "file" if os.path.isfile(local) else "dir" if os.path.isdir(local) else ""
    fs, inner = filesystem(path)
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(fs.get_file_info(inner).type, "")


def exists(path: str) -> bool:
    return _type(path) != ""


def isfile(path: str) -> bool:
    return _type(path) == "file"


def isdir(path: str) -> bool:
    return _type(path) == "dir"


def makedirs(path: str) -> None:
    fs, inner = filesystem(path)
    fs.create_dir(inner, recursive=True)


def remove(path: str) -> None:
    """Delete a file or a folder (missing is fine)."""
    fs, inner = filesystem(path)
    t = fs.get_file_info(inner).type
    if t == pafs.FileType.Directory:
        fs.delete_dir(inner)
    elif t == pafs.FileType.File:
        fs.delete_file(inner)


def open_text(path: str, encoding: str = "utf-8", errors: str = "strict") -> io.TextIOWrapper:
    """A text reader for line-by-line reading: `with open_text(uri) as f: for line in f: ...`."""
    fs, inner = filesystem(path)
    return io.TextIOWrapper(fs.open_input_stream(inner, compression=None), encoding=encoding, errors=errors)


def sniff_compression(path: str) -> str | None:
    """'gzip', 'bz2' or 'zstd' when the file starts with that format's magic bytes (whatever its name)."""
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner, compression=None) as f:
        head = f.read(10)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    # "BZh" + block size digit + the magic of a first block (or of the end of an empty stream)
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (b"\x31\x41\x59\x26\x53\x59",
                                                                 b"\x17\x72\x45\x38\x50\x90"):
        return "bz2"
    return None


def read_bytes(path: str) -> bytes:
    local = _local(path)
    if local is not None:
        return Path(local).read_bytes()
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner, compression=None) as f:  # the bytes as stored, never decompressed
        return f.read()


def read_text(path: str) -> str:
    """A UTF-8 text file; other bytes are a UnicodeDecodeError whose message names the file."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnicodeDecodeError(e.encoding, e.object, e.start, e.end,
                                 f"{e.reason} ({path} is not UTF-8 text)") from None


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file; readers never see it half written. A local file is written beside its target
    and renamed over it; an object store PUT is already all-or-nothing."""
    fs, inner = filesystem(path)
    parent = inner.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    local = isinstance(fs, pafs.LocalFileSystem)
    target = f"{parent}/.{inner.rsplit('/', 1)[-1]}.tmp-{uuid.uuid4().hex[:8]}" if local else inner
    with fs.open_output_stream(target, compression=None) as f:
        f.write(data)
    if local:
        os.replace(target, inner)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _files(fs: pafs.FileSystem, inner: str, recursive: bool) -> list[pafs.FileInfo]:
    sel = pafs.FileSelector(inner, recursive=recursive, allow_not_found=True)
    return sorted((i for i in fs.get_file_info(sel) if i.type == pafs.FileType.File), key=lambda i: i.path)


def list_files(folder: str, recursive: bool = True) -> list[str]:
    """The files under `folder` (sorted; the caller's kind of path); [] when it does not exist."""
    fs, inner = filesystem(folder)
    return [outer_path(folder, i.path) for i in _files(fs, inner, recursive)]


def glob(pattern: str) -> list[str]:
    """Files matching a shell pattern (`*`, `?`, `[...]`) in any file system, sorted. The listing
    starts at the deepest folder without a wildcard, so a bucket is never listed whole."""
    fs, inner = filesystem(pattern)
    parts = inner.split("/")
    fixed = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), len(parts))
    if fixed == len(parts):
        return [outer_path(pattern, inner)] if fs.get_file_info(inner).type == pafs.FileType.File else []
    root = "/".join(parts[:fixed]) or "/"
    recursive = len(parts) - fixed > 1 or "**" in inner
    depth = None if "**" in inner else inner.count("/")  # `*` stays within one folder, `**` spans any
    return [outer_path(pattern, i.path) for i in _files(fs, root, recursive)
            if fnmatch.fnmatchcase(i.path, inner) and depth in (None, i.path.count("/"))]


def copy_dir(src: str, dst: str) -> str:
    """Copy the folder `src` to `dst` (local paths or URIs, either way up or down); returns `dst`."""
    src_fs, src_inner = filesystem(src)
    dst_fs, dst_inner = filesystem(dst)
    if src_fs.get_file_info(src_inner).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no folder at {src}")
    dst_fs.create_dir(dst_inner, recursive=True)
    pafs.copy_files(src_inner, dst_inner, source_filesystem=src_fs, destination_filesystem=dst_fs)
    return str(dst)


@contextlib.contextmanager
def output_folder(path: str):
    """A local folder for libraries that only write to disk (`save_pretrained`): `path` itself when
    local, else a temporary folder uploaded to the URI when the block ends without an error."""
    local = _local(path)
    if local is not None:
        if os.path.exists(local) and not os.path.isdir(local):  # makedirs: a bare FileExistsError
            raise NotADirectoryError(errno.ENOTDIR, "output folder is a file", local)
        os.makedirs(local, exist_ok=True)
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="knowcoder-out-") as tmp:
        yield tmp
        copy_dir(tmp, path)


# ---- the per-node model cache ----------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "knowcoder-cache")


def _fingerprint(fs: pafs.FileSystem, inner: str) -> str:
    """What a cached copy stands for: the URI and every file's name, size and modification time, so a
    model re-trained to the same URI is fetched again instead of served stale."""
    infos = _files(fs, inner, recursive=True)
    if not infos:
        raise FileNotFoundError(f"no files under {inner}")
    h = hashlib.sha1(inner.encode())
    for i in infos:
        h.update(f"\0{i.path}\0{i.size}\0{i.mtime_ns}".encode())
    return h.hexdigest()[:20]


def local_copy(path: str) -> str:
    """A local folder with the contents of `path`: a URI's folder is downloaded once per node into the cache
    (under a file lock, then renamed into place: concurrent actors fetch it once, never see a partial copy)."""
    import fcntl

    path = str(path)
    local = _local(path)
    if local is not None:
        if not os.path.isdir(local):  # FileNotFoundError either way: what callers catch as "not there"
            raise FileNotFoundError(f"model folder {path} is a file, not a folder" if os.path.exists(local)
                                    else f"model folder {path} does not exist")
        return local
    fs, inner = filesystem(path)
    root = cache_dir()
    target = root / f"{name(path)}-{_fingerprint(fs, inner)}"
    if target.is_dir():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not target.is_dir():  # another process may have finished while this one waited
            log.info("downloading %s to %s", path, target)
            publish_folder(target, lambda tmp: pafs.copy_files(
                inner, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()))
    return str(target)


def publish_folder(target: Path, fill) -> Path:
    """The local folder `target`, filled by `fill(tmp)` in a temporary sibling renamed into place (replacing
    any older `target`): no reader ever sees a partial folder, and an interrupted fill leaves none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))  # same filesystem: rename is atomic
    try:
        fill(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
