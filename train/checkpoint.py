"""The checkpoint: what a training run writes and what resuming, evaluation and re-rendering
read. `Checkpoint` is the one place that knows the format: it writes it, reads it, checks
every field before anything is built from it, and migrates older layouts, so every reader
refuses the same files in the same words.

`checkpoint.pt` in the run directory is a dict saved by `torch.save`, format
`dcign-train-checkpoint/1`:

    format        "dcign-train-checkpoint/1"
    arch          the Architecture's fields
    model         the network's state dict
    optimizer     the optimiser's state dict
    step          optimiser steps taken
    rng           {"torch": the CPU random generator's state}
    config        the TrainConfig's fields
    store         {"sha256", "model_fingerprint", "generator", "spec"}: what was trained on
    factors       the run's factor table (the store's, with --latent-group applied)
    store_counts  complete minibatches per batch type when written

With `--snapshot-every N` the run also keeps the checkpoint of every N-th step as
`snapshots/step-N.pt` (a hard link to the file just written), for `dcign-eval --curve`. A
shipped checkpoint (`train/shipped/`) is this format with float16 weights and no optimiser
state; it is read the same way, and its weights become float32 when the network is built.

Older files of version 1 are migrated on read: without `factors` (before --latent-group) they
get the store's table, without `arch.mirror_odd` (before --mirror-odd) none, and an
`rng.noise` random generator (before the noise became a function of seed, step and minibatch) is
dropped. Other versions are refused in one line.

Reading is bounded by the file and the limits below: `torch.load(weights_only=True)` runs no
code from the file, and the declared architecture is checked against the limits and then
built on the meta device (no memory) to learn the shapes its weights must have, before a
network is allocated. Every failure is one line naming the field.

Writing is atomic and durable: a temporary file, fsynced, renamed over the old checkpoint,
then the directory fsynced; a reader sees the old checkpoint or the new, never half of one,
and a power cut after the rename keeps the new. A failed write removes its temporary file and
leaves the old checkpoint as it was. Tensors are saved from whatever device trained them and
always read onto the CPU, so a checkpoint moves between CUDA and CPU machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import math
import os
import shutil
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcign.shared.errors import DcignError
from dcign.shared.factors import Factor
from dcign.shared.store import StoreSpec

from .config import TrainConfig
from .model import DCIGN, Architecture

FORMAT_NAME = "dcign-train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"
CHECKPOINT_NAME = "checkpoint.pt"
SNAPSHOTS = "snapshots"  # a run's kept checkpoints (--snapshot-every): snapshots/step-N.pt

# What a checkpoint may declare: well above any network dcign builds (paper150 is 150×150,
# 200 latents, 96 channels, 4.1 M parameters and 3.1 M convolution outputs an image; small at
# 256×256 is 20 M parameters), well below what would exhaust a machine's memory before a line
# of error (250,000 latents asked for 1.8 GiB).
MAX_IMAGE_SIZE = 1024
MAX_LATENTS = 4096
MAX_CHANNELS = 1024
MAX_LAYERS = 8
MAX_KERNEL = 31
MAX_PARAMETERS = 64_000_000  # 256 MB of fp32 weights
MAX_ACTIVATIONS = 32_000_000  # convolution outputs an image: 128 MB of fp32
# The per-parameter state each optimiser keeps (train/loop.py's make_optimizer builds them).
OPTIMIZER_STATE = {"adam": frozenset({"step", "exp_avg", "exp_avg_sq"}),
                   "rmsprop": frozenset({"step", "square_avg"})}


class _Invalid(Exception):
    """A checkpoint field that fails its check: (field, what is wrong with it)."""


@dataclass(frozen=True)
class Checkpoint:
    """A training run's state, every field checked and typed."""

    arch: Architecture
    weights: dict[str, torch.Tensor]  # the network's state dict
    optimizer: dict  # the optimiser's state dict, its tensors shaped like the weights
    step: int
    rng: torch.Tensor  # the CPU random generator's state
    config: TrainConfig
    store: StoreSpec  # the spec of the store trained on
    store_sha256: str  # its fingerprint (store_sha256 below) when trained
    factors: tuple[Factor, ...]  # the store's factor table with the run's latent groups
    store_counts: dict[str, int] | None  # complete minibatches per batch type when written

    def to_dict(self) -> dict:
        """The format as written to disk."""
        return {"format": CHECKPOINT_FORMAT, "arch": self.arch.to_dict(),
                "model": self.weights, "optimizer": self.optimizer, "step": self.step,
                "rng": {"torch": self.rng}, "config": self.config.to_dict(),
                "store": {"sha256": self.store_sha256,
                          "model_fingerprint": self.store.model.get("fingerprint"),
                          "generator": self.store.generator, "spec": self.store.to_attrs()},
                "factors": [f.to_attrs() for f in self.factors],
                "store_counts": self.store_counts}

    def write(self, path: Path) -> Path:
        """Write atomically and durably; one line if it fails, the old checkpoint kept."""
        return write_atomically(self.to_dict(), path)

    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        """A checkpoint on the CPU, every field checked; one line for anything else."""
        raw = _load(path)
        try:
            return _parse(_migrated(raw))
        except _Invalid as exc:
            field, problem = exc.args
            raise DcignError(f"{path} does not hold a network this dcign can build: {field} "
                             f"{problem}") from None

    def network(self) -> DCIGN:
        """The network the checkpoint holds, on the CPU (its weights already checked)."""
        model = DCIGN(self.arch)
        model.load_state_dict(self.weights)
        return model


def store_sha256(spec: StoreSpec) -> str:
    """What identifies the images trained on: the store's spec (generator and object model
    included), hashed."""
    return hashlib.sha256(json.dumps(spec.to_attrs(), sort_keys=True).encode()).hexdigest()[:16]


def read_checkpoint(path: Path) -> dict:
    """A checkpoint as its on-disk dict, checked and migrated (for tools and tests that look
    inside; code that uses a checkpoint reads `Checkpoint.read`)."""
    return Checkpoint.read(path).to_dict()


def checkpoint_file(run: str | Path) -> Path:
    """A run directory or a checkpoint file → the checkpoint file; one-line error if absent."""
    path = Path(run)
    file = path / CHECKPOINT_NAME if path.is_dir() else path
    if not file.is_file():
        raise DcignError(f"no checkpoint at {file}")
    return file


def snapshot_files(run: str | Path) -> list[Path]:
    """A run's kept snapshots (--snapshot-every), in step order."""
    return sorted((Path(run) / SNAPSHOTS).glob("step-*.pt"), key=snapshot_step)


def snapshot_step(file: Path) -> int:
    """The step a snapshot was kept at, from its name (step-N.pt)."""
    return int(file.stem.removeprefix("step-"))


# ----------------------------------------------------------------------------- writing

def keep_snapshot(checkpoint: Path, step: int) -> Path:
    """Keep the checkpoint just written as snapshots/step-N.pt: a hard link (no copy; the
    next checkpoint is renamed over checkpoint.pt, not written into it), a copy where the
    filesystem has none."""
    folder = checkpoint.parent / SNAPSHOTS
    kept = folder / f"step-{step}.pt"
    try:
        folder.mkdir(exist_ok=True)
        kept.unlink(missing_ok=True)  # a resumed run passing the same step again
        try:
            os.link(checkpoint, kept)
        except OSError:
            shutil.copyfile(checkpoint, kept)
    except OSError as exc:
        raise DcignError(f"could not keep the snapshot {kept} ({_reason(exc)})") from None
    return kept


def write_atomically(state: dict, path: Path) -> Path:
    """torch.save `state` to a temporary file, fsync it, rename it over `path`, fsync the
    directory. The temporary file never outlives a failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes reach the disk before the name points at them
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # and the rename itself survives a power cut
    except (OSError, RuntimeError) as exc:  # torch's writer reports a full disk as RuntimeError
        raise DcignError(f"could not write the checkpoint {path} ({_reason(exc)}); the "
                         f"previous checkpoint, if any, is unchanged") from None
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename
    return path


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a filesystem that cannot sync a directory: nothing to do
            raise
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[-1][:200] if lines else type(exc).__name__


# ----------------------------------------------------------------------------- reading

def _load(path: Path) -> dict:
    """The file's dict, of this format version; one line for a missing or foreign file."""
    if not path.is_file():
        raise DcignError(f"no checkpoint at {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise DcignError(f"{path} is not a readable checkpoint ({type(exc).__name__})") from exc
    tag = raw.get("format") if isinstance(raw, dict) else None
    if not isinstance(tag, str) or not tag.startswith(f"{FORMAT_NAME}/"):
        raise DcignError(f"{path} is not a dcign-train checkpoint")
    if tag != CHECKPOINT_FORMAT:
        raise DcignError(f"{path} is a checkpoint of format {_shown(tag)}; this dcign reads "
                         f"{CHECKPOINT_FORMAT} (a newer dcign wrote it?)")
    return raw


def _migrated(raw: dict) -> dict:
    """Version 1 as written before --latent-group: the store's factor table is the run's.
    (Fields added since take their defaults when read, and keys no longer read, such as
    `rng.noise` from before the noise became a function of seed, step and minibatch, are
    dropped.)"""
    if "factors" in raw or not isinstance(raw.get("store"), dict):
        return raw
    spec = raw["store"].get("spec")
    return raw | {"factors": spec.get("factors") if isinstance(spec, dict) else None}


def _parse(raw: dict) -> Checkpoint:
    config = _dataclass(TrainConfig, _key(raw, "config"), "config", strict=False)
    arch = _architecture(_key(raw, "arch"))
    shapes = _shapes(arch)  # before any tensor of the file is looked at
    store = _typed(_key(raw, "store"), dict, "store")
    return Checkpoint(
        arch=arch,
        weights=_weights(_key(raw, "model"), shapes),
        optimizer=_optimizer(_key(raw, "optimizer"), config.optimizer, list(shapes.values())),
        step=_within("step", _typed(_key(raw, "step"), int, "step"), 0, 10 ** 12),
        rng=_rng(_key(_typed(_key(raw, "rng"), dict, "rng"), "torch", "rng")),
        config=config,
        store=_dataclass(StoreSpec, _key(store, "spec", "store"), "store.spec"),
        store_sha256=_typed(_key(store, "sha256", "store"), str, "store.sha256"),
        factors=_typed(_key(raw, "factors"), tuple[Factor, ...], "factors"),
        store_counts=_typed(raw.get("store_counts"), dict[str, int] | None, "store_counts"))


def _key(d: dict, key: str, parent: str = "") -> Any:
    if key not in d:
        raise _Invalid(f"{parent}.{key}" if parent else key, "is missing")
    return d[key]


def _architecture(d: Any) -> Architecture:
    """The declared architecture, every field within the limits."""
    a = _dataclass(Architecture, d, "arch")
    _within("arch.image_size", a.image_size, 1, MAX_IMAGE_SIZE)
    _within("arch.latent_size", a.latent_size, 1, MAX_LATENTS)
    for name in ("enc_channels", "dec_channels"):
        channels = getattr(a, name)
        _within(f"arch.{name} (layers)", len(channels), 1, MAX_LAYERS)
        for i, c in enumerate(channels):
            _within(f"arch.{name}[{i}]", c, 1, MAX_CHANNELS)
    for name in ("enc_kernel", "dec_kernel"):
        _within(f"arch.{name}", getattr(a, name), 1, MAX_KERNEL)
    for name in ("enc_padding", "dec_padding"):
        _within(f"arch.{name}", getattr(a, name), 0, MAX_KERNEL)
    _within("arch.dec_start", a.dec_start, 1, MAX_IMAGE_SIZE)
    for i, z in enumerate(a.mirror_odd):
        _within(f"arch.mirror_odd[{i}]", z, 0, a.latent_size - 1)
    return a


def _shapes(arch: Architecture) -> dict[str, torch.Size]:
    """The weights' shapes the architecture implies, learnt by building it on the meta device
    (no memory); refuses one that cannot be built or is too big to allocate or run."""
    try:
        with torch.device("meta"):
            net = DCIGN(arch)
    except DcignError as exc:
        raise _Invalid("arch", f"describes no network dcign builds ({exc})") from None
    except (RuntimeError, ValueError) as exc:
        raise _Invalid("arch", f"describes no network that runs ({_reason(exc)})") from None
    _within("arch (parameters)", sum(p.numel() for p in net.parameters()), 1, MAX_PARAMETERS)
    _within("arch (activations an image)", net.feature_values, 1, MAX_ACTIVATIONS)
    return {name: t.shape for name, t in net.state_dict().items()}


def _weights(d: Any, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The state dict, exactly the tensors and shapes the architecture implies."""
    d = _typed(d, dict, "model")
    for name in d:
        if name not in shapes:
            raise _Invalid("model", f"holds {_shown(name)}, which this architecture has not")
    for name, shape in shapes.items():
        _tensor(_key(d, name, "model"), f"model.{name}", shape)
    return d


def _optimizer(d: Any, kind: str, shapes: list[torch.Size]) -> dict:
    """The optimiser's state dict: one entry per weight, each tensor that weight's shape (or
    a scalar), the state `kind` keeps, and plain numbers for its settings."""
    d = _typed(d, dict, "optimizer")
    if kind not in OPTIMIZER_STATE:
        raise _Invalid("config.optimizer", f"is {_shown(kind)}, not one of "
                       f"{', '.join(OPTIMIZER_STATE)}")
    groups = _typed(_key(d, "param_groups", "optimizer"), tuple[dict, ...],
                    "optimizer.param_groups")
    indices = [i for g in groups for i in _typed(_key(g, "params", "optimizer.param_groups"),
                                                 tuple[int, ...], "optimizer.param_groups")]
    if indices != list(range(len(shapes))):
        raise _Invalid("optimizer.param_groups", f"do not list this network's {len(shapes)} "
                       f"weights once each")
    for g in groups:
        for key, value in g.items():
            _typed(value, bool | int | float | None | tuple[float, ...],
                   f"optimizer.param_groups.{key}")
    state = _typed(_key(d, "state", "optimizer"), dict[int, dict], "optimizer.state")
    for i, entry in state.items():
        where = f"optimizer.state[{_shown(i)}]"
        if i not in range(len(shapes)) or set(entry) != OPTIMIZER_STATE[kind]:
            raise _Invalid(where, f"is not {kind}'s state of a weight of this network")
        for key, value in entry.items():
            _tensor(value, f"{where}.{key}", torch.Size() if key == "step" else shapes[i])
    return d


def _rng(value: Any) -> torch.Tensor:
    expected = torch.get_rng_state()
    if not (isinstance(value, torch.Tensor) and value.dtype == expected.dtype
            and value.shape == expected.shape):
        raise _Invalid("rng.torch", "is not a CPU random generator's state "
                                    f"({expected.numel()} bytes)")
    return value


def _tensor(value: Any, field: str, shape: torch.Size) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise _Invalid(field, f"must be a floating-point tensor, not {_shown(value)}")
    if value.shape != shape:
        raise _Invalid(field, f"has shape {tuple(value.shape)}; the declared architecture "
                              f"needs {tuple(shape)}")
    return value


def _within(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise _Invalid(field, f"is {_shown(value)}; a checkpoint may declare {low}…{high}")
    return value


# ----------------------------------------------------------------------------- typed fields

def _dataclass(cls: type, d: Any, field: str, strict: bool = True) -> Any:
    """`cls` built from the dict `d`, every field of its declared type; a missing field takes
    its default. `strict`: a key that is not a field is refused, not dropped."""
    d = _typed(d, dict, field)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in names]
    if unknown and strict:
        raise _Invalid(f"{field}.{_shown(unknown[0])}", "is not a field this dcign knows")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            values[f.name] = _typed(d[f.name], hints[f.name], f"{field}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Invalid(f"{field}.{f.name}", "is missing")
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(value: Any, hint: Any, field: str) -> Any:
    """`value` as the type `hint` says (a dataclass from a dict, a tuple from a list, an int
    as a float), or _Invalid naming the field."""
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, field)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            with contextlib.suppress(_Invalid):
                return _typed(value, arm, field)
    elif origin is tuple and isinstance(value, (list, tuple)):
        arms = args[:1] * len(value) if args[-1] is Ellipsis else args
        if len(arms) == len(value):
            return tuple(_typed(v, a, f"{field}[{i}]")
                         for i, (v, a) in enumerate(zip(value, arms, strict=True)))
    elif origin is dict and isinstance(value, dict):
        return {_typed(k, args[0], f"{field} (a key)"): _typed(v, args[1], f"{field}[{k!r}]")
                for k, v in value.items()}
    elif _is_scalar(value, hint):
        return float(value) if hint is float else value
    raise _Invalid(field, f"must be {_named(hint)}, not {_shown(value)}")


def _is_scalar(value: Any, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    return isinstance(hint, type) and isinstance(value, hint) and not (
        hint is int and isinstance(value, bool))


def _named(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _shown(value: Any) -> str:
    """A value from the file, short and on one line (repr escapes newlines)."""
    try:
        text = repr(value) if isinstance(value, (str, int, float)) else type(value).__name__
    except ValueError:  # an integer too long to print
        text = "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."
