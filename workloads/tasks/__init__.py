"""Tasks: what a kind of workload answers and how it is scored, apart from any dataset.

A task module (``classification``, ``detection``, ``recommendation``) owns the responder,
the scoring, the per-sample results, the metric and the declared input and output tensors
(names, dtypes, layout), as the MLCommons reference's profiles do. A workload (a dataset
plus a model family, one module or package beside this one) subclasses its task's base.
"""
