"""The node agent's state store: one JSON record per node it started, in ``$TUNER_STATE_DIR``
(default ``~/.tuner/nodes``), beside the node's log and (for a head) its token file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_ENV = "TUNER_STATE_DIR"


def state_dir(create: bool = True) -> Path:
    path = Path(os.environ.get(STATE_ENV) or Path.home() / ".tuner" / "nodes")
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # holds tokens: owner only
    return path


def record_path(agent_id: str, directory: Path | None = None, suffix: str = ".json") -> Path:
    return (directory or state_dir()) / f"{agent_id}{suffix}"


def load_records(directory: Path | None = None) -> list[dict[str, Any]]:
    records = []
    for f in sorted((directory or state_dir(create=False)).glob("*.json")):
        try:
            records.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


def save_record(record: dict[str, Any], directory: Path | None = None) -> Path:
    path = record_path(record["id"], directory)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)  # atomic: status never reads half a record
    return path


def forget_record(agent_id: str, directory: Path | None = None) -> None:
    for suffix in (".json", ".log"):
        record_path(agent_id, directory, suffix).unlink(missing_ok=True)
