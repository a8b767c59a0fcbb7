"""The two halves stay independent: the renderer never needs torch, the trainer never GL."""

from __future__ import annotations

import subprocess
import sys

RENDER_MODULES = ["dcign.render.cli", "dcign.render.generators.faces", "dcign.render.writer",
                  "dcign.render.renderer.offscreen", "dcign.shared.plans",
                  "dcign.render.objects.face_model", "dcign.render.objects.geometry",
                  "dcign.shared.images", "dcign.render.objects.embedded_face",
                  "dcign.render.objects.basel", "dcign.shared.store_cli"]


def _imported_after(modules: list[str]) -> set[str]:
    code = ("import importlib, pkgutil, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def _train_modules() -> list[str]:
    import pkgutil

    import dcign.train

    return ["dcign.train"] + [m.name for m in pkgutil.walk_packages(dcign.train.__path__,
                                                                    "dcign.train.")]


def test_the_renderer_never_imports_torch():
    assert "torch" not in _imported_after(RENDER_MODULES)


def test_the_trainer_never_imports_pyrender_or_opengl():
    imported = _imported_after(_train_modules())
    assert not {"pyrender", "OpenGL", "trimesh"} & imported
    assert "torch" in imported  # the check did import the trainer
