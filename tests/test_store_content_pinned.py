"""Refactoring never changes the data: tiny faces, chairs and Aubry stores rendered by the real
CLIs hold exactly the attributes and arrays pinned here (hashes of what a reader sees).

A deliberate change to the images (a new generator version) updates these pins in the same
commit, with the reason. (Re-pinned once when the digest stopped hashing the schema version,
which says how the bytes are laid out, not what they hold: stores of schema 2 rendered then
matched the schema-1 pins with the version counted as 1, by one worker and by two.)"""

from __future__ import annotations

from conftest import content_digest, invoke

from dcign.render.cli import main as render_main

FACES_DIGEST = "1e7e4509a2a902a598c97848bca9455f06ccd35cf5c0202ac9c98e0d70aea107"
CHAIRS_DIGEST = "0aed516ca7f88e9fd0a30b359b7d16b650f637469eb12459ae420d26a9fabbcc"


def test_a_tiny_faces_store_holds_exactly_the_pinned_content(tiny_store):
    assert content_digest(tiny_store) == FACES_DIGEST


def test_a_tiny_chairs_store_holds_exactly_the_pinned_content(tmp_path):
    out = tmp_path / "chairs.zarr"
    result = invoke(render_main, ["chairs", "--size", "32", "--batch-size", "4", "--batches", "2",
                                  "--test-batches", "1", "--chairs", "40", "--test-chairs", "10",
                                  "--workers", "1", "--quiet", "--out", out])
    assert result.exit_code == 0, result.output
    assert content_digest(out) == CHAIRS_DIGEST
