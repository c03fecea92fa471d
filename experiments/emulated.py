"""Records measured on an emulated CPU (qemu-user running another architecture's code):
how a record says so, in one place for the node's naming, the reports and the packer.

The node detects it (``tuner.machine.emulation``) and takes ``<platform>-emulated`` as its
platform name; each trial's system JSON carries ``"emulated": true`` and the node's facts.
Such a latency is the translator's, some hundreds of times the device's: reports mark it
and never set it beside a native one, and the packer refuses it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SUFFIX = "-emulated"
MARK = "emulated CPU: latencies are not the device's"


def is_emulated_platform(platform: str | None) -> bool:
    return bool(platform) and str(platform).endswith(SUFFIX)


def is_emulated(row: Mapping[str, Any]) -> bool:
    """Whether a record (a trials.parquet row) was measured on an emulated CPU."""
    if is_emulated_platform(row.get("platform")):
        return True
    system = row.get("system")
    if isinstance(system, str):
        try:
            system = json.loads(system or "{}")
        except ValueError:
            return False
    system = system or {}
    return bool(system.get("emulated") or (system.get("facts") or {}).get("emulated"))


def refusal(row: Mapping[str, Any]) -> str | None:
    """The packer's reason, or None."""
    if not is_emulated(row):
        return None
    system = row.get("system")
    facts = (json.loads(system) if isinstance(system, str) and system else system or {}).get(
        "facts") or {}
    how = facts.get("emulation") or {}
    on = f" on {how['host_arch']}" if how.get("host_arch") else ""
    return (f"measured on an emulated CPU ({how.get('translator', 'qemu-user')}{on}, node "
            f"{row.get('platform')}): its latencies are the translator's, not the device's")


__all__ = ["MARK", "SUFFIX", "is_emulated", "is_emulated_platform", "refusal"]
