"""`dcign-render faces`: one-factor minibatches of morphable faces, written to a Zarr store."""

from __future__ import annotations

import numpy as np
import zarr
from conftest import TINY, read_group, render, tree_digest

from dcign.shared.factors import FACE_FACTORS
from dcign.shared.store import open_store
from dcign.shared.verify import verify_store

FACTORS = [f.name for f in FACE_FACTORS]


def test_default_command_renders_every_factor_into_train_and_test(tiny_store):
    store = open_store(tiny_store)
    assert sorted(store.sections()) == sorted((s, f) for s in ("train", "test") for f in FACTORS)
    for split, n in (("train", 3), ("test", 2)):
        arrays = read_group(tiny_store, split, "light")
        assert arrays["images"].shape == (n, 4, 32, 32)
        assert arrays["images"].dtype == np.uint8
        assert arrays["factors"].shape == (n, 4, 3)
        assert arrays["complete"].all()


def test_every_minibatch_varies_exactly_one_factor_over_distinct_values(tiny_store):
    store = open_store(tiny_store)
    for split, name in store.sections():
        a = read_group(tiny_store, split, name)
        for values, identity in zip(a["factors"], a["identity"], strict=True):
            for f in FACE_FACTORS:
                if f.is_intrinsic:
                    continue
                column = values[:, f.column]
                if f.name == name:
                    assert len(np.unique(column)) == len(column)
                else:
                    assert (column == column[0]).all(), (split, name, f.name)
            if name == "intrinsic":
                assert len(np.unique(identity)) == len(identity)
            else:
                assert (identity == identity[0]).all()
    assert verify_store(store).ok


def test_factor_values_lie_in_the_published_ranges(tiny_store):
    for f in FACE_FACTORS[:3]:
        values = np.concatenate([read_group(tiny_store, s, n)["factors"][..., f.column].ravel()
                                 for s in ("train", "test") for n in FACTORS])
        assert values.min() >= f.low and values.max() <= f.high


def test_train_and_test_identities_are_disjoint(tiny_store):
    ids = {s: set(np.concatenate([read_group(tiny_store, s, n)["identity"].ravel()
                                  for n in FACTORS]).tolist()) for s in ("train", "test")}
    assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]


def test_faces_are_lit_from_the_side_the_light_azimuth_names(tiny_store):
    a = read_group(tiny_store, "train", "light")
    light = a["factors"][..., 2].ravel()
    images = a["images"].reshape(-1, 32, 32).astype(float)
    right_minus_left = images[:, :, 16:].mean(axis=(1, 2)) - images[:, :, :16].mean(axis=(1, 2))
    assert np.corrcoef(light, right_minus_left)[0, 1] > 0.8


def test_faces_sit_on_a_black_background_in_the_middle_of_the_frame(tiny_store):
    images = read_group(tiny_store, "train", "azimuth")["images"].reshape(-1, 32, 32)
    assert (images[:, 0, 0] == 0).all() and (images[:, -1, -1] == 0).all()
    assert images[:, 12:20, 12:20].mean() > 40


def test_the_same_command_gives_byte_identical_images(tmp_path, tiny_store):
    again = tmp_path / "again.zarr"
    assert render([*TINY, "--out", again]).exit_code == 0
    for split in ("train", "test"):
        for name in FACTORS:
            first, second = read_group(tiny_store, split, name), read_group(again, split, name)
            for key in first:
                assert np.array_equal(first[key], second[key], equal_nan=True), (split, name, key)


def test_a_minibatch_depends_only_on_seed_split_factor_and_index(tmp_path, tiny_store):
    """Rendering one factor alone, in another process layout, gives the same minibatches."""
    alone = tmp_path / "light.zarr"
    args = [*TINY, "--vary", "light", "--workers", "2", "--out", alone]
    assert render(args).exit_code == 0
    assert np.array_equal(read_group(alone, "train", "light")["images"],
                          read_group(tiny_store, "train", "light")["images"])
    assert [g for g in open_store(alone).sections()] == [("train", "light"), ("test", "light")]


def test_another_seed_gives_other_faces(tmp_path, tiny_store):
    other = tmp_path / "other.zarr"
    assert render([*TINY, "--vary", "intrinsic", "--seed", "1", "--out", other]).exit_code == 0
    assert not np.array_equal(read_group(other, "train", "intrinsic")["images"],
                              read_group(tiny_store, "train", "intrinsic")["images"])


def test_more_batches_extend_the_store_and_keep_what_was_there(fresh_store, tiny_store):
    result = render([*TINY, "--batches", "5", "--out", fresh_store])
    assert result.exit_code == 0, result.output
    grown, before = read_group(fresh_store, "train", "elevation"), read_group(tiny_store, "train",
                                                                              "elevation")
    assert grown["images"].shape[0] == 5 and grown["complete"].all()
    assert np.array_equal(grown["images"][:3], before["images"])
    assert "rendered 8 minibatches" in result.output  # 2 new per factor, none redone


def test_a_new_factor_is_appended_without_touching_the_others(tmp_path, tiny_store):
    store = tmp_path / "two.zarr"
    assert render([*TINY, "--vary", "azimuth", "--out", store]).exit_code == 0
    before = tree_digest(store / "train" / "azimuth")
    assert render([*TINY, "--vary", "light", "--out", store]).exit_code == 0
    assert tree_digest(store / "train" / "azimuth") == before
    assert {f for _, f in open_store(store).sections()} == {"azimuth", "light"}


def test_an_interrupted_run_resumes_without_gaps_or_duplicates(fresh_store, tiny_store):
    # What a crash leaves: markers unset for minibatches whose arrays were half written.
    group = zarr.open_group(str(fresh_store / "train" / "intrinsic"), mode="r+")
    group["complete"][1:] = False
    group["images"][2] = np.zeros_like(group["images"][2])
    result = render([*TINY, "--out", fresh_store])
    assert result.exit_code == 0, result.output
    assert "rendered 2 minibatches" in result.output
    resumed, reference = (read_group(fresh_store, "train", "intrinsic"),
                          read_group(tiny_store, "train", "intrinsic"))
    assert resumed["complete"].all()
    assert np.array_equal(resumed["images"], reference["images"])


def test_rerunning_a_finished_command_renders_nothing(fresh_store):
    before = tree_digest(fresh_store / "train")
    result = render([*TINY, "--out", fresh_store])
    assert result.exit_code == 0 and "rendered 0 minibatches" in result.output
    assert tree_digest(fresh_store / "train") == before


def test_overwrite_replaces_a_store_made_with_other_settings(fresh_store):
    result = render([*TINY, "--vary", "light", "--size", "24", "--overwrite", "--out",
                     fresh_store])
    assert result.exit_code == 0, result.output
    store = open_store(fresh_store)
    assert store.spec.image_size == 24
    assert [f for _, f in store.sections()] == ["light", "light"]


def test_the_store_records_how_it_was_made(tiny_store):
    attrs = zarr.open_group(str(tiny_store), mode="r").attrs["dcign"]
    assert attrs["schema_version"] == 2 and attrs["dataset"] == "faces"
    assert attrs["image_size"] == 32 and attrs["batch_size"] == 4
    assert [f["name"] for f in attrs["factors"]] == FACTORS
    assert attrs["factors"][0]["latents"] == [0, 1]
    assert attrs["generator"]["seed"] == 0 and attrs["generator"]["version"] >= 1
    assert len(attrs["model"]["fingerprint"]) == 16 and attrs["model"]["source"] == "embedded"
    assert attrs["history"][0]["config"]["batches"] == 3


def test_the_help_shows_examples():
    result = render(["--help"])
    assert result.exit_code == 0
    assert "dcign-render faces --vary light --batches 12000" in result.output
