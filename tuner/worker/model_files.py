"""Is the model file a trial is about to load the one it should be?

Two faults make a study measure the wrong thing without a word: a cached model file that
was cut short or overwritten (a full disk, a copy that died half way, someone's editor),
and a user's model file replaced during a study, so that later trials measure another
model than earlier ones. Each model file's content hash is kept beside what it was taken
from (size, mtime, inode), so a trial re-hashes a file only when it changed on disk (a
13 MB model takes ~30 ms to hash; the stat costs microseconds):

- a cached file (under the cache folder) whose content no longer matches the hash taken
  when it was first used is removed, so the workload rebuilds it;
- a user's file (outside the cache) whose content differs from the one the study's first
  trial measured fails the trial with a cause naming the file and both hashes.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


class ModelFileError(RuntimeError):
    """The model file is damaged or changed; the message names the file."""


@dataclass
class Check:
    sha256: str
    problem: str | None = None  # set when a cached file was damaged and must be rebuilt


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _ledger(path: Path, cache_dir: Path, study: str) -> tuple[Path, bool]:
    """Where the file's known hash lives, and whether the file is a cache entry."""
    path, cache_dir = path.resolve(), cache_dir.resolve()
    if path.is_relative_to(cache_dir):
        return path.with_name(path.name + ".sha256.json"), True
    key = hashlib.sha256(f"{study}\0{path}".encode()).hexdigest()[:24]
    return cache_dir / "model-hashes" / f"{key}.json", False


def _read(ledger: Path) -> dict | None:
    try:
        return json.loads(ledger.read_text())
    except (OSError, ValueError):
        return None  # absent, or itself cut short: take the file as it is now


def _write(ledger: Path, entry: dict) -> None:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    tmp = ledger.with_name(ledger.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, ledger)


def check(path: Path, cache_dir: Path, study: str) -> Check:
    """The file's hash; a damaged cache entry is removed (``problem`` says why), a changed
    user file raises ``ModelFileError``."""
    path = Path(path)
    ledger, cached = _ledger(path, Path(cache_dir), study)
    stat = _stat_key(path)
    known = _read(ledger)
    if known and known.get("stat") == stat:
        return Check(known["sha256"])
    digest = sha256_file(path)
    if known and known.get("sha256") != digest:
        old = known.get("sha256", "?")
        if cached:
            forget(path, cache_dir, study)
            return Check(digest, f"cached model file {path} changed since it was built "
                                 f"(sha256 {old[:12]}, now {digest[:12]}); rebuilt")
        raise ModelFileError(
            f"model file {path} changed during study {study!r} (sha256 {old[:12]} at its "
            f"first trial, now {digest[:12]}): its trials would measure different models; "
            f"put the original back or start a new study")
    _write(ledger, {"path": str(path), "sha256": digest, "stat": stat})
    return Check(digest)


def forget(path: Path, cache_dir: Path, study: str) -> None:
    """Remove a damaged cache entry and its hash, so the workload builds it again."""
    ledger, cached = _ledger(Path(path), Path(cache_dir), study)
    ledger.unlink(missing_ok=True)
    if cached:
        Path(path).unlink(missing_ok=True)


def is_cached(path: Path, cache_dir: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(cache_dir).resolve())
