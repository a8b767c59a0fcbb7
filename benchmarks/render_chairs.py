"""Chair rendering throughput: one worker, two workers, and the depth-only rasterisation floor.

    python benchmarks/render_chairs.py [--size 150] [--batches 8] [--repeats 5] [--json out.json]

The default chairs dataset: procedural chairs on the paper's 30x2 view grid, azimuth and
intrinsic minibatches in equal shares (an intrinsic minibatch builds and uploads 20 chairs).
What is measured, and how, is in render_bench.py (shared with render_faces.py).
"""

from __future__ import annotations

import numpy as np
from render_bench import main, measure

from dcign.render.generators.chairs import ChairRecipe


def _mean_vertices(generator) -> float:
    return float(np.mean([len(generator.chair(i).vertices) for i in range(50)]))


def run(size: int, batches: int, repeats: int) -> dict:
    return measure(ChairRecipe(image_size=size), ["azimuth", "intrinsic"], _mean_vertices,
                   batches, repeats, 81_000, "vertices per chair on average")


if __name__ == "__main__":
    main(__doc__.splitlines()[0], run)
