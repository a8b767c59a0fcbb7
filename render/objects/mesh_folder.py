"""The user's own chairs: a folder of meshes that trimesh reads (OBJ with MTL textures,
GLB/glTF, PLY, OFF), including ShapeNet's `<id>/models/model_normalized.obj` layout.

Files are found recursively and sorted by relative path; a chair's identity is its index in
that sorted list of readable files (`plans.split_files` splits them into train and test).
Unreadable files are skipped with a warning each and a count at the end, never silently. The
folder's fingerprint, which a store records to refuse mixing folders, hashes each readable
file's relative path and bytes (not mtimes: a copied folder is the same data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcign.shared.errors import DcignError
from dcign.shared.images import GRAY, to_gray, to_unit

from .chair_mesh import ChairMesh, normalise

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".off", ".stl")
UP_AXES = ("x", "y", "z", "-x", "-y", "-z")
NEUTRAL_GRAY = 0.6
KEPT_CHAIRS = 32  # loaded meshes kept: an azimuth minibatch shows one chair, intrinsic 20


@dataclass(frozen=True)
class FolderScan:
    root: Path
    readable: tuple[str, ...]  # absolute paths, sorted by relative path
    skipped: tuple[tuple[str, str], ...]  # (relative path, reason)
    fingerprint: str

    @property
    def total(self) -> int:
        return len(self.readable) + len(self.skipped)


def mesh_files(root: Path) -> list[Path]:
    """Mesh files under `root`, sorted by relative path (ShapeNet's nested layout included)."""
    return sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in
                   MESH_SUFFIXES), key=lambda p: p.relative_to(root).as_posix())


def scan_folder(root: str | Path, up_axis: str = "y") -> FolderScan:
    """Read every mesh once: keep the readable ones, list the others with their reasons
    (the caller warns about each); refuse a folder with no readable mesh in one line."""
    root = Path(root)
    if not root.is_dir():
        raise DcignError(f"--meshes {root}: no such folder")
    files = mesh_files(root)
    if not files:
        raise DcignError(f"--meshes {root}: no mesh files ({', '.join(MESH_SUFFIXES)}) in it")
    readable, skipped = [], []
    h = hashlib.sha256()
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            load_chair(path, up_axis)
        except Exception as exc:  # trimesh raises many kinds for broken files
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            skipped.append((rel, reason))
            continue
        readable.append(str(path.resolve()))
        h.update(rel.encode())
        h.update(path.read_bytes())
    if not readable:
        name, reason = skipped[0]
        raise DcignError(f"--meshes {root}: none of its {len(files)} mesh files could be read "
                         f"(first: {name}: {reason})")
    return FolderScan(root, tuple(readable), tuple(skipped), h.hexdigest()[:16])


def up_rotation(up_axis: str) -> np.ndarray:
    """The rotation taking the named axis to +y."""
    if up_axis not in UP_AXES:
        raise DcignError(f"unknown --up-axis {up_axis!r}: choose from {', '.join(UP_AXES)}")
    sign = -1.0 if up_axis.startswith("-") else 1.0
    axis = "xyz".index(up_axis[-1])
    if axis == 1:
        return np.diag([1.0, sign, sign])  # -y up: turn upside down about x
    if axis == 0:  # x up: rotate about z
        return np.array([[0, sign, 0], [-sign, 0, 0], [0, 0, 1.0]])
    return np.array([[1.0, 0, 0], [0, 0, sign], [0, -sign, 0]])  # z up: rotate about x


def _gray_albedo(mesh) -> np.ndarray:
    """Per-vertex gray from texture or material colours where trimesh has them, else neutral."""
    rgb = _rgb_albedo(mesh)
    if rgb is None:
        return np.full(len(mesh.vertices), NEUTRAL_GRAY, np.float32)
    return to_gray(rgb)


def _rgb_albedo(mesh) -> np.ndarray | None:
    """Per-vertex RGB (N, 3) in [0, 1] from texture or material colours where trimesh has
    them, else None."""
    try:
        visual = mesh.visual.to_color() if mesh.visual.kind == "texture" else mesh.visual
        colors = to_unit(np.asarray(visual.vertex_colors)[:, :3])
        if len(colors) == len(mesh.vertices):
            return colors
    except Exception:  # visuals trimesh cannot convert: fall back to a neutral gray
        pass
    return None


def _albedo(mesh, color: str) -> np.ndarray:
    """Gray (N,) or, for an rgb store, the mesh's own colours (N, 3) (neutral gray without)."""
    if color == GRAY:
        return _gray_albedo(mesh)
    rgb = _rgb_albedo(mesh)
    if rgb is None:
        return np.full((len(mesh.vertices), 3), NEUTRAL_GRAY, np.float32)
    return rgb


def load_chair(path: str | Path, up_axis: str = "y", color: str = GRAY) -> ChairMesh:
    """One mesh file, normalised, flat-shaded (CAD meshes share vertices across sharp edges);
    its albedo gray, or its own colours for an rgb store."""
    import trimesh  # here, not at the top: only a --meshes run pays for importing it

    mesh = trimesh.load(str(path), force="mesh", process=False)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise DcignError("no triangles")
    vertices = np.asarray(mesh.vertices, np.float64) @ up_rotation(up_axis).T
    faces = np.asarray(mesh.faces, np.int64)
    if not np.isfinite(vertices).all():
        raise DcignError("non-finite vertices")
    albedo = _albedo(mesh, color)
    corners = vertices[faces].reshape(-1, 3)
    v = vertices[faces]
    normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return ChairMesh(normalise(corners), np.arange(len(corners), dtype=np.uint32).reshape(-1, 3),
                     np.repeat(normals, 3, axis=0).astype(np.float32),
                     albedo[faces].reshape(len(corners), *albedo.shape[1:]).astype(np.float32),
                     None)


class MeshFolder:
    """Loads chairs by identity, keeping the last few (an azimuth minibatch reuses one)."""

    def __init__(self, files: tuple[str, ...], up_axis: str, color: str = GRAY):
        self.files = files
        self.up_axis = up_axis
        self.color = color
        self._cache: dict[int, ChairMesh] = {}

    def chair(self, identity: int) -> ChairMesh:
        if identity not in self._cache:
            if len(self._cache) >= KEPT_CHAIRS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[identity] = load_chair(self.files[identity], self.up_axis,
                                                   self.color)
        return self._cache[identity]
