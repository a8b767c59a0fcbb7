"""Sessions: `nox -s tests`, `nox -s lint`, `nox -s demo`, `nox -s benchmarks`, `nox -s gpu`."""

import nox

nox.options.sessions = ["lint", "tests"]
# The CPU build of torch: an unpinned torch may pull a multi-GB CUDA build.
TORCH = "torch==2.13.0"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on tiny rendered datasets."""
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """Render a small faces store, check it and draw the README's sample picture."""
    session.install(TORCH, "-e", ".[all]")
    store = "datasets/faces-demo.zarr"
    session.run("dcign-render", "faces", "--batches", "4", "--test-batches", "1", "--out", store)
    session.run("dcign-store", "verify", store)
    session.run("dcign-store", "preview", store, "--minibatch", "0", "--columns", "10",
                "--out", "docs/sample-minibatches.png")


@nox.session
def benchmarks(session: nox.Session) -> None:
    session.install(TORCH, "-e", ".[all]")
    session.run("python", "benchmarks/render_faces.py", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU check, in the Python that already holds a CUDA build of torch (a GPU machine
    may reach no package index): `nox -s gpu -- --json gpu_check.json`."""
    session.run("python", "benchmarks/gpu_check.py", *session.posargs)
