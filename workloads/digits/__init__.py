"""The default workload (``workload=digits``): MobileNet-v1 (width x resolution x
fp32/int8) on scikit-learn's UCI digits, the classification task. See ``workload.py``;
``data.py`` loads and preprocesses the digits, ``train.py`` trains the shipped weights."""
from __future__ import annotations

from workloads.digits.workload import PRECISIONS, RESOLUTIONS, WIDTHS, DigitsWorkload

WORKLOAD = DigitsWorkload

__all__ = ["WORKLOAD", "DigitsWorkload", "PRECISIONS", "RESOLUTIONS", "WIDTHS"]
