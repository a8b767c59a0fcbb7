"""The chairs dataset: procedural CAD chairs (or a folder of the user's meshes) rendered in
one-factor minibatches on white, as the Aubry "Seeing 3D chairs" renders are.

Views follow the paper by default: a grid of 30 azimuths (every 12 degrees) by 2 elevations
(20 and 30 degrees). An azimuth minibatch shows one chair at one elevation from 20 distinct
grid azimuths; an intrinsic minibatch shows 20 distinct chairs from one grid view. With
`views="continuous"` azimuth covers the full circle and elevation a range, and elevation may
vary on its own.

Camera convention: the chair turns, the camera and light stay. Azimuth turns the chair about
its vertical axis (positive: its front turns toward image right); a positive elevation then
tips the chair's top toward the camera, i.e. the camera looks down at the seat from above.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from dcign.shared.errors import DcignError
from dcign.shared.factors import CHAIR_GRID, CHAIR_VIEWS, chair_factors, with_grids
from dcign.shared.images import GRAY
from dcign.shared.plans import (
    PAPER_CHAIRS,
    IdentityPools,
    ListedPools,
    MinibatchPlan,
    check_grid,
    check_pools,
    check_test_count,
    colour_rng,
    identity_rng,
    split_files,
)
from dcign.shared.portable import matmul
from dcign.shared.store import StoreSpec

from ..objects.chair_mesh import CHAIR_RADIUS, ChairMesh, procedural_chair
from ..objects.mesh_folder import MeshFolder
from ..renderer.poses import Lighting, light_direction, rotation_matrix
from .base import PAPER_BATCH_SIZE, PAPER_IMAGE_SIZE, MinibatchCounts, RenderingGenerator

# Bump when the images for a given (seed, options) would change: stores refuse to mix.
GENERATOR_VERSION = 1
CHAIRS_GENERATOR = "dcign.render.chairs"  # the label stores record
# Light enough that dark chairs show their form, dim enough that pale seats stay off-white.
CHAIR_LIGHTING = Lighting(background=1.0, light_elevation=45.0, light_intensity=0.7,
                          ambient=0.3)
LIGHT_AZIMUTH = -35.0  # the light comes from the camera's upper left, fixed as the chair turns
# 2 factors x (1800 + 225) x 20 = 81,000 images: the paper's 1357 chairs x 60 views.
CHAIR_MINIBATCHES = MinibatchCounts(train=1800, test=225)
FINGERPRINT_CHAIRS = 4  # whole chairs the procedural fingerprint hashes


@dataclass(frozen=True)
class ChairRecipe:
    """Everything that determines a chairs store's images; picklable, for worker processes.

    `meshes` (paths of readable mesh files, in identity order) replaces the procedural chairs
    with the user's; `mesh_root` and `mesh_fingerprint` describe that folder.
    """

    seed: int = 0
    image_size: int = PAPER_IMAGE_SIZE
    batch_size: int = PAPER_BATCH_SIZE
    views: str = "grid"
    chairs: int = PAPER_CHAIRS.chairs
    test_chairs: int = PAPER_CHAIRS.test
    textures: bool = True
    lighting: Lighting = field(default_factory=lambda: CHAIR_LIGHTING)
    meshes: tuple[str, ...] = ()
    mesh_root: str = ""
    mesh_fingerprint: str = ""
    up_axis: str = "y"
    color: str = GRAY  # images.RGB: parts coloured from a per-chair palette, meshes their own
    needs_gl: ClassVar[bool] = True

    def load(self) -> ChairGenerator:
        return ChairGenerator(self)

    @property
    def total_chairs(self) -> int:
        return len(self.meshes) if self.meshes else self.chairs

    @property
    def pools(self) -> IdentityPools | ListedPools:
        if self.meshes:
            return split_files(len(self.meshes), self.test_chairs, self.seed)
        return IdentityPools(train=self.chairs - self.test_chairs, test=self.test_chairs)


class ChairGenerator(RenderingGenerator):
    """Turns minibatch plans into images; creates its GL context on first use."""

    def __init__(self, recipe: ChairRecipe):
        if recipe.views not in CHAIR_VIEWS:
            raise DcignError(f"unknown --views {recipe.views!r}: choose "
                             f"{' or '.join(CHAIR_VIEWS)}")
        self.recipe = recipe
        # the table carries the view grid; plans draw from it as float32, as stored
        self.factors = with_grids(chair_factors(recipe.views),
                                  CHAIR_GRID if recipe.views == "grid" else {})
        self.pools = recipe.pools
        self.grid = {f.name: np.float32(f.grid) for f in self.factors if f.grid}
        self._folder: MeshFolder | None = None

    def check(self, vary: tuple[str, ...]) -> None:
        """Refuse requests no minibatch could satisfy, before a store is touched (whatever
        `vary` holds: a store's chairs serve every factor it may later be extended with)."""
        r = self.recipe
        check_test_count(r.test_chairs, r.total_chairs)
        # on the grid only azimuth varies (elevation, with 2 values, is held fixed)
        check_grid(self.factors[0], self.grid, r.batch_size)
        check_pools(self.pools, r.batch_size, noun="chairs")

    @cached_property
    def spec(self) -> StoreSpec:
        """What the store records; the procedural fingerprint builds chairs, so once."""
        r = self.recipe
        generator = {
            "name": CHAIRS_GENERATOR,
            "version": GENERATOR_VERSION,
            "seed": r.seed,
            "views": r.views,
            "grid": {k: v.tolist() for k, v in self.grid.items()},
            "textures": r.textures,
            "lighting": asdict(r.lighting),
            "light_azimuth": LIGHT_AZIMUTH,
            "chair_radius": CHAIR_RADIUS,
            "identities": (self.pools.to_attrs() if isinstance(self.pools, ListedPools)
                           else asdict(self.pools)),
        }
        if r.meshes:
            generator["up_axis"] = r.up_axis
            model = {"name": "mesh folder", "fingerprint": r.mesh_fingerprint,
                     "source": r.mesh_root, "files": len(r.meshes)}
        else:  # the source is a label existing stores compare, not the module's path today
            model = {"name": "procedural chairs", "fingerprint": self._procedural_fingerprint(),
                     "source": "dcign.render.chair_model", "chairs": r.chairs}
        return StoreSpec("chairs", r.image_size, r.batch_size, self.factors, generator, model,
                         color=r.color)

    def _procedural_fingerprint(self) -> str:
        """A hash of a few whole chairs (geometry, normals, winding, materials, and an rgb
        store's colours): it changes whenever the generator's output does, so such stores are
        not mixed."""
        h = hashlib.sha256()
        r = self.recipe
        for i in range(FINGERPRINT_CHAIRS):
            colours = None if r.color == GRAY else colour_rng(r.seed, i)
            m = procedural_chair(identity_rng(r.seed, i), colour_rng=colours)
            for array in (m.vertices, m.normals, m.albedo, m.material):
                h.update(np.round(array, 4).tobytes())
            h.update(m.triangles.tobytes())
        return h.hexdigest()[:16]

    def chair(self, identity: int) -> ChairMesh:
        r = self.recipe
        if r.meshes:
            if self._folder is None:
                self._folder = MeshFolder(r.meshes, r.up_axis, r.color)
            return self._folder.chair(identity)
        colours = None if r.color == GRAY else colour_rng(r.seed, identity)
        return procedural_chair(identity_rng(r.seed, identity), r.textures, colours)

    def _posed(self, plan: MinibatchPlan) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Upload each chair once; yield (image index, rotation, light) per image: the light
        stays where it is as the chair turns."""
        renderer = self.renderer()
        light = light_direction(LIGHT_AZIMUTH, self.recipe.lighting.light_elevation)
        elevation_column = self.spec.factor("elevation").column
        shown = None
        for i, (identity, values) in enumerate(zip(plan.identities, plan.values, strict=True)):
            if identity != shown:
                m = self.chair(int(identity))
                renderer.set_mesh(m.vertices, m.triangles, m.albedo, m.normals, m.material)
                shown = identity
            yield i, chair_rotation(float(values[0]), float(values[elevation_column])), light


def chair_rotation(azimuth: float, elevation: float) -> np.ndarray:
    """Turn the chair by `azimuth` about its own vertical axis, then tip its top toward the
    camera by `elevation`: the view from a camera `elevation` degrees above the seat.
    (`rotation_matrix`'s positive elevation lifts a face's nose, tipping its top away, hence
    the minus sign.)"""
    return matmul(rotation_matrix(0.0, -elevation), rotation_matrix(azimuth, 0.0))
