"""Accuracy, the engine's side, in one place.

- ``plan``: the driver-to-worker contract (``TrialConfig.accuracy``);
- ``planner``: the driver's record of measured accuracies and each trial's plan (inherit
  after a spot check, hold for a trial measuring the same key, or a sequential pass);
- ``reference``: a study's fp32 reference, one rule for the floor and the paired pass;
- ``floor``: a study's accuracy floor (fixed, or a fraction of the reference);
- ``passes``: the worker's side: the spot check, the sequential pass, the whole set.

Below it, in packages that import nothing of tuner: the statistics of a sequential pass
(``experiments.sequential``: pure functions, also read by ``benchmarks/``) and what the
samplers know of accuracy per point (``search_spaces.AccuracyBook``: the samplers live in
``search_spaces``, which imports nothing of ours). This package imports nothing of tuner
but itself: ``tuner.trial`` carries its plan, so it sits below the wire contract.
"""
