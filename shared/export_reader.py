"""Reading an export (`dcign-store export`, `export.py`): a folder of Parquet files, one row
per image, that Hugging Face `datasets` and Croissant readers load with no dcign code. Here it
is read back as minibatches, the same ones the store holds, so `MinibatchDataset` serves an
export as it serves a store.

An export is read where it lies: a local folder, or any fsspec URL, the same as a store's
(`s3://bucket/exports/faces`, or a Hugging Face Hub dataset the export was uploaded to as it
is, `hf://datasets/OWNER/NAME`, through huggingface_hub's filesystem). An export is known by
its marker, `dcign-export.json`, written last (a folder without it is not an export, or a
killed one). The marker records the store's attributes (factor table,
minibatch size) and which minibatches each Parquet file holds; the rows themselves say which
minibatch and position each image has, and are regrouped by (varying, minibatch), ordered by
position. pyarrow is imported only to read rows, so finding out whether a folder is an export
costs nothing (the trainer asks).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DcignError, StoreError
from .factors import continuous_factors
from .location import Location, locate
from .store import SPLITS, Minibatch, StoreSpec, spec_from_attrs

MARKER = "dcign-export.json"
FORMAT = "dcign-export"
FORMAT_VERSION = 1
# the columns beside one float32 column per continuous factor
IMAGE, IDENTITY, MINIBATCH, POSITION, VARYING = (
    "image", "identity", "minibatch", "position", "varying")
FIXED_COLUMNS = (IMAGE, IDENTITY, MINIBATCH, POSITION, VARYING)


def is_export(path: str | Path) -> bool:
    """Whether `path` (a folder or a URL) is a finished export (its marker is there)."""
    if "://" not in str(path):  # no filesystem to make for a local folder: the trainer asks
        return (Path(path) / MARKER).is_file()
    try:
        location = locate(path)
        return location.fs.isfile(location.key(MARKER))
    except Exception:  # noqa: BLE001 - a probe: each filesystem fails its own way (httpx's
        return False  # for hf:// offline); unreachable as an export, the store's error says it


def read_marker(path: str | Path) -> dict:
    """An export's marker; one line if it is not one of this format."""
    location = locate(path)
    try:
        text = location.fs.cat_file(location.key(MARKER)).decode()
    except (OSError, ValueError) as exc:
        raise DcignError(f"{path}: unreadable export marker {MARKER} ({exc})") from None
    return parse_marker(text, str(path))


def parse_marker(text: str, path: str) -> dict:
    """The marker read from `text` (that of the export at `path`, local or not); one line if
    it is not one of this format."""
    try:
        marker = json.loads(text)
    except ValueError as exc:
        raise DcignError(f"{path}: unreadable export marker {MARKER} ({exc})") from None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise DcignError(f"{path}/{MARKER} is not a dcign export marker")
    if marker.get("version") != FORMAT_VERSION:
        raise DcignError(f"{path} is export format {marker.get('version')!r}; this dcign "
                         f"reads {FORMAT_VERSION}: export the store again")
    store = marker.get("store")
    if not (isinstance(store, dict) and {"url", "digest"} <= set(store)
            and isinstance(marker.get("sections"), list)
            and all(isinstance(s, dict) and isinstance(s.get("files"), list)
                    for s in marker["sections"])
            and isinstance(marker.get("attrs"), dict) and "settings" in marker):
        raise DcignError(f"{path}/{MARKER} is malformed: export the store again with "
                         "--overwrite")
    return marker


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DcignError("reading or writing an export needs pyarrow: "
                         "pip install 'dcign[export]'") from None
    return pq


def decode_png(data: bytes, mode: str = "L") -> np.ndarray:
    """A PNG's pixels: uint8 (H, W) in mode L (gray), (H, W, 3) in mode RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode) if image.mode != mode else image)


@dataclass
class Export:
    """An opened export, read as the store's minibatches (the subset of `Store`'s reading
    API that `MinibatchDataset` uses: `spec`, `factors_present`, `complete`, `minibatch`)."""

    path: str  # as the user gave it
    location: Location
    spec: StoreSpec
    files: dict[tuple[str, str], list[dict]]  # (split, factor) -> [{path, minibatches}]
    _groups: dict = field(default_factory=dict, repr=False)  # file -> {k: row groups}

    def sections(self, split: str | None = None) -> Iterator[tuple[str, str]]:
        """(split, factor) pairs exported, in table order."""
        for name in SPLITS if split is None else (split,):
            for f in self.spec.factors:
                if (name, f.name) in self.files:
                    yield name, f.name

    def factors_present(self, split: str) -> list[str]:
        return [f for _, f in self.sections(split) if self.complete(split, f).size]

    def complete(self, split: str, factor: str) -> np.ndarray:
        """The store's indices of the exported minibatches of (split, factor), ascending."""
        ks = [k for entry in self.files.get((split, factor), ()) for k in entry["minibatches"]]
        return np.asarray(sorted(ks), dtype=np.int64)

    def minibatches(self, split: str, factor: str) -> Iterator[Minibatch]:
        for k in self.complete(split, factor):
            yield self.minibatch(split, factor, int(k))

    def minibatch(self, split: str, factor: str, k: int) -> Minibatch:
        """Minibatch k of (split, factor), regrouped from its rows: those of `varying` ==
        factor and `minibatch` == k, ordered by `position`."""
        entry = next((e for e in self.files.get((split, factor), ())
                      if k in e["minibatches"]), None)
        if entry is None:
            raise StoreError(f"{split}/{factor} minibatch {k} is not in the export {self.path}")
        path = self.location.key(entry["path"])
        try:
            groups = self._row_groups(path)[k]
            with self.location.fs.open(path, "rb") as file:
                rows = _pyarrow().ParquetFile(file).read_row_groups(groups)
        except (OSError, KeyError, ValueError) as exc:  # pyarrow: OSError, ArrowInvalid
            raise StoreError(f"{path}: cannot read {split}/{factor}/{k} "
                             f"({type(exc).__name__}: {str(exc)[:120]}); export the store "
                             "again with --overwrite") from None
        columns = rows.to_pydict()
        picked = [i for i, (m, v) in enumerate(zip(columns[MINIBATCH], columns[VARYING],
                                                   strict=True)) if m == k and v == factor]
        picked.sort(key=lambda i: columns[POSITION][i])
        if [columns[POSITION][i] for i in picked] != list(range(self.spec.batch_size)):
            raise StoreError(f"{path}: {split}/{factor}/{k} has rows at positions "
                             f"{[columns[POSITION][i] for i in picked]}, not 0.."
                             f"{self.spec.batch_size - 1}")
        names = [f.name for f in continuous_factors(self.spec.factors)]
        values = np.array([[columns[n][i] for n in names] for i in picked], np.float32)
        return Minibatch(split, factor, k,
                         np.stack([decode_png(columns[IMAGE][i]["bytes"],
                                              "L" if self.spec.channels == 1 else "RGB")
                                   for i in picked]),
                         values.reshape(len(picked), len(names)),
                         np.array([columns[IDENTITY][i] for i in picked], np.int64))

    def _row_groups(self, path: str) -> dict[int, list[int]]:
        """Which row groups of a file hold each minibatch (its `minibatch` column read once)."""
        if path not in self._groups:
            found = {}
            with self.location.fs.open(path, "rb") as file:
                parquet = _pyarrow().ParquetFile(file)
                for g in range(parquet.num_row_groups):
                    column = parquet.read_row_group(g, columns=[MINIBATCH]).column(0)
                    for k in np.unique(column.to_numpy()):
                        found.setdefault(int(k), []).append(g)
            self._groups[path] = found
        return self._groups[path]


def open_export(path: str | Path) -> Export:
    """An export (a folder or a URL) read back as minibatches; one line if `path` is not a
    finished export."""
    path = str(path)
    if not is_export(path):
        raise DcignError(f"{path} is not a dcign export (no {MARKER})")
    marker = read_marker(path)
    try:
        spec = spec_from_attrs(marker["attrs"], str(path))
        files = {(s["split"], s["factor"]): s["files"] for s in marker["sections"]}
    except (KeyError, TypeError) as exc:
        raise DcignError(f"{path}/{MARKER} is malformed ({type(exc).__name__}: {exc})"
                         ) from None
    return Export(path, locate(path), spec, files)
