"""Notice a lost head node and end the driver with one clear line.

Without its head (the GCS) a Ray driver cannot go on, and Ray itself only gives up after
its 60 s reconnect timeout, terminating the process with a C++ log line. The watch tries a
TCP connection to the head's GCS port every few seconds; after several failures in a row
it says what happened and what to do, and ends the process. Nothing is lost by that:
every record is on disk as its trial finishes, Optuna's journal is fsync'ed line by line,
and rerunning the same command resumes (trials in flight are measured again once).
"""
from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Callable

EXIT_HEAD_LOST = 3


def _say_and_exit(address: str) -> None:
    print(f"error: lost the cluster's head at {address} (its GCS no longer answers); the "
          "records so far are kept: start the fleet again and rerun the same command to "
          "resume", file=sys.stderr, flush=True)
    os._exit(EXIT_HEAD_LOST)  # Ray's own threads would otherwise keep the process waiting


class HeadWatch:
    def __init__(self, gcs_address: str, period_s: float = 2.0, misses: int = 4,
                 on_lost: Callable[[str], None] = _say_and_exit,
                 connected: Callable[[], bool] = lambda: True):
        host, _, port = gcs_address.rpartition(":")
        self.address, self._target = gcs_address, (host, int(port))
        self.period_s, self.misses, self.on_lost = period_s, misses, on_lost
        self.connected = connected  # false once the process let go of the cluster itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="head-watch", daemon=True)
        self._thread.start()

    def _answers(self) -> bool:
        try:
            socket.create_connection(self._target, timeout=self.period_s).close()
            return True
        except OSError:
            return False

    def _run(self) -> None:
        missed = 0
        while not self._stop.wait(self.period_s):
            if not self.connected():
                return
            missed = 0 if self._answers() else missed + 1
            if missed >= self.misses:
                self.on_lost(self.address)
                return

    def stop(self) -> None:
        self._stop.set()
