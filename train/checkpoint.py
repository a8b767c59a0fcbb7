"""The checkpoint file: what a training run writes and what resuming, evaluation and
re-rendering read. One module knows its format, so all of them refuse the same things.

`checkpoint.pt` in the run directory holds the architecture, weights, optimiser state, step,
RNG states, configuration and a fingerprint of the store trained on. It is written atomically
(temporary file, then rename): a reader sees the old checkpoint or the new, never half of one.
Tensors are saved from whatever device trained them and always read onto the CPU, so a
checkpoint moves between CUDA and CPU machines.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from dcign.shared.errors import DcignError
from dcign.shared.store import StoreSpec

CHECKPOINT_FORMAT = "dcign-train-checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"


def store_fingerprint(spec: StoreSpec) -> dict:
    """What identifies the images trained on: the store's spec (generator and object model
    included), hashed, with the spec itself so evaluation can rebuild the factor table."""
    attrs = spec.to_attrs()
    digest = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode()).hexdigest()[:16]
    return {"sha256": digest, "model_fingerprint": spec.model.get("fingerprint"),
            "generator": spec.generator, "spec": attrs}


def write_checkpoint(state: dict, path: Path) -> Path:
    """Write `state` (given the format tag here) to `path` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": CHECKPOINT_FORMAT} | state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents on the CPU; one-line errors for a missing or foreign file."""
    if not path.is_file():
        raise DcignError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise DcignError(f"{path} is not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DcignError(f"{path} is not a dcign-train checkpoint")
    return state


def checkpoint_file(run: str | Path) -> Path:
    """A run directory or a checkpoint file → the checkpoint file; one-line error if absent."""
    path = Path(run)
    file = path / CHECKPOINT_NAME if path.is_dir() else path
    if not file.is_file():
        raise DcignError(f"no checkpoint at {file}")
    return file
