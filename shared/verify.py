"""Checks that a store keeps its promises: one factor varies per minibatch, over distinct
values; everything else is bit-identical; values lie in range; splits share no identity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .factors import Factor
from .store import Store


@dataclass
class Report:
    checked: int = 0  # complete minibatches examined
    incomplete: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _same_rows(a: np.ndarray) -> bool:
    """Every row bit-identical to the first (NaN-safe: compares bytes, not floats)."""
    raw = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)
    return bool((raw == raw[:1]).all())


def minibatch_problems(factor: Factor, table: tuple[Factor, ...], images: np.ndarray,
                       values: np.ndarray, identity: np.ndarray) -> list[str]:
    """What is wrong with one minibatch in which `factor` should vary (empty if nothing)."""
    b = len(identity)
    problems = []
    if not np.isfinite(values).all():
        problems.append("non-finite factor values")
    for f in table:
        if f.is_intrinsic:
            continue
        column = values[:, f.column]
        if (column < f.low - 1e-4).any() or (column > f.high + 1e-4).any():
            problems.append(f"{f.name} outside [{f.low}, {f.high}]")
    others = [f.column for f in table if not f.is_intrinsic and f.name != factor.name]
    if not _same_rows(values[:, others]):
        problems.append("a factor other than the varying one changes")
    if factor.is_intrinsic:
        if len(np.unique(identity)) != b:
            problems.append("identities repeat in an intrinsic minibatch")
    else:
        if not _same_rows(identity[:, None]):
            problems.append("identity changes")
        if len(np.unique(values[:, factor.column])) != b:
            problems.append(f"{factor.name} values repeat")
    flat = images.reshape(b, -1)
    if (flat.min(axis=1) == flat.max(axis=1)).any():
        problems.append("a blank image")
    if len({img.tobytes() for img in flat}) != b:
        problems.append("two identical images")
    return problems


def verify_store(store: Store, on_minibatch: Callable[[], None] | None = None) -> Report:
    """Examine every complete minibatch and the split disjointness of identities."""
    report = Report()
    spec = store.spec
    identities: dict[str, set[int]] = {"train": set(), "test": set()}
    for split, name in store.groups():
        shape = store.arrays(split, name).images.shape[1:]
        report.incomplete += len(store.arrays(split, name)) - len(store.complete(split, name))
        if shape != (spec.batch_size, spec.image_size, spec.image_size):
            report.problems.append(f"{split}/{name}: images of shape {shape}")
            continue
        factor = spec.factor(name)
        for m in store.minibatches(split, name):
            for problem in minibatch_problems(factor, spec.factors, m.images, m.values,
                                              m.identity):
                report.problems.append(f"{split}/{name} minibatch {m.index}: {problem}")
            identities[split].update(m.identity.tolist())
            report.checked += 1
            if on_minibatch:
                on_minibatch()
    shared = identities["train"] & identities["test"]
    if shared:
        report.problems.append(f"{len(shared)} identities appear in both train and test")
    if report.incomplete:
        report.problems.append(f"{report.incomplete} minibatches are not complete "
                               "(rerun the render command to finish them)")
    return report
