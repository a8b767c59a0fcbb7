"""Make a shipped checkpoint and its model card from a finished run (how faces64 and chairs64
were made; docs/results.md gives the commands):

    python -m dcign.train.shipped.ship runs/faces64-shipped --name faces64 \\
        --store datasets/faces64.zarr --render "dcign-render faces --size 64 …" \\
        --train "dcign-train --store datasets/faces64.zarr …" --commit 19b71b2

writes NAME.pt (the weights in half precision, no optimiser state), NAME.json (the card's
facts) and NAME.md (the card) into this folder (or --folder). The run is evaluated as
`dcign-eval` evaluates it, in float32 and as shipped in half precision, on the store's test
split; then held-out minibatches are rendered afresh and the shipped weights' code is
measured on them (`check.py`), which is what the shipped checkpoint's test repeats.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import tempfile
from pathlib import Path

import click
import torch

from dcign.shared.cli import DcignCommand
from dcign.shared.errors import DcignError
from dcign.shared.store import Store, open_store

from ..checkpoint import Checkpoint, checkpoint_file, write_atomically
from ..eval.cli import Options, measure, run_summary
from ..eval.disentanglement import DEFAULT_BINS, DEFAULT_SAMPLES
from ..eval.trained import load_trained
from . import CHECK_MINIBATCHES, FOLDER, held_out_store
from .check import encoding_check
from .model_card import model_card

MIN_ABS_R = 0.9  # what a shipped faces model promises for each tied latent (issue 23)
ANGLE_MARGIN_DEG = 5.0  # a circle's promise: the measured median error, rounded up, plus this


def half_precision(saved: Checkpoint) -> dict:
    """The checkpoint as shipped: weights in float16, the optimiser's moments left out."""
    state = saved.to_dict()
    state["model"] = {k: v.to(torch.float16) for k, v in saved.weights.items()}
    state["optimizer"] = {"state": {}, "param_groups": saved.optimizer["param_groups"]}
    return state


def training_facts(run: Path, saved: Checkpoint) -> dict:
    """Steps, minutes of the training loop (first to last metrics line), how it executed."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    start = next(x for x in lines if x.get("event") == "start")
    times = [x["time"] for x in lines if "time" in x]
    return {"steps": saved.step, "minutes": round((times[-1] - times[0]) / 60, 1),
            "execution": start.get("execution"), "device": start.get("device"),
            "arch": saved.arch.name,
            "config": saved.config.to_dict()}


def store_facts(path: str, store: Store) -> dict:
    """What names the store trained on: its content digest, generator and object model."""
    spec = store.spec
    return {"path": path, "content_digest": store.content_digest(),
            "generator": {k: spec.generator.get(k) for k in ("name", "version")},
            "seed": spec.generator.get("seed"), "model": spec.model.get("name"),
            "model_fingerprint": spec.model.get("fingerprint"), "dataset": spec.dataset,
            "image_size": spec.image_size, "color": spec.color}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


def evaluation(run: str | Path, store: Store) -> dict:
    """dcign-eval's numbers for a run (seed 0, on the CPU)."""
    summary = run_summary(measure(run, Options(store, torch.device("cpu"), 0, DEFAULT_SAMPLES,
                                               DEFAULT_BINS)))
    keep = ("step", "reconstruction", "inferred_vs_true", "disentanglement", "novel_view",
            "view_identification")
    return {k: summary[k] for k in keep}


def promises(fresh: dict) -> dict:
    """What the test of the shipped checkpoint holds it to, from what it measured here."""
    out = {}
    for factor, entry in fresh.items():
        if "abs_r" in entry:
            out[factor] = {"min_abs_r": MIN_ABS_R}
        else:
            bound = 5 * -(-entry["median_angle_error_deg"] // 5) + ANGLE_MARGIN_DEG
            out[factor] = {"max_median_angle_error_deg": bound}
    return out


def render_settings(command: str) -> dict:
    """The dataset and the options of a `dcign-render DATASET …` command, less the counts,
    workers, output and chatter, which a held-out render sets itself."""
    words = shlex.split(command)
    if words[:1] != ["dcign-render"] or len(words) < 2:
        raise DcignError(f"--render {command!r}: give the dcign-render command the store was "
                         "made with")
    options, skip = [], False
    for word in words[2:]:
        if skip:
            skip = False
        elif word in ("--batches", "--test-batches", "--out", "--workers"):
            skip = True
        elif word not in ("--quiet", "--overwrite", "--verbose"):
            options.append(word)
    return {"command": command, "dataset": words[1], "options": options}


@click.command(cls=DcignCommand)
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--store", "store_path", required=True)
@click.option("--render", "render_command", required=True)
@click.option("--train", "train_command", required=True)
@click.option("--commit", required=True, help="The commit the run was trained at.")
@click.option("--note", default="", help="Anything else about how it was trained.")
@click.option("--target", type=float, required=True,
              help="The fidelity target: novel-view MSE at most this times the view-mean "
                   "floor on every factor (faces 0.5, chairs 1).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=FOLDER)
def main(run, name, store_path, render_command, train_command, commit, note, target, folder):
    """Ship RUN as NAME: half-precision weights, card facts and a model card."""
    saved = Checkpoint.read(checkpoint_file(run))
    store = open_store(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    shipped = write_atomically(half_precision(saved), folder / f"{name}.pt")
    facts = {"name": name, "file": shipped.name, "bytes": shipped.stat().st_size,
             "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest(),
             "precision": "float16 weights (computed in float32 once loaded)",
             "commit": commit, "note": note, "target_novel_view_over_view_mean": target,
             "render": render_settings(render_command), "train": train_command,
             "store": store_facts(store_path, store),
             "training": training_facts(run, saved), "machine": machine()}
    click.echo(f"{name}: evaluating the run in float32 and as shipped…", err=True)
    facts["eval"] = {"float32": evaluation(run, store), "float16": evaluation(shipped, store)}
    (folder / f"{name}.json").write_text(json.dumps(facts, indent=2) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        held_out = held_out_store(facts["render"], Path(tmp) / "held-out.zarr",
                                  CHECK_MINIBATCHES)
        fresh_store = open_store(held_out)
        trained = load_trained(shipped, torch.device("cpu"))
        facts["fresh_renders"] = encoding_check(trained, fresh_store, torch.device("cpu"))
    facts["promises"] = promises(facts["fresh_renders"])
    for factor, entry in facts["fresh_renders"].items():
        if entry.get("abs_r", 1.0) < MIN_ABS_R:
            click.echo(f"{name}: warning: {factor} |r| {entry['abs_r']:.3f} is below the "
                       f"{MIN_ABS_R} its test requires; do not ship this run", err=True)
    (folder / f"{name}.json").write_text(json.dumps(facts, indent=2) + "\n")
    (folder / f"{name}.md").write_text(model_card(facts))
    click.echo(f"{name}: {shipped} ({facts['bytes'] / 1e6:.1f} MB), {name}.json, {name}.md")


if __name__ == "__main__":
    main()
