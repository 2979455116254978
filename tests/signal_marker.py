"""A callback for the interruption tests: it holds training at a known point until a signal comes.

``ltlight fit ... --trainer.callbacks+=signal_marker.WaitForSignal`` (with ``tests/`` on
``PYTHONPATH``). In ``on_before_optimizer_step`` of global step ``step`` — after the backward pass,
before the weights move, the worst moment to be stopped — it writes its process id to ``marker``
and waits until Lightning has seen SIGTERM (a real SIGTERM, or Ctrl-C turned into one by
``InterruptCheckpoint``), so the test's signal always lands at the same place.
"""

import os
import time
from typing import Any

import lightning as L

from ltlight.data import DigitsLTDataModule


class WaitForSignal(L.Callback):
    def __init__(self, step: int, marker: str, timeout: float = 300.0) -> None:
        self.step = step
        self.marker = marker
        self.timeout = timeout

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step != self.step or os.path.exists(self.marker):
            return
        partial = f"{self.marker}.partial"
        with open(partial, "w") as file:
            file.write(f"{os.getpid()} {trainer.current_epoch}\n")
        os.replace(partial, self.marker)
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.02)


class WaitInSetup(DigitsLTDataModule):
    """Digits-LT whose set-up writes its process id to ``marker`` and then waits (up to
    ``timeout`` seconds): a signal sent once the marker exists lands during start-up."""

    def __init__(self, marker: str, timeout: float = 120.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker
        self.timeout = timeout

    def setup(self, stage: str | None = None) -> None:
        with open(f"{self.marker}.partial", "w") as file:
            file.write(f"{os.getpid()}\n")
        os.replace(f"{self.marker}.partial", self.marker)
        time.sleep(self.timeout)
        super().setup(stage)
