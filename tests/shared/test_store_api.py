"""The store is the project's one data API: list what is complete, read one minibatch or a
group, read several concurrently, draw a seeded sample of images with their ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from conftest import read_group

from dcign.shared.errors import StoreError
from dcign.shared.store import open_store


def _unmark(path, split, factor, k):
    zarr.open_group(str(path / split / factor), mode="r+")["complete"][k] = False


def test_complete_lists_only_the_minibatches_whose_marker_is_set(fresh_store):
    _unmark(fresh_store, "train", "light", 1)
    store = open_store(fresh_store)
    assert store.complete("train", "light").tolist() == [0, 2]
    assert store.complete("train", "azimuth").tolist() == [0, 1, 2]


def test_one_minibatch_reads_its_images_values_and_identities(tiny_store):
    m = open_store(tiny_store).minibatch("test", "azimuth", 1)
    raw = read_group(tiny_store, "test", "azimuth")
    assert (m.split, m.factor, m.index) == ("test", "azimuth", 1)
    assert np.array_equal(m.images, raw["images"][1])
    assert np.array_equal(m.values, raw["factors"][1])
    assert np.array_equal(m.identity, raw["identity"][1])


@pytest.mark.parametrize("k", [1, 7])
def test_an_incomplete_or_absent_minibatch_is_refused_by_name(fresh_store, k):
    _unmark(fresh_store, "train", "light", 1)
    with pytest.raises(StoreError, match=f"train/light minibatch {k} is not in"):
        open_store(fresh_store).minibatch("train", "light", k)


def test_iterating_and_stacking_a_group_skip_incomplete_minibatches(fresh_store):
    _unmark(fresh_store, "train", "elevation", 0)
    store = open_store(fresh_store)
    raw = read_group(fresh_store, "train", "elevation")
    assert [m.index for m in store.minibatches("train", "elevation")] == [1, 2]
    stacked = store.read_complete("train", "elevation")
    assert stacked.indices.tolist() == [1, 2]
    assert np.array_equal(stacked.images, raw["images"][1:])
    assert np.array_equal(stacked.identity, raw["identity"][1:])


def test_several_minibatches_read_concurrently_equal_reading_them_one_at_a_time(tiny_store):
    store = open_store(tiny_store)
    picks = [("light", 2), ("azimuth", 0), ("light", 2), ("intrinsic", 1)]
    together = store.read_images("train", picks)
    assert all(np.array_equal(a, store.minibatch("train", f, k).images)
               for a, (f, k) in zip(together, picks, strict=True))



def test_images_read_from_the_shard_files_are_zarrs_every_minibatch(tiny_store, tmp_path,
                                                                     monkeypatch):
    """A local store's images come straight from their shard files (local_shards); zarr's
    own read is the reference, for every minibatch of every section, in one shard and in
    shards of two minibatches (the last one short)."""
    from dcign.shared import store_writer
    from dcign.train.synthetic import write_blob_store

    monkeypatch.setattr(store_writer, "shard_minibatches", lambda b, h: 2)
    small_shards = write_blob_store(tmp_path / "blobs.zarr", 32, train_batches=5,
                                    test_batches=2, batch_size=4)
    assert open_store(small_shards).arrays("train", "light").per_shard == 2
    for path in (tiny_store, small_shards):
        store = open_store(path)
        for split, factor in store.sections():
            ks = [int(k) for k in store.complete(split, factor)]
            assert store._local_shards(split, factor) is not None  # the direct path is taken
            direct = store.read_images(split, [(factor, k) for k in ks])
            images = zarr.open_array(f"{path}/{split}/{factor}/images", mode="r")
            assert all(np.array_equal(d, images[k]) for d, k in zip(direct, ks, strict=True))

def test_minibatches_decoded_into_a_step_buffer_equal_those_read_alone(tiny_store):
    """The loader hands read_images a step's buffer (`out`): each minibatch is decoded into
    its place, the same pixels as a plain read."""
    store = open_store(tiny_store)
    picks = [("light", 2), ("azimuth", 0), ("intrinsic", 1)]
    out = np.full((len(picks), *store.minibatch("train", "light", 0).images.shape), 7,
                  np.uint8)
    assert store.read_images("train", picks, out=out) is out
    assert all(np.array_equal(o, a) for o, a in zip(out, store.read_images("train", picks),
                                                    strict=True))


def test_a_checksummed_chunk_of_the_wrong_size_is_damage_even_when_decoded_into_a_buffer(
        tiny_store, monkeypatch):
    """zstd decodes a smaller frame into a larger buffer without a word: the frame's declared
    size is checked first, so a short minibatch is named damage, not trained on."""
    import google_crc32c
    from numcodecs import Zstd

    from dcign.shared import local_shards

    store = open_store(tiny_store)
    images = store.minibatch("train", "light", 0).images
    short = Zstd().encode(images.reshape(-1)[:-10].copy())
    assert local_shards.frame_content_size(short) == images.size - 10
    chunk = short + google_crc32c.value(short).to_bytes(4, "little")
    monkeypatch.setattr(local_shards, "read_range", lambda path, offset, nbytes: chunk)
    monkeypatch.setattr(local_shards.LocalShards, "_index", lambda self, shard: (
        "shard", np.array([[0, len(chunk)]] * self.per_shard, np.uint64)))
    with pytest.raises(StoreError, match="damaged"):
        store.read_images("train", [("light", 0)], out=np.empty((1, *images.shape), np.uint8))


def test_a_sample_is_a_pure_function_of_the_generator_and_keeps_each_images_truth(tiny_store):
    store = open_store(tiny_store)
    first = store.sample(25, np.random.default_rng(7))
    again = store.sample(25, np.random.default_rng(7))
    assert np.array_equal(first.images, again.images) and list(first.factor) == list(again.factor)
    assert len(set(first.factor)) > 1  # drawn across minibatch types
    for image, values, identity, factor in zip(first.images, first.values, first.identity,
                                               first.factor, strict=True):
        stacked = store.read_complete("test", factor)
        where = np.argwhere((stacked.images == image).all(axis=(2, 3)))
        assert len(where) == 1
        k, i = where[0]
        assert np.array_equal(stacked.values[k, i], values) and stacked.identity[k, i] == identity


def test_a_sample_larger_than_the_split_is_every_image_once(tiny_store):
    store = open_store(tiny_store)
    everything = store.sample(10_000, np.random.default_rng(0), factors=["light"])
    assert len(everything.images) == 2 * 4
    assert len({img.tobytes() for img in everything.images}) == 8


def test_identities_of_a_split_come_from_its_complete_minibatches(fresh_store):
    store = open_store(fresh_store)
    test_ids = set(store.identities("test").tolist())
    assert test_ids and all(i >= 10_000 for i in test_ids)
    assert not test_ids & set(store.identities("train").tolist())
