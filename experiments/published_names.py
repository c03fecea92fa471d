"""Reading the submitter's own names: a model folder as its structure, a system JSON as one
of our platform names and a runtime name.

Model folder names are the submitter's (``mobilenet-v1-0.25-128-quantized``,
``mobilenet-v3-large_224_1.0_uint8``, ``efficientnet-lite0-non-quantized``); each pattern
below is one naming scheme seen in published trees. A name no pattern matches keeps only
its raw folder name: structure is never guessed. Platform and runtime come from the system
JSON's facts (processor, accelerator, framework), not from the folder name: Krai's
``rpi4coral-*`` systems list no accelerator, so they are plain ``rpi4``.
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


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def parse_model(name: str) -> dict[str, Any]:
    """The structure a model folder name states: family (mobilenet-v1, mobilenet-v2,
    mobilenet-v3, efficientnet-lite, resnet50), and where named width, resolution,
    variant and precision (fp32 | int8). {} when no known scheme matches."""
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
    return {}


# --------------------------------------------------------------------------- systems

# (pattern over the processor/system/accelerator text, our platform name), first match
# wins; names are conf/platform/*.yaml's, plus jetson-xavier, which has no platform file.
_PLATFORMS = [
    (re.compile(r"edge ?tpu|coral", re.I), "rpi4-coral", "accelerator"),
    (re.compile(r"xavier|carmel", re.I), "jetson-xavier", "host"),
    (re.compile(r"jetson nano", re.I), "jetson-nano", "host"),
    (re.compile(r"raspberry pi 4|cortex-a72|bcm2711", re.I), "rpi4", "host"),
    (re.compile(r"epyc 7\d\d3", re.I), "milan", "host"),
    (re.compile(r"nvidia|tesla|geforce|a100|h100|t4\b", re.I), "nvidia-generic", "accelerator"),
    (re.compile(r"xeon|epyc|core\(tm\)|core i\d|ryzen|x86", re.I), "x8664", "host"),
    (re.compile(r"arm|aarch64|cortex|neoverse|graviton", re.I), "aarch64", "host"),
]

_RUNTIMES = [
    (re.compile(r"tflite|tensorflow lite|litert", re.I), "tflite"),
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


def platform_of(system: dict[str, Any]) -> str | None:
    """Our platform name for a system JSON, from its processor, system name and
    accelerator (an accelerator counts only where ``accelerators_per_node`` says one is
    there); None when no known platform matches."""
    host = " ".join(str(system.get(k, "")) for k in ("system_name", "host_processor_model_name"))
    accel = str(system.get("accelerator_model_name", "")) if _has_accelerator(system) else ""
    for pattern, name, where in _PLATFORMS:
        if pattern.search(accel if where == "accelerator" else host):
            return name
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
    """The round from a tree folder named ``inference_results_vX.Y`` (or ``..._vX.Y``)."""
    for part in reversed(path_parts):
        m = re.search(r"(?:^|_)(v\d+\.\d+)$", part)
        if m:
            return m.group(1)
    return None
