"""The public torch Dataset over a store, for people who bring their own model: every complete
minibatch as float images in [0, 1] with its ground truth, and the README's lines run as shown."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import zarr

from dcign.shared.store import open_store
from dcign.train.dataset import MinibatchDataset
from dcign.train.synthetic import write_blob_store

README = Path(__file__).resolve().parents[2] / "README.md"


def test_each_item_is_one_complete_minibatch_with_its_factor_and_ground_truth(tmp_path):
    path = write_blob_store(tmp_path / "blobs.zarr", 32, train_batches=3, test_batches=1)
    zarr.open_group(str(path / "train" / "light"), mode="r+")["complete"][1] = False
    data = MinibatchDataset(path, split="train")
    assert len(data) == 3 + 3 + 2 + 3
    assert data.columns == ["azimuth", "elevation", "light"]
    light = [i for i, (f, _) in enumerate(data.items) if f == "light"]
    item = data[light[1]]
    stored = open_store(path).minibatch("train", "light", 2)
    assert item["factor"] == "light" and item["index"] == 2
    assert item["images"].shape == (20, 1, 32, 32) and item["images"].dtype == torch.float32
    assert torch.equal(item["images"], torch.from_numpy(stored.images).unsqueeze(1) / 255)
    assert np.array_equal(item["values"].numpy(), stored.values)
    assert np.array_equal(item["identity"].numpy(), stored.identity)
    store = open_store(path)  # every item, read once at open (truth) or per item (images)
    for i, (factor, k) in enumerate(data.items):
        m = store.minibatch("train", factor, k)
        assert np.array_equal(data[i]["values"].numpy(), m.values)
        assert np.array_equal(data[i]["identity"].numpy(), m.identity)
        assert torch.equal(data[i]["images"], torch.from_numpy(m.images).unsqueeze(1) / 255)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"```python\n(.*?MinibatchDataset.*?)```", text, re.S)
    assert block, "README shows how to use MinibatchDataset"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 6
    write_blob_store(tmp_path / "datasets" / "faces64.zarr", 32, train_batches=2, test_batches=1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own lines
    assert scope["x"].shape == (20, 1, 32, 32) and scope["varying"] in {
        "azimuth", "elevation", "light", "intrinsic"}
