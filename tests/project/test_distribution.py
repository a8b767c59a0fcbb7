"""What users install: the wheel and the sdist hold every file git tracks (or would: new
files not ignored) under render/, train/ and shared/ (modules, shaders, the embedded model's
arrays), byte for byte and nothing else, and every console script and every module resolves
inside the wheel alone.

An editable install (what the README's test command makes) reads the source tree and so
hides a file the package metadata leaves out; these tests look at the built artefacts."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The repository's top-level folders and where they land in an installed `dcign`.
TOP = {"render": "dcign/render", "train": "dcign/train", "shared": "dcign/shared"}


def _git_files(*paths: str) -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    # Tracked, and not yet tracked but not ignored either: what a commit would hold.
    done = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                           "--", *paths], cwd=ROOT,
                          capture_output=True, check=True)
    return [f for f in done.stdout.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The wheel and the sdist built, as `python -m build` does (the sdist first, the wheel
    from it), from a private copy of the tracked files: a build writes egg-info and build/
    beside its sources, which concurrent runs must not share."""
    source = tmp_path_factory.mktemp("source")
    for name in _git_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(dist), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = {name: (source / name).read_bytes() for name in _git_files(*TOP)}
    assert expected, "no tracked files under render/, train/, shared/"
    return {"wheel": next(dist.glob("*.whl")), "sdist": next(dist.glob("*.tar.gz")),
            "expected": expected}


def _compare(shipped: dict[str, bytes], expected: dict[str, bytes], what: str) -> None:
    missing = sorted(set(expected) - set(shipped))
    assert not missing, f"tracked but left out of the {what}: {missing}"
    extra = sorted(set(shipped) - set(expected))
    assert not extra, f"in the {what} but not tracked: {extra}"
    differ = sorted(name for name in expected if shipped[name] != expected[name])
    assert not differ, f"the {what} holds other bytes than the sources: {differ}"


def _installed_name(source_name: str) -> str:
    folder, rest = source_name.split("/", 1)
    return f"{TOP[folder]}/{rest}"


def test_the_wheel_holds_every_tracked_module_shader_and_data_file(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = [n for n in wheel.namelist() if not n.endswith("/")]
        shipped = {n: wheel.read(n) for n in names if n.startswith("dcign/")}
    outside = [n for n in names if not n.startswith(("dcign/", "dcign-"))]
    assert not outside, f"the wheel installs more than the dcign package: {outside}"
    _compare(shipped, {_installed_name(n): data for n, data in built["expected"].items()},
             "wheel")


def test_the_sdist_holds_every_tracked_module_shader_and_data_file(built):
    with tarfile.open(built["sdist"]) as sdist:
        members = [m for m in sdist.getmembers() if m.isfile()]
        top = {m.name.split("/", 1)[0] for m in members}
        assert len(top) == 1, top
        shipped = {m.name.split("/", 1)[1]: sdist.extractfile(m).read() for m in members
                   if m.name.split("/", 2)[1] in TOP}
        rest = {m.name.split("/", 1)[1] for m in members}
    _compare(shipped, built["expected"], "sdist")
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE"} <= rest


def test_every_console_script_resolves_inside_the_wheel(built, tmp_path):
    unpacked = tmp_path / "wheel"
    with zipfile.ZipFile(built["wheel"]) as wheel:
        wheel.extractall(unpacked)
    entry_points = configparser.ConfigParser()
    entry_points.optionxform = str
    entry_points.read(next(unpacked.glob("dcign-*.dist-info")) / "entry_points.txt")
    scripts = dict(entry_points["console_scripts"])
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == declared
    # Import each target, then every module, from the unpacked wheel alone: `-S` keeps the
    # site-packages .pth files (an editable install's finder among them) out, and the
    # dependencies are put on the path by hand; a module imported lazily by a command is
    # imported here all the same.
    code = ("import importlib, json, pkgutil, sys\n"
            "sys.path[1:1] = json.loads(sys.argv[2])\n"
            "found = {}\n"
            "for name, target in json.loads(sys.argv[1]).items():\n"
            "    module, attr = target.split(':')\n"
            "    m = importlib.import_module(module)\n"
            "    assert callable(getattr(m, attr)), target\n"
            "    found[name] = m.__file__\n"
            "import dcign\n"
            "for info in pkgutil.walk_packages(dcign.__path__, 'dcign.'):\n"
            "    importlib.import_module(info.name)\n"
            "found.update({m: sys.modules[m].__file__ for m in sys.modules\n"
            "              if m.startswith('dcign.') and sys.modules[m].__file__})\n"
            "print(json.dumps(found))\n")
    done = subprocess.run([sys.executable, "-S", "-c", code, json.dumps(scripts),
                           json.dumps(site.getsitepackages())],
                          cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(unpacked),
                                   PYOPENGL_PLATFORM=os.environ.get("PYOPENGL_PLATFORM", "egl")))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert set(scripts) <= set(found)
    assert len(found) > len(scripts) + 40  # every module, not only the commands'
    for name, file in found.items():
        assert Path(file).is_relative_to(unpacked), f"{name} was imported from {file}"
