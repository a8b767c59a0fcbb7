"""The run log: `metrics.jsonl` (one JSON object per line: training windows, and events such
as the start and the end-of-run held-out check) and, when installed, TensorBoard."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

RUN_LOG_NAME = "metrics.jsonl"


class RunLog:
    """Disabled (`enabled=False`, every rank of a data-parallel run but rank 0), it writes
    nothing and opens no file."""

    def __init__(self, out: Path, enabled: bool = True):
        self.path = out / RUN_LOG_NAME
        self.file = open(self.path, "a") if enabled else None  # noqa: SIM115 - held open
        self.tb = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))

    def log(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None and "event" not in record:  # training windows only
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("step", "time"):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, grid, step, dataformats="HWC" if grid.ndim == 3 else "HW")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
