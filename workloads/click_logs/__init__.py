"""The default recommendation workload (``workload=click_logs``): a small DLRM on synthetic
click logs in Criteo's layout, drawn from a known click model. See ``workload.py``."""
from __future__ import annotations

from workloads.click_logs.workload import ClickLogsWorkload

WORKLOAD = ClickLogsWorkload

__all__ = ["WORKLOAD", "ClickLogsWorkload"]
