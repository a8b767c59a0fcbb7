"""A shipped model's card (NAME.md) written from its facts (NAME.json): what it is and how to
use it, how it was made, what dcign-eval measures of it in float32 and as shipped, whether it
reaches its fidelity target, and what its test checks."""

from __future__ import annotations

USES = """\
```bash
dcign-explore --checkpoint {name}   # sliders; held-out images rendered on the spot
dcign-rerender --checkpoint {name} --image my.png --factor {factor} --values -3:3:7 --out strip.png
dcign-eval --checkpoint {name} --store {store}   # its numbers
```"""


def model_card(facts: dict) -> str:
    name, store, training = facts["name"], facts["store"], facts["training"]
    cfg = training["config"]
    groups = ", ".join(cfg["latent_groups"]) or "the store's"
    factor = next(iter(facts["eval"]["float32"]["novel_view"]["scores"]), "azimuth")
    lines = [
        f"# {name}: DC-IGN on {store['image_size']}×{store['image_size']} {store['dataset']}",
        "",
        f"A Deep Convolutional Inverse Graphics Network (Kulkarni et al. 2015) trained with "
        f"the paper's clamping on dcign's {store['dataset']} at {store['image_size']}×"
        f"{store['image_size']}, shipped with dcign. Use it by name:",
        "",
        USES.format(name=name, factor=factor, store=store["path"]),
        "",
        "## How it was made",
        "",
        f"- **Data:** `{facts['render']['command']}`: store content digest "
        f"`{store['content_digest'][:16]}…`, generator `{_generator(store['generator'])}`, "
        f"seed {store['seed']}, object model {store['model']} "
        f"(`{store['model_fingerprint']}`).",
        f"- **Training:** `{facts['train']}`",
        f"- **Settings:** mode {cfg['mode']}, arch {training['arch']}, mirror-odd "
        f"{', '.join(cfg['mirror_odd']) or 'none'}, latent groups "
        f"{groups}, λ {cfg['invariance']}, lr "
        f"{cfg['lr']}, seed {cfg['seed']}.",
        f"- **Budget:** {training['steps']:,} steps in {training['minutes']} minutes "
        f"({training['execution']}).",
        f"- **Machine:** {facts['machine']['cpu']}, {facts['machine']['cores']} cores; torch "
        f"{facts['machine']['torch']}. {facts['note']}",
        f"- **Commit:** {facts['commit']}.",
        f"- **File:** `{facts['file']}`, {facts['bytes'] / 1e6:.1f} MB, {facts['precision']}; "
        f"sha256 `{facts['sha256'][:16]}…`.",
        "",
        "## What dcign-eval measures (held-out test split, seed 0)",
        "",
        *_eval_table(facts["eval"]),
        "",
        *_target(facts),
        "",
        "## What its test checks",
        "",
        "`tests/train/test_shipped.py` renders held-out minibatches afresh with the data "
        "command's settings and encodes them with the shipped weights:",
        "",
        *_checks(facts),
        "",
    ]
    return "\n".join(lines)


def _generator(generator: dict | str) -> str:
    if isinstance(generator, dict):
        return " ".join(f"{k} {v}" for k, v in generator.items())
    return str(generator)


def _eval_table(ev: dict) -> list[str]:
    rows = [("quantity", "float32", "float16 (as shipped)"), ("---", "---:", "---:")]
    a, b = ev["float32"], ev["float16"]
    def rec(m: dict, k: str) -> float:
        return m["reconstruction"]["overall"][k]

    rows.append(("MSE/pixel", f"{rec(a, 'mse_per_pixel'):.3e}", f"{rec(b, 'mse_per_pixel'):.3e}"))
    rows.append(("ELBO/image (nats)", f"{rec(a, 'elbo_per_image'):.1f}",
                 f"{rec(b, 'elbo_per_image'):.1f}"))
    for f, r in a["inferred_vs_true"].items():
        rows.append((f"r {f} (z{r['latent'] + 1})", f"{r['pearson']:+.3f}",
                     f"{b['inferred_vs_true'][f]['pearson']:+.3f}"))
    for f, s in a["novel_view"]["scores"].items():
        t = b["novel_view"]["scores"][f]
        rows.append((f"novel view {f} (× view-mean floor)",
                     f"{s['mse_per_pixel']:.3e} ({_ratio(s):.2f}×)",
                     f"{t['mse_per_pixel']:.3e} ({_ratio(t):.2f}×)"))
        rows.append((f"  floors {f}: input unchanged / view mean",
                     f"{s['floor_input_unchanged']:.3e} / {s['floor_training_mean_of_view']:.3e}",
                     ""))
    for f, v in a["view_identification"].items():
        w = b["view_identification"][f]
        rows.append((f"{f} view named: exact / ±1 step", f"{v['exact']:.3f} / "
                     f"{v['within_one_step']:.3f}", f"{w['exact']:.3f} / "
                     f"{w['within_one_step']:.3f}"))
    d, e = a["disentanglement"], b["disentanglement"]
    for label, key in (("MIG", "mig"), ("SAP", "sap"), ("FactorVAE", "factorvae")):
        rows.append((label, f"{d[key]:.3f}", f"{e[key]:.3f}"))
    return [f"| {' | '.join(r)} |" for r in rows]


def _ratio(score: dict) -> float:
    return score["mse_per_pixel"] / score["floor_training_mean_of_view"]


def _target(facts: dict) -> list[str]:
    target = facts["target_novel_view_over_view_mean"]
    scores = facts["eval"]["float16"]["novel_view"]["scores"]
    met = {f: _ratio(s) <= target for f, s in scores.items()}
    wanted = "half" if target == 0.5 else f"{target:g}×"
    verdict = ("**met** on every factor" if all(met.values()) else
               "**not met** on " + ", ".join(f for f, ok in met.items() if not ok))
    return ["## Fidelity target", "",
            f"A re-render at a new view at most {wanted} the error of the training mean image "
            f"of that view, on every factor: {verdict} (as shipped: "
            + "; ".join(f"{f} {_ratio(s):.2f}×" for f, s in scores.items()) + ")."]


def _checks(facts: dict) -> list[str]:
    lines = []
    for f, entry in facts["fresh_renders"].items():
        promise = facts["promises"][f]
        latents = ", ".join(f"z{z}" for z in entry["latents"])
        if "abs_r" in entry:
            lines.append(f"- {f}: |r| of {latents} with the true {f} is {entry['abs_r']:.3f} "
                         f"on {entry['images']} images; the test requires ≥ "
                         f"{promise['min_abs_r']}.")
        else:
            lines.append(f"- {f}: the angle of ({latents}) round the codes' centre is "
                         f"{entry['median_angle_error_deg']:.1f}° from the true {f} (median "
                         f"over {entry['images']} images, orientation fitted); the test "
                         f"requires ≤ {promise['max_median_angle_error_deg']:g}°.")
    return lines
