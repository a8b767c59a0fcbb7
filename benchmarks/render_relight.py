"""Light minibatches shaded over one rasterisation (all their lights, one per channel of
several render targets; four to a pass before that): what it buys, in one run.

    python benchmarks/render_relight.py [--size 150] [--rate-batches 200] [--batches 600]
                                        [--repeats 3] [--before COMMIT] [--json out.json]

1. Light against elevation minibatches, this code: `render_store` with 2 workers filling a
   store of one minibatch type, at its steady rate (two store sizes, R and 2R minibatches:
   the images between them over the seconds between them, so the workers' start-up does not
   count), the two types alternating; medians of the repeats and their ratio.
2. The user's command, `dcign-render faces --vary light` (2 workers), end to end through the
   CLI, this checkout against COMMIT's code (a git worktree of it, removed afterwards),
   alternating: the wall-clock median of each at N and at 2N minibatches, their ratio, and
   the steady ratio (the difference between the sizes), which is what a long run such as
   `--batches 12000` approaches.

Both versions run in fresh processes from an import root whose `dcign/` links to the
checkout's `render/`, `train/` and `shared/` (the way the package maps them), so neither
depends on which one is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkouts import before_and_after

BEFORE = "403d06a"  # main before light minibatches were shaded several lights to a pass
CLI = "from dcign.render.cli import main; main()"


def run_cli(root: Path, args: list[str], out: Path) -> float:
    """Seconds of one `dcign-render` run of the code under `root`, in a fresh process."""
    env = os.environ | {"PYTHONPATH": str(root)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CLI, *args, "--out", str(out), "--quiet"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def steady_rates(root: Path, size: int, batches: int, repeats: int) -> dict[str, list[float]]:
    """Images/s of light and of elevation minibatches (this code, 2 workers), alternating."""
    code = ("import json, sys, tempfile\n"
            "from pathlib import Path\n"
            "from dcign.render.generators.faces import FaceRecipe\n"
            "from dcign.render.writer import RenderRequest, render_store\n"
            "factor, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
            "out = []\n"
            "for k in (n, 2 * n):\n"
            "    with tempfile.TemporaryDirectory() as tmp:\n"
            "        s = render_store(Path(tmp) / 's.zarr', FaceRecipe(image_size=size),\n"
            "                         RenderRequest((factor,), k, 0), workers=2,\n"
            "                         progress=False)\n"
            "    out.append((s.rendered * 20, s.seconds))\n"
            "print(json.dumps(out))\n")
    rates: dict[str, list[float]] = {"light": [], "elevation": []}
    for _ in range(repeats):
        for factor in rates:
            done = subprocess.run([sys.executable, "-c", code, factor, str(size), str(batches)],
                                  env=os.environ | {"PYTHONPATH": str(root)}, check=True,
                                  capture_output=True, text=True)
            (n1, t1), (n2, t2) = json.loads(done.stdout.splitlines()[-1])
            rates[factor].append((n2 - n1) / (t2 - t1))
    return rates


def command_times(roots: dict[str, Path], size: int, batches: int, repeats: int, tmp: Path
                  ) -> dict[str, dict[int, list[float]]]:
    """Wall seconds of the user's command at N and 2N minibatches, versions alternating."""
    times: dict[str, dict[int, list[float]]] = {v: {batches: [], 2 * batches: []} for v in roots}
    for r in range(repeats):
        for n in (batches, 2 * batches):
            for version, root in roots.items():
                args = ["faces", "--vary", "light", "--batches", str(n), "--test-batches",
                        str(max(1, n // 10)), "--size", str(size), "--workers", "2"]
                times[version][n].append(run_cli(root, args, tmp / f"{version}-{n}-{r}.zarr"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--rate-batches", type=int, default=200)
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="the commit to compare against")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    from dcign.shared.store_schema import shard_minibatches

    shard = shard_minibatches(20, opts.size)
    if opts.rate_batches < 2 * shard:  # the smaller store must keep both workers busy too
        parser.error(f"--rate-batches must be at least {2 * shard} at --size {opts.size} "
                     f"(two shards of {shard}, one per worker)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with before_and_after(opts.before, tmp) as roots:
            rates = steady_rates(roots["after"], opts.size, opts.rate_batches, opts.repeats)
            times = command_times(roots, opts.size, opts.batches, opts.repeats, tmp)
    report(rates, times, opts)


def report(rates: dict[str, list[float]], times: dict[str, dict[int, list[float]]],
           opts: argparse.Namespace) -> None:
    med = statistics.median
    n, n2 = opts.batches, 2 * opts.batches
    light, elevation = med(rates["light"]), med(rates["elevation"])
    print(f"faces {opts.size}x{opts.size}, 2 workers, {opts.repeats} repeats (medians); "
          f"before = {opts.before}")
    print(f"{'':44}{'images/s':>10}")
    print(f"{'light minibatches (steady)':44}{light:>10.0f}")
    print(f"{'elevation minibatches (steady)':44}{elevation:>10.0f}")
    print(f"{'light / elevation':44}{light / elevation:>10.2f}x")
    print()
    print(f"{'dcign-render faces --vary light':44}{'before s':>10}{'after s':>10}{'ratio':>8}")
    for k in (n, n2):
        b, a = med(times["before"][k]), med(times["after"][k])
        print(f"{f'  --batches {k} (+{max(1, k // 10)} test)':44}{b:>10.1f}{a:>10.1f}"
              f"{b / a:>7.2f}x")
    steady = ((med(times["before"][n2]) - med(times["before"][n]))
              / (med(times["after"][n2]) - med(times["after"][n])))
    print(f"{'  steady (the difference between the sizes)':44}{'':>20}{steady:>7.2f}x")
    if opts.json:
        opts.json.write_text(json.dumps({"rates": rates, "times": {
            v: {str(k): t for k, t in by.items()} for v, by in times.items()},
            "before": opts.before, "size": opts.size, "batches": n}, indent=1))


if __name__ == "__main__":
    main()
