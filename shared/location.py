"""Where a store lives: a local path or an fsspec URL (`s3://bucket/faces.zarr`,
`gs://…`), behind one small interface, so every reader and writer takes either.

Remote filesystems read their credentials and endpoints as their libraries do (s3fs: the
AWS_* environment variables, `AWS_ENDPOINT_URL` for an S3-compatible server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import StoreError


@dataclass(frozen=True)
class Location:
    """A store's root: `url` as the user gave it (for messages and zarr), `fs` and `root` for
    the few file operations zarr does not do for us."""

    url: str
    fs: fsspec.AbstractFileSystem
    root: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    @property
    def name(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[-1]

    def key(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def exists(self, *parts: str) -> bool:
        self.fs.invalidate_cache()  # an object store's listings are cached: another process
        return self.fs.exists(self.key(*parts))  # (a worker) may have written since

    def is_dir(self) -> bool:
        self.fs.invalidate_cache()
        return self.fs.isdir(self.root)

    def is_empty_dir(self) -> bool:
        return self.is_dir() and not self.fs.ls(self.root, detail=False)

    def read_text(self, *parts: str) -> str:
        return self.fs.cat_file(self.key(*parts)).decode()

    def write_text(self, text: str, *parts: str) -> None:
        """Replace a small file whole: readers see the old text or the new, never half (an
        object store's put is atomic; on a disk, write beside it and rename)."""
        if self.is_local:
            target = Path(self.key(*parts))
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temporary.write_text(text)
            os.replace(temporary, target)
        else:
            self.fs.pipe_file(self.key(*parts), text.encode())

    def remove(self, *parts: str) -> None:
        self.fs.rm_file(self.key(*parts))

    def remove_tree(self) -> None:
        self.fs.rm(self.root, recursive=True)

    def files(self, *parts: str) -> list[str]:
        """Every file under the root (or under a sub-path), as paths relative to the root."""
        base = self.key(*parts)
        if not self.exists(*parts):
            return []
        start = len(self.root.rstrip("/")) + 1
        return sorted(p[start:] for p in self.fs.find(base))

    def size(self) -> int:
        self.fs.invalidate_cache()
        return int(self.fs.du(self.root, total=True))

    def make_root(self) -> None:
        """Create the store's directory on a disk; an object store has none to create (and
        creating one would create a missing bucket)."""
        if self.is_local:
            self.fs.makedirs(self.root, exist_ok=True)


def locate(path: str | Path) -> Location:
    """The location of a store given as a local path or a URL; one line if the URL's
    filesystem is not installed (e.g. s3fs for s3://)."""
    url = str(path)
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise StoreError(f"cannot reach {url}: {exc}") from None
    return Location(url, fs, root)
