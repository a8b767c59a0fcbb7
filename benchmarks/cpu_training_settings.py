"""CPU training settings: optimiser steps/s of the CPU-sized network at 64×64 under each
setting the trainer offers, measured on this machine, to choose the CPU default from evidence.

    python benchmarks/cpu_training_settings.py [--steps 40] [--repeats 3] [--only NAME ...]
                                               [--json out.json]

Each setting trains in a fresh process (a thread count is fixed when torch starts; compiled
code is per process) on a synthetic 64×64 blob store (the network's cost does not depend on
what the images show): a warm-up of --steps steps (torch.compile compiles there), then
--steps timed steps of `train_step`, the settings taking turns, --repeats rounds; medians, and
each setting's ratio to today's CPU default (fp32, contiguous, eager, torch's own thread
count, as `dcign-train` runs on the CPU). Steps are those of `dcign-train`'s defaults (one
minibatch of 20 a step, DC-IGN clamping), from memory, so the loader is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {  # name → (TrainConfig fields, torch threads; None: torch's own choice)
    "default (fp32, contiguous, eager)": ({}, None),
    "channels-last": ({"channels_last": True}, None),
    "--compile": ({"compile": True}, None),
    "--compile, channels-last": ({"compile": True, "channels_last": True}, None),
    "bf16 autocast": ({"precision": "bf16"}, None),
    "bf16 autocast, channels-last": ({"precision": "bf16", "channels_last": True}, None),
    "1 thread": ({}, 1),
}

ONE_SETTING = """
import json, sys, time
import torch
fields, threads, store, steps = json.loads(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
from dcign.train.config import TrainConfig
from dcign.train.data import StepDataset
from dcign.train.loop import build_run, train_step
run = build_run(TrainConfig(store=store, out="unused", device="cpu", **fields))
data = StepDataset(run.data, 0, run.cfg.minibatches_per_step, in_memory=True)
batches = [data[s] for s in range(2 * steps)]
for b in batches[:steps]:
    train_step(run, b)
start = time.perf_counter()
for b in batches[steps:]:
    train_step(run, b)
print(json.dumps({"steps_per_s": steps / (time.perf_counter() - start),
                  "threads": torch.get_num_threads()}))
"""


def one_setting(fields: dict, threads: int | None, store: str, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # torch's own default
    done = subprocess.run([sys.executable, "-c", ONE_SETTING,
                           json.dumps([fields, threads, store, steps])],
                          env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=[],
                        help="settings whose names contain one of these (the default always)")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    chosen = {name: s for i, (name, s) in enumerate(SETTINGS.items())
              if i == 0 or not opts.only or any(word in name for word in opts.only)}
    from dcign.train.synthetic import write_blob_store

    with tempfile.TemporaryDirectory() as tmp:
        store = str(write_blob_store(Path(tmp) / "blobs64.zarr", 64, train_batches=20,
                                     test_batches=1))
        found: dict[str, list[dict]] = {name: [] for name in chosen}
        for _ in range(opts.repeats):
            for name, (fields, threads) in chosen.items():
                found[name].append(one_setting(fields, threads, store, opts.steps))
    rates = {name: statistics.median(r["steps_per_s"] for r in runs)
             for name, runs in found.items()}
    default = rates["default (fp32, contiguous, eager)"]
    print(f"small network, 64x64, 1 minibatch of 20 a step, {opts.steps} timed steps, "
          f"medians of {opts.repeats} (the settings alternating), {os.cpu_count()} cores")
    print(f"{'setting':36}{'threads':>8}{'steps/s':>10}{'vs default':>12}")
    for name, rate in rates.items():
        print(f"{name:36}{found[name][0]['threads']:>8}{rate:>10.1f}{rate / default:>11.2f}x")
    if opts.json:
        opts.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
