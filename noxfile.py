"""Sessions: `nox -s tests`, `nox -s lint`, `nox -s wheel`, `nox -s lock`, `nox -s oldest`,
`nox -s latest`, `nox -s demo`, `nox -s benchmarks`, `nox -s gpu`."""

import os
import tomllib
from itertools import chain
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

nox.options.sessions = ["lint", "tests"]
ROOT = Path(__file__).resolve().parent
# The lock: every package of the [dev] extra (hence [all]) pinned, for CPython 3.11 on Linux
# x86-64, with the CPU build of torch. Refreshed by `nox -s lock`.
LOCK = str(ROOT / "requirements" / "dev.txt")
# The CPU build of torch: an unpinned torch may pull a multi-GB CUDA build. pip takes it from
# its find-links folder (pip's configuration here); uv is told the same folder.
TORCH = "torch==2.13.0"
FIND_LINKS = os.environ.get("PIP_FIND_LINKS", "/opt/wheels")
SCRIPTS = ["dcign-render", "dcign-store", "dcign-train", "dcign-eval", "dcign-rerender",
           "dcign-explore"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on tiny rendered datasets, in the locked environment."""
    session.install("-q", "-c", LOCK, "-e", ".[dev]")
    session.run("python", "-m", "pytest", "-n", "auto", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-c", LOCK, "ruff")
    session.run("ruff", "check", ".")


@nox.session
def lock(session: nox.Session) -> None:
    """Re-resolve requirements/dev.txt to the newest releases pyproject.toml's ranges admit
    (and requirements/dev.in's torch pin). `nox -s lock -- --no-upgrade` keeps what still
    fits and only adds what is new."""
    session.install("uv")
    upgrade = [] if "--no-upgrade" in session.posargs else ["--upgrade"]
    session.run("uv", "pip", "compile", "pyproject.toml", "requirements/dev.in",
                "--extra", "dev", *upgrade, "--python-version", "3.11",
                "--python-platform", "x86_64-manylinux_2_28", "--find-links", FIND_LINKS,
                "--no-emit-find-links", "--custom-compile-command", "nox -s lock",
                "--output-file", LOCK)


@nox.session
def latest(session: nox.Session) -> None:
    """The suite without the lock: the newest release of every dependency the ranges admit,
    so that a breaking upstream release shows up here before it reaches a user. torch stays
    the CPU wheel (TORCH)."""
    session.install("uv")
    session.run("uv", "pip", "install", "--find-links", FIND_LINKS, "--upgrade", TORCH,
                "-e", ".[dev]")
    session.run("uv", "pip", "freeze", silent=False)
    session.run("python", "-m", "pytest", "-n", "auto", *session.posargs)


def floors() -> list[str]:
    """`name==floor` for every dependency pyproject.toml declares with a lower bound (torch
    apart: see `oldest`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *chain(*project["optional-dependencies"].values())]
    pins = {}
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        for spec in requirement.specifier:
            if spec.operator == ">=" and name not in ("dcign", "torch"):
                pins[name] = max(pins.get(name, Version(spec.version)), Version(spec.version))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


@nox.session
def oldest(session: nox.Session) -> None:
    """The suite with every direct dependency exactly at the floor pyproject.toml states (a
    constraints file generated from the ranges), the rest resolved by uv: the floors are
    tested, not hoped for. torch is the exception: no CPU wheel of its floor (2.6) can be
    reached here, so the local CPU wheel (TORCH) stands in and the torch floor is untested."""
    session.install("uv")
    tmp = Path(session.create_tmp())
    (tmp / "floors.txt").write_text("\n".join(floors()) + "\n")
    (tmp / "torch.txt").write_text(TORCH + "\n")
    session.run("uv", "pip", "install", "--find-links", FIND_LINKS, "--constraint",
                str(tmp / "floors.txt"), "--override", str(tmp / "torch.txt"), "-e", ".[dev]")
    session.run("uv", "pip", "freeze", silent=False)
    session.run("python", "-m", "pytest", "-n", "auto", *session.posargs)


@nox.session
def wheel(session: nox.Session) -> None:
    """The wheel as users install it: built, installed (not editable, the lock's versions)
    into a fresh environment, then each command's --help and a tiny render, verify, train
    and eval from outside the source tree."""
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    session.install("build")
    session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT))
    (wheel,) = dist.glob("dcign-*.whl")
    session.install("-q", "-c", LOCK, f"{wheel}[all]")
    session.run("python", "-m", "pip", "check")
    work = tmp / "run"
    work.mkdir(exist_ok=True)
    session.chdir(work)
    for script in SCRIPTS:
        session.run(script, "--help", silent=True)
    env = {"PYOPENGL_PLATFORM": "egl"}
    session.run("dcign-render", "faces", "--size", "32", "--batch-size", "4", "--batches", "3",
                "--test-batches", "2", "--workers", "1", "--out", "faces.zarr", "--overwrite",
                env=env)
    session.run("dcign-store", "verify", "faces.zarr")
    session.run("dcign-train", "--store", "faces.zarr", "--out", "dcign", "--steps", "3",
                "--no-progress")
    session.run("dcign-train", "--store", "faces.zarr", "--out", "vae", "--mode", "vae",
                "--steps", "3", "--no-progress")
    session.run("dcign-eval", "--checkpoint", "dcign", "--baseline", "vae", "--store",
                "faces.zarr", "--out", "report", "--sweep", "-3:3:3", "--traversal-images",
                "2", "--samples", "200")


@nox.session
def demo(session: nox.Session) -> None:
    """Render a small faces store, check it and draw the README's sample picture."""
    session.install("-c", LOCK, "-e", ".[all]")
    store = "datasets/faces-demo.zarr"
    session.run("dcign-render", "faces", "--batches", "4", "--test-batches", "1", "--out", store)
    session.run("dcign-store", "verify", store)
    session.run("dcign-store", "preview", store, "--minibatch", "0", "--columns", "10",
                "--out", "docs/sample-minibatches.png")


@nox.session
def benchmarks(session: nox.Session) -> None:
    session.install("-c", LOCK, "-e", ".[all]")
    session.run("python", "benchmarks/render_faces.py", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU check, in the Python that already holds a CUDA build of torch (a GPU machine
    may reach no package index): `nox -s gpu -- --json gpu_check.json`."""
    session.run("python", "benchmarks/gpu_check.py", *session.posargs)
