"""Shared fixtures: tiny faces stores rendered through the real `dcign-render` CLI."""

from __future__ import annotations

import os

# Several xdist workers (the README runs one per core): one BLAS and torch thread each, set
# before numpy or torch is imported, or each worker's idle pool threads spin on the cores the
# other workers need. Subprocesses the tests start inherit it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

import hashlib
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner, Result

from dcign.shared.lock import LOCK_NAME
from dcign.shared.store_cli import main as store_main
from dcign.train.cli import main as train_main
from dcign.train.config import TrainConfig

# Small enough for CI, big enough that every code path runs: 4 factors x 2 splits.
TINY = ["--size", "32", "--batch-size", "4", "--batches", "3", "--test-batches", "2",
        "--workers", "1", "--quiet"]


def invoke(command, args: list[str]) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=True)


def render(args: list[str]) -> Result:
    from dcign.render.cli import main as render_main  # only the tests that render need GL

    return invoke(render_main, ["faces", *args])


def store_tool(args: list[str]) -> Result:
    return invoke(store_main, args)


def train_run(store, out, *args, **options) -> Path:
    """A run of the real `dcign-train` that must succeed, for tests that need a trained run
    (or the act of training) rather than the CLI's reply. `args` are passed as written;
    `options` become flags (`steps=3` is `--steps 3`, `resume=True` a bare `--resume`).
    Without a progress bar. Returns the run's folder."""
    flags = []
    for name, value in options.items():
        flags += [f"--{name.replace('_', '-')}"] + ([] if value is True else [value])
    result = invoke(train_main, ["--store", store, "--out", out, *args, *flags,
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    return Path(out)


def train_config(store, out, **fields) -> TrainConfig:
    """A TrainConfig for tests that drive the loop directly: no loader processes, no progress
    bar. Callers name the steps, checkpoint_every and log_every they rely on."""
    return TrainConfig(store=str(store), out=str(out), **{"workers": 0, "progress": False} | fields)


def assert_one_line_error(result: Result, *needles: str) -> None:
    """A user error: non-zero exit, a single `Error: ...` line naming the problem, no traceback."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def tree_digest(path: Path) -> str:
    """A hash of every file's name and bytes: proves a store was left untouched."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """All four factors, both splits, rendered once for the whole session. Read-only."""
    out = tmp_path_factory.mktemp("stores") / "faces.zarr"
    result = render([*TINY, "--out", out])
    assert result.exit_code == 0, result.output
    return out


# Tiny chairs for the colour tests: rendered in gray and in colour with the same seed.
TINY_CHAIRS = ["--size", "32", "--batch-size", "4", "--batches", "2", "--test-batches", "1",
               "--chairs", "12", "--test-chairs", "4", "--workers", "1", "--quiet"]


@pytest.fixture(scope="session")
def colour_faces(tmp_path_factory) -> Path:
    """The tiny store's command with --color rgb: the same scenes, in colour. Read-only."""
    out = tmp_path_factory.mktemp("colour") / "faces-rgb.zarr"
    result = render([*TINY, "--color", "rgb", "--out", out])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def colour_chairs(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny chairs stores, (gray, rgb), from the same seed and command. Read-only."""
    from dcign.render.cli import main as render_main

    where = tmp_path_factory.mktemp("colour-chairs")
    stores = []
    for color in ("gray", "rgb"):
        out = where / f"chairs-{color}.zarr"
        result = invoke(render_main, ["chairs", *TINY_CHAIRS, "--color", color, "--out", out])
        assert result.exit_code == 0, result.output
        stores.append(out)
    return stores[0], stores[1]


@pytest.fixture
def fresh_store(tmp_path, tiny_store) -> Path:
    """A private copy of the tiny store that a test may modify."""
    import shutil

    copy = tmp_path / "faces.zarr"
    shutil.copytree(tiny_store, copy)
    return copy


def read_group(store: Path, split: str, factor: str) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(store / split / factor), mode="r")
    return {name: g[name][:] for name in STORE_ARRAYS}


STORE_ARRAYS = ("images", "factors", "identity", "complete")


def content_digest(path, *, ignore_model: tuple[str, ...] = (),
                   arrays: tuple[str, ...] = STORE_ARRAYS) -> str:
    """A hash of what a reader sees in a store: its dcign attributes (the run history and the
    model keys named aside) and the named arrays of every group (shape, dtype, values). It
    ignores how the bytes are laid out on disk: the schema version (sharding, checksums)
    included."""
    root = zarr.open_group(str(path), mode="r")
    attrs = dict(root.attrs["dcign"])
    attrs.pop("history", None)
    attrs.pop("schema_version", None)
    attrs["model"] = {k: v for k, v in attrs["model"].items() if k not in ignore_model}
    h = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode())
    for split in sorted(root.group_keys()):
        for factor in sorted(root[split].group_keys()):
            for name in arrays:
                array = np.asarray(root[f"{split}/{factor}/{name}"][:])
                h.update(f"{split}/{factor}/{name}{array.shape}{array.dtype}".encode())
                h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def shard_file(store: Path, split: str, factor: str, array: str, shard: int = 0) -> Path:
    """The file of one shard of one array of a schema-2 store."""
    dims = {"images": 3, "factors": 2, "identity": 1, "complete": 0}[array]
    return store.joinpath(split, factor, array, "c", str(shard), *["0"] * dims)


def file_digests(store: Path) -> dict[str, str]:
    """Every file's hash but the root's attributes (whose history records the repair)."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file() and p != store / "zarr.json"}


def inner_chunk_span(path: Path, index: int) -> tuple[int, int]:
    """(offset, length) of inner chunk `index` in a shard file: the index at its end holds
    (offset, length) pairs of uint64 for every inner chunk, then a crc32c."""
    data = path.read_bytes()
    entries = np.frombuffer(data[-4 - 16 * _inner_chunks(path):-4], dtype="<u8").reshape(-1, 2)
    return int(entries[index, 0]), int(entries[index, 1])


def _inner_chunks(path: Path) -> int:
    array_dir = next(p for p in path.parents if (p / "zarr.json").is_file())
    array = zarr.open_array(str(array_dir), mode="r")
    return int(np.prod([s // c for s, c in zip(array.shards, array.chunks, strict=True)]))


def garble(path: Path, index: int) -> None:
    """Overwrite the middle of one inner chunk with garbage (the file keeps its size)."""
    offset, length = inner_chunk_span(path, index)
    data = bytearray(path.read_bytes())
    data[offset + length // 2: offset + length // 2 + 8] = b"\xde\xad\xbe\xef" * 2
    path.write_bytes(bytes(data))


@pytest.fixture
def bucket(monkeypatch) -> str:
    """A local S3-compatible server (moto) on 127.0.0.1 with one new bucket, reached through
    the environment every S3 client reads; stopped when the test ends."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in (("AWS_ENDPOINT_URL", f"http://{host}:{port}"),
                            ("AWS_ACCESS_KEY_ID", "testing"),
                            ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(name, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        name = f"dcign-test-{uuid.uuid4().hex[:8]}"  # moto's buckets outlive its servers
        s3fs.S3FileSystem().mkdir(name)
        yield f"s3://{name}"
    finally:
        server.stop()


@contextmanager
def users_dask_cluster(workers: int) -> Iterator[str]:
    """A plain Dask cluster of `workers` one-thread worker processes on 127.0.0.1, as a user
    would run one, no dashboard; its scheduler's address. Workers that lose the scheduler
    give up within a minute instead of lingering."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None, death_timeout=60) as cluster:
        yield cluster.scheduler_address


def dead_pid() -> int:
    """The pid of a process that has exited: a writer that died on this machine."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def lock_file(store: Path, **content) -> Path:
    """A writer lock left in `store`, as a writer described by `content` would have left it."""
    store.mkdir(parents=True, exist_ok=True)
    path = store / LOCK_NAME
    path.write_text(json.dumps({"host": "elsewhere", "pid": 4242, "since": "then",
                                "token": uuid.uuid4().hex} | content))
    return path


def installed(command: str) -> str:
    """The console script `command` (dcign-render, dask, …) installed beside this Python: the
    tests run the commands a user runs, from the environment under test."""
    return str(Path(sys.executable).with_name(command))


def worker_pythonpath(test_file: str) -> str:
    """PYTHONPATH for processes (Dask workers) that import a test module by name: its own
    folder and this one (conftest, machines)."""
    return os.pathsep.join([str(Path(test_file).resolve().parent), str(Path(__file__).parent)])


def as_schema_1(store: Path, out: Path) -> None:
    """The store as schema 1 wrote it: a file per minibatch and array, no checksums."""
    src = zarr.open_group(str(store), mode="r")
    dst = zarr.open_group(str(out), mode="w", zarr_format=3)
    dst.attrs["dcign"] = dict(src.attrs["dcign"]) | {"schema_version": 1}
    for split in src.group_keys():
        for factor in src[split].group_keys():
            for name in ("images", "factors", "identity", "complete"):
                a = src[f"{split}/{factor}/{name}"]
                dst.create_array(f"{split}/{factor}/{name}", data=a[:], chunks=a.chunks,
                                 compressors=zarr.codecs.ZstdCodec(level=3),
                                 fill_value=a.fill_value,
                                 dimension_names=a.metadata.dimension_names)
