"""`dcign-store export STORE OUT`: a store as a folder that Hugging Face `datasets` and
Croissant readers load with no dcign code, one row per image:

    OUT/README.md                 dataset card: Hub YAML front matter (configs, features), the
                                  factor table, how to regroup rows, how to regenerate it
    OUT/croissant.json            Croissant 1.0 metadata (+ responsible-AI fields)
    OUT/preview.png               one minibatch of each factor (shared/preview.py's grid)
    OUT/data/<factor>/<split>-NNNNN-of-MMMMM.parquet   one file per store shard
    OUT/dcign-export.json         the marker, written last: store digest, settings, files

Columns: `image` (the Hub's Image feature: a struct of lossless gray PNG `bytes` and `path`),
one float32 column per continuous factor (unit and range in the field's metadata), `identity`
(int64), `minibatch` (int64: its index in the store), `position` (int32: in the minibatch) and
`varying` (string: the factor that varies in the minibatch).

Memory is bounded by one store shard: its minibatches become one Parquet file, written and
dropped before the next is read. The folder is built under a temporary name and renamed into
place whole, so a killed export never looks finished.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DcignError
from .export_card import croissant, dataset_card
from .export_reader import (
    FIXED_COLUMNS,
    FORMAT,
    FORMAT_VERSION,
    IDENTITY,
    IMAGE,
    MARKER,
    MINIBATCH,
    POSITION,
    VARYING,
    _pyarrow,
    read_marker,
)
from .factors import continuous_factors
from .preview import save_preview
from .store import ATTRS_KEY, Minibatch, Store, StoreSpec

PNG_LEVEL = 6  # zlib level: lossless at any level; 6 is Pillow's default trade-off
PREVIEW_COLUMNS = 10


@dataclass(frozen=True)
class ExportFile:
    """One Parquet file: the complete minibatches of one store shard of one section."""

    split: str
    factor: str
    path: str  # relative to OUT
    minibatches: tuple[int, ...]


@dataclass(frozen=True)
class ExportRequest:
    """What an export of a store will hold, and what identifies it (digest, settings)."""

    store: Store
    out: Path
    files: tuple[ExportFile, ...]
    digest: str
    settings: dict

    @property
    def minibatches(self) -> int:
        return sum(len(f.minibatches) for f in self.files)


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    minibatches: int
    files: int
    written: bool  # False: the folder was already this export, nothing was written


# ----------------------------------------------------------------------------- planning

def store_digest(store: Store) -> str:
    """What identifies a store's content cheaply: its attributes (factor table, generator,
    seed, model; not its run history, which a repair extends without changing a byte) and
    every section's complete minibatches (their markers, not their pixels: a minibatch is a
    pure function of the settings and its index)."""
    attrs = {k: v for k, v in store.root.attrs.asdict()[ATTRS_KEY].items() if k != "history"}
    h = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode())
    for split, factor in store.sections():
        h.update(f"{split}/{factor}:".encode())
        h.update(store.complete(split, factor).astype("<i8").tobytes())
    return h.hexdigest()


def prepare_export(store: Store, out: str | Path, factors: tuple[str, ...] = (),
                   splits: tuple[str, ...] = ()) -> ExportRequest:
    """The files an export of `store` (of the named factors and splits, or all) holds."""
    if "://" in str(out):
        raise DcignError(f"{out}: an export is written to a local folder; upload it from "
                         "there (e.g. `huggingface-cli upload`)")
    clashes = [f.name for f in continuous_factors(store.spec.factors) if f.name in FIXED_COLUMNS]
    if clashes:
        raise DcignError(f"{store.path}: factor {clashes[0]!r} has the name of an export "
                         "column; it cannot be exported")
    files = []
    for split, factor in store.sections():
        if (factors and factor not in factors) or (splits and split not in splits):
            continue
        ks = store.complete(split, factor)
        per_shard = store.arrays(split, factor).per_shard
        shards = [ks[ks // per_shard == s] for s in np.unique(ks // per_shard)]
        for i, part in enumerate(shards):
            name = f"data/{factor}/{split}-{i:05d}-of-{len(shards):05d}.parquet"
            files.append(ExportFile(split, factor, name, tuple(int(k) for k in part)))
    if not files:
        raise DcignError(f"{store.path} has no complete minibatches to export"
                         + (" of the factors and splits asked for" if factors or splits else ""))
    settings = {"format_version": FORMAT_VERSION, "factors": sorted(factors),
                "splits": sorted(splits), "png_level": PNG_LEVEL}
    return ExportRequest(store, Path(out), tuple(files), store_digest(store), settings)


def existing_export(request: ExportRequest, overwrite: bool) -> bool:
    """Whether OUT already is this export (same store digest and settings): nothing to do.
    Refuses, in one line, a folder that is another export (unless `overwrite`) or that is
    not an export at all (never replaced: it may be anything of the user's)."""
    out = request.out
    if not out.exists():
        return False
    if not (out / MARKER).is_file():
        if out.is_dir() and not any(out.iterdir()):
            return False
        raise DcignError(f"{out} exists and is not a dcign export; choose another OUT "
                         "(--overwrite replaces only an export)")
    try:
        marker = read_marker(out)
    except DcignError:
        if overwrite:  # its marker names it an export, one this dcign cannot read: replaced
            return False
        raise
    changed = []
    if marker["store"]["digest"] != request.digest:
        changed.append(f"from another store or one changed since ({marker['store']['url']})")
    if marker["settings"] != request.settings:
        changed.append("with other settings (--factor, --split)")
    if changed:
        problem = "exported " + " and ".join(changed)
    else:
        damaged = _damaged_files(out, marker)
        if not damaged:
            return True
        problem = f"exported with files since removed or changed ({', '.join(damaged[:3])})"
    if overwrite:
        return False
    raise DcignError(f"{out} was {problem}; --overwrite replaces it")


def _damaged_files(out: Path, marker: dict) -> list[str]:
    """The files of a finished export that are gone or not the size written (a cheap check:
    `croissant.json` holds each one's sha256 for a full one)."""
    files = [f for s in marker["sections"] for f in s["files"]]
    return [f["path"] for f in files if not (out / f["path"]).is_file()
            or (out / f["path"]).stat().st_size != f.get("bytes")]


# ----------------------------------------------------------------------------- rows

def png(image: np.ndarray) -> bytes:
    """An image as lossless PNG bytes: mode L for a gray (H, W) one, RGB for (H, W, 3)."""
    buffer = io.BytesIO()
    mode = "RGB" if image.ndim == 3 else "L"
    Image.fromarray(np.ascontiguousarray(image), mode=mode).save(buffer, format="PNG",
                                                                compress_level=PNG_LEVEL)
    return buffer.getvalue()


def png_encoding(spec: StoreSpec) -> str:
    """How the image column's PNGs are encoded, as its field's metadata says."""
    if spec.channels == 1:
        return "PNG, 8-bit gray (mode L), lossless"
    return "PNG, 8-bit RGB (mode RGB), lossless"


def hf_features(spec: StoreSpec) -> dict:
    """The Hub's features of the rows (what `datasets` reads from the schema's metadata)."""
    value = {"_type": "Value"}
    return ({IMAGE: {"_type": "Image"}}
            | {f.name: value | {"dtype": "float32"} for f in continuous_factors(spec.factors)}
            | {IDENTITY: value | {"dtype": "int64"}, MINIBATCH: value | {"dtype": "int64"},
               POSITION: value | {"dtype": "int32"}, VARYING: value | {"dtype": "string"}})


def arrow_schema(spec: StoreSpec):
    """The Parquet schema: each factor's unit, range and latent group in its field's
    metadata, the Hub's features in the schema's."""
    import pyarrow as pa  # export_store has checked it is installed

    intrinsic = next((f for f in spec.factors if f.is_intrinsic), None)
    fields = [pa.field(IMAGE, pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                       metadata={"encoding": png_encoding(spec),
                                 "size": f"{spec.image_size}x{spec.image_size}"})]
    for f in continuous_factors(spec.factors):
        fields.append(pa.field(f.name, pa.float32(), nullable=False, metadata={
            "unit": f.unit, "low": repr(f.low), "high": repr(f.high),
            "latents": json.dumps(list(f.latents)), "description": f.description}))
    fields += [
        pa.field(IDENTITY, pa.int64(), nullable=False, metadata={
            "unit": "identity", "description": intrinsic.description if intrinsic else
            "which object"}),
        pa.field(MINIBATCH, pa.int64(), nullable=False,
                 metadata={"description": "the minibatch's index in the store's section"}),
        pa.field(POSITION, pa.int32(), nullable=False,
                 metadata={"description": "the image's position in its minibatch"}),
        pa.field(VARYING, pa.string(), nullable=False,
                 metadata={"description": "the one factor that varies in the minibatch"})]
    features = {"info": {"features": hf_features(spec)}}
    return pa.schema(fields, metadata={"huggingface": json.dumps(features)})


def rows(minibatches: list[Minibatch], spec: StoreSpec):
    """One Parquet table of the images of some minibatches, a row each."""
    import pyarrow as pa

    images = [img for m in minibatches for img in m.images]
    values = np.concatenate([m.values for m in minibatches])
    b = spec.batch_size
    # Pillow encodes without the GIL: threads encode a shard's PNGs in parallel (the bytes are
    # the same), 1.65x one thread's rate for 150x150 faces on 2 cores
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        encoded = list(pool.map(png, images, chunksize=spec.batch_size))
    columns = {IMAGE: [{"bytes": data, "path": None} for data in encoded]}
    for f in continuous_factors(spec.factors):
        columns[f.name] = values[:, f.column]
    columns |= {IDENTITY: np.concatenate([m.identity for m in minibatches]),
                MINIBATCH: np.repeat([m.index for m in minibatches], b).astype(np.int64),
                POSITION: np.tile(np.arange(b, dtype=np.int32), len(minibatches)),
                VARYING: [m.factor for m in minibatches for _ in range(b)]}
    return pa.Table.from_pydict(columns, schema=arrow_schema(spec))


def write_file(store: Store, file: ExportFile, root: Path) -> str:
    """Write one Parquet file (row groups of whole minibatches); its sha256."""
    pq = _pyarrow()
    path = root / file.path
    path.parent.mkdir(parents=True, exist_ok=True)
    minibatches = [store.minibatch(file.split, file.factor, k) for k in file.minibatches]
    table = rows(minibatches, store.spec)
    group = store.spec.batch_size * max(1, 100 // store.spec.batch_size)  # ~100 images
    pq.write_table(table, path, row_group_size=group, compression="none")  # PNG is packed
    return sha256(path)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ----------------------------------------------------------------------------- the folder

def export_store(request: ExportRequest, overwrite: bool = False,
                 on_minibatches: Callable[[int], object] = lambda n: None) -> ExportSummary:
    """Write what `request` describes into a temporary folder beside OUT, then rename
    it into place; a rerun on a finished, identical export writes nothing."""
    out = request.out
    _pyarrow()  # one line if it is not installed, before anything is written
    if existing_export(request, overwrite):
        return ExportSummary(out, request.minibatches, len(request.files), written=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_partials(out)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        digests = {}
        for file in request.files:
            digests[file.path] = write_file(request.store, file, partial)
            on_minibatches(len(file.minibatches))
        _write_documents(request, partial, digests)
        _swap_in(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone after the rename, unless it failed
    return ExportSummary(out, request.minibatches, len(request.files), written=True)


def _write_documents(request: ExportRequest, root: Path, digests: dict[str, str]) -> None:
    save_preview(request.store, _preview_rows(request), root / "preview.png", PREVIEW_COLUMNS)
    marker = _marker(request, digests, root)
    (root / "README.md").write_text(dataset_card(marker))
    (root / "croissant.json").write_text(json.dumps(croissant(marker, root), indent=2) + "\n")
    (root / MARKER).write_text(json.dumps(marker, indent=1) + "\n")  # last: it says finished


def _preview_rows(request: ExportRequest) -> list[tuple[str, str, int]]:
    """The first exported minibatch of each factor: of the train split, or any if none."""
    first: dict[tuple[str, str], int] = {}
    for f in request.files:
        first.setdefault((f.split, f.factor), f.minibatches[0])
    rows = [(s, f, k) for (s, f), k in first.items()]
    return [r for r in rows if r[0] == "train"] or rows[:4]


def _marker(request: ExportRequest, digests: dict[str, str], root: Path) -> dict:
    store, sections = request.store, {}
    for f in request.files:
        sections.setdefault((f.split, f.factor), []).append(
            {"path": f.path, "minibatches": list(f.minibatches), "sha256": digests[f.path],
             "rows": len(f.minibatches) * store.spec.batch_size,
             "bytes": (root / f.path).stat().st_size})
    return {"format": FORMAT, "version": FORMAT_VERSION,
            "store": {"url": store.path, "digest": request.digest},
            "settings": request.settings, "dcign_version": _dcign_version(),
            "attrs": store.root.attrs.asdict()[ATTRS_KEY],
            "sections": [{"split": s, "factor": f, "files": files}
                         for (s, f), files in sections.items()]}


def _dcign_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dcign")
    except PackageNotFoundError:
        return "unknown"


def _swap_in(partial: Path, out: Path) -> None:
    """Rename the finished folder into place; an export it replaces is moved aside first
    and removed after, so OUT is always a whole export (the old or the new)."""
    if not out.exists():
        os.rename(partial, out)
        return
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    os.rename(partial, out)
    shutil.rmtree(old, ignore_errors=True)


def _clear_partials(out: Path) -> None:
    """Remove what killed exports to OUT left (their process is gone); a running one's is
    kept."""
    for leftover in out.parent.glob(f".{out.name}.partial-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
