"""The paper's claim measured directly: the decoder re-renders an unseen object from a new view.

For a held-out minibatch in which factor f varies, every image shows the same object with
every other factor fixed, so any two of its images are one object at two values of f. Take
image i, encode it, set f's latents to "the value that means" image j's view, decode, and
compare with image j (per-pixel MSE, images in [0, 1]). The value that means a view is the
mean posterior of those latents over the training images with that view: the grid value
for a factor on a grid (the chairs' 30 azimuths), else one of `VIEW_BINS` equal bins of the
factor's range. DC-IGN sets the factor's latent group; the entangled baseline its chosen
latent. Two floors frame the numbers: returning the input unchanged, and returning the
training mean image of the target view.

For a factor on a grid, `identification` also says how well its first latent alone names
the view: nearest class mean over the grid values (exact, within one grid step, and how often
it names the mirror view 360° − a instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dcign.shared.factors import Factor, recorded_factors
from dcign.shared.images import to_unit
from dcign.shared.store import Store

from .encoding import EncodedSplit, encode_split, to_tensor
from .trained import Trained, decode_images

VIEW_BINS = 20  # equal bins of a continuous factor's range
PAIRS_PER_FACTOR = 4000  # (source, target) pairs drawn per factor, at most
FULL_TURN = 360.0


@dataclass(frozen=True)
class Views:
    """Which view each factor value belongs to: a grid's values, or equal bins of a range."""

    grid: np.ndarray | None  # the grid's values, sorted, or None for equal bins
    low: float
    high: float
    bins: int

    def of(self, values: np.ndarray) -> np.ndarray:
        if self.grid is not None:
            return np.abs(np.asarray(values)[:, None] - self.grid[None]).argmin(axis=1)
        scaled = (np.asarray(values, dtype=float) - self.low) / (self.high - self.low)
        return np.clip((scaled * self.bins).astype(int), 0, self.bins - 1)

    @property
    def count(self) -> int:
        return len(self.grid) if self.grid is not None else self.bins


def views_of(factor: Factor) -> Views:
    """A grid factor's grid values (`Factor.grid`: a store's table from `recorded_factors`),
    else `VIEW_BINS` equal bins of its range."""
    if factor.grid:
        return Views(np.array(factor.grid, dtype=float), factor.low, factor.high,
                     len(factor.grid))
    return Views(None, factor.low, factor.high, VIEW_BINS)


@dataclass
class ViewMeans:
    """Per view, from the training images where the factor varies: mean latents and images."""

    latents: np.ndarray  # (views, len(latent indices)); NaN where no training image fell
    images: np.ndarray  # (views, H, W) float in [0, 1]
    counts: np.ndarray  # (views,)


def training_view_means(trained: Trained, store: Store, factor: Factor, latents: list[int],
                        views: Views, device: torch.device) -> ViewMeans:
    train = encode_split(trained.model, store, "train", factor.name, device)
    images, which = train.images, views.of(train.values[:, factor.column])
    mu = train.mu[:, latents]
    means = np.full((views.count, len(latents)), np.nan)
    pictures = np.zeros((views.count, *images.shape[1:]))
    counts = np.bincount(which, minlength=views.count)
    for v in np.flatnonzero(counts):
        means[v] = mu[which == v].mean(axis=0)
        pictures[v] = to_unit(images[which == v].mean(axis=0), float)
    return ViewMeans(means, pictures, counts)


@dataclass
class Pairs:
    """Held-out (source, target) image pairs of one object, differing only in the factor."""

    source: np.ndarray  # uint8 (P, H, W)
    target: np.ndarray  # uint8 (P, H, W)
    target_view: np.ndarray  # (P,) view index of each target
    source_value: np.ndarray  # (P,) the factor's value in each source and target
    target_value: np.ndarray


def held_out_pairs(store: Store, factor: Factor, views: Views, rng: np.random.Generator,
                   limit: int = PAIRS_PER_FACTOR) -> Pairs:
    group = store.read_complete("test", factor.name)
    n, b = group.images.shape[:2]
    i, j = np.meshgrid(np.arange(b), np.arange(b), indexing="ij")
    off_diagonal = i != j
    every = np.array([(m, s, t) for m in range(n) for s, t in zip(i[off_diagonal],
                                                                   j[off_diagonal],
                                                                   strict=True)])
    chosen = every[np.sort(rng.choice(len(every), min(limit, len(every)), replace=False))]
    m, s, t = chosen.T
    column = factor.column
    return Pairs(group.images[m, s], group.images[m, t], views.of(group.values[m, t, column]),
                 group.values[m, s, column], group.values[m, t, column])


@torch.no_grad()
def re_rendered(trained: Trained, pairs: Pairs, latents: list[int], means: ViewMeans,
                device: torch.device) -> np.ndarray:
    """Each source re-rendered at its target's view: uint8 (P, H, W)."""
    out = []
    for start in range(0, len(pairs.source), 256):
        chunk = slice(start, start + 256)
        mu = trained.model.encode(to_tensor(pairs.source[chunk], device))[0].float()
        wanted = torch.as_tensor(means.latents[pairs.target_view[chunk]], dtype=mu.dtype,
                                 device=device)
        mu[:, latents] = torch.where(torch.isnan(wanted), mu[:, latents], wanted)
        out.append(decode_images(trained.model, mu))
    return np.concatenate(out)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((to_unit(a, float) - to_unit(b, float)) ** 2).mean())


def novel_view_score(trained: Trained, store: Store, factor: Factor, latents: list[int],
                     views: Views, means: ViewMeans, device: torch.device, seed: int
                     ) -> tuple[dict, Pairs, np.ndarray]:
    """The score of one model on one factor, and its pairs and re-renders (for figures)."""
    pairs = held_out_pairs(store, factor, views, np.random.default_rng(seed))
    predicted = re_rendered(trained, pairs, latents, means, device)
    mean_view = means.images[pairs.target_view]
    return {
        "mse_per_pixel": _mse(predicted, pairs.target),
        "floor_input_unchanged": _mse(pairs.source, pairs.target),
        "floor_training_mean_of_view": float(((mean_view - to_unit(pairs.target, float)) ** 2
                                               ).mean()),
        "latents": [int(z) for z in latents], "pairs": len(pairs.source),
        "views": views.count, "view_rule": ("grid values" if views.grid is not None
                                            else f"{views.bins} equal bins of the range"),
        "training_images_per_view": [int(c) for c in means.counts],
    }, pairs, predicted


def identification(factor: Factor, latents: list[int], views: Views, means: ViewMeans,
                   test: EncodedSplit) -> dict:
    """How well the factor's latents name a grid view: each held-out code's nearest training
    class mean over the grid."""
    truth = views.of(test.values[:, factor.column])
    circular = factor.high - factor.low >= FULL_TURN
    return {"latent": latents[0], "latents": latents} | name_views(
        test.mu[:, latents], truth, means.latents, views, circular)


def name_views(z: np.ndarray, truth: np.ndarray, means: np.ndarray, views: Views,
               circular: bool) -> dict:
    """Each code's nearest class mean (codes (N,) or (N, L), means (views,) or (views, L)):
    how often it is the true view, within one grid step of it, its mirror view 360° − a (a
    chair and its mirror image differ little), or its front-back reflection 180° − a (the
    pair one scalar coding sin a cannot tell apart)."""
    z, means = z.reshape(len(z), -1), means.reshape(len(means), -1)
    distance = np.linalg.norm(z[:, None] - means[None], axis=2)
    named = np.nanargmin(np.where(np.isnan(distance), np.inf, distance), axis=1)
    steps = len(views.grid)
    off = np.abs(named - truth)
    if circular:
        off = np.minimum(off, steps - off)

    def named_instead(angle_of_truth: np.ndarray) -> float:
        """How often the named view is this other view (where it differs from the truth)."""
        other = views.of(angle_of_truth % FULL_TURN)
        return float(((named == other) & (other != truth)).mean())

    return {"images": len(z), "grid_values": steps, "exact": float((off == 0).mean()),
            "within_one_step": float((off <= 1).mean()),
            "named_the_mirror_view": named_instead(FULL_TURN - views.grid[truth]),
            "named_the_front_back_reflection": named_instead(FULL_TURN / 2 - views.grid[truth]),
            "chance_exact": 1 / steps}


@dataclass
class NovelViews:
    """One model's novel-view scores per factor, its view identification on grids, and the
    pairs with its re-renders (the same pairs for every model: drawn from the store and seed)."""

    scores: dict
    identification: dict
    pairs: dict[str, Pairs]
    predicted: dict[str, np.ndarray]


def measure_novel_views(trained: Trained, store: Store, latents: dict[str, list[int]],
                        test: dict[str, EncodedSplit], device: torch.device, seed: int
                        ) -> NovelViews:
    """`latents`: per factor, the latents set to the target view (DC-IGN: the factor's
    group; the baseline: its chosen latent). `test`: the held-out groups, already encoded.
    The training images of a factor are encoded once, for both measures."""
    result = NovelViews({}, {}, {}, {})
    train = set(store.factors_present("train"))
    for factor in recorded_factors(store.spec):
        if (factor.is_intrinsic or factor.name not in latents or factor.name not in train
                or factor.name not in test):
            continue
        chosen, views = latents[factor.name], views_of(factor)
        means = training_view_means(trained, store, factor, chosen, views, device)
        score, pairs, predicted = novel_view_score(trained, store, factor, chosen, views, means,
                                                   device, seed)
        result.scores[factor.name] = score
        result.pairs[factor.name], result.predicted[factor.name] = pairs, predicted
        if views.grid is not None:
            result.identification[factor.name] = identification(factor, chosen, views, means,
                                                                 test[factor.name])
    return result
