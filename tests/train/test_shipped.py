"""The shipped checkpoints (issue 23): faces64 and chairs64 ship inside the package in half
precision with a model card, are named by --checkpoint in dcign-eval, dcign-rerender and
dcign-explore, and still encode freshly rendered held-out images as their cards promise.
The tool that made them (`python -m dcign.train.shipped.ship`) is tested on a tiny run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY, assert_one_line_error, train_run
from PIL import Image

from dcign.shared.errors import DcignError
from dcign.shared.store import open_store
from dcign.train.checkpoint import Checkpoint
from dcign.train.eval.cli import main as eval_main
from dcign.train.eval.explore import build_explorer
from dcign.train.eval.rerender import main as rerender_main
from dcign.train.eval.trained import load_trained
from dcign.train.shipped import (
    CHECK_MINIBATCHES,
    NAMES,
    card,
    held_out_store,
    resolve_checkpoint,
    shipped_file,
)
from dcign.train.shipped.check import encoding_check, median_angle_error
from dcign.train.shipped.ship import main as ship_main

MAX_SHIPPED_BYTES = 12_000_000  # both together (issue 23)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, Path]:
    """Per shipped model, its store's first held-out minibatches rendered afresh."""
    root = tmp_path_factory.mktemp("fresh")
    return {name: held_out_store(card(name)["render"], root / f"{name}.zarr", CHECK_MINIBATCHES)
            for name in NAMES}


# ----------------------------------------------------------------------------- what ships

def test_both_checkpoints_ship_in_half_precision_within_12_mb_as_their_cards_say():
    total = 0
    for name in NAMES:
        file, facts = shipped_file(name), card(name)
        total += file.stat().st_size
        assert facts["bytes"] == file.stat().st_size and facts["file"] == file.name
        saved = Checkpoint.read(file)
        assert {w.dtype for w in saved.weights.values()} == {torch.float16}
        assert saved.optimizer["state"] == {}
        assert (file.with_suffix(".md")).read_text().startswith(f"# {name}: DC-IGN")
    assert total <= MAX_SHIPPED_BYTES


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_checkpoint_encodes_fresh_renders_as_its_card_promises(name, fresh):
    facts = card(name)
    store = open_store(fresh[name])
    assert store.spec.generator["seed"] == facts["store"]["seed"]
    trained = load_trained(name, CPU)
    assert {p.dtype for p in trained.model.parameters()} == {torch.float32}
    measured = encoding_check(trained, store, CPU)
    assert set(measured) == set(facts["promises"]) and measured
    for factor, promise in facts["promises"].items():
        got, recorded = measured[factor], facts["fresh_renders"][factor]
        if "min_abs_r" in promise:
            assert got["abs_r"] >= promise["min_abs_r"], (factor, got)
            assert got["abs_r"] == pytest.approx(recorded["abs_r"], abs=0.01)
        else:
            error = got["median_angle_error_deg"]
            assert error <= promise["max_median_angle_error_deg"], (factor, got)
            assert error == pytest.approx(recorded["median_angle_error_deg"], abs=1.0)


def test_the_faces_card_promises_every_tied_latent_at_least_0_9():
    assert card("faces64")["promises"] == {f: {"min_abs_r": 0.9}
                                          for f in ("azimuth", "elevation", "light")}


# ----------------------------------------------------------------------------- named in the CLIs

def test_dcign_rerender_takes_a_shipped_name(fresh, tmp_path):
    image = tmp_path / "face.png"
    Image.fromarray(open_store(fresh["faces64"]).read_complete("test", "light").images[0, 0]
                    ).save(image)
    result = CliRunner().invoke(rerender_main, [
        "--checkpoint", "faces64", "--image", str(image), "--factor", "light",
        "--values", "-2:2:3", "--out", str(tmp_path / "strip.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "strip.png").stat().st_size > 0


def test_dcign_eval_takes_a_shipped_name_and_reports_here(fresh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(eval_main, [
        "--checkpoint", "chairs64", "--store", str(fresh["chairs64"]), "--samples", "100",
        "--traversal-images", "1", "--sweep", "-3:3:3"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "chairs64-report" / "report.json").read_text())
    assert report["run"] == "chairs64" and report["step"] == card("chairs64")["training"]["steps"]


def test_the_explorer_opens_a_shipped_model_on_images_it_renders_itself(tmp_path):
    explorer = build_explorer("faces64", None, None, folder=tmp_path)
    info = explorer.info()
    assert info["about"].startswith("faces64 (") and info["held_out"] > 0
    assert [s["label"].split()[0] for s in info["sliders"]] == ["azimuth", "elevation", "light"]
    answer = explorer.render(explorer.pick({"held_out": 0}) | {"values": [0.0, 0.0, 0.0]})
    assert answer["command"].startswith("dcign-rerender --checkpoint faces64 ")


def test_a_path_wins_over_a_shipped_name_and_an_unknown_name_is_one_line(tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("faces64") == shipped_file("faces64")
    (tmp_path / "faces64").mkdir()
    assert resolve_checkpoint("faces64") == Path("faces64")
    with pytest.raises(DcignError, match="'faces65' is not a checkpoint this dcign ships"):
        shipped_file("faces65")


# ----------------------------------------------------------------------------- how they were made

def test_ship_makes_half_weights_a_card_and_promises_from_a_run(tiny_store, tmp_path):
    run = train_run(tiny_store, tmp_path / "run", steps=3)
    render = shlex.join(["dcign-render", "faces", *TINY, "--out", str(tiny_store)])
    folder = tmp_path / "shipped"
    result = CliRunner().invoke(ship_main, [
        str(run), "--name", "tiny", "--store", str(tiny_store), "--render", render,
        "--train", "dcign-train --store tiny --steps 3", "--commit", "abc1234",
        "--target", "0.5", "--folder", str(folder)])
    assert result.exit_code == 0, result.output
    facts = json.loads((folder / "tiny.json").read_text())
    assert facts["render"]["options"] == ["--size", "32", "--batch-size", "4"]
    assert facts["store"]["content_digest"] == open_store(tiny_store).content_digest()
    assert facts["training"]["steps"] == 3 and facts["commit"] == "abc1234"
    assert set(facts["eval"]) == {"float32", "float16"}
    assert set(facts["fresh_renders"]) == {"azimuth", "elevation", "light"}
    assert all(e["images"] == CHECK_MINIBATCHES * 4 for e in facts["fresh_renders"].values())
    card_text = (folder / "tiny.md").read_text()
    assert "## Fidelity target" in card_text and "abc1234" in card_text
    full, half = (load_trained(p, CPU).model for p in (run, folder / "tiny.pt"))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(full.encode(x)[0], half.encode(x)[0], atol=1e-2)


def test_a_run_that_ships_is_refused_in_one_line_without_its_render_command(tiny_store,
                                                                           tmp_path):
    run = train_run(tiny_store, tmp_path / "run", steps=1)
    result = CliRunner().invoke(ship_main, [
        str(run), "--name", "tiny", "--store", str(tiny_store), "--render", "make faces",
        "--train", "x", "--commit", "x", "--target", "1", "--folder", str(tmp_path / "s")])
    assert_one_line_error(result, "the dcign-render command")


def test_a_circle_angle_error_is_zero_for_a_turning_code_either_way_round():
    degrees = np.arange(0, 360, 12.0)
    a = np.deg2rad(degrees)
    for sign in (1, -1):
        codes = np.stack([3 + np.cos(sign * a + 1.0), -2 + np.sin(sign * a + 1.0)], 1)
        assert median_angle_error(codes, degrees) == pytest.approx(0, abs=1e-6)
    rng = np.random.default_rng(0)
    assert median_angle_error(rng.normal(size=(30, 2)), degrees) > 45
