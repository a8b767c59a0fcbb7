"""The recipe that made a store, rebuilt from the store's own attributes: what `dcign-render
repair` needs to render exactly the damaged minibatches again (each is a pure function of
the recipe and its index). Models given as files (a Basel model, a mesh folder, the Aubry
tree) are read again from where the store says they were, and must still be the same."""

from __future__ import annotations

from dcign.shared.errors import DcignError
from dcign.shared.plans import IdentityPools
from dcign.shared.store import StoreSpec, differences

from ..objects.aubry_tree import scan_tree
from ..objects.mesh_folder import scan_folder
from ..renderer.poses import Lighting
from .aubry import AUBRY_GENERATOR, AubryRecipe
from .base import DatasetRecipe
from .chairs import CHAIRS_GENERATOR, ChairRecipe
from .faces import FACES_GENERATOR, FaceRecipe


def _faces(spec: StoreSpec) -> FaceRecipe:
    g, source = spec.generator, spec.model.get("source")
    return FaceRecipe(seed=g["seed"], image_size=spec.image_size, batch_size=spec.batch_size,
                      model_path=None if source == "embedded" else source,
                      lighting=Lighting(**g["lighting"]),
                      identities=IdentityPools(**g["identities"]), color=spec.color)


def _chairs(spec: StoreSpec) -> ChairRecipe:
    g, model = spec.generator, spec.model
    common = dict(seed=g["seed"], image_size=spec.image_size, batch_size=spec.batch_size,
                  views=g["views"], textures=g["textures"], lighting=Lighting(**g["lighting"]),
                  color=spec.color)
    if model.get("name") == "mesh folder":
        scan = scan_folder(model["source"], g["up_axis"])
        return ChairRecipe(**common, chairs=len(scan.readable),
                           test_chairs=len(g["identities"]["test"]), meshes=scan.readable,
                           mesh_root=model["source"], mesh_fingerprint=scan.fingerprint,
                           up_axis=g["up_axis"])
    return ChairRecipe(**common, chairs=model["chairs"], test_chairs=g["identities"]["test"])


def _aubry(spec: StoreSpec) -> AubryRecipe:
    g = spec.generator
    return AubryRecipe(scan_tree(spec.model["source"]), image_size=spec.image_size,
                       batch_size=spec.batch_size, crop=g["crop"], seed=g["seed"],
                       test_chairs=len(g["identities"]["test"]))


RECIPES = {FACES_GENERATOR: _faces, CHAIRS_GENERATOR: _chairs, AUBRY_GENERATOR: _aubry}


def recipe_for(spec: StoreSpec, url: str) -> DatasetRecipe:
    """The recipe whose generator states exactly `spec`; one line when there is none."""
    name = spec.generator.get("name")
    if name not in RECIPES:
        raise DcignError(f"{url} was made by {name!r}, which dcign-render cannot render again")
    try:
        recipe = RECIPES[name](spec)
    except (KeyError, TypeError) as exc:
        raise DcignError(f"{url} does not record how it was made ({exc})") from None
    reasons = differences(spec, recipe.load().spec)
    if reasons:
        raise DcignError(f"{url} cannot be rendered again as it was made: {'; '.join(reasons)}")
    return recipe
