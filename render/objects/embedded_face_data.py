"""The embedded face model as shipped: its arrays, computed once by `embedded_face` and kept as
package data, so that every machine renders the same faces.

`embedded_face.derive_embedded_model` computes the model from its definition in about half a
second, but through BLAS (a Cholesky factorisation, products of tall matrices) and numpy's
CPU-chosen sin, cos and exp: its last bits differ between CPUs, BLAS kernels and thread
counts, and so would the pixels and the fingerprint of every store. The shipped file is that
computation done once; its fingerprint is a constant checked when it is read, and a test keeps
it within rounding of what the definition derives today.

After a deliberate change to the definition: `python -m dcign.render.objects.embedded_face_data`
rewrites the file and prints the new fingerprint for EMBEDDED_FINGERPRINT (and bump the faces
GENERATOR_VERSION: stores of the old model must not be extended with the new).
"""

from __future__ import annotations

import functools
from dataclasses import fields
from pathlib import Path

import numpy as np

from dcign.shared.errors import ModelFileError

from .embedded_face import EMBEDDED_MODEL_NAME, derive_embedded_model
from .face_model import MorphableModel

EMBEDDED_MODEL_FILE = Path(__file__).with_name("data") / "embedded_face.npz"
EMBEDDED_FINGERPRINT = "c2c2cd1d0f413bc8"
_ARRAYS = tuple(f.name for f in fields(MorphableModel) if f.name != "name")


@functools.cache
def load_embedded_model() -> MorphableModel:
    """The shipped embedded model; a damaged or replaced file is one clear error."""
    try:
        with np.load(EMBEDDED_MODEL_FILE) as data:
            model = MorphableModel(EMBEDDED_MODEL_NAME, *(data[name] for name in _ARRAYS))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"the embedded face model {EMBEDDED_MODEL_FILE} cannot be read "
                             f"({exc}); reinstall dcign") from None
    if model.fingerprint() != EMBEDDED_FINGERPRINT:
        raise ModelFileError(f"the embedded face model {EMBEDDED_MODEL_FILE} is not the one "
                             f"this dcign shipped (fingerprint {model.fingerprint()}, expected "
                             f"{EMBEDDED_FINGERPRINT}); reinstall dcign")
    return model


def write_embedded_model(path: Path = EMBEDDED_MODEL_FILE) -> str:
    """Derive the model from its definition on this machine and ship it: its fingerprint."""
    model = derive_embedded_model()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{name: getattr(model, name) for name in _ARRAYS})
    return model.fingerprint()


if __name__ == "__main__":
    print(f"wrote {EMBEDDED_MODEL_FILE}; EMBEDDED_FINGERPRINT = {write_embedded_model()!r}")
