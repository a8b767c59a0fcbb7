"""Computing as another machine would: environments that change the BLAS kernel, its thread
count, numpy's SIMD paths and llvmpipe's CPU features in a subprocess, and digests of what the
renderer is given (the scene) that need no GL.

Run as a script (`python tests/machines.py`) it prints the scene digests as JSON, so a test
can compare them across environments.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np

# Each a machine of another kind, as far as one machine can pretend: OpenBLAS's kernel for
# another CPU generation (OPENBLAS_CORETYPE), one BLAS thread, numpy without its AVX2 and
# AVX-512 paths (NPY_DISABLE_CPU_FEATURES, filled in by `cpu_variants`).
BLAS_KERNELS = ("Haswell", "Sandybridge", "Prescott")
# llvmpipe as on an x86 CPU without AVX (and so without FMA): GL itself computes differently.
WITHOUT_AVX = {"GALLIUM_OVERRIDE_CPU_CAPS": "sse4.1"}
# What a different rasteriser may change: a few pixels on triangle edges, never the picture.
EDGE_PIXEL_FRACTION = 1e-3
EDGE_MEAN_DIFFERENCE = 0.05  # gray levels, over all pixels
LABEL_ARRAYS = ("factors", "identity", "complete")


def cpu_variants() -> dict[str, dict[str, str]]:
    """name → environment additions, one per BLAS kernel; the last also drops numpy's SIMD
    dispatch and BLAS threads."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # numpy 1.x (the floor) names its core numpy.core
        from numpy.core._multiarray_umath import __cpu_dispatch__

    variants = {f"openblas-{k.lower()}": {"OPENBLAS_CORETYPE": k} for k in BLAS_KERNELS}
    variants["openblas-prescott"] |= {"NPY_DISABLE_CPU_FEATURES": " ".join(__cpu_dispatch__),
                                      "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return variants


def run_python(args: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python ARGS` in a subprocess with the environment changed; output captured."""
    env = os.environ | {"PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl")}
    return subprocess.run([sys.executable, *args], env=env | extra_env, capture_output=True,
                          text=True, timeout=300)


def run_cli(main: str, args: list, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    """A dcign CLI (e.g. 'dcign.render.cli') in a subprocess under `extra_env`."""
    code = f"import sys; from {main} import main; sys.exit(main())"
    return run_python(["-c", code, *map(str, args)], extra_env)


class RecordingRenderer:
    """Stands in for the GL renderer: hashes everything it is given, draws nothing."""

    def __init__(self, size: int):
        self.size = size
        self.hash = hashlib.sha256()

    def _update(self, *arrays) -> None:
        for a in arrays:
            if a is not None:
                a = np.ascontiguousarray(a)
                self.hash.update(f"{a.dtype}{a.shape}".encode())
                self.hash.update(a.tobytes())

    def set_mesh(self, vertices, triangles, albedo, normals=None, material=None) -> None:
        self._update(vertices, triangles, albedo, normals, material)

    def render(self, rotation, toward_light) -> np.ndarray:
        self._update(rotation, toward_light)
        return np.zeros((self.size, self.size), np.uint8)

    def render_lights(self, rotation, toward_lights) -> np.ndarray:
        """Recorded as the images one light at a time would be: the digest of a scene does
        not depend on how many lights a pass shades."""
        for toward_light in toward_lights:
            self.render(rotation, toward_light)
        return np.zeros((len(toward_lights), self.size, self.size), np.uint8)

    def close(self) -> None:
        pass


def scene_digest(recipe, factors: tuple[str, ...], minibatches: int = 2) -> str:
    """A hash of every mesh, pose and light the generator hands the renderer for the first
    `minibatches` of each split and factor."""
    from dcign.shared.store import SPLITS

    generator = recipe.load()
    recorder = generator._renderer = RecordingRenderer(recipe.image_size)
    for split in SPLITS:
        for factor in factors:
            for k in range(minibatches):
                generator.render(generator.plan(split, factor, k))
    return recorder.hash.hexdigest()


def scene_digests() -> dict[str, str]:
    """The faces' and the procedural chairs' scene digests at a tiny size."""
    from dcign.render.generators.chairs import ChairRecipe
    from dcign.render.generators.faces import FaceRecipe
    from dcign.render.objects.face_loader import load_face_model

    faces = FaceRecipe(image_size=32, batch_size=4)
    chairs = ChairRecipe(image_size=32, batch_size=4, chairs=40, test_chairs=10)
    return {"face_model": load_face_model(None).fingerprint(),
            "faces": scene_digest(faces, ("azimuth", "elevation", "light", "intrinsic")),
            "chairs": scene_digest(chairs, ("azimuth", "intrinsic"))}


def store_images(path) -> dict[str, np.ndarray]:
    """Every group's images, by 'split/factor'."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    return {f"{split}/{factor}": np.asarray(root[f"{split}/{factor}/images"][:])
            for split in sorted(root.group_keys()) for factor in sorted(root[split].group_keys())}


def edge_pixel_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]
                           ) -> tuple[float, float]:
    """(fraction of pixels that differ, mean absolute difference in gray levels) between two
    stores' images: a moved triangle edge changes a few pixels, a changed light every one."""
    assert a.keys() == b.keys()
    diff = np.concatenate([np.abs(a[k].astype(np.int16) - b[k].astype(np.int16)).ravel()
                           for k in a])
    return float((diff > 0).mean()), float(diff.mean())


if __name__ == "__main__":
    print(json.dumps(scene_digests()))
