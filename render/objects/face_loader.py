"""Which face model a path names: the one place that knows every source of a morphable model.

Kept apart from `face_model` so that the sources (`embedded_face`, `basel`) import only the
model class, and the dispatcher imports them: no cycle.
"""

from __future__ import annotations

from pathlib import Path

from dcign.shared.errors import ModelFileError

from .basel import load_bfm2009, load_bfm2017
from .embedded_face_data import load_embedded_model
from .face_model import MorphableModel

BFM2009_SUFFIXES = (".mat",)
BFM2017_SUFFIXES = (".h5", ".hdf5")


def load_face_model(path: str | Path | None) -> MorphableModel:
    """The model to render faces from: None → the embedded model; `.mat` → BFM 2009;
    `.h5`/`.hdf5` → BFM 2017. Anything else raises ModelFileError."""
    if path is None:
        return load_embedded_model()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BFM2009_SUFFIXES + BFM2017_SUFFIXES:
        raise ModelFileError(
            f"{path}: unknown face model type {suffix or '(no extension)'!r}; expected a BFM "
            "2009 .mat or a BFM 2017 .h5/.hdf5")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    return load_bfm2009(path) if suffix in BFM2009_SUFFIXES else load_bfm2017(path)
