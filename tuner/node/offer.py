"""What a node offers the fleet: its CPU set, runtimes and accelerators, as detected or
narrowed by the agent's options. Narrowing is how one machine emulates a heterogeneous
fleet (``--cpus 0 --runtimes litert`` beside ``--cpus 1 --runtimes onnxruntime``): the node's
Ray processes, and so its trials, really run on those cores only.

A bad option is a ``ValueError`` with a one-line message naming it.
"""
from __future__ import annotations

import os

from tuner.machine.platforms import NodeFacts

# Accelerator kinds as NodeFacts.accelerators names them.
ACCELERATOR_KINDS = ("edgetpu", "gpu")
WITHHELD = "not offered by this node (--runtimes)"


def parse_cpu_list(text: str) -> list[int]:
    """Linux cpu-list syntax: ``0``, ``0,2``, ``0-3``, ``0-1,4``."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"--cpus {text!r}: expected a list like 0 or 0,1 or 0-3")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise ValueError(f"--cpus {text!r}: range {part} runs backwards")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def choose_cpus(text: str | None) -> list[int]:
    """The CPUs the node will run on: ``--cpus`` (a subset of this agent's own affinity),
    else all the agent may use."""
    allowed = usable_cpus()
    if not text:
        return allowed
    cpus = parse_cpu_list(text)
    outside = sorted(set(cpus) - set(allowed))
    if outside:
        raise ValueError(f"--cpus {text!r}: cpu(s) {','.join(map(str, outside))} not usable "
                         f"here (usable: {','.join(map(str, allowed))})")
    return cpus


def restrict_runtimes(facts: NodeFacts, text: str | None) -> None:
    """Offer only the runtimes named in ``--runtimes``; the others stay in the facts with
    the reason they are not offered."""
    if not text:
        return
    names = [n for n in (x.strip() for x in text.split(",")) if n]
    known = sorted(k for k in facts.runtimes if k != "*")
    for name in names:
        if name not in facts.runtimes or name == "*":
            raise ValueError(f"--runtimes: unknown runtime {name!r} (known: {', '.join(known)})")
        if facts.runtimes[name] is not None:
            raise ValueError(f"--runtimes: runtime {name!r} is not installed here: "
                             f"{facts.runtimes[name]}")
    for name in known:
        if name not in names and facts.runtimes[name] is None:
            facts.runtimes[name] = WITHHELD
            facts.runtime_versions.pop(name, None)


def set_accelerators(facts: NodeFacts, text: str | None) -> None:
    """``--accelerators edgetpu`` (for emulation): the node reports exactly these kinds; a
    kind not detected is added as an entry marked emulated; ``none`` reports none."""
    if text is None:
        return
    kinds = [k for k in (x.strip() for x in text.split(",")) if k and k != "none"]
    for kind in kinds:
        if kind not in ACCELERATOR_KINDS:
            raise ValueError(f"--accelerators: unknown kind {kind!r} "
                             f"(known: {', '.join(ACCELERATOR_KINDS)}, none)")
    kept = [a for a in facts.accelerators if a["kind"] in kinds]
    for kind in kinds:
        if not any(a["kind"] == kind for a in kept):
            kept.append({"kind": kind, "vendor": "emulated", "name": f"emulated {kind}",
                         "interconnect": "none", "source": "--accelerators", "emulated": True})
    facts.accelerators = kept


def offered_runtimes(facts: NodeFacts) -> list[str]:
    return sorted(n for n, why in facts.runtimes.items() if why is None and n != "*")


def accelerator_kinds(facts: NodeFacts) -> list[str]:
    return sorted({a["kind"] for a in facts.accelerators})


def apply_offer(facts: NodeFacts, *, cpus: str | None, runtimes: str | None,
                accelerators: str | None) -> list[int]:
    """Narrow ``facts`` to what the node offers; returns its CPU set."""
    cpu_set = choose_cpus(cpus)
    restrict_runtimes(facts, runtimes)
    set_accelerators(facts, accelerators)
    facts.cpus_usable = len(cpu_set)
    facts.cpu_affinity = cpu_set
    return cpu_set
