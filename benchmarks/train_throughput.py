"""Training throughput of `paper150` at 150×150 (CPU, and CUDA when present), and the loader's.

    python benchmarks/train_throughput.py [--store S.zarr] [--steps 5] [--repeats 3] [--json F]

Without --store a synthetic 150×150 blob store (train/synthetic.py, the trainer cannot tell it
from rendered faces) is written to a temporary directory. Training rows time whole optimiser
steps (`train_step`: load to device, encode, clamp, sample, decode, BCE + KL, backward, Adam)
on minibatches already read, so they measure the network; loader rows iterate the real
DataLoader (Zarr reads, decompression, collation) with no training, from the store and from
memory. Every figure is the median of --repeats timed repeats after one warm-up.
Targets (issue 4): loader ≥ 20,000 images/s on the 2-core CPU; ≥ 3,000 training images/s on
one H100.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dcign.train.config import TrainConfig
from dcign.train.data import StepDataset, make_loader
from dcign.train.loop import build_run, train_step
from dcign.train.synthetic import write_blob_store


def training_rate(store: str, device: str, per_step: int, steps: int, repeats: int,
                  compile_: bool = False, arch: str = "paper150") -> float:
    """Images/s of `train_step` for paper150 (bf16 autocast and channels-last on CUDA)."""
    cfg = TrainConfig(store=store, out="unused", arch=arch, device=device,
                      minibatches_per_step=per_step, compile=compile_)
    run = build_run(cfg)
    data = StepDataset(run.data, 0, per_step, in_memory=True)
    batches = [data[s] for s in range(steps)]
    if run.device.type == "cuda":  # pinned, as the loader delivers them
        batches = [step._replace(images=step.images.pin_memory()) for step in batches]

    def once() -> float:
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        n = sum(train_step(run, b)["images"] for b in batches)  # each step syncs once
        return n / (time.perf_counter() - start)

    once()  # warm-up: allocator, cuDNN autotuning, compilation
    return statistics.median(once() for _ in range(repeats))


def loader_rate(store: str, workers: int, in_memory: bool, steps: int, repeats: int,
                per_step: int = 8) -> float:
    """Images/s the loader delivers once its workers are up: timed from the first step it
    hands over (spawning workers that import torch and zarr costs seconds once per run)."""
    cfg = TrainConfig(store=store, out="unused", arch="paper150", device="cpu")
    data = StepDataset(build_run(cfg).data, 0, per_step, in_memory=in_memory)

    def once(offset: int) -> float:
        n, start = 0, None
        for _, images, _ in make_loader(data, offset, offset + steps + 1, workers,
                                        pin_memory=False):
            if start is None:
                start = time.perf_counter()
                continue
            n += images.shape[0] * images.shape[1]
        return n / (time.perf_counter() - start)

    once(0)
    return statistics.median(once((r + 1) * (steps + 1)) for r in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a 150×150 store (default: a synthetic one)")
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loader-steps", type=int, default=200)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on CUDA")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    store = args.store or str(write_blob_store(Path(tmp.name) / "blobs150.zarr", 150, 50, 1))

    rows = []
    rows.append(("train paper150", "cpu", "1 × 20", training_rate(
        store, "cpu", 1, args.steps, args.repeats)))
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for per_step in (1, 8, 32):
            rows.append(("train paper150 bf16", name, f"{per_step} × 20", training_rate(
                store, "cuda", per_step, 10 * args.steps, args.repeats)))
        if args.compile:
            rows.append(("train paper150 bf16 compiled", name, "32 × 20", training_rate(
                store, "cuda", 32, 10 * args.steps, args.repeats, compile_=True)))
    for workers in (0, 2):
        rows.append((f"loader from store, {workers} workers", "cpu", "8 × 20", loader_rate(
            store, workers, False, args.loader_steps, args.repeats)))
    rows.append(("loader in memory, 0 workers", "cpu", "8 × 20", loader_rate(
        store, 0, True, args.loader_steps, args.repeats)))

    print(f"{'what':<34} {'device':<26} {'minibatches/step':>16} {'images/s':>10}")
    for what, device, shape, rate in rows:
        print(f"{what:<34} {device:<26} {shape:>16} {rate:>10,.0f}")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("what", "device", "minibatches", "images_per_s"),
                                                  r, strict=True)) for r in rows], indent=2))


if __name__ == "__main__":
    main()
