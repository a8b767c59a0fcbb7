"""What one slider step of `dcign-explore` costs on one CPU thread (issue 23: at most 100 ms
at 64×64): the decode alone, the server's whole answer (the edit, the decode, the PNG, the
command; `Explorer.render`), and that answer over HTTP on 127.0.0.1 as the page asks for it.

    OMP_NUM_THREADS=1 python benchmarks/explore_step.py [--checkpoint RUN --store STORE]
        [--steps 200] [--size 64 --arch small]

Without --checkpoint it trains the README's 64×64 network (or --size/--arch: paper150 at 150)
one step on a blob store in a temporary folder: a step's cost is the network's shape, not its
weights. Each step moves a slider to a new value (a sweep of every slider across its range);
the figure is the median.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from dcign.train.cli import main as train_main
from dcign.train.eval import explore_model as em
from dcign.train.eval.explore import HOST, bind, build_explorer, serve
from dcign.train.synthetic import write_blob_store


def a_run(root: Path, size: int, arch: str) -> tuple[str, str]:
    store = write_blob_store(root / f"blobs{size}.zarr", size, train_batches=1, test_batches=1)
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own report: not ours
        train_main(["--store", str(store), "--out", str(root / "run"), "--steps", "1",
                    "--arch", arch, "--no-progress"], standalone_mode=False)
    return str(root / "run"), str(store)


def timed(step, n: int) -> float:
    times = []
    for k in range(n):
        start = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--store")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="without --checkpoint")
    parser.add_argument("--arch", default="small", help="without --checkpoint (or paper150)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run, store = ((args.checkpoint, args.store) if args.checkpoint
                      else a_run(Path(tmp), args.size, args.arch))
        explorer = build_explorer(run, None, store, "cpu", Path(tmp))
        size = explorer.main.image_size
        image = explorer.pick({"held_out": 0})
        code = np.asarray(image["code"], np.float32)
        controls = explorer.controls
        grid = np.linspace(0, 1, args.steps)

        def values(k: int) -> list[float]:
            s = controls[k % len(controls)]
            v = list(image["values"])
            v[k % len(controls)] = float(s.low + grid[k] * (s.high - s.low))
            return v

        def decode(k: int) -> None:
            em.decode(explorer.main, em.edited(code, controls, dict(enumerate(values(k)))))

        def answer(k: int) -> None:
            explorer.render({"id": image["id"], "code": image["code"], "values": values(k)})

        server = serve(explorer, bind(0))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://{HOST}:{server.server_address[1]}/api/render"

        def http(k: int) -> None:
            body = json.dumps({"id": image["id"], "code": image["code"],
                               "values": values(k)}).encode()
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as r:
                r.read()

        rows = [(name, timed(step, args.steps)) for name, step in
                (("decode one latent → image", decode), ("the server's answer", answer),
                 ("over HTTP on 127.0.0.1", http))]
        server.shutdown()
    print(f"dcign-explore slider step, {size}×{size}, one thread, median of {args.steps}")
    print(f"{'step':<28} {'ms':>8}")
    for name, ms in rows:
        print(f"{name:<28} {ms:>8.2f}")


if __name__ == "__main__":
    main()
