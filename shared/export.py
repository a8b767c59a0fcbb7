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
dropped before the next is read. Each file is one task: written here (threads encode its PNGs)
or, with a Dask scheduler (`--scheduler`, DASK_SCHEDULER_ADDRESS), on the cluster's workers,
which open the store themselves and send back only the file's sha256 and size.

The export holds the store's writer lock while it reads (shared/lock.py): a render that
would extend or repair the store waits for it, and a store changed between planning and the
lock is refused.

Finished means the marker is there, and a rerun trusts no more than the marker: each file's
sha256 is checked against the one it records, so a changed byte is found. How a killed
export is kept from looking finished depends on where OUT is:

- A local folder is built under a temporary name beside it and renamed into place whole.
- An object store (s3://…) has no rename, and copying a prefix is neither atomic nor cheap,
  so the files are written under OUT itself: first `dcign-export.incomplete` (OUT is then an
  export in progress, which a rerun recognises and redoes from the start), then the Parquet
  files and documents, the marker last, and the incomplete note is removed after it. A
  reader that checks for the marker never sees half an export; one that globs the Parquet
  files while an export runs can (two exports to one OUT at once are not guarded either).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .dask_cluster import TASK_RETRIES, announcement, scheduler_client
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
    parse_marker,
)
from .factors import continuous_factors
from .location import Location, locate
from .lock import EXPORT, HeldLock, writer_lock
from .preview import save_preview
from .store import ATTRS_KEY, Minibatch, Store, StoreSpec, open_store

PNG_LEVEL = 6  # zlib level: lossless at any level; 6 is Pillow's default trade-off
PREVIEW_COLUMNS = 10
INCOMPLETE = "dcign-export.incomplete"  # an object store's OUT while an export writes it
DOCUMENTS = ("preview.png", "README.md", "croissant.json", MARKER)  # the marker last


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
    out: Location
    files: tuple[ExportFile, ...]
    digest: str
    settings: dict

    @property
    def minibatches(self) -> int:
        return sum(len(f.minibatches) for f in self.files)


@dataclass(frozen=True)
class ExportSummary:
    out: str
    minibatches: int
    files: int
    written: bool  # False: the folder was already this export, nothing was written


# ----------------------------------------------------------------------------- planning

def prepare_export(store: Store, out: str | Path, factors: tuple[str, ...] = (),
                   splits: tuple[str, ...] = ()) -> ExportRequest:
    """The files an export of `store` (of the named factors and splits, or all) holds."""
    target = locate(out)  # one line if the URL's filesystem is not installed
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
    return ExportRequest(store, target, tuple(files), store.content_digest(), settings)


def existing_export(request: ExportRequest, overwrite: bool) -> bool:
    """Whether OUT already is this export (same store digest and settings, every file's
    sha256 the one recorded): nothing to do. Refuses, in one line, a folder that is another
    export or a damaged one (unless `overwrite`) or that is not an export at all (never
    replaced: it may be anything of the user's). An export an object store holds half of
    (killed before its marker) is redone."""
    out = request.out
    try:
        finished = out.exists(MARKER)
        if not finished:
            if not out.exists() or out.is_empty_dir() or out.exists(INCOMPLETE):
                return False
            raise DcignError(f"{out.url} exists and is not a dcign export; choose another OUT "
                             "(--overwrite replaces only an export)")
        try:
            marker = _read_marker(out)
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
    except _storage_errors() as exc:
        raise _unreachable(out, exc) from None
    if overwrite:
        return False
    raise DcignError(f"{out.url} was {problem}; --overwrite replaces it")


def _read_marker(out: Location) -> dict:
    try:
        text = out.read_text(MARKER)
    except (OSError, UnicodeDecodeError) as exc:
        raise DcignError(f"{out.url}: unreadable export marker {MARKER} ({exc})") from None
    return parse_marker(text, out.url)


def _damaged_files(out: Location, marker: dict) -> list[str]:
    """The files of a finished export that are gone or whose bytes are not the ones written:
    each one read back and its sha256 compared with the marker's (a size would miss a
    changed byte)."""
    return [f["path"] for s in marker["sections"] for f in s["files"]
            if _digest_of(out, f["path"]) != f.get("sha256")]


def _digest_of(out: Location, path: str) -> str | None:
    """The sha256 of a file under OUT, None if it is not there."""
    try:
        with out.fs.open(out.key(path), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What OUT's filesystem raises when it cannot be reached: OSError, and botocore's own
    errors, which s3fs lets through untranslated (no credentials, an endpoint that does not
    answer)."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError)


def _unreachable(out: Location, exc: BaseException) -> DcignError:
    return DcignError(f"cannot read or write the export at {out.url} ({type(exc).__name__}: "
                      f"{exc}); check the URL, its bucket and your credentials")


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


def write_file(store: Store, file: ExportFile, root: Location) -> tuple[str, int]:
    """Write one Parquet file (row groups of whole minibatches) under `root`; its sha256 and
    size, taken from the bytes written (no read back)."""
    import pyarrow as pa

    pq = _pyarrow()
    minibatches = [store.minibatch(file.split, file.factor, k) for k in file.minibatches]
    table = rows(minibatches, store.spec)
    group = store.spec.batch_size * max(1, 100 // store.spec.batch_size)  # ~100 images
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=group, compression="none")  # PNG is packed
    data = sink.getvalue().to_pybytes()
    _put(root, file.path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def export_file(store_url: str, file: ExportFile, root_url: str) -> tuple[str, int]:
    """One Parquet file as a task for any process (a Dask worker): it opens the store and
    OUT from their URLs itself and returns only the file's sha256 and size."""
    return write_file(open_store(store_url), file, locate(root_url))


def _put(root: Location, path: str, data: bytes) -> None:
    if root.is_local:
        target = Path(root.key(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    else:
        root.fs.pipe_file(root.key(path), data)  # an object appears whole or not at all


def _url_for_workers(location: Location) -> str:
    """A URL that names the same place from another process: a local path made absolute
    (a worker's working directory is its own)."""
    return location.root if location.is_local else location.url


Written = dict[str, tuple[str, int]]  # file path → (sha256, bytes)


def _write_here(request: ExportRequest, root: Location,
                on_minibatches: Callable[[int], object]) -> Written:
    written = {}
    for file in request.files:
        written[file.path] = write_file(request.store, file, root)
        on_minibatches(len(file.minibatches))
    return written


def _write_on_dask(client, request: ExportRequest, root: Location,
                   on_minibatches: Callable[[int], object]) -> Written:
    """Every file at once as a task on the cluster's workers; a failed one runs again (at
    most TASK_RETRIES times), and one that fails for good stops the export in one line."""
    from distributed import as_completed

    store_url = _url_for_workers(locate(request.store.path))
    root_url = _url_for_workers(root)
    run = uuid.uuid4().hex[:8]  # a long-lived cluster never takes one export's file for another's
    futures = {client.submit(export_file, store_url, file, root_url, pure=False,
                             retries=TASK_RETRIES, key=f"dcign-export-{run}-{i}"): file
               for i, file in enumerate(request.files)}
    written = {}
    try:
        for future in as_completed(list(futures)):
            file = futures[future]
            try:
                written[file.path] = future.result()
            except Exception as exc:  # whatever the worker raised, pickled back
                raise DcignError(f"{file.path}: failed on the Dask workers "
                                 f"({type(exc).__name__}: {exc})") from None
            on_minibatches(len(file.minibatches))
    finally:
        client.cancel(list(futures))
    return written


# ----------------------------------------------------------------------------- the folder

def export_store(request: ExportRequest, overwrite: bool = False,
                 on_minibatches: Callable[[int], object] = lambda n: None,
                 scheduler: str | None = None, scheduler_from: str | None = None,
                 note: Callable[[str], object] = print) -> ExportSummary:
    """Write what `request` describes (into a temporary folder beside a local OUT, then
    renamed; under an object store's OUT, the marker last), holding the store's writer lock
    while it reads; a rerun on a finished, identical export writes nothing. With a
    `scheduler`, each file is a task on that Dask cluster's workers. `on_minibatches` is
    called with 0 when writing begins, then with each file's minibatches once it is written."""
    out = request.out
    _pyarrow()  # one line if it is not installed, before anything is written
    with ExitStack() as stack:
        client = (stack.enter_context(scheduler_client(scheduler, scheduler_from))
                  if scheduler else None)
        if scheduler and announcement(scheduler, scheduler_from):
            note(announcement(scheduler, scheduler_from))  # reachable: now it is said
        lock = stack.enter_context(writer_lock(locate(request.store.path), note, EXPORT))
        if request.store.content_digest() != request.digest:
            raise DcignError(f"{request.store.path} changed since the export was planned (a "
                             "render or repair wrote to it); rerun the export")
        if existing_export(request, overwrite):
            return ExportSummary(out.url, request.minibatches, len(request.files), written=False)

        def write(root: Location) -> Written:
            on_minibatches(0)
            if client is None:
                return _write_here(request, root, on_minibatches)
            return _write_on_dask(client, request, root, on_minibatches)

        if out.is_local:
            _export_to_folder(request, write, lock)
        else:
            _export_to_bucket(request, write, lock)
    return ExportSummary(out.url, request.minibatches, len(request.files), written=True)


def _export_to_folder(request: ExportRequest, write: Callable[[Location], Written],
                      lock: HeldLock) -> None:
    """A local OUT: built whole under a temporary name beside it, then renamed into place."""
    out = Path(request.out.root)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_partials(out)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        written = write(locate(str(partial)))
        _check_here(partial, written)
        lock.check()  # the store was ours throughout: only then is the export finished
        _write_documents(request, partial, written)
        _swap_in(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone after the rename, unless it failed


def _check_here(root: Path, written: Written) -> None:
    """Every file the tasks say they wrote is in the folder here, at its size: workers of
    another machine write the same path on their own disk, where this one cannot see it."""
    for path, (_, size) in written.items():
        if not (root / path).is_file() or (root / path).stat().st_size != size:
            raise DcignError(f"{path} was written where this machine cannot see it (a Dask "
                             f"worker's own disk?): with --scheduler, OUT must be a folder "
                             "the workers share with this machine, or a bucket")


def _export_to_bucket(request: ExportRequest, write: Callable[[Location], Written],
                      lock: HeldLock) -> None:
    """An object store's OUT, written in place (no rename there): the incomplete note first,
    an export it replaces removed marker first, the files, the documents, the marker last."""
    out = request.out
    try:
        out.write_text(json.dumps({"store": request.store.path, "digest": request.digest})
                       + "\n", INCOMPLETE)
        _remove_export(out)
        written = write(out)
        lock.check()
        with tempfile.TemporaryDirectory(prefix="dcign-export-") as staging:
            _write_documents(request, Path(staging), written)
            for name in DOCUMENTS:
                out.fs.put_file(str(Path(staging, name)), out.key(name))
        out.remove(INCOMPLETE)
    except _storage_errors() as exc:
        raise _unreachable(out, exc) from None


def _remove_export(out: Location) -> None:
    """Remove what an earlier export (finished or not) left under OUT, its marker first so it
    stops looking finished at once; the incomplete note stays."""
    if out.exists(MARKER):
        out.remove(MARKER)
    leftovers = [out.key(p) for p in out.files() if p != INCOMPLETE]
    if leftovers:
        out.fs.rm(leftovers)


def _write_documents(request: ExportRequest, root: Path, written: Written) -> None:
    """The preview, card, croissant.json and marker, in a local folder (the marker last)."""
    save_preview(request.store, _preview_rows(request), root / "preview.png", PREVIEW_COLUMNS)
    marker = _marker(request, written)
    (root / "README.md").write_text(dataset_card(marker))
    (root / "croissant.json").write_text(json.dumps(croissant(marker), indent=2) + "\n")
    (root / MARKER).write_text(json.dumps(marker, indent=1) + "\n")  # last: it says finished


def _preview_rows(request: ExportRequest) -> list[tuple[str, str, int]]:
    """The first exported minibatch of each factor: of the train split, or any if none."""
    first: dict[tuple[str, str], int] = {}
    for f in request.files:
        first.setdefault((f.split, f.factor), f.minibatches[0])
    rows = [(s, f, k) for (s, f), k in first.items()]
    return [r for r in rows if r[0] == "train"] or rows[:4]


def _marker(request: ExportRequest, written: Written) -> dict:
    store, sections = request.store, {}
    for f in request.files:
        digest, size = written[f.path]
        sections.setdefault((f.split, f.factor), []).append(
            {"path": f.path, "minibatches": list(f.minibatches), "sha256": digest,
             "rows": len(f.minibatches) * store.spec.batch_size, "bytes": size})
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
