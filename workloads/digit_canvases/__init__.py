"""Object detection, offline: small SSDs on canvases of scikit-learn digits (COCO format).

The default detection workload (``workload=digit_canvases``, ``+space=ssd_mobilenet``);
``workloads/coco.py`` is its bring-your-own COCO counterpart; both are the detection task
(``workloads/tasks/detection.py``: records, NMS, the MLPerf-exact scoring).
"""
from __future__ import annotations

from workloads.digit_canvases.workload import DigitCanvasesWorkload

WORKLOAD = DigitCanvasesWorkload

__all__ = ["WORKLOAD", "DigitCanvasesWorkload"]
