"""What the writer relies on: what every dataset's recipe and generator do for a tiny recipe
(the spec a store records and reads back, the refusals, the plans, the images, the close),
and that every default `dcign-render` shows is its recipe's own."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from conftest import invoke

from dcign.render.cli import main as render_main
from dcign.render.generators.aubry import AUBRY_MINIBATCHES, AubryRecipe
from dcign.render.generators.base import MinibatchCounts
from dcign.render.generators.chairs import CHAIR_MINIBATCHES, ChairRecipe
from dcign.render.generators.faces import FACE_MINIBATCHES, FaceRecipe
from dcign.render.renderer.platform import choose_gl_platform
from dcign.shared.cli import default_of
from dcign.shared.errors import DcignError
from dcign.shared.factors import CHAIR_AZIMUTHS, CHAIR_ELEVATIONS, recorded_factors
from dcign.shared.plans import PAPER_CHAIRS, IdentityPools
from dcign.shared.store import StoreSpec
from dcign.shared.verify import minibatch_problems

RECIPES = {"faces": FaceRecipe(image_size=32, batch_size=4),
           "chairs": ChairRecipe(image_size=32, batch_size=4, chairs=40, test_chairs=10)}
# one split's pool smaller than a minibatch: an intrinsic minibatch cannot be filled
TOO_FEW = {"faces": FaceRecipe(image_size=32, batch_size=4,
                               identities=IdentityPools(train=10, test=3)),
           "chairs": ChairRecipe(image_size=32, batch_size=4, chairs=13, test_chairs=3)}
VARY = {"faces": ("azimuth", "elevation", "light", "intrinsic"),
        "chairs": ("azimuth", "intrinsic")}


@pytest.fixture(scope="module", params=sorted(RECIPES))
def loaded(request):
    """(name, recipe, its generator, and minibatch 0 of every (split, factor): plan, images)."""
    name = request.param
    recipe = RECIPES[name]
    choose_gl_platform()
    generator = recipe.load()
    try:
        drawn = {(split, factor): generator.render(generator.plan(split, factor, 0))
                 for split in ("train", "test") for factor in (VARY[name][0], "intrinsic")}
        yield name, recipe, generator, drawn
    finally:
        generator.close()


def test_a_recipe_survives_pickling_and_needs_gl():
    for recipe in RECIPES.values():
        assert recipe.needs_gl
        assert pickle.loads(pickle.dumps(recipe)) == recipe  # workers receive it pickled


def test_the_spec_is_what_a_store_records_and_reads_back(loaded):
    name, recipe, generator, _ = loaded
    spec = generator.spec
    assert (spec.dataset, spec.image_size, spec.batch_size) == (name, 32, 4)
    assert spec.generator["name"] == f"dcign.render.{name}"  # a stored label
    assert [f.name for f in spec.factors][-1] == "intrinsic"
    read = StoreSpec.from_attrs(spec.to_attrs())
    assert read == spec and read.to_attrs() == spec.to_attrs()
    # the view grid the generator plans on is the grid a reader of its store finds
    assert [f.grid for f in recorded_factors(read)] == [f.grid for f in spec.factors]


def test_the_chairs_factor_table_carries_the_papers_view_grid():
    factors = RECIPES["chairs"].load().factors
    assert factors[0].grid == CHAIR_AZIMUTHS and factors[1].grid == CHAIR_ELEVATIONS
    assert not factors[2].grid and not any(f.grid for f in RECIPES["faces"].load().factors)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_check_refuses_an_intrinsic_minibatch_a_pool_cannot_fill(name):
    RECIPES[name].load().check(VARY[name])  # feasible: no error
    noun = "identities" if name == "faces" else "chairs"
    with pytest.raises(DcignError, match=f"test minibatch of 4 distinct {noun}.*test {noun} "
                                         r"\(have 3\)"):
        TOO_FEW[name].load().check(VARY[name])


def test_plans_vary_exactly_one_factor_and_are_a_function_of_their_index(loaded):
    name, recipe, generator, drawn = loaded
    spec = generator.spec
    for factor in VARY[name]:
        for split in ("train", "test"):
            plan = generator.plan(split, factor, 3)
            assert (plan.split, plan.factor, plan.index) == (split, factor, 3)
            assert plan.identities.shape == (4,) and plan.identities.dtype == np.int64
            assert plan.values.shape == (4, spec.n_columns) and plan.values.dtype == np.float32
            pools = generator.pools if name == "chairs" else recipe.identities
            assert set(plan.identities.tolist()) <= set(pools.pool(split))
            # the invariants dcign-store verify checks, on the plan's labels (images aside)
            fake = np.arange(4 * 4, dtype=np.uint8).reshape(4, 2, 2)
            assert minibatch_problems(spec.factor(factor), spec.factors, fake, plan.values,
                                      plan.identities) == []
            again = generator.plan(split, factor, 3)
            assert np.array_equal(again.values, plan.values)
            assert np.array_equal(again.identities, plan.identities)
            other = generator.plan(split, factor, 4)
            assert not (np.array_equal(other.values, plan.values)
                        and np.array_equal(other.identities, plan.identities))
    for factor in spec.factors:  # on a grid, every value a plan holds is a grid value
        if factor.grid:
            values = generator.plan("train", "azimuth", 0).values[:, factor.column]
            assert set(values.tolist()) <= set(factor.grid)


def test_render_draws_the_plans_images_the_same_each_time(loaded):
    name, recipe, generator, drawn = loaded
    spec = generator.spec
    for (split, factor), images in drawn.items():
        assert images.shape == (4, 32, 32) and images.dtype == np.uint8
        plan = generator.plan(split, factor, 0)
        assert minibatch_problems(spec.factor(factor), spec.factors, images, plan.values,
                                  plan.identities) == []  # none blank, no two the same
        assert np.array_equal(generator.render(plan), images)


def test_close_frees_the_renderer_and_a_later_render_makes_a_new_one(loaded):
    name, recipe, generator, drawn = loaded
    plan = generator.plan("train", VARY[name][0], 0)
    generator.close()
    assert generator._renderer is None
    generator.close()  # closing twice is harmless
    assert np.array_equal(generator.render(plan), drawn[("train", VARY[name][0])])


def _defaults(command: str) -> dict[str, str]:
    """Each option's default as `dcign-render COMMAND --help` shows it, by option name."""
    result = invoke(render_main, [command, "--help"])
    assert result.exit_code == 0, result.output
    entries = re.split(r"\n  (?=-)", result.output)  # an option's entry starts its line
    shown = {}
    for entry in entries:
        default = re.search(r"\[default: (.*?)\]", " ".join(entry.split()))  # lines wrap
        if default:
            shown[entry.split()[0]] = default[1]
    return shown


COMMON = {"--batch-size": "batch_size", "--size": "image_size", "--seed": "seed"}


@pytest.mark.parametrize("command, recipe, counts, own", [
    ("faces", FaceRecipe, FACE_MINIBATCHES, {}),
    ("chairs", ChairRecipe, CHAIR_MINIBATCHES,
     {"--views": "views", "--chairs": "chairs", "--up-axis": "up_axis"}),
    ("import-aubry", AubryRecipe, AUBRY_MINIBATCHES, {"--crop": "crop"}),
])
def test_the_help_shows_the_recipes_own_defaults(command, recipe, counts: MinibatchCounts,
                                                   own):
    shown = _defaults(command)
    for option, field in {**COMMON, **own}.items():
        assert shown[option] == str(default_of(recipe, field)), option
    assert (shown["--batches"], shown["--test-batches"]) == (str(counts.train), str(counts.test))


def test_the_chairs_defaults_are_the_papers_split():
    assert (default_of(ChairRecipe, "chairs"), default_of(ChairRecipe, "test_chairs")) == (
        PAPER_CHAIRS.chairs, PAPER_CHAIRS.test)
