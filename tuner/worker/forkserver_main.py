"""Imported by ``tuner.worker.isolation``'s fork server at start-up: imports the parent's main
script there once, so forked trials do not each re-import it.

Why: a forkserver child runs ``multiprocessing.spawn.prepare``, which re-imports the
parent's ``__main__`` by path unless the fork server already has it; Python 3.11's
forkserver never passes that path on (it filters the preparation data by a key that does
not exist), so for a Ray worker every trial re-imported Ray's ``default_worker`` and Ray
with it (~0.23 s per trial measured here). The path comes in ``MAIN_ENV``, set by the parent.
"""
from __future__ import annotations

import os
import sys

MAIN_ENV = "TUNER_FORKSERVER_MAIN"


def _import_main() -> None:
    path = os.environ.get(MAIN_ENV)
    main = sys.modules.get("__main__")
    # Only in the fork server itself, whose __main__ is a ``-c`` command without a file.
    if path and main is not None and getattr(main, "__file__", None) is None \
            and os.path.isfile(path):
        from multiprocessing import process, spawn

        process.current_process()._inheriting = True
        try:
            spawn.import_main_path(path)
        finally:
            del process.current_process()._inheriting


_import_main()
