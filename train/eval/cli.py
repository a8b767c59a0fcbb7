"""`dcign-eval`: did the network learn a graphics code? The paper's figures and today's
disentanglement scores for a checkpoint on a store's test split, in one report folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from dcign.shared.cli import DcignCommand
from dcign.shared.errors import DcignError
from dcign.shared.factors import Factor
from dcign.shared.store import Store, open_store

from ..device import pick_device
from . import report
from .curve import DEFAULT_POINTS, curve_checkpoints, curve_rows, measure_point
from .disentanglement import DEFAULT_BINS, DEFAULT_SAMPLES
from .figures import (
    compare_figure,
    curve_figure,
    novel_view_figure,
    pair_grid_figure,
    scatter_figure,
    traversal_figure,
)
from .measures import (
    EncodedTest,
    choose_latents,
    disentanglement,
    encode_test,
    inferred_vs_true,
    reconstruction,
    traversal_inputs,
    view_latents,
)
from .novel_views import NovelViews, measure_novel_views
from .trained import (
    Trained,
    check_same_kind,
    default_report,
    load_trained,
    parse_values,
    sweep,
)

EPILOG = """\b
Examples:
  # one run: figures, report.json and report.html in runs/faces64-dcign/report/
  dcign-eval --checkpoint runs/faces64-dcign --store datasets/faces64.zarr
\b
  # with the entangled baseline's novel views beside DC-IGN's (paper §4.1.1)
  dcign-eval --checkpoint runs/faces64-dcign --baseline runs/faces64-vae \\
             --store datasets/faces64.zarr --out report/
\b
  # several runs' numbers in one table and one plot
  dcign-eval --compare runs/faces64-dcign runs/faces64-vae --store datasets/faces64.zarr
\b
  # a learning curve from the snapshots of dcign-train --snapshot-every 1000
  dcign-eval --curve runs/faces64-dcign --store datasets/faces64.zarr
\b
  # a shipped model (see docs/models.md)
  dcign-eval --checkpoint faces64 --store datasets/faces64.zarr
"""




@dataclass
class Options:
    store: Store
    device: torch.device
    seed: int
    samples: int
    bins: int


@dataclass
class Measured:
    trained: Trained
    test: EncodedTest
    reconstruction: dict
    latents: dict
    inferred: dict
    disentanglement: dict
    novel: NovelViews


def measure(run: str | Path, opts: Options) -> Measured:
    """Everything numeric about one run on the store's test split."""
    trained = load_trained(run, opts.device)
    check_same_kind(trained, opts.store.spec, opts.store.path)
    test = encode_test(trained, opts.store, opts.device)
    latents = choose_latents(trained, test)
    codes = np.concatenate([e.mu for e in test.encoded.values()])
    for entry in latents.values():
        z = entry["latent"]
        if z is not None:  # the observed range tells what a sweep of ±15 means for this net
            entry["observed_range"] = [float(codes[:, z].min()), float(codes[:, z].max())]
    return Measured(trained, test,
                    reconstruction(trained, opts.store, test, opts.device, opts.seed),
                    latents, inferred_vs_true(opts.store, test, latents),
                    disentanglement(opts.store, test, opts.seed, opts.samples, opts.bins),
                    measure_novel_views(trained, opts.store, view_latents(trained, latents),
                                        test.encoded, opts.device, opts.seed))


def run_summary(m: Measured) -> dict:
    t = m.trained
    return {"checkpoint": str(t.checkpoint), "run": t.name, "mode": t.mode,
            "method": t.settings, "step": t.step,
            "architecture": t.model.arch.name, "image_size": t.image_size,
            "reconstruction": m.reconstruction, "latents": m.latents,
            "inferred_vs_true": m.inferred, "disentanglement": m.disentanglement,
            "novel_view": {"scores": m.novel.scores, "how": NOVEL_VIEW_NOTE},
            "view_identification": m.novel.identification}


NOVEL_VIEW_NOTE = (
    "Per held-out pair of images of one object that differ only in the factor: the first "
    "encoded, the factor's latents set to the mean posterior of the training images of the "
    "second's view (grid value, or one of 20 equal bins of the range), decoded, and compared "
    "with the second (per-pixel MSE, images in [0, 1]). Floors: the input returned unchanged, "
    "and the training mean image of the target view.")


def novel_view_values(m: Measured) -> dict[str, float]:
    """Novel-view MSE per factor (lower is better), for tables."""
    return {f"novel-view MSE {k}": v["mse_per_pixel"] for k, v in m.novel.scores.items()}


def metric_values(m: Measured) -> dict[str, float]:
    """The headline numbers in [0, 1] (and MSE), for tables and the comparison plot."""
    d = m.disentanglement
    values = {f"|r| {k}": abs(v["pearson"]) for k, v in m.inferred.items()}
    values |= {"MIG": d["mig"], "DCI-D": d["dci"]["disentanglement"],
               "DCI-C": d["dci"]["completeness"], "DCI-I": d["dci"]["informativeness"],
               "SAP": d["sap"], "FactorVAE": d["factorvae"]}
    values |= {f"view named {k}: exact": v["exact"] for k, v in m.novel.identification.items()}
    return values


# ----------------------------------------------------------------------------- one run

def traversal_figures(m: Measured, factors: list[Factor], values: np.ndarray, images: int,
                      opts: Options, out: Path) -> list[tuple[Path, str]]:
    inputs = traversal_inputs(m.test, images)
    figures = []
    for f in factors:
        z = m.latents.get(f.name, {}).get("latent")
        if z is None:
            continue
        grid = sweep(m.trained.model, inputs, z, values, opts.device)
        title = (f"{m.trained.method.label}: z{z + 1} ({f.name}) swept, all other latents "
                 "at the posterior mean")
        path = traversal_figure(grid, values, title, out / f"traversal_{f.name}.png")
        figures.append((path, f"Latent traversal for {f.name} (paper figures 4, 5, 7): held-out "
                              f"images, their reconstructions, then z{z + 1} set to each value."))
    return figures


def scatter(m: Measured, factors: list[Factor], out: Path) -> list[tuple[Path, str]]:
    panels = []
    for f in factors:
        if f.name not in m.inferred:
            continue
        r, enc = m.inferred[f.name], m.test.encoded[f.name]
        panels.append({"truth": enc.values[:, f.column], "inferred": enc.mu[:, r["latent"]],
                       "factor": f.name, "unit": f.unit} | r)
        group = view_latents(m.trained, m.latents).get(f.name, [])
        if len(group) >= 2:
            # A group of latents for one factor (a circle for chairs azimuth): its first two
            # latents against each other, coloured by the truth, show what they code.
            panels[-1]["plane"] = (enc.mu[:, group[0]], enc.mu[:, group[1]], group[:2])
    if not panels:
        return []
    path = scatter_figure(panels, out / "inferred_vs_true.png")
    return [(path, "Inferred vs ground truth (paper figure 6): each factor's latent (posterior "
                   "mean) against its true value over the held-out minibatches where it varies; "
                   "for a factor given several latents, its first two against each other.")]


def novel_views(main_run: Measured, baseline: Measured, values: np.ndarray, images: int,
                opts: Options, out: Path) -> tuple[list[tuple[Path, str]], dict]:
    """Paper §4.1.1 / figure 5b: the same sweep of the first factor both models tie."""
    inputs = traversal_inputs(main_run.test, images)
    for f in opts.store.spec.factors:
        za = main_run.latents.get(f.name, {}).get("latent")
        zb = baseline.latents.get(f.name, {}).get("latent")
        if za is None or zb is None or f.is_intrinsic:
            continue
        blocks = [(f"{m.trained.method.label} ({m.trained.name}): z{z + 1} swept",
                   sweep(m.trained.model, inputs, z, values, opts.device))
                  for m, z in ((main_run, za), (baseline, zb))]
        path = novel_view_figure(blocks, values, out / f"novel_views_{f.name}.png")
        caption = (f"Entangled vs disentangled (paper §4.1.1, figure 5b): the same held-out "
                   f"images re-rendered at new {f.name} values by each model; the baseline's "
                   f"{f.name} latent is z{zb + 1}, chosen as {baseline.latents[f.name]['rule']}.")
        return [(path, caption)], {"factor": f.name, "latents": {main_run.trained.name: za,
                                                                 baseline.trained.name: zb}}
    return [], {}


def evaluate_one(checkpoint: str, baseline: str | None, values: np.ndarray, images: int,
                 opts: Options, out: Path | None) -> tuple[Path, str]:
    out = report.check_out(out or default_report(checkpoint, "report"))
    main_run = measure(checkpoint, opts)
    report.prepare_out(out)
    factors = list(opts.store.spec.factors)
    figures = traversal_figures(main_run, factors, values, images, opts, out)
    figures += scatter(main_run, factors, out)
    data = run_summary(main_run) | {
        "store": str(opts.store.path), "dataset": opts.store.spec.dataset,
        "device": str(opts.device), "seed": opts.seed,
        "traversal": {"values": values.tolist(), "images": images,
                      "inputs": "the first held-out identity minibatch, evenly spaced images"},
    }
    measured = [main_run]
    if baseline is not None:
        base = measure(baseline, opts)
        nv_figures, nv = novel_views(main_run, base, values, images, opts, out)
        figures += nv_figures
        data["baseline"] = run_summary(base) | {"novel_views": nv}
        measured.append(base)
    figures += novel_view_pairs(measured, out)
    data["figures"] = [p.name for p, _ in figures]
    report.write_json(data, out)
    rows = single_rows(main_run)
    html = report.write_html(f"dcign-eval: {main_run.trained.name}", [
        {"heading": "Numbers", "tables": [(["quantity", "value"], rows)],
         "notes": [main_run.reconstruction["how"], main_run.reconstruction["elbo_how"],
                   NOVEL_VIEW_NOTE,
                   main_run.disentanglement["sampling"], main_run.disentanglement["identity"],
                   main_run.disentanglement["factorvae_how"]]
         + [f"{k}: latent {'–' if v['latent'] is None else 'z' + str(v['latent'] + 1)} "
            f"({v['rule']})" for k, v in main_run.latents.items()]},
        {"heading": "Figures", "figures": figures},
    ], out)
    return html, report.text_table(["quantity", "value"], rows)


def single_rows(m: Measured) -> list[list]:
    rec = m.reconstruction
    rows = [[f"MSE/pixel {k}", v["mse_per_pixel"]] for k, v in rec["per_type"].items()]
    rows += [["MSE/pixel all", rec["overall"]["mse_per_pixel"]],
             ["ELBO/image all (nats)", rec["overall"]["elbo_per_image"]]]
    rows += [[f"{k} z{v['latent'] + 1} Pearson / Spearman",
              f"{v['pearson']:+.3f} / {v['spearman']:+.3f}"] for k, v in m.inferred.items()]
    rows += [[k, v] for k, v in metric_values(m).items()
             if not k.startswith(("|r|", "view named"))]  # each has a fuller row of its own
    rows += [[f"novel-view MSE {k} (input / view mean)",
              f"{v['mse_per_pixel']:.3e} ({v['floor_input_unchanged']:.3e} / "
              f"{v['floor_training_mean_of_view']:.3e})"] for k, v in m.novel.scores.items()]
    rows += [[f"{k} view named by {_latents_named(v['latents'])}: exact / ±1 / mirror / "
              "front-back",
              f"{v['exact']:.3f} / {v['within_one_step']:.3f} / {v['named_the_mirror_view']:.3f}"
              f" / {v['named_the_front_back_reflection']:.3f}"]
             for k, v in m.novel.identification.items()]
    return rows


def _latents_named(latents: list[int]) -> str:
    return ",".join(f"z{z + 1}" for z in latents)


def novel_view_pairs(runs: list[Measured], out: Path, examples: int = 8
                     ) -> list[tuple[Path, str]]:
    """Per factor: inputs, truths and each model's re-render at the truth's view."""
    figures = []
    first = runs[0].novel
    for name, pairs in first.pairs.items():
        pick = np.linspace(0, len(pairs.source) - 1, examples).round().astype(int)
        rows = [("input", pairs.source[pick]), ("truth", pairs.target[pick])]
        rows += [(m.trained.method.label, m.novel.predicted[name][pick]) for m in runs
                 if name in m.novel.predicted]
        labels = [f"{a:.0f}→{b:.0f}" for a, b in zip(pairs.source_value[pick],
                                                     pairs.target_value[pick], strict=True)]
        path = pair_grid_figure(rows, labels, f"{name}: held-out objects re-rendered at a new "
                                "view", out / f"novel_view_pairs_{name}.png")
        scores = "; ".join(f"{m.trained.method.label} "
                           f"{m.novel.scores[name]['mse_per_pixel']:.2e}" for m in runs
                           if name in m.novel.scores)
        figures.append((path, f"Novel views of {name}: an image of a held-out object (input), "
                              f"the true render at another {name} (truth), and each model's "
                              f"re-render of the input at that view. MSE/pixel: {scores}."))
    return figures


# ----------------------------------------------------------------------------- several runs

def scientific(mse: float | None) -> str | None:
    """Squared errors in one notation down a column, so runs compare at a glance."""
    return None if mse is None else f"{mse:.3e}"


def compare(runs: tuple[str, ...], opts: Options, out: Path | None) -> tuple[Path, str]:
    out = report.check_out(out or default_report(runs[0], "compare", up=1))
    measured = [measure(r, opts) for r in runs]
    report.prepare_out(out)
    rows = [{"name": m.trained.name, "values": metric_values(m)} for m in measured]
    columns = list(dict.fromkeys(c for r in rows for c in r["values"]))
    plot = compare_figure(rows, columns, out / "compare.png")
    lower_better = list(dict.fromkeys(c for m in measured for c in novel_view_values(m)))
    header = ["run", "method", "step", "MSE/pixel", "ELBO/image", *columns, *lower_better]
    table = [[m.trained.name, m.trained.settings, m.trained.step,
              scientific(m.reconstruction["overall"]["mse_per_pixel"]),
              m.reconstruction["overall"]["elbo_per_image"],
              *[r["values"].get(c) for c in columns],
              *[scientific(novel_view_values(m).get(c)) for c in lower_better]]
             for m, r in zip(measured, rows, strict=True)]
    report.write_json({"store": str(opts.store.path), "device": str(opts.device),
                       "seed": opts.seed, "runs": [run_summary(m) for m in measured],
                       "figures": [plot.name]}, out)
    html = report.write_html("dcign-eval: comparison", [
        {"heading": "Runs", "tables": [(header, table)],
         "figures": [(plot, "Each run's scores on the same test split (|r|: Pearson of the "
                            "factor's latent with its true value).")],
         "notes": [measured[0].reconstruction["how"],
                   measured[0].disentanglement["sampling"]]}], out)
    return html, report.text_table(header, table)


# ----------------------------------------------------------------------------- a learning curve

def learning_curve(run: str, points: int, opts: Options, out: Path | None) -> tuple[Path, str]:
    """Every chosen snapshot of `run` measured: report.json, curve.png and a table."""
    checkpoints = curve_checkpoints(run, points)
    out = report.check_out(out or default_report(run, "curve"))
    measured = []
    with tqdm(checkpoints, desc="snapshots", unit="snapshot", leave=False) as bar:
        for checkpoint in bar:
            measured.append(measure_point(checkpoint, opts.store, opts.device, opts.seed))
    report.prepare_out(out)
    data = [p.to_dict() for p in measured]
    plot = curve_figure(data, f"{run}: learning curve on {opts.store.path}", out / "curve.png")
    report.write_json({"run": str(run), "store": str(opts.store.path), "seed": opts.seed,
                       "device": str(opts.device), "points": data, "how": NOVEL_VIEW_NOTE,
                       "figures": [plot.name]}, out)
    header, rows = curve_rows(measured)
    return plot, report.text_table(header, rows)


# ----------------------------------------------------------------------------- the command

def check_request(runs: tuple[str, ...], checkpoint: str | None, baseline: str | None,
                  compare_runs: bool, curve_run: str | None) -> None:
    """One of: --checkpoint RUN [--baseline RUN], --compare RUN_A RUN_B …, --curve RUN."""
    if curve_run is not None:
        if compare_runs or runs or checkpoint or baseline:
            raise DcignError("--curve RUN takes one run and no --checkpoint, --baseline or "
                             "--compare")
    elif compare_runs:
        if len(runs) < 2:
            raise DcignError("--compare needs at least two runs as arguments")
        if checkpoint or baseline:
            raise DcignError("--compare takes its runs as arguments, not --checkpoint or "
                             "--baseline")
    elif runs:
        raise DcignError(f"unexpected argument {runs[0]!r} (give runs with --compare, or one "
                         "run with --checkpoint)")
    elif checkpoint is None:
        raise DcignError("give --checkpoint RUN (or --compare RUN_A RUN_B …, or --curve RUN)")


@click.command(cls=DcignCommand, epilog=EPILOG,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("runs", nargs=-1)
@click.option("--checkpoint", default=None, help="Run directory or checkpoint.pt to evaluate.")
@click.option("--store", required=True, help="The dcign store whose test split is used.")
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="Report folder. Default: report/ beside the checkpoint (compare: "
                   "compare/ beside the runs). A non-empty folder that is not a previous "
                   "report is refused.")
@click.option("--baseline", default=None,
              help="A second run (e.g. the VAE baseline) for the side-by-side novel views.")
@click.option("--compare", "compare_runs", is_flag=True,
              help="Compare the RUNS given as arguments: one table and one plot.")
@click.option("--curve", "curve_run", default=None, metavar="RUN",
              help="A learning curve of RUN instead: held-out MSE and novel-view error at "
                   "each snapshot it kept (dcign-train --snapshot-every N).")
@click.option("--points", type=click.IntRange(2), default=DEFAULT_POINTS, show_default=True,
              help="--curve: snapshots measured at most, evenly spread, the last always.")
@click.option("--sweep", "sweep_text", default="-15:15:9", show_default=True,
              help="Traversal values START:STOP:N (the paper sweeps -15 … +15).")
@click.option("--traversal-images", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Held-out images per traversal figure.")
@click.option("--samples", type=click.IntRange(100), default=DEFAULT_SAMPLES, show_default=True,
              help="Test images (at most) pooled for the disentanglement metrics.")
@click.option("--bins", type=click.IntRange(2), default=DEFAULT_BINS, show_default=True,
              help="Equal-width bins per factor (and per latent for MIG).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the metric sampling and the ELBO's noise.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, …")
def main(runs, checkpoint, store, out, baseline, compare_runs, curve_run, points, sweep_text,
         traversal_images, samples, bins, seed, device):
    """Evaluate a DC-IGN (or VAE baseline) checkpoint on a store's held-out minibatches.

    Writes PNG figures (latent traversals, inferred vs true factors, optionally the
    entangled-vs-disentangled novel views), report.json (reconstruction MSE and ELBO per
    minibatch type, Pearson/Spearman r, MIG, DCI, SAP, FactorVAE, with sample counts and
    seeds) and a self-contained report.html; prints a table and the report's path.
    """
    check_request(runs, checkpoint, baseline, compare_runs, curve_run)
    values = parse_values(sweep_text, "--sweep")
    opts = Options(open_store(store), pick_device(device), seed, samples, bins)
    if curve_run is not None:
        html, table = learning_curve(curve_run, points, opts, out)
    elif compare_runs:
        html, table = compare(runs, opts, out)
    else:
        html, table = evaluate_one(checkpoint, baseline, values, traversal_images, opts, out)
    click.echo(table)
    click.echo(f"report: {html}")


if __name__ == "__main__":  # python -m, as torchrun -m runs it
    main()
