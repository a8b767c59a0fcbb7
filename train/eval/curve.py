"""A run's learning curve: held-out reconstruction and novel-view error at each snapshot it
kept (`dcign-train --snapshot-every N`), so a training budget is chosen from evidence.

Each point is the checkpoint of one step measured as `dcign-eval` measures a run (the same
test split, pairs and seed), without the disentanglement metrics, which cost the most and do
not say when to stop. The floors of the novel-view score (the input unchanged, the training
mean image of the target view) are the store's and do not move with the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dcign.shared.errors import DcignError
from dcign.shared.store import Store

from ..checkpoint import Checkpoint, checkpoint_file, snapshot_files, snapshot_step
from .measures import choose_latents, encode_test, reconstruction, view_latents
from .novel_views import measure_novel_views
from .trained import check_same_kind, load_trained

DEFAULT_POINTS = 12


@dataclass(frozen=True)
class CurvePoint:
    step: int
    checkpoint: str
    mse_per_pixel: float  # held-out reconstruction, every minibatch type pooled
    elbo_per_image: float
    novel_view: dict[str, float]  # per factor: MSE/pixel at a new view
    floors: dict[str, dict[str, float]]  # per factor: input_unchanged, view_mean

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def curve_checkpoints(run: str | Path, points: int) -> list[Path]:
    """At most `points` of the run's snapshots, evenly spread over its steps and always the
    last, then the run's checkpoint if it is further on; one line if the run kept none."""
    kept = snapshot_files(run)
    if not kept:
        raise DcignError(f"{run} kept no snapshots: train it with --snapshot-every N to "
                         "draw its learning curve")
    chosen = sorted({kept[int(i)] for i in np.linspace(0, len(kept) - 1, points).round()},
                    key=kept.index)
    final = checkpoint_file(run)
    if Checkpoint.read(final).step > snapshot_step(chosen[-1]):
        chosen.append(final)
    return chosen


def measure_point(checkpoint: Path, store: Store, device: torch.device, seed: int) -> CurvePoint:
    """One snapshot's held-out numbers."""
    trained = load_trained(checkpoint, device)
    check_same_kind(trained, store.spec, store.path)
    test = encode_test(trained, store, device)
    rec = reconstruction(trained, store, test, device, seed)
    latents = choose_latents(trained, test)
    novel = measure_novel_views(trained, store, view_latents(trained, latents), test.encoded,
                                device, seed)
    return CurvePoint(
        trained.step, str(checkpoint), rec["overall"]["mse_per_pixel"],
        rec["overall"]["elbo_per_image"],
        {k: v["mse_per_pixel"] for k, v in novel.scores.items()},
        {k: {"input_unchanged": v["floor_input_unchanged"],
             "view_mean": v["floor_training_mean_of_view"]} for k, v in novel.scores.items()})


def curve_rows(points: list[CurvePoint]) -> tuple[list[str], list[list]]:
    """The table: one row a step, the novel-view error per factor beside its view-mean floor."""
    factors = list(points[0].novel_view)
    header = ["step", "MSE/pixel", "ELBO/image",
              *[f"novel view {f} (floor)" for f in factors]]
    rows = [[p.step, f"{p.mse_per_pixel:.3e}", p.elbo_per_image,
             *[f"{p.novel_view[f]:.3e} ({p.novel_view[f] / p.floors[f]['view_mean']:.2f}×)"
               for f in factors]] for p in points]
    return header, rows
