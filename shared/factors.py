"""The factor vocabulary: which factors of variation a dataset has, their units, ranges and
the latent group of the DC-IGN code that each one is tied to.

The table is written into every store's attributes, and the trainer reads it from there, so
latent groups are data, not code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from .errors import DcignError

LATENT_SIZE = 200  # the paper's graphics code


@dataclass(frozen=True)
class Factor:
    """One factor of variation.

    `column` is the factor's column in a store's `factors` array, or None for `intrinsic`,
    whose value is the identity (stored in the `identity` array). `latents` is the half-open
    slice [start, stop) of the code tied to the factor; stop None means "to the end".

    `grid` holds the values the factor takes on a store whose views lie on a grid (the
    chairs' 30 azimuths and 2 elevations), sorted; empty for a factor drawn over its range.
    It is not one of the table's stored fields: stores record the grid beside the table (in
    their generator record), so `to_attrs` leaves it out (stores and their digests stay as
    they are), equality ignores it, and `recorded_factors` puts it back for a store read.
    """

    name: str
    unit: str
    low: float | None
    high: float | None
    latents: tuple[int, int | None]
    column: int | None
    description: str
    grid: tuple[float, ...] = field(default=(), compare=False)

    @property
    def is_intrinsic(self) -> bool:
        return self.column is None

    @property
    def ties_latents(self) -> bool:
        """False for a factor stored with every image but tied to no latent group (the empty
        slice, e.g. chairs' elevation on the view grid): no minibatch type varies it."""
        start, stop = self.latents
        return stop is None or stop > start

    def to_attrs(self) -> dict:
        stored = {k: v for k, v in asdict(self).items() if k != "grid"}
        return stored | {"latents": list(self.latents)}

    @classmethod
    def from_attrs(cls, attrs: dict) -> Factor:
        grid = tuple(float(v) for v in attrs.get("grid", ()))
        return cls(**(attrs | {"latents": tuple(attrs["latents"]), "grid": grid}))


def factor_named(factors: Sequence[Factor], name: str) -> Factor:
    """The factor of the table called `name`; one line naming the table's factors if none."""
    for f in factors:
        if f.name == name:
            return f
    raise DcignError(f"no factor {name!r} here ({', '.join(f.name for f in factors)})")


def with_grids(factors: tuple[Factor, ...], grid: Mapping[str, Sequence[float]]
               ) -> tuple[Factor, ...]:
    """The table with the named factors' grid values (sorted) set; others as they are."""
    return tuple(replace(f, grid=tuple(sorted(float(v) for v in grid[f.name])))
                 if f.name in grid else f for f in factors)


class RecordedSpec(Protocol):
    """What `recorded_factors` reads of a store's spec (a `dcign.shared.store.StoreSpec`)."""

    @property
    def factors(self) -> tuple[Factor, ...]: ...

    @property
    def generator(self) -> dict: ...


def recorded_factors(spec: RecordedSpec) -> tuple[Factor, ...]:
    """A store's factor table with each factor's view grid, from what the store records.

    Stores record the grid in their generator record (`generator["grid"]`: factor name →
    values, the chairs' view grid), not in the factor table; this is the one place that
    reads it. A factor whose table entry already carries a grid keeps it."""
    recorded = spec.generator.get("grid") or {}
    return with_grids(spec.factors, {f.name: recorded[f.name] for f in spec.factors
                                     if f.name in recorded and not f.grid})


FACE_FACTORS: tuple[Factor, ...] = (
    Factor("azimuth", "degree", -86.0, 86.0, (0, 1), 0, "head rotation about the vertical axis"),
    Factor("elevation", "degree", -23.0, 23.0, (1, 2), 1, "head tilt about the horizontal axis"),
    Factor("light", "degree", -80.0, 80.0, (2, 3), 2, "azimuth of the directional light"),
    Factor("intrinsic", "identity", None, None, (3, None), None, "shape and albedo of the face"),
)
# The factors that a left-right mirror of the image negates, per dataset: a mirrored face
# turned by a and lit from l is a face turned by −a and lit from −l; its elevation is kept.
# (Chairs' azimuth runs 0…360°: a mirror maps it to 360° − a, not to −a.)
MIRROR_NEGATED: dict[str, tuple[str, ...]] = {"faces": ("azimuth", "light")}

CHAIR_VIEWS = ("grid", "continuous")
CHAIR_ELEVATIONS = (20.0, 30.0)  # the Aubry renders' two camera elevations
CHAIR_AZIMUTHS = tuple(float(a) for a in range(0, 360, 12))  # the paper's 30 azimuths
CHAIR_GRID = {"azimuth": CHAIR_AZIMUTHS, "elevation": CHAIR_ELEVATIONS}  # the paper's views
CONTINUOUS_ELEVATIONS = (10.0, 40.0)


def chair_factors(views: str = "grid", elevations: tuple[float, float] = CHAIR_ELEVATIONS
                  ) -> tuple[Factor, ...]:
    """The chairs' factor table, which depends on how views are sampled.

    On the paper's grid only azimuth is a latent group (z1) and elevation is stored for every
    image but tied to no latent (the empty slice (1, 1)); z2.. hold the chair. With continuous
    views elevation varies on its own and gets z2.
    """
    azimuth = Factor("azimuth", "degree", 0.0, 360.0, (0, 1), 0,
                     "chair rotation about the vertical axis, seen from the camera")
    if views == "grid":
        low, high = elevations
        return (azimuth,
                Factor("elevation", "degree", low, high, (1, 1), 1,
                       "camera height above the seat: stored, held fixed within a minibatch"),
                Factor("intrinsic", "identity", None, None, (1, None), None,
                       "the chair: its design, proportions and materials"))
    low, high = CONTINUOUS_ELEVATIONS
    return (azimuth,
            Factor("elevation", "degree", low, high, (1, 2), 1,
                   "camera height above the seat (positive: the seat seen from above)"),
            Factor("intrinsic", "identity", None, None, (2, None), None,
                   "the chair: its design, proportions and materials"))


def factor_names(factors: tuple[Factor, ...]) -> list[str]:
    return [f.name for f in factors]


def continuous_factors(factors: tuple[Factor, ...]) -> list[Factor]:
    """The factors stored as values in the `factors` array, in column order."""
    return sorted((f for f in factors if not f.is_intrinsic), key=lambda f: f.column)


def latent_slice(factor: Factor, latent_size: int = LATENT_SIZE) -> slice:
    start, stop = factor.latents
    return slice(start, latent_size if stop is None else stop)


def regroup(factors: tuple[Factor, ...], sizes: dict[str, int],
            latent_size: int = LATENT_SIZE) -> tuple[Factor, ...]:
    """The table with the named factors' latent groups resized, the groups laid out again in
    table order and the intrinsic factor taking the rest. (A circle, such as the chairs' full
    turn of azimuth, cannot be one continuous scalar: it needs two latents.)"""
    tied = [f.name for f in factors if f.ties_latents and not f.is_intrinsic]
    for name, size in sizes.items():
        if name not in tied:
            raise DcignError(f"--latent-group {name}: not a factor tied to a latent group "
                             f"here ({', '.join(tied)})")
        if size < 1:
            raise DcignError(f"--latent-group {name}={size}: a group holds at least one latent")
    start, table = 0, []
    for f in factors:
        if f.is_intrinsic:
            continue
        width = sizes.get(f.name, (latent_slice(f).stop - latent_slice(f).start))
        table.append(replace(f, latents=(start, start + width)))
        start += width
    if start >= latent_size:
        raise DcignError(f"--latent-group leaves no latent for the object ({start} of "
                         f"{latent_size} taken)")
    rest = {f.name: replace(f, latents=(start, None)) for f in factors if f.is_intrinsic}
    laid = {f.name: f for f in table} | rest
    return tuple(laid[f.name] for f in factors)
