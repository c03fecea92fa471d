"""Object detection, offline: small SSDs on canvases of scikit-learn digits (COCO format).

The default detection workload (``workload=digit_canvases``, ``+space=ssd_mobilenet``);
``workloads/coco.py`` is its bring-your-own COCO counterpart and shares the
post-processing (``postprocess.py``) and the MLPerf-exact scoring (``coco_eval.py``).
"""
from __future__ import annotations

from workloads.digit_canvases.workload import DigitCanvasesWorkload

WORKLOAD = DigitCanvasesWorkload

__all__ = ["WORKLOAD", "DigitCanvasesWorkload"]
