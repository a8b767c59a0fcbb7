"""Refactoring never changes the data: tiny faces, chairs and Aubry stores rendered by the real
CLIs hold exactly the attributes and arrays pinned here (hashes of what a reader sees).

A deliberate change to the images (a new generator version) updates these pins in the same
commit, with the reason."""

from __future__ import annotations

from conftest import content_digest, invoke

from dcign.render.cli import main as render_main

FACES_DIGEST = "5d5258d3b6e81f64c81b832d3055ff391b9e02b8bc7ec11e26cafc420882fc9b"
CHAIRS_DIGEST = "5f9457dade676a0841f0d979511c6ac5a56bfec11e8f2537f7e4356b501ffad2"


def test_a_tiny_faces_store_holds_exactly_the_pinned_content(tiny_store):
    assert content_digest(tiny_store) == FACES_DIGEST


def test_a_tiny_chairs_store_holds_exactly_the_pinned_content(tmp_path):
    out = tmp_path / "chairs.zarr"
    result = invoke(render_main, ["chairs", "--size", "32", "--batch-size", "4", "--batches", "2",
                                  "--test-batches", "1", "--chairs", "40", "--test-chairs", "10",
                                  "--workers", "1", "--quiet", "--out", out])
    assert result.exit_code == 0, result.output
    assert content_digest(out) == CHAIRS_DIGEST
