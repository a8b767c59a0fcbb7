"""What one slider step of `dcign-explore` costs on one CPU thread (issue 23: at most 100 ms
at 64×64): the decode alone, the explorer's answer (the edit, the decode, the command;
`Explorer.render`), and the Gradio event the slider fires, whole (`Blocks.process_api` on the
page's render function: Gradio's preprocessing, the answer, the PNG written to Gradio's cache
and the reply built), as the server runs it for the page, less the browser's fetch.

    OMP_NUM_THREADS=1 python benchmarks/explore_step.py [--checkpoint RUN --store STORE]
        [--steps 200] [--size 64 --arch small]

Without --checkpoint it trains the README's 64×64 network (or --size/--arch: paper150 at 150)
one step on a blob store in a temporary folder: a step's cost is the network's shape, not its
weights. Each step moves a slider to a new value (a sweep of every slider across its range);
the figure is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcign.train.cli import main as train_main
from dcign.train.eval import explore_model as em
from dcign.train.eval.explore import build_explorer
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
        os.environ["GRADIO_TEMP_DIR"] = str(Path(tmp) / "gradio")  # its cache, removed after
        from gradio.state_holder import SessionState

        from dcign.train.eval.explore_page import build_page

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

        page = build_page(explorer)
        (fn,) = [f for f in page.fns.values() if f.name == "render"][:1]
        state = {k: image[k] for k in ("id", "label", "code", "values", "baseline_code")}
        session = SessionState(page)
        session[fn.inputs[0]._id] = state  # a gr.State's value lives in the session
        loop = asyncio.new_event_loop()

        def gradio(k: int) -> None:
            reply = loop.run_until_complete(page.process_api(fn, [state, *values(k)], session))
            assert str(reply["data"][0]).count(".png"), reply["data"]

        rows = [(name, timed(step, args.steps)) for name, step in
                (("decode one latent → image", decode), ("the explorer's answer", answer),
                 ("the Gradio event, whole", gradio))]
        loop.close()
    print(f"dcign-explore slider step, {size}×{size}, one thread, median of {args.steps}")
    print(f"{'step':<28} {'ms':>8}")
    for name, ms in rows:
        print(f"{name:<28} {ms:>8.2f}")


if __name__ == "__main__":
    main()
