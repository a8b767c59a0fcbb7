"""`dcign-store export`: a store as Parquet rows with a dataset card and Croissant metadata,
read by Hugging Face `datasets` and `mlcroissant` with no dcign code, and back by dcign."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import (
    assert_one_line_error,
    dead_pid,
    installed,
    invoke,
    lock_file,
    store_tool,
    tree_digest,
    users_dask_cluster,
)

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


def die_on_the_second_file(monkeypatch):
    """The export is interrupted (Ctrl-C) as it writes its second Parquet file; returns the
    real file writer, to put back."""
    import dcign.shared.export as export

    real, calls = export.write_file, []

    def dies_on_the_second_file(store, file, root):
        calls.append(file)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(store, file, root)

    monkeypatch.setattr(export, "write_file", dies_on_the_second_file)
    return real


def test_a_killed_export_never_looks_finished(tiny_store, tmp_path, monkeypatch):
    stale = tmp_path / f".out.partial-{dead_pid()}"  # what a killed run left
    stale.mkdir()
    die_on_the_second_file(monkeypatch)
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


def test_a_rerun_finds_a_file_with_a_changed_byte_and_overwrite_rewrites_it(tiny_store,
                                                                            tmp_path):
    out = tmp_path / "export"
    assert store_tool(["export", tiny_store, out, "--quiet"]).exit_code == 0
    before = tree_digest(out)
    damaged = out / "data" / "azimuth" / "train-00000-of-00001.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only its sha256 tells
    damaged.write_bytes(bytes(data))
    assert_one_line_error(store_tool(["export", tiny_store, out]),
                          "files since removed or changed", "azimuth/train-00000-of-00001",
                          "--overwrite")
    assert store_tool(["export", tiny_store, out, "--overwrite", "--quiet"]).exit_code == 0
    assert tree_digest(out) == before


# ------------------------------------------------------------------ the store's writer lock

def test_an_export_while_another_writer_holds_the_store_is_refused_in_one_line(fresh_store,
                                                                            tmp_path):
    lock = lock_file(fresh_store)  # a live writer on another host, renewed just now
    held = lock.read_text()
    out = tmp_path / "export"
    assert_one_line_error(store_tool(["export", fresh_store, out]), str(fresh_store),
                          "being written by another dcign process", "host elsewhere")
    assert not out.exists() and not list(tmp_path.glob(".export.*"))
    assert lock.read_text() == held


def test_an_export_holds_the_store_lock_and_leaves_the_store_as_it_was(fresh_store, tmp_path,
                                                                      monkeypatch):
    """While it reads, a writer (a render that would extend or repair the store) is refused
    in one line that says an export holds the store."""
    import dcign.shared.export as export
    from dcign.shared.errors import StoreError
    from dcign.shared.location import locate
    from dcign.shared.lock import acquire, read_lock

    before = tree_digest(fresh_store)
    holders, refusals = [], []

    def meanwhile_a_writer_starts(store, file, root):
        holders.append(read_lock(locate(fresh_store)))
        with pytest.raises(StoreError) as refused:
            acquire(locate(fresh_store), note=print)
        refusals.append(str(refused.value))
        return real(store, file, root)

    real = export.write_file
    monkeypatch.setattr(export, "write_file", meanwhile_a_writer_starts)
    assert store_tool(["export", fresh_store, tmp_path / "export", "--quiet"]).exit_code == 0
    assert len(holders) == 8 and all(h and h["pid"] == os.getpid() for h in holders)
    assert all(f"{fresh_store} is being exported by another dcign process (host " in r
               for r in refusals), refusals[0]
    assert tree_digest(fresh_store) == before  # the lock is gone, nothing else written


def test_a_store_changed_before_the_lock_is_taken_is_refused(fresh_store, tmp_path):
    from dcign.shared.errors import DcignError
    from dcign.shared.export import export_store, prepare_export

    request = prepare_export(open_store(fresh_store), tmp_path / "export")
    zarr.open_group(str(fresh_store), mode="r+")["train/light/complete"][2] = False
    with pytest.raises(DcignError, match="changed since the export was planned"):
        export_store(request)
    assert not (tmp_path / "export").exists()


# ------------------------------------------------------------------ a bucket as OUT

def bucket_files(url: str) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    root = url.removeprefix("s3://")
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def test_an_export_to_a_bucket_equals_the_local_one_and_loads_with_datasets(
        exported, tiny_store, bucket, tmp_path):
    out = f"{bucket}/exports/faces"
    result = store_tool(["export", tiny_store, out, "--quiet"])
    assert result.exit_code == 0, result.output
    files = bucket_files(out)
    local = {str(p.relative_to(exported)): p.read_bytes()
             for p in exported.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(local)  # no incomplete note left
    for name in local:
        if name.endswith(".parquet"):
            assert files[name] == local[name], name
    ours, theirs = json.loads(files["dcign-export.json"]), json.loads(local["dcign-export.json"])
    assert ours["sections"] == theirs["sections"]  # the same files, digests and sizes
    options = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"], "key": "testing",
               "secret": "testing"}
    data = datasets.load_dataset("parquet", data_files={"train": f"{out}/data/*/train-*.parquet"},
                                 storage_options=options, cache_dir=str(tmp_path / "c"))
    assert data["train"].num_rows == 48
    assert isinstance(data["train"].features["image"], datasets.Image)
    again = store_tool(["export", tiny_store, out])
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert bucket_files(out) == files


def test_a_killed_export_to_a_bucket_is_recognised_and_redone(tiny_store, bucket, monkeypatch):
    import dcign.shared.export as export

    out = f"{bucket}/faces"
    real = die_on_the_second_file(monkeypatch)
    assert store_tool(["export", tiny_store, out, "--quiet"]).exit_code == 130
    left = bucket_files(out)
    assert "dcign-export.incomplete" in left and "dcign-export.json" not in left
    monkeypatch.setattr(export, "write_file", real)
    result = store_tool(["export", tiny_store, out, "--quiet"])  # no --overwrite needed
    assert result.exit_code == 0, result.output
    done = bucket_files(out)
    assert "dcign-export.incomplete" not in done and "dcign-export.json" in done
    assert sum(name.endswith(".parquet") for name in done) == 8


def test_a_changed_object_in_a_bucket_export_is_found_and_overwrite_replaces_the_export(
        tiny_store, bucket):
    import s3fs

    out = f"{bucket}/faces"
    assert store_tool(["export", tiny_store, out, "--quiet"]).exit_code == 0
    files = bucket_files(out)
    name = "data/light/train-00000-of-00001.parquet"
    data = bytearray(files[name])
    data[len(data) // 2] ^= 0x01
    s3fs.S3FileSystem().pipe_file(f"{out}/{name}", bytes(data))
    s3fs.S3FileSystem().pipe_file(f"{out}/data/stray.parquet", b"left by someone")
    assert_one_line_error(store_tool(["export", tiny_store, out]),
                          "files since removed or changed", name, "--overwrite")
    assert store_tool(["export", tiny_store, out, "--overwrite", "--quiet"]).exit_code == 0
    assert bucket_files(out) == files  # the old export removed whole, then written again


def test_a_bucket_that_is_not_there_is_one_line(tiny_store, bucket):
    assert_one_line_error(store_tool(["export", tiny_store, "s3://no-such-dcign-bucket/out"]),
                          "cannot read or write the export at s3://no-such-dcign-bucket/out")


def test_a_bucket_prefix_holding_other_files_is_never_replaced(tiny_store, bucket):
    import s3fs

    s3fs.S3FileSystem().pipe_file(f"{bucket}/mine/notes.txt", b"keep")
    assert_one_line_error(store_tool(["export", tiny_store, f"{bucket}/mine", "--overwrite"]),
                          "not a dcign export")
    assert bucket_files(f"{bucket}/mine") == {"notes.txt": b"keep"}


# ------------------------------------------------------------------ a Dask cluster

def test_an_export_on_a_dask_cluster_runs_a_task_per_file_on_its_workers(exported, tiny_store,
                                                                         tmp_path):
    """The files of an export through `--scheduler` are written by the cluster's worker
    processes, one task each, and hold the same bytes as a local export's."""
    from distributed import Client

    out = tmp_path / "faces"
    with users_dask_cluster(2) as address, Client(address, timeout="30s") as client:
        client.get_task_stream()  # from now on the scheduler records every task
        done = subprocess.run([installed("dcign-store"), "export", str(tiny_store), str(out),
                               "--scheduler", address, "--quiet"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        tasks = [t for t in client.get_task_stream() if t["key"].startswith("dcign-export-")]
        workers = client.run(os.getpid)
    assert len(tasks) == 8 and {t["worker"] for t in tasks} <= set(workers)
    assert os.getpid() not in workers.values()
    local = sorted(p.relative_to(exported) for p in exported.rglob("*.parquet"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.parquet")) == local
    for name in local:
        assert pq.read_table(out / name).equals(pq.read_table(exported / name)), name
        assert (out / name).read_bytes() == (exported / name).read_bytes(), name
    assert (json.loads((out / "dcign-export.json").read_text())["sections"]
            == json.loads((exported / "dcign-export.json").read_text())["sections"])


def test_a_scheduler_from_the_environment_is_announced_and_its_workers_write_to_a_bucket(
        exported, tiny_store, bucket):
    """The cluster's workers reach the bucket as the store's writers do (AWS_* variables),
    and a scheduler taken from the environment is said in one line on stderr."""
    out = f"{bucket}/faces"
    with users_dask_cluster(2) as address:  # started after the bucket: its workers see it
        done = subprocess.run([installed("dcign-store"), "export", str(tiny_store), out,
                               "--quiet"], capture_output=True, text=True, timeout=300,
                              env=os.environ | {"DASK_SCHEDULER_ADDRESS": address})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"using the Dask scheduler at {address} from DASK_SCHEDULER_ADDRESS"]
    files = bucket_files(out)
    for path in exported.rglob("*.parquet"):
        assert files[str(path.relative_to(exported))] == path.read_bytes(), path
    assert "dcign-export.json" in files and "dcign-export.incomplete" not in files


def test_files_workers_wrote_on_a_disk_of_their_own_are_refused(tiny_store, tmp_path,
                                                                 monkeypatch):
    """A worker on another machine writes the partial folder's path on its own disk: the
    export cannot finish without those files, and says why in one line."""
    import dcign.shared.export as export

    def written_elsewhere(request, root, on_minibatches):
        return {f.path: ("0" * 64, 1) for f in request.files}

    monkeypatch.setattr(export, "_write_here", written_elsewhere)
    out = tmp_path / "faces"
    assert_one_line_error(store_tool(["export", tiny_store, out, "--quiet"]),
                          "written where this machine cannot see it", "--scheduler")
    assert not out.exists() and not list(tmp_path.glob(".faces.*"))


def test_an_unreachable_scheduler_is_one_line_saying_where_it_came_from_and_writes_nothing(
        tiny_store, tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")  # nothing listens there
    out = tmp_path / "faces"
    assert_one_line_error(store_tool(["export", tiny_store, out]),
                          "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
                          "the address is DASK_SCHEDULER_ADDRESS's")
    assert not out.exists() and not list(tmp_path.glob(".faces.*"))


def _same_items(store, export) -> None:
    """MinibatchDataset over the export yields exactly what it yields over the store."""
    torch = pytest.importorskip("torch")
    from dcign.train.dataset import MinibatchDataset

    for split in COUNTS:
        ours, theirs = MinibatchDataset(store, split), MinibatchDataset(export, split)
        assert len(ours) == len(theirs) == 4 * COUNTS[split]
        assert theirs.columns == ours.columns
        for a, b in zip(ours, theirs, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) \
                    else a[key] == b[key]
                assert same, key


def test_minibatch_dataset_over_the_export_equals_over_the_store(exported, tiny_store):
    _same_items(tiny_store, exported)


def test_minibatch_dataset_reads_an_export_in_a_bucket_where_it_lies(tiny_store, bucket):
    """An export is read through its URL's filesystem (s3 here; huggingface_hub's for an
    hf://datasets/... upload), not only from a local folder."""
    out = f"{bucket}/exports/faces"
    assert store_tool(["export", tiny_store, out, "--quiet"]).exit_code == 0
    _same_items(tiny_store, out)


def test_a_truncated_parquet_file_is_a_one_line_store_error(exported, tmp_path):
    """pyarrow calls a cut-off file invalid (a ValueError), not an OSError: either way the
    reader names the file and says to export again."""
    import shutil

    from dcign.shared.errors import StoreError
    from dcign.shared.export_reader import open_export

    copy = tmp_path / "faces"
    shutil.copytree(exported, copy)
    victim = next(copy.rglob("*.parquet"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    export = open_export(copy)
    with pytest.raises(StoreError, match="export the store again"):
        for split, factor in export.sections():
            for _ in export.minibatches(split, factor):
                pass


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
