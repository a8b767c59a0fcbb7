"""The faces dataset: morphable-model identities rendered in one-factor minibatches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from dcign.shared.factors import FACE_FACTORS, factor_named
from dcign.shared.images import GRAY, GRAY_WEIGHTS, to_gray
from dcign.shared.plans import IdentityPools, MinibatchPlan, check_pools, identity_rng
from dcign.shared.store import StoreSpec

from ..objects.face_loader import load_face_model
from ..objects.face_model import MorphableModel
from ..objects.geometry import VertexNormals
from ..renderer.offscreen import Renderer
from ..renderer.poses import Lighting, light_direction, rotation_matrix
from .base import PAPER_BATCH_SIZE, PAPER_IMAGE_SIZE, MinibatchCounts, RenderingGenerator

AZIMUTH, ELEVATION, LIGHT = (factor_named(FACE_FACTORS, name).column
                              for name in ("azimuth", "elevation", "light"))

# Bump when the images for a given (seed, model, options) would change: stores refuse to mix.
GENERATOR_VERSION = 3  # 3: the shipped model and portable arithmetic (same bits everywhere)
FACES_GENERATOR = "dcign.render.faces"  # the label stores record
FACE_HEIGHT = 2.0  # the mean face's vertical extent in scene units; camera framing assumes it
FACE_LIGHTING = Lighting(background=0.0)
# The paper's faces: per varying factor, 3000 training and 350 test minibatches.
FACE_MINIBATCHES = MinibatchCounts(train=3000, test=350)


@dataclass(frozen=True)
class FaceRecipe:
    """Everything that determines a faces store's images; picklable, for worker processes."""

    seed: int = 0
    image_size: int = PAPER_IMAGE_SIZE
    batch_size: int = PAPER_BATCH_SIZE
    model_path: str | None = None  # None: the embedded model
    lighting: Lighting = field(default_factory=lambda: FACE_LIGHTING)
    identities: IdentityPools = field(default_factory=IdentityPools)
    color: str = GRAY  # images.RGB: the model's own albedo colours
    needs_gl: ClassVar[bool] = True

    def load(self) -> FaceGenerator:
        return FaceGenerator(self, load_face_model(self.model_path))


class FaceGenerator(RenderingGenerator):
    """Turns minibatch plans into images; creates its GL context on first use."""

    shading = "vertex"  # the dense head grid makes per-vertex light look the same, cheaper

    def __init__(self, recipe: FaceRecipe, model: MorphableModel):
        self.recipe = recipe
        self.model = model
        self.factors = FACE_FACTORS
        self.pools = recipe.identities
        self.grid = {}  # every factor drawn over its range
        lo, hi = model.shape_mean.min(axis=0), model.shape_mean.max(axis=0)
        # One fixed normalisation from the mean face, so bigger heads do render bigger.
        self._centre = ((lo + hi) / 2).astype(np.float32)
        self._scale = np.float32(FACE_HEIGHT / (hi[1] - lo[1]))
        self.triangles = np.ascontiguousarray(model.triangles, dtype=np.uint32)
        self.normals = VertexNormals(model.triangles, model.n_vertices)

    @cached_property
    def spec(self) -> StoreSpec:
        """What the store records; hashing the model makes it worth computing once."""
        r = self.recipe
        generator = {
            "name": FACES_GENERATOR,
            "version": GENERATOR_VERSION,
            "seed": r.seed,
            "lighting": asdict(r.lighting),
            "identities": asdict(r.identities),
            "gray_weights": GRAY_WEIGHTS.tolist(),
        }
        model = {
            "name": self.model.name,
            "fingerprint": self.model.fingerprint(),
            "source": str(Path(r.model_path).resolve()) if r.model_path else "embedded",
            "vertices": self.model.n_vertices,
            "shape_components": self.model.n_shape,
            "albedo_components": self.model.n_albedo,
        }
        return StoreSpec("faces", r.image_size, r.batch_size, self.factors, generator, model,
                         color=r.color)

    def check(self, vary: tuple[str, ...]) -> None:
        """Refuse intrinsic minibatches larger than an identity pool, before a store is
        touched."""
        if any(self.spec.factor(name).is_intrinsic for name in vary):
            check_pools(self.pools, self.recipe.batch_size)

    def faces(self, identities: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Normalised vertices (N, 3) and albedo of each identity: gray (N,), or the model's
        RGB (N, 3) for an rgb store."""
        coefs = [self.model.sample_coefficients(identity_rng(self.recipe.seed, int(i)))
                 for i in identities]
        vertices, rgb = self.model.instances(np.stack([c[0] for c in coefs]),
                                             np.stack([c[1] for c in coefs]))
        vertices = (vertices - self._centre) * self._scale
        albedo = to_gray(rgb) if self.recipe.color == GRAY else rgb.astype(np.float32)
        return list(zip(vertices, albedo, strict=True))

    def render(self, plan: MinibatchPlan) -> np.ndarray:
        """uint8 images (B, H, W), (B, H, W, 3) rgb, of one minibatch plan. A light minibatch
        shows one face at one pose under B lights: the face is uploaded and posed once, and
        (gray) four lights are shaded over each rasterisation (`Renderer.render_lights`, the
        same bits as one light at a time)."""
        if plan.factor != "light":
            return super().render(plan)
        pose = plan.values[0]
        renderer = self._show(*self.faces([int(plan.identities[0])])[0])
        lights = light_direction(plan.values[:, LIGHT], self.recipe.lighting.light_elevation)
        return renderer.render_lights(rotation_matrix(pose[AZIMUTH], pose[ELEVATION]), lights)

    def _show(self, vertices: np.ndarray, albedo: np.ndarray) -> Renderer:
        """Upload one face to the renderer (returned)."""
        renderer = self.renderer()
        renderer.set_mesh(vertices, self.triangles, albedo, self.normals(vertices))
        return renderer

    def _posed(self, plan: MinibatchPlan) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Upload each identity's mesh once; yield (image index, rotation, light) per image."""
        light_elevation = self.recipe.lighting.light_elevation
        # All faces of the minibatch at once; each face's bits depend on its identity alone.
        unique = [int(i) for i in dict.fromkeys(plan.identities)]
        meshes = dict(zip(unique, self.faces(unique), strict=True))
        rotations = rotation_matrix(plan.values[:, AZIMUTH], plan.values[:, ELEVATION])
        lights = light_direction(plan.values[:, LIGHT], light_elevation)
        shown = None
        for i, identity in enumerate(plan.identities):
            if identity != shown:
                self._show(*meshes[int(identity)])
                shown = identity
            yield i, rotations[i], lights[i]
