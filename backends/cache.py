"""The on-disk artifact cache that runtimes and workloads share (models, compiled
libraries, tuning databases, engines).

Several node agents may share one machine and one cache, so builders of one artifact are
serialised by a file lock and publish by atomic rename: a reader sees a whole artifact or
none. Keys are content hashes, so a changed model file never hits a stale artifact.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

CACHE_ENV = "TUNER_CACHE_DIR"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "tuner"))


def content_hash(*parts: Any) -> str:
    """A short stable key for a cached artifact: file contents by path, other parts by repr."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.read_bytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:16]


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Serialise builders of one artifact: several agents may share a machine and a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp_name(path: Path) -> Path:
    """A sibling of ``path`` private to this process and thread; it keeps the suffix, since
    some writers pick a format by it."""
    return path.with_name(f"{path.stem}.tmp{os.getpid()}-{threading.get_ident()}{path.suffix}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader never sees a partial file. No lock: for
    artifacts that are cheap to build twice (the last writer wins, with equal bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish_file(path: Path, build: Callable[[Path], None]) -> Path:
    """Build ``path`` once: ``build(tmp)`` writes a temporary file, published by rename.
    Concurrent callers wait on the lock and find the finished file."""
    with cache_lock(path):
        if not path.exists():
            tmp = _tmp_name(path)
            try:
                build(tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    return path


def publish_dir(path: Path, build: Callable[[Path], None]) -> Path:
    """Build the directory ``path`` once: ``build(tmp_dir)`` fills a fresh directory,
    published by rename (atomic while ``path`` is absent)."""
    with cache_lock(path):
        if not path.exists():
            tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp", dir=path.parent))
            try:
                build(tmp)
                os.rename(tmp, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return path
