"""A `torch.utils.data.Dataset` over a dcign store, for people who bring their own model.

Item i is one stored minibatch, in which exactly one factor varies:

    from torch.utils.data import DataLoader
    from dcign.train.dataset import MinibatchDataset

    data = MinibatchDataset("datasets/faces64.zarr", split="train")
    for batch in DataLoader(data, batch_size=None, shuffle=True):
        x, varying = batch["images"], batch["factor"]  # (20, 1, 64, 64) in [0, 1]; "light"

`batch["values"]` holds every image's factor values, columns named by `data.columns`, and
`batch["identity"]` which face or chair each image shows. DC-IGN's own trainer reads stores
through `data.py` instead, which draws whole training steps by seed.

An export (`dcign-store export`: Parquet for Hugging Face `datasets`) is read the same way, its
rows regrouped into the store's minibatches: the items are the same as from the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dcign.shared.export_reader import Export, is_export, open_export
from dcign.shared.factors import continuous_factors
from dcign.shared.store import Store, open_store

from .data import network_input


class MinibatchDataset(Dataset):
    """The complete minibatches of one split (of the given minibatch types, or all), from a
    store or from an export of one."""

    def __init__(self, store: str | Path | Store | Export, split: str = "train",
                 factors: list[str] | None = None):
        self.store = store if isinstance(store, Store | Export) else (
            open_export(store) if is_export(store) else open_store(store))
        self.split = split
        names = factors if factors is not None else self.store.factors_present(split)
        self.items = [(name, int(k)) for name in names for k in self.store.complete(split, name)]
        self.columns = [f.name for f in continuous_factors(self.store.spec.factors)]
        # a store's values and identities read once (markers and checks paid at open), its
        # images per item straight from their shards: 1 read an item, not 4
        self.truth = ({name: self.store.read_truth(split, name) for name in names}
                      if isinstance(self.store, Store) else None)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        factor, k = self.items[i]
        if self.truth is None:  # an export
            m = self.store.minibatch(self.split, factor, k)
            images, values, identity = m.images, m.values, m.identity
        else:
            ks, all_values, all_identity = self.truth[factor]
            row = int(np.searchsorted(ks, k))
            images = self.store.read_images(self.split, [(factor, k)])[0]
            values, identity = all_values[row], all_identity[row]
        return {"images": network_input(torch.from_numpy(images.copy())),
                "values": torch.from_numpy(values.copy()),
                "identity": torch.from_numpy(identity.copy()),
                "factor": factor, "index": k}
