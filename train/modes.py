"""The training methods, one class each, and the registry (name → class) that the loop,
`TrainConfig.validate`, `dcign-train`'s flags and `dcign-eval` ask.

Every method trains the same network with the same loss convention as DC-IGN: Bernoulli BCE
and KL to N(0, I), both summed over the minibatch; the loss is BCE + β·KL + penalty
(`objective.py`). A method may change the posterior before sampling, weight the KL by β, and
add a penalty:

    dcign      clamp every latent outside the varying factor's group (paper §3)
    vae        nothing: the paper's entangled baseline
    adagvae    Ada-GVAE (Locatello et al. 2020): the minibatch split into disjoint pairs; in a
               pair, the latents whose KL between the two posteriors is below the midpoint of
               the pair's smallest and largest get both images' average posterior (or their
               product, ML-VAE style, with `--ada-average ml`; or exactly the latents outside
               the varying factor's group, with `--ada-mask oracle`); β·KL, β = 1
    betavae    β-VAE (Higgins et al. 2017): β·KL, β = 4, images drawn independently
    betatcvae  β-TCVAE (Chen et al. 2018): KL + (β − 1)·TC, TC the minibatch-weighted
               estimate over the step's images, β = 6, images drawn independently (Chen et
               al.'s objective: only the TC is weighted by β; before 2026-12-03 the KL was
               weighted by β too, and docs/results.md's β-TCVAE row was trained so)

`betavae` and `betatcvae` see images drawn independently across the store, not one-factor
minibatches: in a one-factor minibatch the TC estimate degenerates.

A method is a frozen dataclass (so `torch.compile` traces its hooks as constants): its class
attributes declare it, its fields are one run's settings, its hooks shape a minibatch's loss
and its run-log lines. This module imports no torch (the hooks import their arithmetic from
`method_math.py` when first run), so `dcign-train` builds its flags and checks its arguments
from the registry before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from dcign.shared.errors import DcignError

if TYPE_CHECKING:
    import torch

    from .method_math import Posterior


class Settings(Protocol):
    """What a method reads from a run's configuration (a TrainConfig), besides the fields its
    options name."""

    mode: str
    beta: float | None
    clamp: str
    invariance: float


@dataclass(frozen=True)
class Option:
    """A flag that belongs to one method. `field` is its TrainConfig field and the method's
    own (the flag is the field's name with dashes); unset (None), it is the first choice."""

    field: str
    choices: tuple[str, ...]
    help: str
    shown: str  # how a method's description names its value, e.g. "{} average"

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


METHODS: dict[str, type[Method]] = {}  # name → class, in the order --help lists them


def register(cls: type[Method]) -> type[Method]:
    """Make a method class a training mode (`--mode NAME`)."""
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise DcignError(f"unknown mode {name!r} (choose {', '.join(METHODS)})")
    return METHODS[name]


def method_for(settings: Settings) -> Method:
    """The run's method, its options checked."""
    cls = method_class(settings.mode)
    cls.check(settings)
    return cls.from_settings(settings)


def beta_weighted() -> list[str]:
    """The methods that take --beta."""
    return [name for name, cls in METHODS.items() if cls.default_beta is not None]


@dataclass(frozen=True)
class Method:
    """A training method: what it is called, which flags it takes and refuses, what it does
    to a minibatch's posterior and loss, and what it logs. This base is the plain VAE."""

    name: ClassVar[str]
    label: ClassVar[str]  # as logs, tables and figures name it
    summary: ClassVar[str]  # what --help says it is
    default_beta: ClassVar[float | None] = None  # None: the KL's weight is 1, --beta refused
    options: ClassVar[tuple[Option, ...]] = ()  # the flags only this method takes
    draws_independently: ClassVar[bool] = False  # a step's images drawn one by one
    pairs_images: ClassVar[bool] = False  # `posterior` reads pairs (others get none drawn)
    # Each minibatch's latents outside its factor's group are held: every batch type shown
    # needs a latent group, and every type the ratio weighs needs its minibatches.
    clamps: ClassVar[bool] = False

    beta: float = 1.0  # the method's β: the KL's weight unless `kl_weight` says otherwise

    @property
    def kl_weight(self) -> float:
        """What the KL is multiplied by in the loss."""
        return self.beta

    # ------------------------------------------------------------------------- settings

    @classmethod
    def check(cls, settings: Settings) -> None:
        """Refuse, in one line, an option that this method cannot use."""
        beta = settings.beta
        if beta is not None and not beta > 0:
            raise DcignError(f"--beta must be positive (got {beta})")
        if beta is not None and cls.default_beta is None:
            raise DcignError(f"--beta is a setting of {', '.join(beta_weighted())}; --mode "
                             f"{cls.name} has none")
        for owner in METHODS.values():
            given = [o.flag for o in owner.options if getattr(settings, o.field) is not None]
            if given and owner is not cls:
                raise DcignError(f"{' and '.join(given)} apply to --mode {owner.name} only "
                                 f"(this run is {cls.name})")
        for o in cls.options:
            value = getattr(settings, o.field)
            if value is not None and value not in o.choices:
                raise DcignError(f"unknown {o.flag} {value!r} (choose {', '.join(o.choices)})")

    @classmethod
    def from_settings(cls, settings: Settings) -> Method:
        """The method as a run's (checked) settings configure it."""
        beta = settings.beta if settings.beta is not None else cls.default_beta
        options = {o.field: getattr(settings, o.field) or o.choices[0] for o in cls.options}
        return cls(beta=1.0 if beta is None else beta, **options)

    def describe(self) -> str:
        """The method and what sets it apart, in a few words (for comparison tables)."""
        parts = [self.label]
        if self.default_beta is not None:
            parts.append(f"β={self.beta:g}")
        parts += [o.shown.format(getattr(self, o.field)) for o in self.options]
        return ", ".join(parts)

    @property
    def assigns_latents(self) -> bool:
        """Whether training tied each factor to its latent group in the factor table (so the
        group is where evaluation looks); a network that learns no assignment has its
        factor's latent chosen (`eval/measures.py`)."""
        return False

    # ------------------------------------------------------------------------- hooks

    def posterior(self, mu: torch.Tensor, logvar: torch.Tensor, active: torch.Tensor,
                  pairs: torch.Tensor) -> Posterior:
        """The posterior handed to the sampler; `active` marks the varying factor's group."""
        from .method_math import unchanged

        return unchanged(mu, logvar)

    def penalty(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                dataset_size: int) -> torch.Tensor:
        """A term added to the minibatch's loss (`dataset_size`: training images)."""
        return z.new_zeros(())

    def logged(self, per_image: Mapping[str, float], shared: Mapping[str, float]) -> dict:
        """What a run-log line adds to the loss, ELBO, BCE and KL: `per_image` holds the
        window's bce, kl and penalty per image, `shared` the latents shared per pair in
        each factor's minibatches (for a method that pairs images)."""
        return {}


@register
@dataclass(frozen=True)
class ClampedDCIGN(Method):
    name: ClassVar[str] = "dcign"
    label: ClassVar[str] = "DC-IGN"
    summary: ClassVar[str] = "clamped training (paper §3)"
    clamps: ClassVar[bool] = True

    clamp_rule: str = "mean"  # --clamp
    invariance: float = 0.01  # --invariance: λ of paper §3.2

    @classmethod
    def from_settings(cls, settings: Settings) -> Method:
        return cls(clamp_rule=settings.clamp, invariance=settings.invariance)

    @property
    def assigns_latents(self) -> bool:
        return True

    def posterior(self, mu: torch.Tensor, logvar: torch.Tensor, active: torch.Tensor,
                  pairs: torch.Tensor) -> Posterior:
        from .clamping import clamp
        from .method_math import Posterior

        return Posterior(clamp(mu, active, self.clamp_rule, self.invariance),
                         clamp(logvar, active, self.clamp_rule, self.invariance),
                         mu.new_zeros(()))


@register
@dataclass(frozen=True)
class VAE(Method):
    name: ClassVar[str] = "vae"
    label: ClassVar[str] = "VAE baseline"
    summary: ClassVar[str] = "the entangled baseline"


@register
@dataclass(frozen=True)
class AdaGVAE(Method):
    """Pairs share the latents their posteriors agree on (or, with the oracle mask, the ones
    outside the varying factor's group: DC-IGN's supervision without clamping)."""

    name: ClassVar[str] = "adagvae"
    label: ClassVar[str] = "Ada-GVAE"
    summary: ClassVar[str] = "Ada-GVAE (Locatello et al. 2020)"
    default_beta: ClassVar[float | None] = 1.0
    options: ClassVar[tuple[Option, ...]] = (
        Option("ada_average", ("gvae", "ml"),
               "how a pair's shared latents are averaged: gvae (mean of μ and σ², default) or "
               "ml (product of the posteriors).", "{} average"),
        Option("ada_mask", ("threshold", "oracle"),
               "threshold (the pair's KL, default) or oracle (exactly the latents outside the "
               "varying factor's group: DC-IGN's supervision).", "{} mask"),
    )
    pairs_images: ClassVar[bool] = True

    ada_average: str = "gvae"
    ada_mask: str = "threshold"

    @property
    def assigns_latents(self) -> bool:
        return self.ada_mask == "oracle"  # it shares exactly what lies outside the group

    def posterior(self, mu: torch.Tensor, logvar: torch.Tensor, active: torch.Tensor,
                  pairs: torch.Tensor) -> Posterior:
        import torch

        from .method_math import pair_kl, pairs_sharing, shared_by_threshold

        with torch.no_grad():
            if self.ada_mask == "oracle":
                shared = (~active).expand(len(pairs), -1)
            else:
                shared = shared_by_threshold(pair_kl(mu, logvar, pairs))
        return pairs_sharing(mu, logvar, pairs, shared, self.ada_average)

    def logged(self, per_image: Mapping[str, float], shared: Mapping[str, float]) -> dict:
        return {f"shared_latents_{factor}": value for factor, value in shared.items()}


@register
@dataclass(frozen=True)
class BetaVAE(Method):
    name: ClassVar[str] = "betavae"
    label: ClassVar[str] = "β-VAE"
    summary: ClassVar[str] = "β-VAE (Higgins et al. 2017)"
    default_beta: ClassVar[float | None] = 4.0
    draws_independently: ClassVar[bool] = True


@register
@dataclass(frozen=True)
class BetaTCVAE(Method):
    name: ClassVar[str] = "betatcvae"
    label: ClassVar[str] = "β-TCVAE"
    summary: ClassVar[str] = "β-TCVAE (Chen et al. 2018)"
    default_beta: ClassVar[float | None] = 6.0
    draws_independently: ClassVar[bool] = True

    @property
    def kl_weight(self) -> float:
        """Chen et al.'s objective: the KL whole, and β − 1 more of its total-correlation
        term (the penalty), so only the TC is weighted by β."""
        return 1.0

    def penalty(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                dataset_size: int) -> torch.Tensor:
        from .method_math import total_correlation

        return (self.beta - 1) * total_correlation(z, mu, logvar, dataset_size)

    def logged(self, per_image: Mapping[str, float], shared: Mapping[str, float]) -> dict:
        return {"penalty_per_image": per_image["penalty"]}

