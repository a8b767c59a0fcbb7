"""The GPU check: one call on a CUDA machine, at most 8 minutes, one JSON and one table.

    python benchmarks/gpu_check.py [--json gpu_check.json] [--minutes 8]
    nox -s gpu

1. faces rendered at 150×150 through EGL on the GPU (the GL renderer string says which
   device rasterised), one worker and one per 2 cores, images/s (targets: ≥ 3,000 on an
   H100-class node);
2. `paper150` training images/s and peak GPU memory for 1, 8 and 16 minibatches per step, in
   bf16 with channels-last, eager and `--compile` (target: ≥ 5,000 images/s);
3. data-parallel training over every GPU of the node, when it has more than one (torchrun);
4. a short quality run: DC-IGN with `--mirror-odd azimuth` on a fresh 150×150 store, and the
   held-out r of z1–z3.

Without CUDA it refuses in one line. `--cpu-smoke` runs every section at toy sizes on the CPU
instead (what the test suite does, so the script cannot rot before a GPU runs it); its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_throughput import training_rate  # noqa: E402

from dcign.render.generators.faces import FaceRecipe  # noqa: E402
from dcign.render.renderer.platform import choose_gl_platform, gl_renderer  # noqa: E402
from dcign.render.writer import RenderRequest, render_store  # noqa: E402
from dcign.shared.factors import FACE_FACTORS  # noqa: E402

FACTORS = tuple(f.name for f in FACE_FACTORS)


class Budget:
    """The check's minutes, shared out: each section gets what the ones before left."""

    def __init__(self, minutes: float):
        self.end = time.monotonic() + 60 * minutes

    def left_minutes(self) -> float:
        return max(0.0, (self.end - time.monotonic()) / 60)


def render_section(size: int, batches: int, workers: list[int]) -> dict:
    """Images/s for each worker count: measured over the larger of two stores (start-up
    included), and the steady rate estimated from the two (the images between them over the
    seconds between them). The estimate is a difference of timings that load on the machine
    can make meaningless; then it is recorded as None, never as a negative rate."""
    platform = choose_gl_platform("auto")
    out = {"gl_platform": platform, "gl_renderer": gl_renderer(platform), "size": size}
    recipe = FaceRecipe(image_size=size)
    for n in workers:
        runs = []
        for count in (batches, 4 * batches):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                summary = render_store(Path(tmp) / "s.zarr", recipe,
                                       RenderRequest(FACTORS, count, 1), workers=n,
                                       gl_platform=platform, progress=False)
                runs.append((summary.rendered * recipe.batch_size,
                             time.perf_counter() - started))
        (small, t_small), (large, t_large) = runs
        out[f"images_per_s_{n}_workers"] = large / t_large
        out[f"steady_images_per_s_{n}_workers"] = (
            (large - small) / (t_large - t_small) if t_large > t_small else None)
    return out


def training_section(store: str, device: str, per_steps: list[int], steps: int,
                     compile_: list[bool], arch: str = "paper150") -> list[dict]:
    rows = []
    for per_step in per_steps:
        for compiled in compile_:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rate = training_rate(store, device, per_step, steps, repeats=3, compile_=compiled,
                                 arch=arch)
            peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None)
            rows.append({"minibatches_per_step": per_step, "compile": compiled,
                         "arch": arch, "precision": "bf16" if device == "cuda" else "fp32",
                         "images_per_s": rate, "peak_gib": peak})
    return rows


def ddp_section(store: str, out: Path, gpus: int, steps: int) -> dict:
    """`torchrun --nproc-per-node gpus dcign-train …`, timed (only with more than one GPU)."""
    if gpus < 2:
        return {"skipped": f"{gpus} GPU: data-parallel training needs two or more"}
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    args = [torchrun, "--standalone", "--nproc-per-node", str(gpus), "-m", "dcign.train.cli",
            "--store", store, "--out", str(out), "--arch", "paper150", "--steps", str(steps),
            "--minibatches-per-step", str(8 * gpus), "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return {"gpus": gpus, "returncode": done.returncode, "seconds": seconds,
            "images_per_s": steps * 8 * gpus * 20 / seconds, "tail": done.stdout[-500:]}


def quality_section(store: str, out: Path, device: str, minutes: float, steps: int) -> dict:
    """DC-IGN (paper150 on 150×150 stores), mirror-odd z1, 8 minibatches a step, for `minutes`."""
    from dcign.train.cli import train_and_measure
    from dcign.train.config import TrainConfig

    cfg = TrainConfig(store=store, out=str(out), arch="auto", device=device,
                      mirror_odd=("azimuth",), minibatches_per_step=8, steps=steps,
                      max_minutes=minutes, checkpoint_every=10_000, progress=False)
    started = time.perf_counter()
    result = train_and_measure(cfg)
    correlations = result.measured.get("correlations", {})
    return {"minutes": (time.perf_counter() - started) / 60,
            "steps": json.loads(result.run_log.read_text().splitlines()[-1]).get("step"),
            "r": {name: c["r"] for name, c in correlations.items()},
            "elbo_per_image": result.measured.get("elbo_per_image")}


def table(result: dict) -> str:
    lines = [f"# {result['device']}; {result['gl']}", f"{'what':<52} {'value':>12}"]
    render, size = result["render"], result["render"]["size"]
    for key, value in render.items():
        if key.startswith("images_per_s_"):
            workers = key.removeprefix("images_per_s_").removesuffix("_workers")
            lines.append(f"{f'render faces {size}x{size}, {workers} worker(s), images/s':<52} "
                         f"{value:>12,.0f}")
            steady = render[f"steady_images_per_s_{workers}_workers"]
            lines.append(f"{'  of which steady (start-up apart), images/s':<52} "
                         + (f"{steady:>12,.0f}" if steady else f"{'unmeasured':>12}"))
    for row in result["training"]:
        what = (f"train {row['arch']}, {row['minibatches_per_step']}/step, {row['precision']}"
                f"{', compiled' if row['compile'] else ''}")
        peak = f" ({row['peak_gib']:.1f} GiB)" if row["peak_gib"] is not None else ""
        lines.append(f"{what + peak + ', images/s':<52} {row['images_per_s']:>12,.0f}")
    ddp = result["ddp"]
    lines.append(f"{'DDP over the node':<52} "
                 f"{ddp.get('images_per_s', 0):>12,.0f}" if "skipped" not in ddp
                 else f"{'DDP over the node':<52} {'skipped':>12}")
    q = result["quality"]
    rs = ", ".join(f"{k} {v:+.2f}" for k, v in q["r"].items())
    lines.append(f"{'quality: ' + str(q['steps']) + ' steps, held-out r':<52} {rs}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="every section at toy sizes on the CPU, the small network on "
                             "32x32 faces (for the test suite)")
    args = parser.parse_args()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("Error: the GPU check needs CUDA, and torch sees no CUDA device here")
    budget = Budget(args.minutes)
    device = "cpu" if smoke else "cuda"
    size = 32 if smoke else 150
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        render = render_section(size, 2 if smoke else 25,
                                [1, 2] if smoke else [1, max(1, (os.cpu_count() or 2) // 2)])
        store = tmp / "faces.zarr"
        render_store(store, FaceRecipe(image_size=size, batch_size=4 if smoke else 20),
                     RenderRequest(FACTORS, 4 if smoke else 300, 1 if smoke else 30),
                     workers=2 if smoke else max(1, (os.cpu_count() or 2) // 2),
                     progress=False)
        training = training_section(str(store), device, [1] if smoke else [1, 8, 16],
                                    1 if smoke else 10, [False] if smoke else [False, True],
                                    arch="small" if smoke else "paper150")
        gpus = torch.cuda.device_count() if not smoke else 0
        ddp = ddp_section(str(store), tmp / "ddp", gpus, 20)
        quality = quality_section(str(store), tmp / "quality", device,
                                  0.1 if smoke else max(0.5, budget.left_minutes() - 0.5),
                                  2 if smoke else 100_000)
    result = {"device": (torch.cuda.get_device_name(0) if not smoke else "CPU smoke run"),
              "gl": f"{render['gl_platform']}: {render['gl_renderer']}",
              "command": " ".join(sys.argv), "render": render, "training": training,
              "ddp": ddp, "quality": quality, "minutes": args.minutes - budget.left_minutes()}
    args.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
