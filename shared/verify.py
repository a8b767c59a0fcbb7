"""Checks that a store keeps its promises: every complete minibatch reads back as written (no
missing chunk, no checksum failure, nothing unreadable); one factor varies per minibatch,
over distinct values; everything else is bit-identical; values lie in range; splits share
no identity.

A missing chunk is found by its absence (the shard file that should hold a complete
minibatch is not there), not only by the pixels. Memory is bounded by a shard and by the
minibatches actually complete, not by the lengths the store's metadata claims; a read the
storage does not answer stops the check as a StoreReadError (retry), never as damage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import DamagedMinibatch
from .factors import Factor
from .store import MinibatchArrays, Store, identities_in_both

Damaged = dict[tuple[str, str], set[int]]


@dataclass
class Findings:
    """What `verify_store` found: counts, one line per problem, and the damaged minibatches."""

    checked: int = 0  # complete minibatches examined
    incomplete: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: Damaged = field(default_factory=dict)  # what `dcign-render repair` re-renders

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged_count(self) -> int:
        return sum(len(ks) for ks in self.damaged.values())

    def damage(self, split: str, factor: str, k: int, what: str) -> None:
        self.damaged.setdefault((split, factor), set()).add(k)
        self.problems.append(f"{split}/{factor}/{k}: {what}")


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


def _check_markers(findings: Findings, split: str, factor: str, arrays: MinibatchArrays) -> None:
    for shard in arrays.unreadable_marker_shards():
        for k in shard:
            findings.damage(split, factor, k, "completeness markers unreadable (their shard "
                                            "cannot be decoded)")


def verify_store(store: Store, on_minibatch: Callable[[], None] | None = None) -> Findings:
    """Examine every complete minibatch and the split disjointness of identities."""
    findings = Findings()
    spec = store.spec
    identities: dict[str, set[int]] = {"train": set(), "test": set()}
    for split, name in store.sections():
        arrays = store.arrays(split, name)  # its shapes were checked against the spec
        _check_markers(findings, split, name, arrays)
        done = store.complete(split, name)
        damaged = len(findings.damaged.get((split, name), ()))
        findings.incomplete += len(arrays) - len(done) - damaged
        gone, factor = store.missing_chunks(split, name, done), spec.factor(name)
        for k in (int(k) for k in done):
            if on_minibatch:
                on_minibatch()
            if k in gone:
                findings.damage(split, name, k, f"missing chunk ({', '.join(gone[k])}: its shard "
                                              "file is gone)")
                continue
            try:
                m = store.minibatch(split, name, k)
            except DamagedMinibatch as exc:
                findings.damage(split, name, k, exc.what)
                continue
            for problem in minibatch_problems(factor, spec.factors, m.images, m.values,
                                              m.identity):
                findings.damage(split, name, k, f"invariant: {problem}")
            identities[split].update(m.identity.tolist())
            findings.checked += 1
    shared = identities_in_both(identities["train"], identities["test"])
    if shared.size:
        findings.problems.append(f"{shared.size} identities appear in both train and test")
    if findings.incomplete:
        findings.problems.append(f"{findings.incomplete} minibatches are not complete "
                               "(rerun the render command to finish them)")
    return findings
