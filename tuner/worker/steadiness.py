"""How steady the node was while a trial measured: what else ran, how fast the CPU clocked,
whether it throttled. Read from what Linux shows (``/proc/stat``, ``/proc/loadavg``,
``/proc/pressure/cpu``, cpufreq, a Raspberry Pi's firmware throttle flags); a fact the OS
does not show is left out, never guessed.

A busy neighbour or a hot Pi slows every figure measured under it; the record keeps these
facts beside the figure so a reader (and the drift canary) can tell why it moved.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

CPUFREQ = Path("/sys/devices/system/cpu")
PI_THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
# vcgencmd get_throttled bits that mean "slowed now" (under-voltage, capped, throttled,
# soft temperature limit); the upper bits say it happened since boot
THROTTLED_NOW_MASK = 0xF


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole node, from /proc/stat's first line."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields[:8]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _own_jiffies() -> int | None:
    """This process's CPU time (all its threads), in jiffies."""
    try:
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def _cpu_mhz() -> list[float]:
    out = []
    for path in sorted(CPUFREQ.glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            out.append(int(path.read_text()) / 1000.0)
        except (OSError, ValueError):
            continue
    return out


def _pressure() -> float | None:
    """/proc/pressure/cpu 'some avg10': % of the last 10 s some task waited for a CPU."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(dict(kv.split("=") for kv in first.split()[1:])["avg10"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def throttled() -> int | None:
    """A Raspberry Pi's throttle flags (vcgencmd get_throttled), None elsewhere."""
    try:
        return int(PI_THROTTLED.read_text().strip(), 16)
    except (OSError, ValueError):
        pass
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True,
                             timeout=2).stdout
        return int(out.strip().split("=")[1], 16)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class NodeWatch:
    """Snapshots around a measurement: ``start()``, then ``stop()`` -> its facts."""

    def start(self) -> "NodeWatch":
        self._node, self._own = _cpu_jiffies(), _own_jiffies()
        self._mhz = _cpu_mhz()
        return self

    def stop(self) -> dict:
        facts: dict = {}
        node, own = _cpu_jiffies(), _own_jiffies()
        if node and self._node and own is not None and self._own is not None:
            busy, total = node[0] - self._node[0], node[1] - self._node[1]
            if total > 0:
                # CPU time of other processes, as a share of the node's (all cores)
                facts["other_cpu"] = round(max(0.0, busy - (own - self._own)) / total, 3)
        try:
            facts["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        mhz = self._mhz + _cpu_mhz()
        if mhz:
            facts["cpu_mhz_min"], facts["cpu_mhz_max"] = min(mhz), max(mhz)
        pressure = _pressure()
        if pressure is not None:
            facts["cpu_pressure_avg10"] = pressure
        flags = throttled()
        if flags is not None:
            facts["throttled"] = hex(flags)
            facts["throttled_now"] = bool(flags & THROTTLED_NOW_MASK)
        facts["cpus"] = os.cpu_count()
        return facts
