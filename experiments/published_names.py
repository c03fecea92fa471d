"""Reading the submitter's own names: a model folder as its structure, a system JSON as one
of our platform names and a runtime name.

Model folder names are the submitter's (``mobilenet-v1-0.25-128-quantized``,
``mobilenet-v3-large_224_1.0_uint8``, ``efficientnet-lite0-non-quantized``) or MLPerf's
benchmark names for other tasks (``ssd-small``, ``dlrm-99``); each pattern below is one
naming scheme seen in published trees. A name no pattern matches keeps only
its raw folder name: structure is never guessed. Platform and runtime come from the system
JSON's facts (processor, accelerator, framework), not from the folder name: Krai's
``rpi4coral-*`` systems list no accelerator, so they are plain ``rpi4``; a board that is
not one we know is its generic class qualified by its own name, never another board's.
"""
from __future__ import annotations

import re
from typing import Any

# --------------------------------------------------------------------------- models

PRECISION = {"quantized": "int8", "uint8": "int8", "int8": "int8",
             "non-quantized": "fp32", "float": "fp32", "fp32": "fp32"}

_MOBILENET_V1_V2 = re.compile(
    r"^mobilenet-(?P<version>v[12])-(?P<width>\d+(?:\.\d+)?)-(?P<resolution>\d+)"
    r"-(?P<precision>non-quantized|quantized)$")
_MOBILENET_V3 = re.compile(
    r"^mobilenet-v3-(?P<variant>large|small)(?P<minimal>-minimalistic)?"
    r"_(?P<resolution>\d+)_(?P<width>\d+(?:\.\d+)?)_(?P<precision>float|uint8)$")
_EFFICIENTNET_LITE = re.compile(
    r"^efficientnet-lite(?P<variant>\d)-(?P<precision>non-quantized|quantized)$")
_RESNET50 = re.compile(r"^resnet(?:50)?(?:-(?P<precision>fp32|int8))?$")
# MLPerf's own benchmark folders of other tasks: the reference model each names (input
# resolution from the round's rules; dlrm-99 and dlrm-99.9 differ in accuracy target only).
_BENCHMARK_MODELS = {
    "ssd-small": {"family": "ssd-mobilenet", "variant": "v1", "resolution": 300},
    "ssd-mobilenet": {"family": "ssd-mobilenet", "variant": "v1", "resolution": 300},
    "ssd-large": {"family": "ssd-resnet34", "resolution": 1200},
    "ssd-resnet34": {"family": "ssd-resnet34", "resolution": 1200},
    "retinanet": {"family": "retinanet", "resolution": 800},
    "yolo-95": {"family": "yolo", "accuracy_target": 0.95},
    "yolo-99": {"family": "yolo", "accuracy_target": 0.99},
    "dlrm-v3": {"family": "dlrm-v3"},
}
_DLRM = re.compile(r"^(?P<family>dlrm(?:-v2)?)-(?P<target>99(?:\.9)?)$")
# What each family is scored by: the metric key of its accuracy.txt line.
TASKS = {"classification": "accuracy", "detection": "mAP", "recommendation": "AUC"}
_FAMILY_TASK = {"ssd-mobilenet": "detection", "ssd-resnet34": "detection",
                "retinanet": "detection", "yolo": "detection", "dlrm": "recommendation",
                "dlrm-v2": "recommendation", "dlrm-v3": "recommendation"}


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def parse_model(name: str) -> dict[str, Any]:
    """The structure a model folder name states: family (mobilenet-v1, mobilenet-v2,
    mobilenet-v3, efficientnet-lite, resnet50; ssd-mobilenet, ssd-resnet34, retinanet;
    dlrm, dlrm-v2), and where named width, resolution, variant, precision (fp32 | int8)
    and accuracy target. {} when no known scheme matches."""
    m = _MOBILENET_V1_V2.match(name)
    if m:
        return {"family": f"mobilenet-{m['version']}", "width": float(m["width"]),
                "resolution": int(m["resolution"]), "precision": PRECISION[m["precision"]]}
    m = _MOBILENET_V3.match(name)
    if m:
        return {"family": "mobilenet-v3", "variant": m["variant"] + (m["minimal"] or ""),
                "width": float(m["width"]), "resolution": int(m["resolution"]),
                "precision": PRECISION[m["precision"]]}
    m = _EFFICIENTNET_LITE.match(name)
    if m:
        return {"family": "efficientnet-lite", "variant": f"lite{m['variant']}",
                "precision": PRECISION[m["precision"]]}
    m = _RESNET50.match(name)
    if m:
        return {"family": "resnet50", **({"precision": m["precision"]} if m["precision"] else {})}
    if name in _BENCHMARK_MODELS:
        return dict(_BENCHMARK_MODELS[name])
    m = _DLRM.match(name)
    if m:
        return {"family": m["family"], "accuracy_target": round(float(m["target"]) / 100, 4)}
    return {}


def task_of(structure: dict[str, Any]) -> str | None:
    """The task a parsed model structure belongs to; None for an unparsed name."""
    family = structure.get("family")
    return None if family is None else _FAMILY_TASK.get(family, "classification")


# --------------------------------------------------------------------------- systems

# Boards and CPU families with a name of their own (conf/platform/*.yaml's, plus
# jetson-xavier, which has no platform file), matched on the system name and processor.
# A board is named by what identifies it (its name, its SoC), never by a core it shares
# with other boards: Firefly-RK3399 has Cortex-A72s too and is not a Raspberry Pi.
_BOARDS = [
    (re.compile(r"xavier|carmel", re.I), "jetson-xavier"),
    (re.compile(r"jetson nano", re.I), "jetson-nano"),
    (re.compile(r"raspberry ?pi 4|\brpi ?4|bcm2711", re.I), "rpi4"),
    (re.compile(r"epyc 7\d\d3", re.I), "milan"),
]
_EDGETPU = re.compile(r"edge ?tpu|coral", re.I)
# Generic classes: one of these names alone would merge unrelated systems (a 4-socket
# Xeon and an x86 SoC), so the imported name is qualified by the system's own name.
_GENERIC = [
    (re.compile(r"nvidia|tesla|geforce|a100|h100|t4\b", re.I), "nvidia-generic", "accelerator"),
    (re.compile(r"xeon|epyc|core\(tm\)|core i\d|ryzen|x86", re.I), "x8664", "host"),
    (re.compile(r"arm|aarch64|cortex|neoverse|graviton", re.I), "aarch64", "host"),
]
# A system none of the classes above names: still imported, as "system-<its name>".
UNMAPPED_PLATFORM = "system"
QUALIFIED_MAX = 48  # characters of a qualified name (Ray's label values allow 63)

_RUNTIMES = [
    (re.compile(r"tflite|tensorflow[ -]?lite|litert", re.I), "tflite"),
    (re.compile(r"arm ?nn", re.I), "armnn"),
    (re.compile(r"onnx ?runtime|\bort\b", re.I), "onnxruntime"),
    (re.compile(r"tensorrt|\btrt\b", re.I), "tensorrt"),
    (re.compile(r"\btvm\b", re.I), "tvm"),
    (re.compile(r"openvino", re.I), "openvino"),
    (re.compile(r"pytorch|torch", re.I), "pytorch"),
    (re.compile(r"tensorflow", re.I), "tensorflow"),
]
_VERSION = re.compile(r"v?(\d+(?:\.\d+)+)")


def _has_accelerator(system: dict[str, Any]) -> bool:
    count = str(system.get("accelerators_per_node", "0")).strip()
    name = str(system.get("accelerator_model_name", "")).strip()
    return count not in ("", "0") and name not in ("", "-", "N/A", "none")


def qualified(generic: str, system: dict[str, Any]) -> str:
    """``generic`` qualified by the system's name, as a label-safe slug:
    ``aarch64-firefly-rk3399``."""
    name = str(system.get("system_name") or system.get("host_processor_model_name") or "")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{generic}-{slug}"[:QUALIFIED_MAX].rstrip("-") if slug else generic


def platform_of(system: dict[str, Any]) -> str | None:
    """Our platform name for a system JSON: a known board's own name (``rpi4``,
    ``rpi4-coral`` for a Pi 4 with an Edge TPU, ``jetson-xavier``, ...), else the generic
    class qualified by the system name (``aarch64-firefly-rk3399``); an accelerator counts
    only where ``accelerators_per_node`` says one is there. None when nothing matches."""
    host = " ".join(str(system.get(k, "")) for k in ("system_name", "host_processor_model_name"))
    accel = str(system.get("accelerator_model_name", "")) if _has_accelerator(system) else ""
    board = next((name for pattern, name in _BOARDS if pattern.search(host)), None)
    if board == "rpi4" and _EDGETPU.search(accel):
        return "rpi4-coral"
    if board:
        return board
    for pattern, name, where in _GENERIC:
        if pattern.search(accel if where == "accelerator" else host):
            return qualified(name, system)
    return None


def runtime_of(framework: str) -> tuple[str | None, str | None]:
    """(runtime name, version) from the system JSON's ``framework`` text, e.g.
    ``TFLite v2.4.1 (ruy)`` -> ("tflite", "2.4.1"); (None, None) if none is known."""
    for pattern, name in _RUNTIMES:
        if pattern.search(framework or ""):
            version = _VERSION.search(framework)
            return name, version.group(1) if version else None
    return None, None


def round_of(path_parts: list[str]) -> str | None:
    """The round from a tree folder named ``inference_results_vX.Y`` (or ``..._vX.Y``, or
    ``..._vX.Y_<excerpt>`` as ``inference_results_v1.0_tasks``)."""
    for part in reversed(path_parts):
        m = re.search(r"(?:^|_)(v\d+\.\d+)(?:_[a-z]+)?$", part)
        if m:
            return m.group(1)
    return None
