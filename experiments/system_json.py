"""The MLPerf ``systems/<system>.json`` (35 keys, checker v6.1) of a one-node system, made
from the node's facts as recorded with its trials (``NodeFacts.to_dict()`` of
``tuner.machine.platforms``: a plain dict), so packing never re-detects a machine.

Facts no file on a node states (board memory layout, EdgeTPU SRAM) are here too.
"""
from __future__ import annotations

from typing import Any, Mapping

SYSTEM_KEYS = (
    "division", "submitter", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_storage_capacity", "host_storage_type",
    "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack",
    "host_processor_frequency", "host_processor_caches", "host_memory_configuration",
    "host_processor_interconnect", "host_networking", "host_networking_topology",
    "accelerator_frequency", "accelerator_host_interconnect", "accelerator_interconnect",
    "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes",
    "host_network_card_count", "system_type_detail",
)
# The checker (v6.1) fails these when empty ("requires a meaningful response").
SYSTEM_KEYS_NON_EMPTY = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_memory_configuration", "host_storage_capacity",
    "host_storage_type", "host_networking", "host_network_card_count",
    "host_networking_topology", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "accelerator_host_interconnect",
    "accelerator_memory_configuration", "accelerator_interconnect", "cooling", "framework",
    "operating_system", "other_software_stack",
)
# "N/A" = not applicable (e.g. accelerator fields of a CPU system); "unknown" = a value the
# node cannot see (cooling, DIMM layout): override it for a real submission.
NA, UNKNOWN = "N/A", "unknown"

# Board facts no file on the node states.
_BOARD_FACTS: dict[str, dict[str, str]] = {
    "rpi4": {"host_memory_configuration": "LPDDR4-3200 SDRAM (on board)",
             "system_type_detail": "single-board computer"},
    "jetson-nano": {"host_memory_configuration": "64-bit LPDDR4-3200, shared with the GPU",
                    "system_type_detail": "embedded module (developer kit)",
                    "accelerator_frequency": "921 MHz",
                    "accelerator_memory_configuration": "LPDDR4, shared with the CPU"},
    "milan": {"system_type_detail": "server"},
}
_BOARD_FACTS["rpi4-coral"] = dict(_BOARD_FACTS["rpi4"])
_EDGETPU_FACTS = {"accelerator_memory_capacity": "8 MB on-chip SRAM",
                  "accelerator_memory_configuration": "on-chip SRAM",
                  "accelerator_on-chip_memories": "8 MB SRAM",
                  "accelerator_frequency": "500 MHz"}
VALID_STATUS = ("available", "preview", "rdi")
VALID_DIVISIONS = ("open", "closed", "network")
SYSTEM_TYPES = ("edge", "datacenter")

_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "tvm": "Apache TVM", "litert": "LiteRT",
                  "tensorrt": "TensorRT"}


def _gb(gib: float) -> str:
    return f"{max(1, round(gib))} GB" if gib >= 0.75 else f"{round(gib * 1024)} MB"


def _framework(facts: Mapping[str, Any]) -> str:
    parts = [f"{_RUNTIME_NAMES.get(n, n)} {v}"
             for n, v in (facts.get("runtime_versions") or {}).items()]
    return ", ".join(parts) or UNKNOWN


def _accelerator_fields(accs: list[dict[str, Any]], board: dict[str, str]) -> dict[str, str]:
    if not accs:
        # a CPU system: the checker wants the string "0" (an int 0 reads as empty)
        return {"accelerators_per_node": "0", **{k: NA for k in (
            "accelerator_model_name", "accelerator_memory_capacity",
            "accelerator_host_interconnect", "accelerator_interconnect",
            "accelerator_interconnect_topology", "accelerator_memory_configuration",
            "accelerator_frequency", "accelerator_on-chip_memories")}}
    first = accs[0]
    tpu = first["kind"] == "edgetpu"
    return {
        "accelerators_per_node": str(len(accs)),
        "accelerator_model_name": " + ".join(sorted({a["name"] for a in accs})),
        "accelerator_memory_capacity": (_EDGETPU_FACTS["accelerator_memory_capacity"] if tpu
                                        else first.get("memory") or UNKNOWN),
        "accelerator_host_interconnect": first.get("interconnect") or UNKNOWN,
        "accelerator_interconnect": NA if len(accs) == 1 else UNKNOWN,
        "accelerator_interconnect_topology": NA if len(accs) == 1 else UNKNOWN,
        "accelerator_memory_configuration": (
            _EDGETPU_FACTS["accelerator_memory_configuration"] if tpu
            else board.get("accelerator_memory_configuration", UNKNOWN)),
        "accelerator_frequency": (_EDGETPU_FACTS["accelerator_frequency"] if tpu
                                  else board.get("accelerator_frequency", UNKNOWN)),
        "accelerator_on-chip_memories": (_EDGETPU_FACTS["accelerator_on-chip_memories"]
                                         if tpu else UNKNOWN),
    }


def system_description(facts: Mapping[str, Any], overrides: dict[str, Any] | None = None, *,
                       division: str | None = None, submitter: str | None = None,
                       status: str | None = None, system_type: str = "edge") -> dict[str, str]:
    """The system JSON for the node described by ``facts`` (a ``NodeFacts.to_dict()``).

    ``system_type`` is the platform's MLPerf category (``conf/platform/<name>.yaml``'s
    ``system_type``, recorded with the trial). ``overrides`` may set any of the 35 keys
    (unknown keys are an error: a typo would otherwise vanish); ``division``/``submitter``/
    ``status`` arguments win over it.
    """
    if hasattr(facts, "to_dict"):  # a NodeFacts: accepted until every caller passes the dict
        facts = facts.to_dict()  # type: ignore[union-attr]
    ov = dict(overrides or {})
    unknown = set(ov) - set(SYSTEM_KEYS)
    if unknown:
        raise KeyError(f"unknown system description key(s): {sorted(unknown)}")
    division = division or ov.pop("division", None) or "open"
    submitter = submitter or ov.pop("submitter", None)
    status = status or ov.pop("status", None) or "available"
    if not submitter:
        raise ValueError("submitter is required (it must match the submission folder name)")
    if division not in VALID_DIVISIONS:
        raise ValueError(f"division {division!r}; one of {VALID_DIVISIONS}")
    if status not in VALID_STATUS:
        raise ValueError(f"status {status!r}; one of {VALID_STATUS}")
    platform = facts.get("platform", "")
    detected = facts.get("detected_platform", platform)
    board = _BOARD_FACTS.get(platform, {})
    freq = facts.get("cpu_freq_mhz") or {}
    freq_text = (f"{freq['max']:.0f} MHz (max)" if "max" in freq
                 else f"{freq['cur']:.0f} MHz" if "cur" in freq else UNKNOWN)
    nics = facts.get("network") or []
    storage = facts.get("storage") or {}
    sockets = facts.get("sockets") or 1
    memory = facts.get("memory_gib") or 0.0
    kernel = facts.get("kernel") or ""
    throttled = facts.get("throttled")
    desc: dict[str, str] = {
        "division": division, "submitter": submitter, "status": status,
        "system_name": facts.get("board") or f"{facts.get('cpu_model') or UNKNOWN} ({platform})",
        "number_of_nodes": "1",
        "host_processor_model_name": facts.get("cpu_model") or UNKNOWN,
        "host_processors_per_node": str(sockets),
        "host_processor_core_count": str(facts.get("cores_per_socket") or facts.get("cores")
                                         or UNKNOWN),
        "host_memory_capacity": _gb(memory) if memory else UNKNOWN,
        "host_storage_capacity": (f"{storage['capacity_gb']} GB"
                                  if storage.get("capacity_gb") else UNKNOWN),
        "host_storage_type": storage.get("type") or UNKNOWN,
        "framework": _framework(facts),
        "operating_system": " ".join(x for x in (facts.get("os"), kernel and
                                                 f"(Linux {kernel})") if x) or UNKNOWN,
        "system_type": str(system_type or "edge"),
        "other_software_stack": ", ".join(f"{k} {v}" for k, v in
                                          (facts.get("software") or {}).items()) or UNKNOWN,
        "host_processor_frequency": freq_text,
        "host_processor_caches": ", ".join(f"{k} {v}" for k, v in
                                           (facts.get("cpu_caches") or {}).items()) or NA,
        "host_memory_configuration": board.get("host_memory_configuration", UNKNOWN),
        "host_processor_interconnect": NA if sockets == 1 else UNKNOWN,
        "host_networking": ", ".join(sorted({n["kind"] for n in nics})) or "none",
        "host_networking_topology": "N/A (single node)",
        "host_network_card_count": str(len(nics)),
        "cooling": UNKNOWN,
        "hw_notes": "; ".join(x for x in (
            f"platform {platform}" + (f" (detected {detected})" if detected != platform else ""),
            f"CPU governor {facts['governor']}" if facts.get("governor") else "",
            f"throttled={throttled['raw']}" if throttled else "",
        ) if x),
        "sw_notes": "Measured with MLPerf LoadGen; configurations searched by tuner "
                    "(Optuna + Ray)",
        "system_type_detail": board.get("system_type_detail", NA),
    }
    desc.update(_accelerator_fields(list(facts.get("accelerators") or []), board))
    desc.update({k: str(v) for k, v in ov.items()})
    for key in SYSTEM_KEYS_NON_EMPTY:
        if not desc.get(key):
            raise ValueError(f"system description field {key!r} must not be empty")
    return {k: desc[k] for k in SYSTEM_KEYS}
