"""A store is never seen half-created: its root metadata is written with the dcign attributes
in it, and a writer killed before that (a bare group beside its lock, nothing else) left an
unfinished creation that the next run completes, where a bare Zarr group that no dcign
writer was creating stays someone else's and is refused."""

from __future__ import annotations

import json
import socket

import zarr
from conftest import TINY, assert_one_line_error, content_digest, dead_pid, lock_file, render

from dcign.shared import lock as lock_module


def test_a_new_stores_root_metadata_is_written_with_its_attributes_in_it(tmp_path,
                                                                        monkeypatch):
    out, roots = tmp_path / "faces.zarr", []
    real_set = zarr.storage.LocalStore.set

    async def set_(self, key, value):
        if key == "zarr.json" and str(self.root) == str(out):
            roots.append(json.loads(value.to_bytes()))
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_)
    assert render([*TINY, "--vary", "light", "--out", out]).exit_code == 0
    assert roots and all("dcign" in root.get("attributes", {}) for root in roots)


def test_a_creation_killed_before_its_attributes_is_completed_by_the_next_run(tmp_path,
                                                                            tiny_store):
    out = tmp_path / "faces.zarr"
    zarr.open_group(str(out), mode="w", zarr_format=3)  # the bare group a killed run left
    lock_file(out, host=socket.gethostname(), pid=dead_pid(), machine=lock_module._machine())
    result = render([*TINY, "--out", out])
    assert result.exit_code == 0, result.output
    assert content_digest(out) == content_digest(tiny_store)


def test_a_bare_zarr_group_no_dcign_writer_was_creating_is_refused(tmp_path):
    out = tmp_path / "faces.zarr"
    zarr.open_group(str(out), mode="w", zarr_format=3)
    assert_one_line_error(render([*TINY, "--out", out]), "is a Zarr store but not a dcign dataset")
    assert sorted(p.name for p in out.iterdir()) == ["zarr.json"]
