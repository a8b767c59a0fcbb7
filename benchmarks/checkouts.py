"""This checkout's code beside another commit's, for the benchmarks that compare them in one
run (render_relight, render_local_cluster, loader_workers).

Each side is an import root whose `dcign/` links to a checkout's `render/`, `train/` and
`shared/` (the way the package maps them): put on PYTHONPATH of a fresh process, it runs that
code whichever one is installed. The other commit is a git worktree, removed afterwards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("render", "train", "shared")


def import_root(checkout: Path, root: Path) -> Path:
    """A folder whose dcign/ links to a checkout's packages: PYTHONPATH for that code."""
    (root / "dcign").mkdir(parents=True)
    for package in PACKAGES:
        (root / "dcign" / package).symlink_to(checkout / package)
    return root


@contextmanager
def before_and_after(commit: str, tmp: Path) -> Iterator[dict[str, Path]]:
    """Import roots {"before": `commit`'s code, "after": this checkout's}, made under `tmp`."""
    worktree = tmp / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                    str(worktree), commit], check=True)
    try:
        yield {"before": import_root(worktree, tmp / "root-before"),
               "after": import_root(REPO, tmp / "root-after")}
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                        str(worktree)], check=True)
