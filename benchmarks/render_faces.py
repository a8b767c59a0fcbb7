"""Face rendering throughput: one worker, two workers, and the depth-only rasterisation floor.

    python benchmarks/render_faces.py [--size 150] [--batches 8] [--repeats 5] [--json out.json]

What is measured, and how, is in render_bench.py (shared with render_chairs.py).
"""

from __future__ import annotations

from render_bench import main, measure

from dcign.render.generators.faces import FaceRecipe
from dcign.shared.factors import FACE_FACTORS


def run(size: int, batches: int, repeats: int) -> dict:
    return measure(FaceRecipe(image_size=size), [f.name for f in FACE_FACTORS],
                   lambda g: g.model.n_vertices, batches, repeats, 268_000)


if __name__ == "__main__":
    main(__doc__.splitlines()[0], run)
