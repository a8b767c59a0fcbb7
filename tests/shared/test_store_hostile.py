"""Hostile or broken stores: every command refuses a store whose attributes or array metadata
break the schema in one line naming the field, in bounded memory and time, with no
traceback; legitimate stores still open; a read error the storage makes is not reported as
damage; shards and their markers are written durably.

The catalogue below is one mutation per rule of the schema; the fuzz adds seeded random
ones (the same every run) over every field of the attributes and of the arrays' zarr.json.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import math
import os
import random
import resource
import shutil
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import TINY, assert_one_line_error, installed, invoke, render, shard_file, store_tool

from dcign.render.cli import main as render_main
from dcign.shared import local_shards
from dcign.shared.errors import DamagedMinibatch, StoreReadError
from dcign.shared.factors import chair_factors
from dcign.shared.store import open_store
from dcign.shared.store_writer import write_minibatch
from dcign.train.cli import main as train_main
from dcign.train.eval.cli import main as eval_main
from dcign.train.synthetic import write_blob_store

# What a command may allocate on a hostile store, traced in-process (numpy's buffers are
# traced too): far below what the claims in these stores would need (GBs to TBs).
TRACED_LIMIT = 200 * 2**20
# The address space a command-line process gets in the subprocess checks: dcign-store info
# and verify of the tiny store run in 1 GiB.
ADDRESS_SPACE = 2 * 2**30
GROUP = "train/light"


# ----------------------------------------------------------------------------- mutations

def _edit(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them


def _walk(node: object, path: tuple) -> tuple[dict | list, str | int]:
    for step in path[:-1]:
        node = node[step]
    return node, path[-1]


def attr(*path: str | int, value: object = None, delete: bool = False) -> Callable[[Path], None]:
    """Set (or delete) one field of the store's dcign attributes."""
    def mutate(store: Path) -> None:
        def change(data: dict) -> None:
            parent, key = _walk(data["attributes"]["dcign"], path)
            if delete:
                del parent[key]
            else:
                parent[key] = copy.deepcopy(value)
        _edit(store / "zarr.json", change)
    return mutate


def attrs_update(**fields: object) -> Callable[[Path], None]:
    def mutate(store: Path) -> None:
        _edit(store / "zarr.json", lambda d: d["attributes"]["dcign"].update(fields))
    return mutate


def whole_attrs(value: object) -> Callable[[Path], None]:
    def mutate(store: Path) -> None:
        _edit(store / "zarr.json", lambda d: d["attributes"].__setitem__("dcign", value))
    return mutate


def array_meta(name: str, change: Callable[[dict], object], group: str = GROUP
               ) -> Callable[[Path], None]:
    """Change one array's zarr.json (what a hostile or broken writer could leave)."""
    return lambda store: _edit(store / group / name / "zarr.json", change)


def _set_n(n: int) -> Callable[[dict], None]:
    return lambda meta: meta["shape"].__setitem__(0, n)


def _set_shard(s: int) -> Callable[[dict], None]:
    return lambda meta: meta["chunk_grid"]["configuration"]["chunk_shape"].__setitem__(0, s)


def _every_array(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(store: Path) -> None:
        for name in ("images", "factors", "identity", "complete"):
            array_meta(name, change)(store)
    return mutate


def _inner_chunks(shape: list[int]) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        meta["codecs"][0]["configuration"]["chunk_shape"] = shape
    return change


def _unsharded(meta: dict) -> None:
    inner = meta["codecs"][0]["configuration"]
    meta["codecs"] = inner["codecs"]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = inner["chunk_shape"]


def _write(relative: str, text: str) -> Callable[[Path], None]:
    return lambda store: (store / relative).write_text(text)


def _remove(relative: str) -> Callable[[Path], None]:
    return lambda store: (store / relative).unlink()


ARRAY_JSON = json.dumps({"shape": [3], "data_type": "bool", "chunk_grid": {
    "name": "regular", "configuration": {"chunk_shape": [1]}}, "chunk_key_encoding": {
    "name": "default", "configuration": {"separator": "/"}}, "fill_value": False,
    "codecs": [{"name": "bytes"}], "zarr_format": 3, "node_type": "array"})

NAN, INF = math.nan, math.inf

# (id, mutation, what the one line must name: a field, or any of several)
CATALOGUE: list[tuple[str, Callable[[Path], None], str | tuple[str, ...]]] = [
    ("attrs-a-string", whole_attrs("faces"), "attribute dcign"),
    ("attrs-a-list", whole_attrs([1, 2]), "attribute dcign"),
    ("schema-as-string", attr("schema_version", value="2"), "schema_version"),
    ("schema-missing", attr("schema_version", delete=True), "schema_version"),
    ("schema-future", attr("schema_version", value=3), "schema_version"),
    ("schema-bool", attr("schema_version", value=True), "schema_version"),
    ("dataset-int", attr("dataset", value=5), "dataset"),
    ("dataset-empty", attr("dataset", value=""), "dataset"),
    ("image-size-string", attr("image_size", value="32"), "image_size"),
    ("image-size-negative", attr("image_size", value=-32), "image_size"),
    ("image-size-huge", attr("image_size", value=10**9), "image_size"),
    ("image-size-float", attr("image_size", value=32.0), "image_size"),
    ("image-size-nan", attr("image_size", value=NAN), "image_size"),
    ("image-size-missing", attr("image_size", delete=True), "image_size"),
    ("image-size-other", attr("image_size", value=64),
     ("array train/azimuth/images", "image size 64 (store)")),
    ("batch-size-zero", attr("batch_size", value=0), "batch_size"),
    ("batch-size-huge", attr("batch_size", value=10**12), "batch_size"),
    ("batch-size-dict", attr("batch_size", value={"n": 4}), "batch_size"),
    ("batch-size-other", attr("batch_size", value=5),
     ("array train/azimuth/images", "batch size 5 (store)")),
    ("minibatch-over-a-gib", attrs_update(image_size=4096, batch_size=100), "batch_size"),
    ("factors-string", attr("factors", value="azimuth,light"), "factors"),
    ("factors-dict", attr("factors", value={"azimuth": 0}), "factors"),
    ("factors-empty", attr("factors", value=[]), "factors"),
    ("factors-thousands", attr("factors", value=[{}] * 5000), "factors"),
    ("factor-a-string", attr("factors", 0, value="azimuth"), "factors[0]"),
    ("factor-low-string", attr("factors", 1, "low", value="low"), "factors[1].low"),
    ("factor-low-nan", attr("factors", 1, "low", value=NAN), "factors[1].low"),
    ("factor-high-inf", attr("factors", 1, "high", value=INF), "factors[1].high"),
    ("factor-high-below-low", attr("factors", 1, "high", value=-1000.0), "factors[1].high"),
    ("factor-high-huge-int", attr("factors", 2, "high", value=10**400), "factors[2].high"),
    ("factor-latents-one", attr("factors", 0, "latents", value=[0]), "factors[0].latents"),
    ("factor-latents-three", attr("factors", 0, "latents", value=[0, 1, 2]),
     "factors[0].latents"),
    ("factor-latents-string", attr("factors", 0, "latents", value="0:1"),
     "factors[0].latents"),
    ("factor-latent-negative", attr("factors", 0, "latents", value=[-1, 1]),
     "factors[0].latents[0]"),
    ("factor-latent-beyond-code", attr("factors", 0, "latents", value=[0, 10**6]),
     "factors[0].latents[1]"),
    ("factor-latents-reversed", attr("factors", 1, "latents", value=[5, 2]),
     "factors[1].latents[1]"),
    ("factor-latent-float", attr("factors", 3, "latents", value=[3.5, None]),
     "factors[3].latents[0]"),
    ("factor-column-beyond", attr("factors", 2, "column", value=7), "columns"),
    ("factor-column-repeated", attr("factors", 2, "column", value=0), "columns"),
    ("factor-column-negative", attr("factors", 2, "column", value=-1), "factors[2].column"),
    ("factor-column-string", attr("factors", 2, "column", value="2"), "factors[2].column"),
    ("factor-column-huge", attr("factors", 2, "column", value=10**12), "factors[2].column"),
    ("factor-name-a-path", attr("factors", 0, "name", value="../../etc"), "factors[0].name"),
    ("factor-name-int", attr("factors", 0, "name", value=1), "factors[0].name"),
    ("factor-name-twice", attr("factors", 1, "name", value="azimuth"), "factors[1].name"),
    ("factor-unit-missing", attr("factors", 0, "unit", delete=True), "factors[0].unit"),
    ("factor-unknown-field", attr("factors", 0, "colour", value="red"), "factors[0].colour"),
    ("intrinsic-with-a-range", attr("factors", 3, "low", value=0.0), "factors[3].low"),
    ("two-intrinsic", attr("factors", 2, value={
        "name": "albedo", "unit": "id", "low": None, "high": None, "latents": [2, 3],
        "column": None, "description": ""}), "intrinsic factors"),
    ("generator-string", attr("generator", value="dcign.render.faces"), "generator"),
    ("generator-name-int", attr("generator", "name", value=7), "generator.name"),
    ("generator-seed-missing", attr("generator", "seed", delete=True), "generator.seed"),
    ("generator-seed-negative", attr("generator", "seed", value=-1), "generator.seed"),
    ("generator-seed-huge", attr("generator", "seed", value=2**70), "generator.seed"),
    ("generator-version-string", attr("generator", "version", value="3"),
     "generator.version"),
    ("model-list", attr("model", value=["embedded"]), "model"),
    ("model-fingerprint-missing", attr("model", "fingerprint", delete=True),
     "model.fingerprint"),
    ("model-name-none", attr("model", "name", value=None), "model.name"),
    ("history-string", attr("history", value="rendered"), "history"),
    ("history-entry-int", attr("history", value=[1]), "history[0]"),
    # the arrays' metadata against the attributes, and against each other
    ("markers-claim-a-trillion", array_meta("complete", _set_n(10**12)),
     f"{GROUP}/complete"),
    ("group-claims-1e8-one-a-shard", _every_array(lambda m: (_set_n(10**8)(m),
                                                             _set_shard(1)(m))),
     f"{GROUP}/images"),
    ("images-claim-1e12", array_meta("images", _set_n(10**12)), f"{GROUP}/images"),
    ("images-3d", array_meta("images", lambda m: m.__setitem__("shape", [3, 4, 32])),
     f"{GROUP}/images"),
    ("images-larger", array_meta("images", lambda m: m.__setitem__("shape", [3, 4, 64, 64])),
     f"{GROUP}/images"),
    ("images-huge-image", array_meta("images", lambda m: m.__setitem__(
        "shape", [3, 4, 10**9, 10**9])), f"{GROUP}/images"),
    ("factors-other-width", array_meta("factors", lambda m: m.__setitem__("shape", [3, 4, 2])),
     f"{GROUP}/factors"),
    ("identity-int32", array_meta("identity", lambda m: m.__setitem__("data_type", "int32")),
     f"{GROUP}/identity"),
    ("markers-uint8", array_meta("complete", lambda m: m.__setitem__("data_type", "uint8")),
     f"{GROUP}/complete"),
    ("images-half-image-chunks", array_meta("images", _inner_chunks([1, 4, 32, 16])),
     f"{GROUP}/images"),
    ("images-many-minibatch-chunks", array_meta("images", lambda m: (
        _set_shard(100)(m), _inner_chunks([50, 4, 32, 32])(m))), f"{GROUP}/images"),
    ("images-giant-shards", array_meta("images", lambda m: (
        _set_n(10**9)(m), _set_shard(10**9)(m))), f"{GROUP}/images"),
    ("markers-other-shards", array_meta("complete", lambda m: (
        _set_shard(50)(m), _inner_chunks([1])(m))), "shard sizes"),
    ("more-markers-than-images", array_meta("complete", _set_n(5)), f"{GROUP}/images"),
    ("images-unsharded", array_meta("images", _unsharded), f"{GROUP}/images"),
    ("images-metadata-missing", _remove(f"{GROUP}/images/zarr.json"), f"{GROUP}/images"),
    ("images-metadata-garbage", _write(f"{GROUP}/images/zarr.json", "{"), f"{GROUP}/images"),
    ("images-shape-strings", array_meta("images", lambda m: m.__setitem__(
        "shape", ["3", "4", "32", "32"])), f"{GROUP}/images"),
    ("images-a-group", _write(f"{GROUP}/images/zarr.json",
                              '{"zarr_format": 3, "node_type": "group"}'), f"{GROUP}/images"),
    ("group-an-array", _write(f"{GROUP}/zarr.json", ARRAY_JSON), GROUP),
    ("group-metadata-garbage", _write(f"{GROUP}/zarr.json", "[1, 2"), GROUP),
    ("split-an-array", _write("train/zarr.json", ARRAY_JSON), "train"),
]


def _fresh(tiny_store: Path, tmp_path: Path, mutate: Callable[[Path], None]) -> Path:
    store = tmp_path / "hostile.zarr"
    shutil.copytree(tiny_store, store)
    mutate(store)
    return store


def _traced(run: Callable[[], object]) -> tuple[object, int]:
    """What `run` returns and the most memory it had allocated at once (Python objects and
    numpy buffers)."""
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def as_shown(output: str) -> list[str]:
    """The non-empty lines a terminal shows: a progress bar that rewrote itself with \\r
    and was cleared leaves nothing."""
    lines = (line.rsplit("\r", 1)[-1] for line in output.split("\n"))
    return [line for line in lines if line.strip()]


def assert_shown_one_line(result, *needles: str) -> str:
    """assert_one_line_error, as a terminal shows the output (progress bars cleared)."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}")
    assert "Traceback" not in result.output
    lines = as_shown(result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_refused_naming(result, store: Path, needle: str | tuple[str, ...]) -> None:
    """One `Error:` line, no traceback, naming the field (not counting the store's path)."""
    assert_one_line_error(result)
    line = result.output.strip().replace(str(store), "STORE")
    needles = (needle,) if isinstance(needle, str) else needle
    assert any(n in line for n in needles), line


def _commands(store: Path, out: Path) -> dict[str, Callable[[], object]]:
    """Every command that opens a store, as a user runs it."""
    return {
        "info": lambda: store_tool(["info", store]),
        "verify": lambda: store_tool(["verify", store]),
        "preview": lambda: store_tool(["preview", store, "--out", out / "p.png"]),
        "repair": lambda: invoke(render_main, ["repair", store, "--workers", "1", "--quiet"]),
        "extend": lambda: render([*TINY, "--batches", "4", "--out", store]),
        "train": lambda: invoke(train_main, ["--store", store, "--out", out / "run",
                                             "--steps", "1", "--no-progress"]),
        "eval": lambda: invoke(eval_main, ["--checkpoint", out, "--store", store,
                                           "--out", out / "report"]),
    }


@pytest.mark.parametrize("mutate, needle", [pytest.param(m, n, id=i) for i, m, n in CATALOGUE])
def test_every_command_refuses_a_hostile_store_in_one_line_naming_the_field(
        tiny_store, tmp_path, mutate, needle):
    store = _fresh(tiny_store, tmp_path, mutate)
    for name, run in _commands(store, tmp_path).items():
        started = time.monotonic()
        result, peak = _traced(run)
        assert_refused_naming(result, store, needle)
        assert peak < TRACED_LIMIT, f"{name}: {peak / 2**20:.0f} MiB"
        assert time.monotonic() - started < 20, name
    assert not list(store.rglob("*.partial"))


# --------------------------------------------------------------------------------- fuzz

HOSTILE_VALUES = [None, True, False, -1, 0, 1, 2**31, 2**63, 10**30, -(10**30), 1.5, NAN,
                  INF, -INF, "", "x", "../..", "1e9", [], [0], [0, 1, 2], [None, None], {},
                  {"name": 1}, [[[]]]]


def _paths(node: object, path: tuple = ()) -> list[tuple]:
    """Every field of a JSON tree, as key paths."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*path, i))
    return found


def _fuzz(store: Path, seed: str, target: str) -> str:
    """Apply one seeded random mutation to the store's attributes ("attrs") or to one of
    train/light's arrays' zarr.json ("arrays"): a field replaced by a hostile value or
    deleted. The same seed gives the same mutation on every run (a str seed is hashed by
    SHA-512, not by Python's randomised hash). Returns what it did, for messages."""
    rng = random.Random(seed)
    if target == "attrs":
        key, inside = "zarr.json", ("attributes", "dcign")
    else:
        key = f"{GROUP}/{rng.choice(['images', 'factors', 'identity', 'complete'])}/zarr.json"
        inside = ()
    data = json.loads((store / key).read_text())
    tree = data
    for step in inside:
        tree = tree[step]
    top = rng.choice(sorted(tree))  # each field as likely, however large (history is)
    path = rng.choice([p for p in _paths(tree) if p[0] == top])
    operation = rng.choice(["replace", "replace", "replace", "delete"])
    value = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    parent, last = _walk(tree, path)
    if operation == "delete":
        del parent[last]
    else:
        parent[last] = value
    (store / key).write_text(json.dumps(data))
    return f"{key}: {_label(path)} {operation} {value!r}"[:200]


def _label(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _assert_refused_or_read(result, store: Path, needles: tuple[str, ...], what: str) -> None:
    """A mutation may leave the store valid (a description, a fill value): then the command
    succeeds, or reports the data as not what the store states (verify: one FAIL line each,
    then one Error line). Otherwise one `Error:` line naming the field. Never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{what}: uncaught {result.exception!r}\n{result.output}")
    assert "Traceback" not in result.output, what
    if result.exit_code == 0:
        return
    lines = as_shown(result.output)
    assert lines[-1].startswith("Error: "), f"{what}\n{result.output}"
    if len(lines) == 1:
        line = lines[0].replace(str(store), "STORE")
        assert any(n in line for n in needles), f"{what}\n{line}"
    else:
        assert all(line.startswith("FAIL ") for line in lines[:-1]), f"{what}\n{result.output}"


FUZZ_CASES = 40


@pytest.mark.parametrize("case", range(FUZZ_CASES))
def test_fuzzed_attributes_are_read_or_refused_in_one_line(tiny_store, tmp_path, case):
    store = tmp_path / "fuzzed.zarr"
    shutil.copytree(tiny_store, store)
    what = _fuzz(store, f"attrs-{case}", "attrs")
    field = what.split(": ", 1)[1].split(" ", 1)[0].split(".")[0].split("[")[0]
    needles = (field, "array ", "not a readable Zarr store", "schema")
    for command in ("info", "verify", "preview"):
        result, peak = _traced(_commands(store, tmp_path)[command])
        _assert_refused_or_read(result, store, needles, f"{command} after {what}")
        assert peak < TRACED_LIMIT, f"{command} after {what}: {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("case", range(FUZZ_CASES))
def test_fuzzed_array_metadata_is_read_or_refused_in_one_line(tiny_store, tmp_path, case):
    store = tmp_path / "fuzzed.zarr"
    shutil.copytree(tiny_store, store)
    what = _fuzz(store, f"arrays-{case}", "arrays")
    needles = (f"{GROUP}/{what.split('/')[2]}", "shard sizes", "markers of")
    for command in ("info", "verify", "preview"):
        result, peak = _traced(_commands(store, tmp_path)[command])
        _assert_refused_or_read(result, store, needles, f"{command} after {what}")
        assert peak < TRACED_LIMIT, f"{command} after {what}: {peak / 2**20:.0f} MiB"


def test_the_fuzz_is_seeded_the_same_mutations_every_run(tiny_store, tmp_path):
    done = []
    for attempt in range(2):
        store = tmp_path / f"again-{attempt}.zarr"
        shutil.copytree(tiny_store, store)
        done.append([_fuzz(store, f"attrs-{case}", "attrs") for case in range(5)])
    assert done[0] == done[1] and len(set(done[0])) == 5


# ------------------------------------------------------------------ bounded, as processes

def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _cli(command: str, *args: str | Path) -> subprocess.CompletedProcess:
    """A console script in a process of its own with 2 GiB of address space."""
    exe = installed(command)
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=_limited, timeout=120,
                          env=os.environ | {"MALLOC_ARENA_MAX": "2"})


HUGE_CLAIMS = [c for c in CATALOGUE if c[0] in (
    "markers-claim-a-trillion", "group-claims-1e8-one-a-shard", "images-claim-1e12",
    "images-huge-image", "images-giant-shards", "image-size-huge", "batch-size-huge",
    "factors-thousands", "factor-high-huge-int", "factor-column-huge")]


@pytest.mark.parametrize("mutate, needle", [pytest.param(m, n, id=i) for i, m, n in HUGE_CLAIMS])
def test_huge_claims_are_refused_by_the_command_line_tools_within_2_gib(
        tiny_store, tmp_path, mutate, needle):
    store = _fresh(tiny_store, tmp_path, mutate)
    for command in ("info", "verify"):
        done = _cli("dcign-store", command, store)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert done.returncode != 0 and len(lines) == 1, done.stdout + done.stderr
        line = lines[0].replace(str(store), "STORE")
        assert line.startswith("Error: ") and needle in line, line


def test_a_group_claiming_ten_million_minibatches_is_counted_and_verified_in_bounded_memory(
        tiny_store, tmp_path):
    """Within the limits (10 million minibatches, one a shard), so the store opens; info and
    verify cost what the files there cost, not what the shape claims."""
    store = _fresh(tiny_store, tmp_path, _every_array(lambda m: (_set_n(10**7)(m),
                                                                 _set_shard(1)(m))))
    started = time.monotonic()
    info = _cli("dcign-store", "info", store)
    assert info.returncode == 0, info.stderr
    assert "train  light" in info.stdout and "/10000000" in info.stdout
    verify = _cli("dcign-store", "verify", store)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr, verify.stderr
    assert verify.stderr.splitlines()[-1].startswith("Error: ")
    assert time.monotonic() - started < 60


# ---------------------------------------------------------------- what must still open

@pytest.fixture(scope="module")
def legitimate(tmp_path_factory) -> dict[str, Path]:
    """Stores dcign makes other than the tiny faces store: chairs on the view grid (a factor
    tied to no latent), continuous chairs, faces with only some factors, blobs whose table
    has only azimuth and the identity."""
    root = tmp_path_factory.mktemp("legitimate")
    from dcign.render.cli import main as render_cli

    stores = {}
    for name, args in (
            ("chairs-grid", ["chairs", "--size", "32", "--batch-size", "4", "--batches", "1",
                             "--test-batches", "1", "--chairs", "16", "--test-chairs", "4",
                             "--workers", "1", "--quiet"]),
            ("faces-light", ["faces", *TINY, "--vary", "light"])):
        stores[name] = root / f"{name}.zarr"
        result = invoke(render_cli, [*args, "--out", stores[name]])
        assert result.exit_code == 0, result.output
    table = tuple(f for f in chair_factors("continuous") if f.name != "elevation")
    table = tuple(f if f.is_intrinsic else dataclasses.replace(f, column=0) for f in table)
    stores["blobs-some-factors"] = write_blob_store(root / "blobs.zarr", 32, 2, 1,
                                                    batch_size=4, factors=table)
    return stores


@pytest.mark.parametrize("name", ["chairs-grid", "faces-light", "blobs-some-factors"])
def test_legitimate_stores_still_open(legitimate, name):
    store = legitimate[name]
    info = store_tool(["info", store])
    assert info.exit_code == 0, info.output
    assert "writer lock: one writer guaranteed" in info.output
    opened = open_store(store)
    for split, factor in opened.sections():
        assert len(opened.read_complete(split, factor).indices) > 0
    if name != "blobs-some-factors":  # blobs are test data, not images that verify
        verify = store_tool(["verify", store])
        assert verify.exit_code == 0, verify.output


def test_info_says_what_the_writer_lock_guarantees_on_a_disk(tiny_store):
    lines = store_tool(["info", tiny_store]).output.splitlines()
    lock = [line for line in lines if line.startswith("writer lock:")]
    assert len(lock) == 1 and "link(2)" in lock[0] and "one holder" in lock[0]


# ------------------------------------------------------------ leftovers and read errors

def _leave_partials(store: Path) -> None:
    """What a writer killed inside zarr's write leaves: the temporary file beside a shard."""
    for name, shard in (("complete", "c/0"), ("images", "c/0/0/0/0"), ("identity", "c/0/0")):
        (store / GROUP / name / f"{shard}.0123456789abcdef.partial").write_bytes(b"half")


def test_a_leftover_partial_file_is_not_taken_for_a_shard(fresh_store):
    _leave_partials(fresh_store)
    assert store_tool(["info", fresh_store]).exit_code == 0
    verify = store_tool(["verify", fresh_store])
    assert verify.exit_code == 0, verify.output
    repair = invoke(render_main, ["repair", fresh_store, "--workers", "1", "--quiet"])
    assert repair.exit_code == 0 and "nothing to repair" in repair.output, repair.output


def test_a_leftover_partial_file_does_not_hide_a_missing_shard(fresh_store):
    _leave_partials(fresh_store)
    shard_file(fresh_store, "train", "light", "images").unlink()
    lines = store_tool(["verify", fresh_store]).output.splitlines()
    assert sum("train/light/" in line and "its shard file is gone" in line
               for line in lines) == 3


def test_in_a_bucket_a_leftover_key_is_not_a_shard_and_bad_attributes_are_one_line(
        bucket, tiny_store):
    import s3fs

    fs, url = s3fs.S3FileSystem(), f"{bucket}/faces.zarr"
    fs.put(str(tiny_store), url, recursive=True)
    fs.pipe(f"{url}/{GROUP}/complete/c/0.0123456789abcdef.partial", b"half")
    assert store_tool(["verify", url]).exit_code == 0
    fs.rm(f"{url}/{GROUP}/images/c/0/0/0/0")
    lines = store_tool(["verify", url]).output.splitlines()
    assert sum("its shard file is gone" in line for line in lines) == 3
    attrs = json.loads(fs.cat(f"{url}/zarr.json"))
    attrs["attributes"]["dcign"]["factors"][1]["low"] = "low"
    fs.pipe(f"{url}/zarr.json", json.dumps(attrs).encode())
    assert_one_line_error(store_tool(["info", url]), "factors[1].low")


@pytest.fixture
def failing_reads(monkeypatch):
    """Reads of train/light's shards fail as a flaky disk or a dropped connection does."""
    real = zarr.storage.LocalStore.get
    failures = []

    async def get(self, key, prototype=None, byte_range=None):
        if f"{GROUP}/" in key and "/c/" in key and any(f in key for f in failures):
            raise OSError(errno.EIO, "Input/output error", key)
        return await real(self, key, prototype, byte_range)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", get)
    # the images of a local store are read from their shard files without zarr: the same
    # failures there
    for name in ("read_tail", "read_range"):
        real_read = getattr(local_shards, name)

        def failing(path, *args, real_read=real_read):
            if f"{GROUP}/" in path and any(f in path for f in failures):
                raise OSError(errno.EIO, "Input/output error", path)
            return real_read(path, *args)

        monkeypatch.setattr(local_shards, name, failing)
    return failures


def test_a_read_error_is_not_reported_as_damage(fresh_store, failing_reads):
    failing_reads.append("/images/")
    for result in (store_tool(["verify", fresh_store]),
                   invoke(render_main, ["repair", fresh_store, "--workers", "1", "--quiet"])):
        assert_shown_one_line(result, "could not read train/light/0", "Input/output error",
                              "not damage")
        assert "repair" not in result.output and "damaged" not in result.output


def test_an_unreadable_marker_shard_is_a_read_error_not_an_incomplete_group(fresh_store,
                                                                           failing_reads):
    failing_reads.append("/complete/")
    for result in (store_tool(["info", fresh_store]), store_tool(["verify", fresh_store]),
                   invoke(render_main, ["repair", fresh_store, "--workers", "1", "--quiet"])):
        assert_shown_one_line(result, "could not read the markers of train/light",
                              "Input/output error", "not damage")


def test_a_read_error_reaches_readers_as_a_read_error_not_damage(fresh_store, failing_reads):
    store = open_store(fresh_store)
    failing_reads.append("/images/")
    for read in (lambda: store.minibatch("train", "light", 1),
                 lambda: store.read_images("train", [("light", 0)]),
                 lambda: store.read_complete("train", "light")):
        with pytest.raises(StoreReadError) as caught:
            read()
        assert not isinstance(caught.value, DamagedMinibatch)


def test_a_read_error_in_training_is_one_line_not_a_repair(fresh_store, failing_reads, tmp_path):
    failing_reads.append("/images/")
    result = invoke(train_main, ["--store", fresh_store, "--out", tmp_path / "run", "--steps",
                                 "3", "--ratio", "0:0:1:0", "--no-progress"])
    assert_one_line_error(result, "could not read", "not damage")


def test_a_read_error_in_a_loader_worker_reaches_the_trainer_as_itself(fresh_store,
                                                                        failing_reads):
    """A loader worker's exception would reach the main process re-worded with its
    traceback; the step dataset hands back the store's error as data instead, intact across
    the worker's pickling, for the loop to raise in one line."""
    import pickle

    from dcign.train.data import StepDataset, open_training_data

    data = open_training_data(str(fresh_store), "dcign", "0:0:1:0", 200)
    failing_reads.append("/images/")
    item = pickle.loads(pickle.dumps(StepDataset(data, seed=0, per_step=1)[0]))
    assert isinstance(item, StoreReadError) and "not damage" in str(item)


# ------------------------------------------------------------------------------ fsync

def test_shards_are_fsynced_before_their_markers_and_the_markers_after(tmp_path, monkeypatch):
    store_path = write_blob_store(tmp_path / "blobs.zarr", 32, 1, 1, batch_size=4)
    store = open_store(store_path, mode="r+")
    arrays = store.arrays("train", "light")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    written: list[str] = []
    real_setitem = zarr.Array.__setitem__

    def setitem(self, selection, value):
        written.append(self.path.rsplit("/", 1)[-1])
        synced.append(f"WRITE {self.path.rsplit('/', 1)[-1]}")
        return real_setitem(self, selection, value)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(zarr.Array, "__setitem__", setitem)
    m = store.minibatch("train", "light", 0)
    write_minibatch(arrays, 0, m.images, m.values, m.identity)
    marker_write = synced.index("WRITE complete")
    before, after = synced[:marker_write], synced[marker_write + 1:]
    for name, shard in (("images", "c/0/0/0/0"), ("factors", "c/0/0/0"),
                        ("identity", "c/0/0")):
        assert str(store_path / "train/light" / name / shard) in before
        assert str(store_path / "train/light" / name / "c") in before  # its directories
    assert str(store_path / "train/light/complete/c/0") in after
    assert str(store_path / "train/light/complete") in after
    assert np.array_equal(open_store(store_path).minibatch("train", "light", 0).images,
                          m.images)
