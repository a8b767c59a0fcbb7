"""`dcign-store export`: a store as Parquet rows with a dataset card and Croissant metadata,
read by Hugging Face `datasets` and `mlcroissant` with no dcign code, and back by dcign."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import assert_one_line_error, dead_pid, invoke, store_tool, tree_digest

from dcign.shared.store import open_store

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")

FACTORS = ("azimuth", "elevation", "light", "intrinsic")
COUNTS = {"train": 3, "test": 2}  # the tiny store's minibatches per factor (of 4 images)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """The Hub's libraries stay off the network and out of the user's cache."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.fixture(scope="module")
def exported(tiny_store, tmp_path_factory) -> Path:
    """The tiny store exported once for the module. Read-only."""
    out = tmp_path_factory.mktemp("exports") / "faces"
    result = store_tool(["export", tiny_store, out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "20 minibatches (80 images) in 8 Parquet files" in result.output
    return out


def load(out: Path, *args, tmp_path: Path, **kwargs):
    return datasets.load_dataset(str(out), *args, cache_dir=str(tmp_path / "cache"), **kwargs)


def regrouped(table) -> dict[tuple[str, int], list[dict]]:
    """Rows grouped by (varying, minibatch), each group ordered by position: the recipe the
    card gives."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in table:
        groups.setdefault((row["varying"], row["minibatch"]), []).append(row)
    return {key: sorted(rows, key=lambda r: r["position"]) for key, rows in groups.items()}


@pytest.mark.parametrize("factor", FACTORS)
def test_load_dataset_gives_each_factor_config_its_rows_and_features(exported, factor,
                                                                     tmp_path):
    data = load(exported, factor, tmp_path=tmp_path)
    assert {split: data[split].num_rows for split in data} == {
        split: 4 * n for split, n in COUNTS.items()}
    assert set(data["train"]["varying"]) == {factor}
    features = data["train"].features
    assert isinstance(features["image"], datasets.Image)
    for name, dtype in [("azimuth", "float32"), ("elevation", "float32"), ("light", "float32"),
                        ("identity", "int64"), ("minibatch", "int64"), ("position", "int32"),
                        ("varying", "string")]:
        assert features[name].dtype == dtype, name
    image = data["train"][0]["image"]
    assert image.mode == "L" and image.size == (32, 32)


def test_the_default_config_holds_every_factor(exported, tmp_path):
    data = load(exported, tmp_path=tmp_path)
    assert data["train"].num_rows == 48 and data["test"].num_rows == 32
    assert set(data["test"]["varying"]) == set(FACTORS)


def test_parquet_files_alone_load_with_their_features(exported, tmp_path):
    files = {split: str(exported / "data" / "*" / f"{split}-*.parquet") for split in COUNTS}
    data = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c"))
    assert data["train"].num_rows == 48
    assert isinstance(data["train"].features["image"], datasets.Image)


def test_regrouped_rows_are_the_store_minibatches_byte_for_byte(exported, tiny_store,
                                                                 tmp_path):
    store = open_store(tiny_store)
    data = load(exported, tmp_path=tmp_path)
    for split in COUNTS:
        groups = regrouped(data[split])
        expected = [(m.factor, m) for f in FACTORS for m in store.minibatches(split, f)]
        assert sorted(groups) == sorted((f, m.index) for f, m in expected)
        for factor, m in expected:
            rows = groups[(factor, m.index)]
            assert [r["position"] for r in rows] == [0, 1, 2, 3]
            images = np.stack([np.asarray(r["image"]) for r in rows])
            assert images.dtype == np.uint8 and np.array_equal(images, m.images)
            values = np.array([[r[c] for c in ("azimuth", "elevation", "light")] for r in rows],
                              np.float32)
            assert values.tobytes() == m.values.tobytes()
            assert [r["identity"] for r in rows] == m.identity.tolist()


def test_each_factor_column_records_its_unit_and_range(exported):
    schema = pq.read_schema(exported / "data" / "light" / "train-00000-of-00001.parquet")
    meta = {k.decode(): v.decode() for k, v in schema.field("light").metadata.items()}
    assert meta["unit"] == "degree" and float(meta["low"]) == -80 and float(meta["high"]) == 80
    assert schema.field("identity").metadata[b"unit"] == b"identity"


def test_croissant_validates_and_its_record_sets_hold_every_image(exported):
    mlcroissant = pytest.importorskip("mlcroissant")
    dataset = mlcroissant.Dataset(jsonld=exported / "croissant.json")
    light = list(dataset.records("light"))
    assert len(light) == 20 and {r["light/varying"] for r in light} == {b"light"}
    assert sum(1 for _ in dataset.records("all")) == 80
    table = list(dataset.records("factors"))
    assert [r["factors/name"] for r in table] == list(FACTORS)
    assert [(r["factors/latent_start"], r["factors/latent_stop"]) for r in table] == [
        (0, 1), (1, 2), (2, 3), (3, 200)]
    first = light[0]
    assert first["light/image"].mode == "L" and first["light/split"] in (b"train", b"test")
    metadata = json.loads((exported / "croissant.json").read_text())
    files = [d for d in metadata["distribution"] if d["@type"] == "cr:FileObject"]
    assert len(files) == 8 and all(len(f["sha256"]) == 64 for f in files)
    assert "Synthetic" in metadata["rai:dataCollectionType"][0]
    assert "seed 0" in metadata["rai:dataCollection"]


def test_the_card_names_every_factor_and_how_to_make_it_again(exported):
    card = (exported / "README.md").read_text()
    front, body = card.split("\n---\n", 1)
    assert front.startswith("---\nlicense: mit\n")
    for factor in FACTORS:
        assert f"- config_name: {factor}" in front
        assert f"| `{factor}` |" in body
    assert "dtype: image" in front and "default: true" in front
    for text in ("exactly one factor", "![", "(preview.png)", "groupby", "sort_values",
                 "dcign-render faces", "--batches 3", "seed 0", "dcign-store export"):
        assert text in body, text
    assert (exported / "preview.png").stat().st_size > 0


def test_a_rerun_on_a_finished_export_is_a_no_op(exported, tiny_store):
    before = tree_digest(exported)
    result = store_tool(["export", tiny_store, exported])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output
    assert tree_digest(exported) == before


def test_an_export_of_a_changed_store_is_refused_and_overwrite_replaces_it(fresh_store,
                                                                            tmp_path):
    out = tmp_path / "export"
    assert store_tool(["export", fresh_store, out, "--quiet"]).exit_code == 0
    zarr.open_group(str(fresh_store), mode="r+")["train/light/complete"][2] = False
    before = tree_digest(out)
    assert_one_line_error(store_tool(["export", fresh_store, out]), str(out),
                          "from another store or one changed since", "--overwrite")
    assert tree_digest(out) == before
    result = store_tool(["export", fresh_store, out, "--overwrite", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "19 minibatches" in result.output
    assert not list(tmp_path.glob(".export.*"))  # the old export and the partial are gone


def test_an_export_missing_a_file_is_not_taken_as_finished(tiny_store, tmp_path):
    out = tmp_path / "export"
    assert store_tool(["export", tiny_store, out, "--quiet"]).exit_code == 0
    (out / "data" / "light" / "test-00000-of-00001.parquet").unlink()
    assert_one_line_error(store_tool(["export", tiny_store, out]),
                          "files since removed or changed", "test-00000-of-00001", "--overwrite")
    assert store_tool(["export", tiny_store, out, "--overwrite", "--quiet"]).exit_code == 0
    assert (out / "data" / "light" / "test-00000-of-00001.parquet").is_file()


def test_a_broken_marker_is_one_line(tiny_store, tmp_path):
    out = tmp_path / "export"
    assert store_tool(["export", tiny_store, out, "--quiet"]).exit_code == 0
    (out / "dcign-export.json").write_text('{"format": "dcign-export", "version": 1}')
    assert_one_line_error(store_tool(["export", tiny_store, out]), "malformed")
    assert store_tool(["export", tiny_store, out, "--overwrite", "--quiet"]).exit_code == 0


def test_other_export_settings_are_refused(exported, tiny_store):
    assert_one_line_error(store_tool(["export", tiny_store, exported, "--factor", "light"]),
                          "with other settings", "--overwrite")


def test_a_folder_that_is_not_an_export_is_never_replaced(tiny_store, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_one_line_error(store_tool(["export", tiny_store, tmp_path / "mine", "--overwrite"]),
                          "not a dcign export")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_killed_export_never_looks_finished(tiny_store, tmp_path, monkeypatch):
    import dcign.shared.export as export

    stale = tmp_path / f".out.partial-{dead_pid()}"  # what a killed run left
    stale.mkdir()
    calls = []

    def dies_on_the_second_file(store, file, root):
        calls.append(file)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(store, file, root)

    real = export.write_file
    monkeypatch.setattr(export, "write_file", dies_on_the_second_file)
    result = store_tool(["export", tiny_store, tmp_path / "out", "--quiet"])
    assert result.exit_code == 130, result.output
    assert not (tmp_path / "out").exists()
    assert not stale.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_some_factors_and_splits_are_exported_alone(tiny_store, tmp_path):
    out = tmp_path / "light"
    result = store_tool(["export", tiny_store, out, "--factor", "light", "--split", "test",
                         "--quiet"])
    assert result.exit_code == 0, result.output
    assert [p.relative_to(out).as_posix() for p in sorted(out.rglob("*.parquet"))] == [
        "data/light/test-00000-of-00001.parquet"]
    data = load(out, "light", tmp_path=tmp_path)
    assert list(data) == ["test"] and data["test"].num_rows == 8


def test_an_export_to_a_bucket_is_refused_in_one_line(tiny_store):
    assert_one_line_error(store_tool(["export", tiny_store, "s3://bucket/out"]), "local folder")


def test_minibatch_dataset_over_the_export_equals_over_the_store(exported, tiny_store):
    torch = pytest.importorskip("torch")
    from dcign.train.dataset import MinibatchDataset

    for split in COUNTS:
        ours, theirs = MinibatchDataset(tiny_store, split), MinibatchDataset(exported, split)
        assert len(ours) == len(theirs) == 4 * COUNTS[split]
        assert theirs.columns == ours.columns
        for a, b in zip(ours, theirs, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) \
                    else a[key] == b[key]
                assert same, key


def test_training_on_an_export_says_how_in_one_line(exported, tmp_path):
    pytest.importorskip("torch")
    from dcign.train.cli import main as train_main

    result = invoke(train_main, ["--store", exported, "--out", tmp_path / "run", "--steps", "1",
                                 "--no-progress"])
    assert_one_line_error(result, "is a dcign export", "README.md", "MinibatchDataset")


def test_the_export_reads_without_dcign(exported, tmp_path):
    """No dcign module is imported by loading an export (isolated interpreter)."""
    import subprocess
    import sys

    code = ("import sys, datasets; d = datasets.load_dataset(sys.argv[1], 'light', "
            "cache_dir=sys.argv[2]); assert d['train'].num_rows == 12; "
            "assert not any(m.startswith('dcign') for m in sys.modules); print('ok')")
    env = os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-I", "-c", code, str(exported),
                           str(tmp_path / "c")], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_each_store_shard_becomes_one_file_and_gaps_stay_gaps(tmp_path, monkeypatch):
    """A store of 2-minibatch shards, with an incomplete minibatch: a Parquet file per shard
    (the export holds one shard in memory at a time), and rows regroup into exactly the
    complete minibatches. Blobs are not the project's own renders' licence."""
    from dcign.shared import store_writer
    from dcign.train.synthetic import write_blob_store

    monkeypatch.setattr(store_writer, "shard_minibatches", lambda b, h: 2)
    path = write_blob_store(tmp_path / "blobs.zarr", image_size=16, train_batches=5,
                            test_batches=1, batch_size=3)
    zarr.open_group(str(path), mode="r+")["train/light/complete"][2] = False
    out = tmp_path / "out"
    result = store_tool(["export", path, out, "--quiet"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (out / "data" / "light").iterdir())
    assert names == ["test-00000-of-00001.parquet", *[f"train-0000{i}-of-00003.parquet"
                                                      for i in range(3)]]
    per_file = [sorted(set(pq.read_table(out / "data" / "light" / n)["minibatch"].to_pylist()))
                for n in names[1:]]
    assert per_file == [[0, 1], [3], [4]]
    store = open_store(path)
    data = datasets.load_dataset("parquet", data_files=str(out / "data/*/train-*.parquet"),
                                 cache_dir=str(tmp_path / "c"))["train"]
    groups = regrouped(data)
    for factor in FACTORS:
        for m in store.minibatches("train", factor):
            rows = groups.pop((factor, m.index))
            assert np.array_equal(np.stack([np.asarray(r["image"]) for r in rows]), m.images)
            assert [r["identity"] for r in rows] == m.identity.tolist()
    assert groups == {}
    card = (out / "README.md").read_text()
    assert card.startswith('---\nlicense: other\nlicense_name: "blob-terms"\n')
    assert "(the store records no command)" in card


def test_a_colour_store_exports_rgb_pngs_equal_to_its_images(colour_faces, tmp_path):
    """Colour (issue 22 item 4): load_dataset reads each image as mode RGB, the store's
    (H, W, 3) pixels exactly; the export reads back as the store's minibatches; the card
    says colour."""
    torch = pytest.importorskip("torch")
    from dcign.train.dataset import MinibatchDataset

    out = tmp_path / "faces-rgb"
    result = store_tool(["export", colour_faces, out, "--quiet"])
    assert result.exit_code == 0, result.output
    store = open_store(colour_faces)
    data = load(out, tmp_path=tmp_path)
    for split in COUNTS:
        groups = regrouped(data[split])
        for factor in FACTORS:
            for m in store.minibatches(split, factor):
                rows = groups.pop((factor, m.index))
                assert all(r["image"].mode == "RGB" for r in rows)
                images = np.stack([np.asarray(r["image"]) for r in rows])
                assert images.shape == (4, 32, 32, 3) and np.array_equal(images, m.images)
        assert groups == {}
    for a, b in zip(MinibatchDataset(colour_faces, "test"), MinibatchDataset(out, "test"),
                    strict=True):
        assert torch.equal(a["images"], b["images"])
    assert "colour (RGB)" in (out / "README.md").read_text()
    field = pq.read_schema(next((out / "data" / "light").glob("train-*.parquet"))).field("image")
    assert field.metadata[b"encoding"] == b"PNG, 8-bit RGB (mode RGB), lossless"
