"""`dcign-render import-aubry`: the public "Seeing 3D chairs" renders into a chairs store.

The fake archive has the real naming (`<model-id>/renders/image_NNN_pEEE_tAAA_r096.png`,
600x600 RGB on white): each chair is a coloured block of its own colour whose width grows with
the azimuth, inside a black frame that the crop must remove.
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from conftest import (
    assert_one_line_error,
    content_digest,
    file_digests,
    invoke,
    read_group,
    shard_file,
    tree_digest,
)
from machines import cpu_variants, run_cli
from PIL import Image

from dcign.render.cli import main as render_main
from dcign.render.generators.aubry import AubryRecipe
from dcign.render.objects.aubry_tree import crop_gray, scan_tree
from dcign.render.writer import local_pool
from dcign.shared.store import open_store
from dcign.shared.verify import verify_store

CHAIRS = 6
AZIMUTHS = [int(a) for a in np.arange(0, 360, 30)]  # 12 per elevation
ELEVATIONS = [20, 30]
COLOURS = [(200, 40, 40), (40, 160, 60), (30, 60, 200), (120, 120, 20), (90, 10, 140),
           (10, 130, 130)]
SMALL = ["--size", "32", "--batch-size", "3", "--batches", "2", "--test-batches", "1",
         "--test-chairs", "3", "--workers", "1", "--quiet"]


def fake_render(colour, azimuth: int, elevation: int) -> np.ndarray:
    image = np.full((600, 600, 3), 255, np.uint8)
    image[:40], image[-40:], image[:, :40], image[:, -40:] = 0, 0, 0, 0  # outside any crop
    width = 60 + azimuth // 3
    top = 220 if elevation == 20 else 240
    image[top:top + 160, 300 - width // 2:300 + width // 2] = colour
    return image


@pytest.fixture(scope="module")
def aubry_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("rendered_chairs")
    for c, colour in enumerate(COLOURS[:CHAIRS]):
        renders = root / f"model_{c:03d}" / "renders"
        renders.mkdir(parents=True)
        n = 0
        for p in ELEVATIONS:
            for t in AZIMUTHS:
                Image.fromarray(fake_render(colour, t, p)).save(
                    renders / f"image_{n:03d}_p{p:03d}_t{t:03d}_r096.png")
                n += 1
    (root / "model_000" / "renders" / "image_bad_p20_t10.png").write_bytes(b"")
    return root


def aubry(args: list):
    return invoke(render_main, ["import-aubry", *args])


@pytest.fixture(scope="module")
def aubry_store(tmp_path_factory, aubry_tree):
    out = tmp_path_factory.mktemp("aubry") / "chairs-aubry.zarr"
    result = aubry([aubry_tree, *SMALL, "--workers", "2", "--out", out])  # the writer's pool
    assert result.exit_code == 0, result.output
    return out, result.output


def test_the_imported_store_passes_every_check(aubry_store):
    out, _ = aubry_store
    store = open_store(out)
    assert store.spec.dataset == "chairs"
    assert sorted(store.sections()) == sorted((s, f) for s in ("train", "test")
                                            for f in ("azimuth", "intrinsic"))
    findings = verify_store(store)
    assert findings.ok and findings.checked == 6, findings.problems


def test_views_come_from_the_file_names(aubry_store):
    out, _ = aubry_store
    for factor in ("azimuth", "intrinsic"):
        values = read_group(out, "train", factor)["factors"]
        assert set(np.unique(values[..., 0])) <= set(map(float, AZIMUTHS))
        assert set(np.unique(values[..., 1])) <= {20.0, 30.0}
        assert (values[..., 1] == values[:, :1, 1]).all()


def test_images_show_the_file_they_name_cropped_and_in_gray(aubry_store):
    """The block's gray is 0.21 R + 0.72 G + 0.07 B of the chair's colour; the black frame
    outside the central crop is gone; the block's width follows the stored azimuth."""
    out, _ = aubry_store
    group = read_group(out, "train", "azimuth")
    images, values, identity = group["images"], group["factors"], group["identity"]
    chairs = open_store(out).spec.model["chairs"]
    for k in range(len(images)):
        colour = np.float32(COLOURS[int(chairs[identity[k, 0]][-3:])])
        expected = round(float(colour @ np.float32([0.21, 0.72, 0.07])))
        for image, (azimuth, elevation) in zip(images[k], values[k], strict=True):
            assert abs(int(image[16, 16]) - expected) <= 1
            assert image[0].min() == 255 and image[:, 0].min() == 255  # frame cropped away
            reference = crop_gray(fake_render(tuple(colour.astype(int)), int(azimuth),
                                            int(elevation)), 450, 32)
            assert np.array_equal(image, reference)


def test_the_crop_keeps_the_central_square_and_resizes_to_the_requested_size():
    rgb = np.full((600, 600, 3), 255, np.uint8)
    rgb[:75] = 0  # the band a 450 crop cuts off
    rgb[75:150] = (100, 100, 100)  # the top sixth of the crop
    gray = crop_gray(rgb, 450, 30)
    assert gray.shape == (30, 30)
    assert (gray[:5] == 100).all() and (gray[5:] == 255).all()


def test_chairs_are_disjoint_between_splits_and_fixed_by_the_seed(tmp_path, aubry_tree,
                                                                  aubry_store):
    out, _ = aubry_store
    ids = {s: set(np.concatenate([read_group(out, s, f)["identity"].ravel()
                                  for f in ("azimuth", "intrinsic")]).tolist())
           for s in ("train", "test")}
    assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]
    again = tmp_path / "again.zarr"
    assert aubry([aubry_tree, *SMALL, "--out", again]).exit_code == 0
    for split in ("train", "test"):
        assert np.array_equal(read_group(again, split, "intrinsic")["images"],
                              read_group(out, split, "intrinsic")["images"])


def test_malformed_file_names_are_reported_not_guessed(aubry_store):
    _, output = aubry_store
    assert "warning: skipping model_000/renders/image_bad_p20_t10.png" in output
    assert "skipped 1 files with malformed names" in output


def test_a_tree_that_is_not_the_aubry_layout_is_refused(tmp_path):
    (tmp_path / "chairs" / "model_1").mkdir(parents=True)
    (tmp_path / "chairs" / "model_1" / "picture.png").write_bytes(b"")
    out = tmp_path / "x.zarr"
    assert_one_line_error(aubry([tmp_path / "chairs", *SMALL, "--out", out]),
                          "not the Aubry layout")
    assert not out.exists()


def test_minibatches_the_views_cannot_fill_are_refused_and_the_store_is_untouched(
        aubry_tree, aubry_store):
    out, _ = aubry_store
    before = tree_digest(out)
    args = [aubry_tree, *SMALL, "--batch-size", "13", "--test-chairs", "1", "--vary", "azimuth",
            "--out", out]
    assert_one_line_error(aubry(args), "13 distinct azimuths", "at most 12")
    assert tree_digest(out) == before


@pytest.mark.parametrize("crop", ["0", "-5", "601"])
def test_a_crop_the_renders_cannot_give_is_refused_before_the_store_is_touched(
        aubry_tree, aubry_store, crop):
    out, _ = aubry_store
    before = tree_digest(out)
    assert_one_line_error(aubry([aubry_tree, *SMALL, "--crop", crop, "--out", out]),
                          "--crop must lie between 1 and 600")
    assert tree_digest(out) == before


def test_a_damaged_render_is_named_in_one_line(tmp_path, aubry_tree):
    import shutil

    tree = tmp_path / "rendered_chairs"
    shutil.copytree(aubry_tree, tree)
    (tree / "model_000" / "renders" / "image_bad_p20_t10.png").unlink()  # no warning line
    for png in (tree / "model_004" / "renders").glob("*.png"):
        png.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert_one_line_error(aubry([tree, *SMALL, "--out", tmp_path / "x.zarr"]),
                          "model_004", "is not a readable image")


def _reader_digest(store) -> str:
    """What a reader sees, less what depends on where and how the fake PNGs were written (the
    tree's path, and its fingerprint of file sizes, which follow the PNG encoder)."""
    return content_digest(store, ignore_model=("source", "fingerprint"))


# Pinned before the importer became a generator run by the render writer: the same store.
# (Re-pinned when the digest moved into conftest.content_digest, which hashes splits in sorted
# order, after the old digest function had passed on this code; and again when it stopped
# hashing the schema version, after a schema-2 import matched with the version counted as 1;
# and when the importer's version became 2 (t360 folded onto t000): this tree has no t360, so
# only that attribute changed.)
AUBRY_DIGEST = "159cec789c4ede74e79559963c0b043ea5b52be326d849ee9ff27e25ed62f1e0"


def test_an_imported_store_holds_exactly_the_pinned_content(aubry_store):
    out, _ = aubry_store
    assert _reader_digest(out) == AUBRY_DIGEST


def test_an_import_on_another_cpu_holds_the_same_pinned_content(tmp_path, aubry_tree):
    """Pillow's resampling and the portable gray conversion: no BLAS, no SIMD choice."""
    out = tmp_path / "chairs-aubry.zarr"
    variant = cpu_variants()["openblas-prescott"]
    done = run_cli("dcign.render.cli", ["import-aubry", aubry_tree, *SMALL, "--workers", "1",
                                        "--out", out], variant)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _reader_digest(out) == AUBRY_DIGEST


def test_the_aubry_recipe_and_its_generator_do_what_the_writer_asks(aubry_tree):
    recipe = AubryRecipe(scan_tree(aubry_tree), image_size=32, batch_size=3, test_chairs=3)
    assert not recipe.needs_gl  # no GL is probed
    assert pickle.loads(pickle.dumps(recipe)) == recipe  # workers receive it pickled
    generator = recipe.load()
    generator.check(("azimuth", "intrinsic"))
    images = generator.render(generator.plan("train", "azimuth", 0))
    assert images.shape == (3, 32, 32) and images.dtype == np.uint8 and images.std() > 0
    again = generator.render(generator.plan("train", "azimuth", 0))
    assert np.array_equal(images, again)  # a minibatch depends on its index only
    generator.close()


def test_an_interrupted_import_resumes_through_the_writer_to_the_same_store(
        tmp_path, aubry_tree, monkeypatch):
    out = tmp_path / "resumed.zarr"
    args = [aubry_tree, *SMALL, "--out", out]
    real, done = local_pool.render_shard, []

    def interrupt_after_one_shard(recipe, url, task, settings):
        if done:
            raise KeyboardInterrupt
        done.append(real(recipe, url, task, settings))
        return done[-1]

    monkeypatch.setattr(local_pool, "render_shard", interrupt_after_one_shard)
    interrupted = aubry(args)
    assert interrupted.exit_code == 130 and "rerun the same command to resume" in (
        interrupted.output)
    monkeypatch.setattr(local_pool, "render_shard", real)
    resumed = aubry(args)  # the first shard held train/azimuth's 2 minibatches
    assert resumed.exit_code == 0 and "imported 4 minibatches" in resumed.output
    assert "2 were already there" in resumed.output
    assert _reader_digest(out) == AUBRY_DIGEST
    history = open_store(out).history  # the writer's one record per finished run
    assert [(h["config"]["command"], h["rendered_minibatches"]) for h in history] == [
        ("import-aubry", 4)]


def test_a_larger_batches_extends_an_import_to_the_store_made_at_once(tmp_path, aubry_tree):
    out = tmp_path / "extended.zarr"
    first = aubry([aubry_tree, *SMALL, "--batches", "1", "--out", out])
    assert first.exit_code == 0, first.output
    assert aubry([aubry_tree, *SMALL, "--out", out]).exit_code == 0
    assert _reader_digest(out) == AUBRY_DIGEST


def test_an_import_probes_no_gl_platform(tmp_path, aubry_tree, monkeypatch):
    def no_gl_here(platform):
        raise AssertionError(f"probed {platform}")

    monkeypatch.setattr("dcign.render.renderer.platform._platform_works", no_gl_here)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    result = aubry([aubry_tree, *SMALL, "--vary", "intrinsic", "--out", tmp_path / "x.zarr"])
    assert result.exit_code == 0, result.output


def test_t360_is_the_view_of_t000_so_a_minibatch_never_holds_one_view_twice(tmp_path):
    """The archive names 31 azimuths per elevation, t000 … t360; t360 repeats t000's view."""
    root = tmp_path / "rendered_chairs"
    for c, colour in enumerate(COLOURS[:4]):
        renders = root / f"model_{c:03d}" / "renders"
        renders.mkdir(parents=True)
        for n, t in enumerate([*AZIMUTHS, 360]):
            Image.fromarray(fake_render(colour, t % 360, 20)).save(
                renders / f"image_{n:03d}_p020_t{t:03d}_r096.png")
    tree = scan_tree(root)
    assert all(sorted(a for a, _ in views) == list(map(float, AZIMUTHS)) for views in tree.views)
    assert all(views[(0.0, 20.0)].name.endswith("_t000_r096.png") for views in tree.views)
    out = tmp_path / "a.zarr"
    result = aubry([root, "--size", "16", "--batch-size", "12", "--batches", "3",
                    "--test-batches", "1", "--test-chairs", "1", "--vary", "azimuth",
                    "--workers", "1", "--quiet", "--out", out])
    assert result.exit_code == 0, result.output
    azimuths = read_group(out, "train", "azimuth")["factors"][..., 0]
    assert (azimuths < 360).all()
    assert all(len(set(row)) == 12 for row in azimuths)  # twelve distinct views, no 0 and 360


def test_a_damaged_import_is_repaired_from_its_tree_byte_for_byte(tmp_path, aubry_store):
    """An imported store has no seed to render from: repair reads the damaged minibatches'
    renders from the tree the import recorded."""
    original, _ = aubry_store
    damaged = tmp_path / "chairs-aubry.zarr"
    shutil.copytree(original, damaged)
    shard_file(damaged, "train", "azimuth", "images").unlink()
    result = invoke(render_main, ["repair", damaged, "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "repaired 2 damaged minibatches" in result.output
    assert file_digests(damaged) == file_digests(original)
