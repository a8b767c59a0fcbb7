"""Every knob of a training run, in one dataclass, and the checks of their values.

Defaults reproduce the paper (Adam lr 5e-4, β = (0.9, 0.99), one minibatch of one type per
step, λ = 0.01 invariance targeting, mean clamping) except where a flag says otherwise.
`dcign-train` takes every flag's default from here (`--out`'s too: None, then
runs/<store name>-<mode>). The methods (`--mode` and the flags of one method) are declared by
their classes in `modes.py`; a method's flag is a field here because the checkpoint records
a run's configuration field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dcign.shared.errors import DcignError

from .modes import method_class

# Fields that change how long, where or how fast a run executes (precision included: a run
# trained in bf16 on a GPU may continue in fp32 on a CPU); a resumed run takes them from the
# command line, everything else from the checkpoint.
RUNTIME_FIELDS = ("steps", "max_minutes", "device", "precision", "channels_last", "workers",
                  "pin_memory", "in_memory", "compile", "log_every", "checkpoint_every",
                  "snapshot_every", "progress")
PRECISIONS = ("auto", "fp32", "bf16")
CLAMP_RULES = ("mean", "first")
OPTIMIZERS = ("adam", "rmsprop")


@dataclass
class TrainConfig:
    store: str
    out: str | None = None  # None: runs/<store name>-<mode>
    mode: str = "dcign"  # a name in modes.METHODS: dcign (clamped), vae (the baseline), …
    beta: float | None = None  # the KL's weight; None: the method's default_beta
    ada_average: str | None = None  # adagvae's option (modes.AdaGVAE): None, its default
    ada_mask: str | None = None  # adagvae's option (modes.AdaGVAE): None, its default
    clamp: str = "mean"  # "mean" (paper) or "first" (released code)
    invariance: float = 0.01  # λ of paper §3.2, relative to the summed loss; 0 = released default
    ratio: str | None = None  # batch-type weights in factor-table order, e.g. "1:1:1:10"
    arch: str = "auto"  # "auto", "paper150" or "small"
    mirror_odd: tuple[str, ...] = ()  # factors whose latents are odd under a mirror (not paper)
    latent_groups: tuple[str, ...] = ()  # "FACTOR=N": resize a factor's group (not paper)
    steps: int = 2000
    max_minutes: float | None = None  # stop early (checkpoint, evaluate) after this wall time
    minibatches_per_step: int = 1
    optimizer: str = "adam"  # "adam" (what the released "rmsprop" was) or "rmsprop"
    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.99
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 autocast on CUDA and CPUs with AMX, else fp32
    channels_last: bool | None = None  # None: on CUDA, off on the CPU
    workers: int = -1  # -1: 4 loader processes on CUDA, 0 on the CPU (they would steal cores)
    pin_memory: bool | None = None  # None: on CUDA
    in_memory: bool = False
    compile: bool = False
    log_every: int = 10
    checkpoint_every: int = 200
    snapshot_every: int | None = None  # keep snapshots/step-N.pt every N steps (learning curves)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.out is None:
            self.out = str(Path("runs") / f"{Path(self.store).stem}-{self.mode}")

    def validate(self) -> None:
        """Refuse, one line each, a value no run can use, before anything is built: the
        method's own checks, then the shared knobs. (What needs the store, such as --ratio
        against its factors or --mirror-odd against its dataset, is checked on opening it.)"""
        method_class(self.mode).check(self)
        if self.clamp not in CLAMP_RULES:
            raise DcignError(f"unknown clamping rule {self.clamp!r} (choose mean or first)")
        for flag, value in (("--steps", self.steps),
                            ("--minibatches-per-step", self.minibatches_per_step),
                            ("--log-every", self.log_every),
                            ("--checkpoint-every", self.checkpoint_every)):
            if value < 1:
                raise DcignError(f"{flag} must be at least 1 (got {value})")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise DcignError(f"--snapshot-every must be at least 1 (got {self.snapshot_every})")
        if not self.lr > 0 or not self.invariance >= 0:
            raise DcignError(f"--lr must be positive and --invariance non-negative (got "
                             f"{self.lr} and {self.invariance})")
        if self.optimizer not in OPTIMIZERS:
            raise DcignError(f"unknown optimizer {self.optimizer!r} (choose adam or rmsprop)")
        if self.precision not in PRECISIONS:
            raise DcignError(f"--precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        self.group_sizes()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        return cls(**d | {"mirror_odd": tuple(d.get("mirror_odd", ())),
                          "latent_groups": tuple(d.get("latent_groups", ()))})

    def group_sizes(self) -> dict[str, int]:
        """--latent-group FACTOR=N, parsed; one line for anything else."""
        sizes = {}
        for text in self.latent_groups:
            name, _, size = text.partition("=")
            if not size.strip().isdigit():
                raise DcignError(f"--latent-group {text!r} is not FACTOR=N (e.g. azimuth=2)")
            sizes[name.strip()] = int(size)
        return sizes

    def resumed_with(self, cli: TrainConfig) -> TrainConfig:
        """This (checkpointed) configuration with the command line's runtime fields, store
        and run directory: the `out` a checkpoint recorded is where the run was first
        written, and a copied or moved run continues where it is now."""
        return TrainConfig.from_dict(
            self.to_dict() | {k: getattr(cli, k) for k in RUNTIME_FIELDS}
            | {"store": cli.store, "out": cli.out})
