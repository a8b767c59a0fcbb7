"""Disentanglement scores: how well a code (N, D) separates ground-truth factors (N, K).

Two ways in, as in disentanglement_lib: `scores(Observations(codes, factors, …))` on arrays
you already have, or `scores(store, encode=f)` on any dcign store and any model, where
`f(uint8 images (N, H, W)) -> codes (N, D)`: a seeded sample of the store's held-out images is
drawn (`Store.sample`) and encoded. The single metrics below take arrays.

Each metric is the published definition, made deterministic by an explicit generator and
small enough to run in seconds on a CPU:

- MIG (Chen et al. 2018): per factor, the gap between the two latents with the largest mutual
  information with it, divided by the factor's entropy; averaged over factors. Latents and
  factors are discretised into equal-width bins (as in disentanglement_lib).
- DCI (Eastwood & Williams 2018): gradient-boosted regression trees per factor (as in
  disentanglement_lib, here regressors on the continuous factor) give an importance matrix
  R (D, K); disentanglement = 1 − entropy of each latent's row (base K), weighted by its
  share of the total importance; completeness = 1 − entropy of each factor's column
  (base D); informativeness = held-out R² of the trees, clipped at 0. (Lasso weights were
  tried first: on a random code the lasso keeps a few chance weights, one per factor, which
  reads as perfect disentanglement; tree importances spread out as they should.)
- SAP (Kumar et al. 2018), continuous version: score S[i, k] = R² of a one-latent linear
  regression of factor k on latent i (= squared Pearson correlation); per factor the gap
  between the two best latents, averaged over factors.
- FactorVAE score (Kim & Mnih 2018): batches in which one factor is fixed (its discretised
  value shared); codes normalised by their global standard deviation; the latent of least
  variance in the batch votes for the fixed factor; a majority-vote classifier trained on one
  set of votes is scored on another.

All are permutation-invariant in the latents and lie in [0, 1]; a code equal to the factors
scores ≈ 1 and a random code ≈ 0 (FactorVAE: ≈ 1/K, chance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from dcign.shared.factors import continuous_factors
from dcign.shared.store import Store

DEFAULT_BINS = 20
DEFAULT_SAMPLES = 10_000
FACTORVAE_BATCH = 64
FACTORVAE_VOTES = (3000, 1500)  # training and evaluation votes


@dataclass(frozen=True)
class Observations:
    """Codes and the ground truth of the images they encode."""

    codes: np.ndarray  # (N, D)
    factors: np.ndarray  # (N, K) continuous factor values
    names: tuple[str, ...]  # the K factors
    ranges: tuple[tuple[float, float] | None, ...]  # each factor's stated range (None: observed)


def observe(store: Store, encode: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator,
            samples: int = DEFAULT_SAMPLES, split: str = "test") -> Observations:
    """Encode a seeded sample of `split`'s images (every minibatch type pooled)."""
    drawn = store.sample(samples, rng, split)
    return _observations(store, np.asarray(encode(drawn.images)), drawn.values)


def pooled(store: Store, codes: np.ndarray, values: np.ndarray) -> Observations:
    """Observations from codes already computed for images whose values the store holds."""
    return _observations(store, codes, values)


def _observations(store: Store, codes: np.ndarray, values: np.ndarray) -> Observations:
    cols = continuous_factors(store.spec.factors)
    return Observations(codes, values[:, [f.column for f in cols]], tuple(f.name for f in cols),
                        tuple((f.low, f.high) if f.low is not None else None for f in cols))


def scores(source: Observations | Store, encode: Callable[[np.ndarray], np.ndarray] | None = None,
           *, seed: int = 0, samples: int = DEFAULT_SAMPLES, bins: int = DEFAULT_BINS) -> dict:
    """MIG, DCI, SAP and the FactorVAE score, all from one generator seeded with `seed`.

    `source` is a store (then `encode` is required) or observations; from observations, at
    most `samples` are drawn without replacement by the same generator first, so both ways
    give the same numbers for the same images."""
    rng = np.random.default_rng(seed)
    if isinstance(source, Store):
        if encode is None:
            raise TypeError("scores(store) needs encode=: images (N, H, W) uint8 → codes (N, D)")
        obs = observe(source, encode, rng, samples)
    else:
        pick = rng.choice(len(source.codes), size=min(samples, len(source.codes)),
                          replace=False)
        obs = Observations(source.codes[pick], source.factors[pick], source.names,
                           source.ranges)
    # one memory layout whichever way in: numpy's reductions sum in layout order, and DCI's
    # trees split on the last bits of the standardised values
    obs = Observations(np.ascontiguousarray(obs.codes, dtype=float),
                       np.ascontiguousarray(obs.factors, dtype=float), obs.names, obs.ranges)
    discrete = discretize(obs.factors, bins, list(obs.ranges))
    dci_scores = dci(obs.codes, obs.factors, rng)
    return {
        "factors": list(obs.names), "samples": len(obs.codes), "seed": seed, "bins": bins,
        "mig": mig(obs.codes, discrete, bins)["mig"],
        "dci": {k: dci_scores[k] for k in ("disentanglement", "completeness", "informativeness")},
        "sap": sap(obs.codes, obs.factors)["sap"],
        "factorvae": factorvae_score(obs.codes, discrete, rng, FACTORVAE_BATCH,
                                     *FACTORVAE_VOTES)["factorvae"],
    }


def discretize(values: np.ndarray, bins: int = DEFAULT_BINS,
               ranges: list[tuple[float, float] | None] | None = None) -> np.ndarray:
    """int (N, K): each column cut into `bins` equal-width bins over its range.

    `ranges[k]` gives column k's (low, high); None or absent means its observed min … max.
    """
    values = np.asarray(values, dtype=float)
    out = np.empty(values.shape, dtype=np.int64)
    for k in range(values.shape[1]):
        col = values[:, k]
        given = ranges[k] if ranges is not None and k < len(ranges) else None
        low, high = given if given is not None else (col.min(), col.max())
        if high <= low:  # a constant column: one bin
            out[:, k] = 0
            continue
        out[:, k] = np.clip(((col - low) / (high - low) * bins).astype(np.int64), 0, bins - 1)
    return out


def _entropy(labels: np.ndarray) -> float:
    """Entropy in nats of a discrete variable from its sample."""
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(codes_d: np.ndarray, factors_d: np.ndarray) -> np.ndarray:
    """(D, K) mutual information in nats between discretised latents and factors.

    All D latents at once from joint histograms (sklearn's mutual_info_score per pair gives
    the same numbers, one Python call per pair).
    """
    n, n_latents = codes_d.shape
    codes = np.stack([np.unique(c, return_inverse=True)[1] for c in codes_d.T], axis=1)
    mi = np.empty((n_latents, factors_d.shape[1]))
    rows = np.broadcast_to(np.arange(n_latents), codes.shape)
    for k in range(factors_d.shape[1]):
        f = np.unique(factors_d[:, k], return_inverse=True)[1]
        joint = np.zeros((n_latents, codes.max() + 1, f.max() + 1))
        np.add.at(joint, (rows, codes, np.broadcast_to(f[:, None], codes.shape)), 1.0)
        p = joint / n
        outer = p.sum(axis=2, keepdims=True) * p.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / outer), 0.0)
        mi[:, k] = terms.sum(axis=(1, 2))
    return mi


def mig(codes: np.ndarray, factors_d: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Mutual information gap; factors already discretised (int (N, K))."""
    mi = mutual_information(discretize(codes, bins), factors_d)
    entropies = np.array([_entropy(factors_d[:, k]) for k in range(factors_d.shape[1])])
    top2 = np.sort(mi, axis=0)[::-1][:2] if mi.shape[0] > 1 else np.vstack([mi, 0 * mi])
    gaps = np.divide(top2[0] - top2[1], entropies, out=np.zeros_like(entropies),
                     where=entropies > 0)
    return {"mig": float(gaps.mean()), "per_factor": gaps.tolist()}


def _normalized_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of p (rows sum to 1, or are all 0), in base `base`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1) / np.log(base) if base > 1 else np.zeros(len(p))


def _row_normalize(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def dci(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator,
        train_fraction: float = 2 / 3, n_trees: int = 50) -> dict:
    """DCI with gradient-boosted-tree importances; factors continuous (N, K).

    Returns the three scores and the importance matrix R (D, K).
    """
    codes = _standardize(codes)
    factors = _standardize(factors)
    order = rng.permutation(len(codes))
    cut = int(train_fraction * len(codes))
    train, test = order[:cut], order[cut:]
    n_latents, n_factors = codes.shape[1], factors.shape[1]
    importance = np.zeros((n_latents, n_factors))
    r2 = np.zeros(n_factors)
    for k in range(n_factors):
        # unshuffled folds over an already random order: deterministic given rng
        model = GradientBoostingRegressor(n_estimators=n_trees, max_depth=3,
                                          random_state=int(rng.integers(2**31)))
        model.fit(codes[train], factors[train, k])
        importance[:, k] = model.feature_importances_
        residual = factors[test, k] - model.predict(codes[test])
        total = ((factors[test, k] - factors[test, k].mean()) ** 2).sum()
        r2[k] = max(0.0, 1 - (residual**2).sum() / total) if total > 0 else 0.0
    per_latent = 1 - _normalized_entropy(_row_normalize(importance), n_factors)
    weights = importance.sum(axis=1) / max(importance.sum(), 1e-300)
    per_factor = 1 - _normalized_entropy(_row_normalize(importance.T), n_latents)
    active = importance.sum(axis=0) > 0  # a factor no latent predicts is not complete
    return {"disentanglement": float((per_latent * weights).sum()),
            "completeness": float(np.where(active, per_factor, 0.0).mean()),
            "informativeness": float(r2.mean()),
            "importance": importance.tolist()}


def _standardize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def sap(codes: np.ndarray, factors: np.ndarray) -> dict:
    """Separated attribute predictability for continuous factors (N, K)."""
    scores = np.column_stack([_squared_correlations(codes, factors[:, k])
                              for k in range(factors.shape[1])])
    top2 = np.sort(scores, axis=0)[::-1]
    second = top2[1] if len(top2) > 1 else np.zeros(scores.shape[1])
    gaps = top2[0] - second
    return {"sap": float(gaps.mean()), "per_factor": gaps.tolist()}


def _squared_correlations(codes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """R² of a linear regression of target on each latent alone; 0 for a constant latent."""
    a = np.asarray(codes, dtype=float)
    a = a - a.mean(0)
    b = np.asarray(target, dtype=float) - np.mean(target)
    denom = (a**2).sum(0) * (b**2).sum()
    return np.divide((a.T @ b) ** 2, denom, out=np.zeros(a.shape[1]), where=denom > 0)


def factorvae_score(codes: np.ndarray, factors_d: np.ndarray, rng: np.random.Generator,
                    batch_size: int = 64, train_votes: int = 3000, eval_votes: int = 1500
                    ) -> dict:
    """FactorVAE score over discretised factors (int (N, K)) by sampling fixed-factor batches.

    A batch for factor k: one of factor k's values (uniformly over the values seen at least
    twice), then `batch_size` samples sharing that value (with replacement only when fewer
    share it).
    """
    codes = np.asarray(codes, dtype=float)
    std = codes.std(axis=0)
    active = std > 0  # constant latents carry nothing and cannot be normalised
    if not active.any():
        return {"factorvae": 0.0, "active_latents": 0}
    normalized = codes[:, active] / std[active]
    # a value seen once gives a batch of copies (zero variance everywhere): not a vote
    groups = [[g for g in _groups_by_value(factors_d[:, k]) if len(g) > 1]
              for k in range(factors_d.shape[1])]
    if not all(groups):
        return {"factorvae": 0.0, "active_latents": int(active.sum())}
    train = _votes(normalized, groups, rng, batch_size, train_votes)
    test = _votes(normalized, groups, rng, batch_size, eval_votes)
    counts = np.zeros((normalized.shape[1], factors_d.shape[1]), dtype=np.int64)
    np.add.at(counts, (train[:, 0], train[:, 1]), 1)
    predicted = counts.argmax(axis=1)  # each latent's majority factor
    accuracy = float((predicted[test[:, 0]] == test[:, 1]).mean())
    return {"factorvae": accuracy, "active_latents": int(active.sum())}


def _groups_by_value(column: np.ndarray) -> list[np.ndarray]:
    """The sample indices of each distinct value of one discrete factor."""
    order = np.argsort(column, kind="stable")
    _, starts = np.unique(column[order], return_index=True)
    return np.split(order, starts[1:])


def _votes(normalized: np.ndarray, groups: list[list[np.ndarray]], rng: np.random.Generator,
           batch_size: int, n: int) -> np.ndarray:
    """int (n, 2): (latent of least variance, fixed factor) for n sampled batches."""
    votes = np.empty((n, 2), dtype=np.int64)
    for v in range(n):
        k = int(rng.integers(len(groups)))
        members = groups[k][int(rng.integers(len(groups[k])))]
        pick = rng.choice(members, size=batch_size, replace=len(members) < batch_size)
        batch = normalized[pick]
        votes[v] = int(np.argmin(batch.var(axis=0))), k
    return votes
