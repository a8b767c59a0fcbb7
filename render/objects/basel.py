"""Loaders for the real Basel Face Models, for users who hold a licence.

Both return a `MorphableModel` whose standard deviations multiply an orthonormal basis:

* BFM 2009 (`01_MorphableModel.mat`, Paysan et al. 2009): `shapeMU` (3N, 1), `shapePC`
  (3N, K), `shapeEV` (K, 1) standard deviations, the same for `tex*` on a 0–255 scale, and
  `tl` (T, 3) one-based triangles wound clockwise as OpenGL sees them.
* BFM 2017 (`model2017-1_*.h5`, Gerig et al. 2018): `shape/model/{mean, pcaBasis,
  pcaVariance}`, `color/model/{...}` (colour already in [0, 1]) and
  `shape/representer/cells` (3, T) zero-based. The published files (e.g.
  `model2017-1_bfm_nomouth.h5`) store an orthonormal `pcaBasis` and the *variances*
  separately, so std = sqrt(pcaVariance). Some derived releases scale the basis columns by
  the std already; used as-is, their variation would be squared, so we measure the column
  lengths: unit → used as-is, equal to the std → normalised, anything else → refused.

Every problem with a file is reported as one `ModelFileError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcign.shared.errors import ModelFileError

from .face_model import MorphableModel

# A basis whose column norms stray further than this from 1 is not orthonormal.
_ORTHONORMAL_TOLERANCE = 0.05


def _checked_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    return path


def _as_points(flat: np.ndarray, what: str, path: Path) -> np.ndarray:
    """(3N,) or (3N, 1) interleaved xyz → (N, 3) float32."""
    flat = np.asarray(flat).reshape(-1)
    if flat.size == 0 or flat.size % 3:
        raise ModelFileError(f"{path}: {what} has {flat.size} values, not a multiple of 3")
    return flat.astype(np.float32, copy=False).reshape(-1, 3)


def _as_basis(columns: np.ndarray, n_points: int, what: str, path: Path) -> np.ndarray:
    """(3N, K) principal components as columns → (K, N, 3) float32 without a float64 copy."""
    columns = np.asarray(columns)
    if columns.ndim != 2 or columns.shape[0] != 3 * n_points:
        raise ModelFileError(
            f"{path}: {what} has shape {columns.shape}, expected ({3 * n_points}, K)")
    basis = np.ascontiguousarray(columns.T, dtype=np.float32)  # one float32 copy at most
    return basis.reshape(columns.shape[1], n_points, 3)


def _as_std(values: np.ndarray, n_components: int, what: str, path: Path) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size != n_components:
        raise ModelFileError(
            f"{path}: {what} has {values.size} values for {n_components} components")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ModelFileError(f"{path}: {what} has negative or non-finite values")
    return values


def _as_triangles(triangles: np.ndarray, n_points: int, first_index: int, path: Path
                  ) -> np.ndarray:
    triangles = np.asarray(triangles)
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ModelFileError(f"{path}: triangles have shape {triangles.shape}, expected (T, 3)")
    if not np.issubdtype(triangles.dtype, np.number) or not np.all(
            np.isfinite(triangles)) or np.any(triangles != np.round(triangles)):
        raise ModelFileError(f"{path}: triangle indices are not whole numbers")
    triangles = triangles.astype(np.int64) - first_index
    if triangles.size and (triangles.min() < 0 or triangles.max() >= n_points):
        raise ModelFileError(
            f"{path}: triangle indices out of range for {n_points} vertices "
            f"(expected {first_index}-based)")
    return triangles.astype(np.int32)


def _unit_columns(basis: np.ndarray, std: np.ndarray, what: str, path: Path) -> np.ndarray:
    """The basis with unit-length components. The published files store them so already;
    a basis whose components have the lengths of their standard deviations is rescaled
    (in place); any other basis is refused rather than silently mis-scaled."""
    norms = np.linalg.norm(basis.reshape(basis.shape[0], -1), axis=1)
    if np.all(np.abs(norms - 1.0) <= _ORTHONORMAL_TOLERANCE):
        return basis
    if np.all(std > 0) and np.all(np.abs(norms / std - 1.0) <= _ORTHONORMAL_TOLERANCE):
        basis /= norms[:, None, None].astype(np.float32)
        return basis
    raise ModelFileError(
        f"{path}: {what} components have lengths {norms.min():.3g}–{norms.max():.3g}, "
        "neither 1 nor the standard deviations")


def _model(name: str, path: Path, shape_mean, shape_basis, shape_std, albedo_mean,
           albedo_basis, albedo_std, triangles) -> MorphableModel:
    if albedo_mean.shape != shape_mean.shape:
        raise ModelFileError(
            f"{path}: colour mean has {albedo_mean.shape[0]} points, shape mean "
            f"{shape_mean.shape[0]}")
    return MorphableModel(name=name, shape_mean=shape_mean, shape_basis=shape_basis,
                          shape_std=shape_std, albedo_mean=albedo_mean,
                          albedo_basis=albedo_basis, albedo_std=albedo_std,
                          triangles=np.ascontiguousarray(triangles, dtype=np.int32))


def load_bfm2009(path: str | Path) -> MorphableModel:
    """Load BFM 2009's `01_MorphableModel.mat`."""
    import scipy.io  # here, not at the top: only a BFM 2009 user pays for importing it

    path = _checked_path(path)
    try:
        mat = scipy.io.loadmat(str(path), variable_names=(
            "shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl"))
    except Exception as err:  # scipy raises several types for a bad or truncated file
        raise ModelFileError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    missing = [k for k in ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")
               if k not in mat]
    if missing:
        raise ModelFileError(f"{path}: not a BFM 2009 model, missing {', '.join(missing)}")
    try:
        shape_mean = _as_points(mat["shapeMU"], "shapeMU", path)
        n = shape_mean.shape[0]
        shape_basis = _as_basis(mat.pop("shapePC"), n, "shapePC", path)
        shape_std = _as_std(mat["shapeEV"], shape_basis.shape[0], "shapeEV", path)
        albedo_mean = _as_points(mat["texMU"], "texMU", path) / np.float32(255)
        albedo_basis = _as_basis(mat.pop("texPC"), n, "texPC", path)
        albedo_basis /= np.float32(255)
        albedo_std = _as_std(mat["texEV"], albedo_basis.shape[0], "texEV", path)
        # One-based, and clockwise as OpenGL sees them: swap two corners for front faces.
        triangles = _as_triangles(mat["tl"], n, 1, path)[:, [0, 2, 1]]
    except (ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: malformed BFM 2009 arrays ({err})") from None
    return _model("bfm2009", path, shape_mean, shape_basis, shape_std, albedo_mean,
                  albedo_basis, albedo_std, triangles)


def load_bfm2017(path: str | Path) -> MorphableModel:
    """Load a BFM 2017 `.h5` model (e.g. `model2017-1_bfm_nomouth.h5`)."""
    import h5py  # here, not at the top: only a BFM 2017 user pays for importing it

    path = _checked_path(path)
    try:
        with h5py.File(path, "r") as f:
            keys = ("shape/model/mean", "shape/model/pcaBasis", "shape/model/pcaVariance",
                    "color/model/mean", "color/model/pcaBasis", "color/model/pcaVariance",
                    "shape/representer/cells")
            missing = [k for k in keys if k not in f]
            if missing:
                raise ModelFileError(
                    f"{path}: not a BFM 2017 model, missing {', '.join(missing)}")
            data = {k: f[k][()] for k in keys}
    except ModelFileError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError ... for bad or truncated files
        raise ModelFileError(f"{path}: not a readable HDF5 file ({err})") from None
    try:
        shape_mean = _as_points(data["shape/model/mean"], "shape/model/mean", path)
        n = shape_mean.shape[0]
        shape_basis = _as_basis(data.pop("shape/model/pcaBasis"), n, "shape/model/pcaBasis",
                                path)
        # The published files store variances: the std is their square root.
        shape_std = np.sqrt(_as_std(data["shape/model/pcaVariance"], shape_basis.shape[0],
                                    "shape/model/pcaVariance", path))
        shape_basis = _unit_columns(shape_basis, shape_std, "shape/model/pcaBasis", path)
        albedo_mean = _as_points(data["color/model/mean"], "color/model/mean", path)
        albedo_basis = _as_basis(data.pop("color/model/pcaBasis"), n, "color/model/pcaBasis",
                                 path)
        albedo_std = np.sqrt(_as_std(data["color/model/pcaVariance"], albedo_basis.shape[0],
                                     "color/model/pcaVariance", path))
        albedo_basis = _unit_columns(albedo_basis, albedo_std, "color/model/pcaBasis", path)
        cells = np.asarray(data["shape/representer/cells"])
        if cells.ndim != 2 or cells.shape[0] != 3:
            raise ModelFileError(
                f"{path}: shape/representer/cells has shape {cells.shape}, expected (3, T)")
        # Zero-based and already counter-clockwise from outside.
        triangles = _as_triangles(cells.T, n, 0, path)
    except (ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: malformed BFM 2017 arrays ({err})") from None
    return _model("bfm2017", path, shape_mean, shape_basis, shape_std, albedo_mean,
                  albedo_basis, albedo_std, triangles)
