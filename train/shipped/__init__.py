"""The checkpoints dcign ships (issue 23): DC-IGN trained on faces and on chairs at 64×64 on
this project's machine, each with a model card. `--checkpoint faces64` (or `chairs64`) names
one in dcign-eval, dcign-rerender and dcign-explore; a path that exists always wins over a
name.

For each NAME this folder holds:

    NAME.pt    a dcign-train checkpoint, its weights stored in half precision and its
               optimiser state left out (nothing to resume: `dcign-train --resume` takes
               only a run's checkpoint.pt)
    NAME.json  the card's facts: how the model was made (commands, store digest, generator,
               steps, minutes, machine, commit), its dcign-eval numbers, and what the test
               that loads it checks
    NAME.md    the model card for people, written from NAME.json by `ship.py`

Held-out images for a shipped model are rendered on the spot by `dcign-render` with the
card's settings and a few test minibatches: the first test minibatches of the store it was
trained on, never seen in training. (This runs the command, not its code: dcign.train never
imports the renderer.)
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from dcign.shared.errors import DcignError

NAMES = ("faces64", "chairs64")
FOLDER = Path(__file__).resolve().parent
HELD_OUT_MINIBATCHES = 2  # test minibatches per factor rendered for the explorer
# The card's promises are measured on more: |r| over 40 images moved by ±0.03 between the
# first two minibatches and the whole test split, too loose for a promise of 0.9.
CHECK_MINIBATCHES = 10


def shipped_name(path: str | Path) -> str | None:
    """The name of a shipped checkpoint file, or None for any other path."""
    path = Path(path)
    resolved = path.resolve() if path.exists() else path
    if resolved.parent == FOLDER and resolved.suffix == ".pt" and resolved.stem in NAMES:
        return resolved.stem
    return None


def shipped_file(name: str) -> Path:
    """The checkpoint file of a shipped name; one line if this install lacks it."""
    file = FOLDER / f"{name}.pt"
    if name not in NAMES or not file.is_file():
        raise DcignError(f"{name!r} is not a checkpoint this dcign ships (it ships "
                         f"{', '.join(NAMES)}); give a run directory or checkpoint.pt")
    return file


def resolve_checkpoint(text: str | Path) -> Path:
    """What --checkpoint names: an existing path as given, else a shipped checkpoint's file."""
    path = Path(text)
    if path.exists() or str(text) not in NAMES:
        return path
    return shipped_file(str(text))


def card(name: str) -> dict:
    """A shipped checkpoint's card facts (NAME.json)."""
    shipped_file(name)
    return json.loads((FOLDER / f"{name}.json").read_text())


def held_out_store(render: dict, out: Path, minibatches: int = HELD_OUT_MINIBATCHES) -> Path:
    """Render the first `minibatches` test minibatches of each factor of the store a card's
    `render` settings made into a new store at `out`, through dcign-render."""
    args = [render["dataset"], *render["options"], "--batches", "1",
            "--test-batches", str(minibatches), "--workers", "1", "--quiet", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "dcign.render.cli", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DcignError(f"could not render held-out images (dcign-render "
                         f"{shlex.join(args)}: {why})")
    return out
