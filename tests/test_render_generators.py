"""What the writer relies on: every dataset's recipe and generator keep the interface of
`generators.base`, and every default `dcign-render` shows is its recipe's own."""

from __future__ import annotations

import pickle
import re

import pytest
from conftest import invoke

from dcign.render.cli import main as render_main
from dcign.render.generators.aubry import AUBRY_MINIBATCHES, AubryRecipe
from dcign.render.generators.base import DatasetGenerator, DatasetRecipe, MinibatchCounts
from dcign.render.generators.chairs import CHAIR_MINIBATCHES, ChairRecipe
from dcign.render.generators.faces import FACE_MINIBATCHES, FaceRecipe
from dcign.render.plans import PAPER_CHAIRS
from dcign.shared.cli import default_of

RECIPES = {"faces": FaceRecipe(image_size=32, batch_size=4),
           "chairs": ChairRecipe(image_size=32, batch_size=4, chairs=40, test_chairs=10)}


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_and_its_loaded_generator_keep_the_writers_interface(name):
    recipe = RECIPES[name]
    assert isinstance(recipe, DatasetRecipe) and recipe.needs_gl
    assert pickle.loads(pickle.dumps(recipe)) == recipe  # workers receive it pickled
    generator = recipe.load()
    try:
        assert isinstance(generator, DatasetGenerator)
        generator.check(("azimuth", "intrinsic"))
        plan = generator.plan("train", "intrinsic", 0)
        assert len(plan.identities) == recipe.batch_size
        assert generator.spec.generator["name"] == f"dcign.render.{name}"  # a stored label
    finally:
        generator.close()


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
