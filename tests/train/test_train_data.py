"""The loader: latent groups from the store, the batch-type schedule, typed minibatches."""

import numpy as np
import pytest
import torch

from dcign.shared.errors import DcignError
from dcign.shared.factors import FACE_FACTORS, Factor
from dcign.shared.store import open_store
from dcign.train.data import (
    StepDataset,
    default_ratio,
    draw_step,
    make_loader,
    open_training_data,
    parse_ratio,
)
from dcign.train.synthetic import write_blob_store

CHAIR_LIKE = (
    Factor("azimuth", "degree", -180.0, 180.0, (0, 1), 0, "chair rotation"),
    Factor("intrinsic", "identity", None, None, (1, None), None, "which chair"),
)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return write_blob_store(tmp_path_factory.mktemp("data") / "blobs.zarr", 32, 3, 1)


def test_latent_groups_come_from_the_store_factor_table_for_faces(blobs):
    data = open_training_data(str(blobs), "dcign", None, 200)
    groups = {t.factor.name: t.latents for t in data.types}
    assert groups == {"azimuth": slice(0, 1), "elevation": slice(1, 2), "light": slice(2, 3),
                      "intrinsic": slice(3, 200)}


def test_latent_groups_come_from_the_store_factor_table_for_chairs(tmp_path):
    path = write_blob_store(tmp_path / "chairs.zarr", 32, 2, 1, factors=CHAIR_LIKE)
    data = open_training_data(str(path), "dcign", None, 200)
    assert {t.factor.name: t.latents for t in data.types} == {
        "azimuth": slice(0, 1), "intrinsic": slice(1, 200)}
    assert [t.weight for t in data.types] == [1.0, 10.0]


def test_default_ratio_is_the_papers_1_1_1_10_for_faces():
    assert default_ratio(FACE_FACTORS) == [1.0, 1.0, 1.0, 10.0]
    assert parse_ratio("1:1:1:16", FACE_FACTORS) == [1.0, 1.0, 1.0, 16.0]


@pytest.mark.parametrize("bad", ["1:1:10", "a:b:c:d", "0:0:0:0", "1:-1:1:1"])
def test_a_malformed_ratio_is_refused(bad):
    with pytest.raises(DcignError, match="--ratio"):
        parse_ratio(bad, FACE_FACTORS)


def test_the_schedule_is_a_pure_function_of_seed_and_step(blobs):
    types = open_training_data(str(blobs), "dcign", None, 200).types
    assert draw_step(types, 7, 123, 4) == draw_step(types, 7, 123, 4)
    assert [draw_step(types, 7, s, 4) for s in range(20)] != \
        [draw_step(types, 8, s, 4) for s in range(20)]


def test_the_schedule_draws_batch_types_in_the_given_ratio(blobs):
    types = open_training_data(str(blobs), "dcign", "1:1:1:10", 200).types
    kinds = [k for s in range(4000) for k, _ in draw_step(types, 0, s, 1)]
    freq = np.bincount(kinds, minlength=4) / len(kinds)
    np.testing.assert_allclose(freq, [1 / 13, 1 / 13, 1 / 13, 10 / 13], atol=0.02)


def test_a_zero_weight_leaves_a_batch_type_out(blobs):
    types = open_training_data(str(blobs), "dcign", "1:0:0:1", 200).types
    assert [t.factor.name for t in types] == ["azimuth", "intrinsic"]


def test_an_item_is_a_steps_minibatches_each_read_whole_from_its_types_group(blobs):
    data = open_training_data(str(blobs), "dcign", None, 200)
    kinds, images, _ = StepDataset(data, seed=3, per_step=3)[11]
    assert images.dtype == torch.uint8 and images.shape == (3, 20, 32, 32)
    store = open_store(blobs)
    drawn = draw_step(data.types, 3, 11, 3)
    assert kinds == [kind for kind, _ in drawn]
    for stacked, (kind, k) in zip(images, drawn, strict=True):
        stored = store.arrays("train", data.types[kind].factor.name).images[k]
        assert np.array_equal(stacked.numpy(), stored)


def test_only_minibatches_marked_complete_are_drawn(tmp_path):
    path = write_blob_store(tmp_path / "s.zarr", 32, 4, 1)
    store = open_store(path, mode="r+")
    store.arrays("train", "azimuth").complete[1] = False  # as if its writer had crashed
    data = open_training_data(str(path), "dcign", None, 200)
    assert list(data.types[0].indices) == [0, 2, 3]
    drawn = {k for s in range(300) for kind, k in draw_step(data.types, 0, s, 2) if kind == 0}
    assert drawn == {0, 2, 3}


def test_in_memory_and_spawned_worker_loaders_yield_the_same_steps_as_direct_reads(blobs):
    data = open_training_data(str(blobs), "dcign", None, 200)

    def steps(in_memory, workers):
        ds = StepDataset(data, seed=1, per_step=2, in_memory=in_memory)
        loader = make_loader(ds, 5, 11, workers, False)
        if workers:  # never forked: zarr's and fsspec's event-loop threads die in a fork
            assert loader.multiprocessing_context.get_start_method() == "spawn"
        return [(list(k), im.clone()) for k, im, _ in loader]

    direct = steps(False, 0)
    for other in (steps(True, 0), steps(False, 2)):
        assert len(other) == len(direct) == 6
        for (ka, ia), (kb, ib) in zip(direct, other, strict=True):
            assert ka == kb and torch.equal(ia, ib)


def test_a_store_whose_test_identities_appear_in_training_is_refused(tmp_path):
    path = write_blob_store(tmp_path / "s.zarr", 32, 2, 1)
    store = open_store(path, mode="r+")
    leaked = store.arrays("train", "intrinsic").identity[0]
    store.arrays("test", "azimuth").identity[0] = np.full(20, leaked[0])
    with pytest.raises(DcignError, match="both the train and the test split"):
        open_training_data(str(path), "dcign", None, 200)
