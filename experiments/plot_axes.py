"""Axis set-up shared by the report pages' plots."""
from __future__ import annotations


def log_latency_axis(ax) -> None:
    """Log-scale x axis labelled 1, 2, 5, 10, 20, ... in plain numbers: matplotlib's default
    labels every minor tick as 2x10^0, 3x10^0, ... when the range spans under a decade or
    two, and they run into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
