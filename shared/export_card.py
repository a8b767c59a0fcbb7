"""What an export says about itself (`export.py` writes the files): the dataset card
(README.md with the Hub's YAML front matter) and the Croissant metadata (croissant.json), both
made from the export's marker, i.e. from the store's attributes and history.

The YAML is written by hand (JSON scalars are YAML scalars), so writing a card needs no YAML
library; `datasets` reads its `configs` and `dataset_info` to see the `image` column as an
Image feature.
"""

from __future__ import annotations

import json
import shlex

from .export_reader import IDENTITY, IMAGE, MINIBATCH, POSITION, VARYING
from .factors import LATENT_SIZE, Factor, continuous_factors
from .store import SPLITS, StoreSpec, spec_from_attrs

PAPER = ("Kulkarni, Whitney, Kohli and Tenenbaum, \"Deep Convolutional Inverse Graphics "
         "Network\", NIPS 2015")
BIBTEX = ("@inproceedings{kulkarni2015dcign, title={Deep Convolutional Inverse Graphics "
          "Network}, author={Kulkarni, Tejas D. and Whitney, William F. and Kohli, Pushmeet and "
          "Tenenbaum, Joshua B.}, booktitle={Advances in Neural Information Processing Systems},"
          " year={2015}}")
# models whose images the project's licence covers: built into dcign, no third-party terms
OWN_MODELS = ("embedded-", "procedural chairs")


def _spec(marker: dict) -> StoreSpec:
    return spec_from_attrs(marker["attrs"], marker["store"]["url"])


def _rows(marker: dict, split: str | None = None, factor: str | None = None,
          what: str = "rows") -> int:
    """Rows (or bytes of Parquet) exported, of one split and factor or of all."""
    return sum(f[what] for s in marker["sections"] for f in s["files"]
               if split in (None, s["split"]) and factor in (None, s["factor"]))


def licence(spec: StoreSpec) -> str:
    """The Hub's licence id: the project's (MIT) for images of its own models; `other` for
    images of a third party's model (the Basel Face Models, your meshes), whose terms apply."""
    return "mit" if spec.model.get("name", "").startswith(OWN_MODELS) else "other"


def size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return name
    return "10M<n<100M"


def _span(f: Factor) -> str:
    return f"{f.low:g} … {f.high:g}" if not f.is_intrinsic else "—"


def _latents(f: Factor) -> str:
    start, stop = f.latents
    if stop is not None and stop <= start:
        return "none (stored, held fixed)"
    return f"z{start + 1}" + ("" if stop == start + 1 else f"…z{stop or 200}")


# ----------------------------------------------------------------------------- the card

def front_matter(marker: dict) -> str:
    """The Hub's YAML: licence, tasks, size, configs (one per varying factor, and `all`),
    and each config's features and split sizes."""
    spec = _spec(marker)
    factors = [s["factor"] for s in marker["sections"]]
    factors = list(dict.fromkeys(f.name for f in spec.factors if f.name in factors))
    q = json.dumps
    lines = ["---", f"license: {licence(spec)}"]
    if licence(spec) == "other":  # the Hub asks an `other` licence for its name
        slug = "".join(c if c.isalnum() else "-" for c in spec.model.get("name", "")).lower()
        lines.append(f"license_name: {q(slug.strip('-') + '-terms')}")
    lines += [f"pretty_name: {q(_title(spec))}",
             "task_categories:", "- image-to-image", "- image-feature-extraction",
             "tags:", "- synthetic", "- disentanglement", "- inverse-graphics", "- dc-ign",
             f"- {spec.dataset}", "size_categories:", f"- {size_category(_rows(marker))}",
             "configs:"]
    for name in ["all", *factors]:
        lines += [f"- config_name: {name}", "  data_files:"]
        for split in SPLITS:
            if _rows(marker, split, None if name == "all" else name):
                lines += [f"  - split: {split}",
                          f"    path: data/{'*' if name == 'all' else name}/{split}-*.parquet"]
        if name == "all":
            lines.append("  default: true")
    lines.append("dataset_info:")
    for name in ["all", *factors]:
        lines += [f"- config_name: {name}", "  features:"]
        for column, feature in _features(spec).items():
            lines += [f"  - name: {column}", f"    dtype: {feature}"]
        lines.append("  splits:")
        factor = None if name == "all" else name
        for split in SPLITS:
            if _rows(marker, split, factor):  # num_bytes: the Parquet files' (PNG) bytes
                lines += [f"  - name: {split}",
                          f"    num_bytes: {_rows(marker, split, factor, 'bytes')}",
                          f"    num_examples: {_rows(marker, split, factor)}"]
        size = _rows(marker, None, factor, "bytes")
        lines += [f"  download_size: {size}", f"  dataset_size: {size}"]
    return "\n".join([*lines, "---", ""])


def _features(spec: StoreSpec) -> dict[str, str]:
    return ({IMAGE: "image"} | {f.name: "float32" for f in continuous_factors(spec.factors)}
            | {IDENTITY: "int64", MINIBATCH: "int64", POSITION: "int32", VARYING: "string"})


def _colours(spec: StoreSpec) -> tuple[str, str]:
    """How the card names the images' colours: (adjective, PNG kind)."""
    return ("grayscale", "gray") if spec.channels == 1 else ("colour (RGB)", "RGB")


def _thing(spec: StoreSpec) -> str:
    """One of what the dataset shows: "face" for faces."""
    return spec.dataset.removesuffix("s") or "object"


def _title(spec: StoreSpec) -> str:
    return f"dcign {spec.dataset}: one-factor-varying minibatches ({spec.model.get('name')})"


def regenerate_commands(marker: dict) -> list[str]:
    """The commands that filled the store, from its history: each run's own command line
    where it recorded one, else the command rebuilt from what it recorded."""
    commands = []
    for entry in marker["attrs"].get("history", []):
        config = entry.get("config") or {}
        command, argv = config.get("command"), [str(a) for a in config.get("argv") or []]
        if not command:
            continue
        if argv[:1] == [command]:
            commands.append(shlex.join(["dcign-render", *argv]))
            continue
        words = ["dcign-render", command]
        if command != "repair":
            for v in config.get("vary") or []:
                words += ["--vary", str(v)]
            for key in ("batches", "test_batches"):
                if config.get(key) is not None:
                    words += [f"--{key.replace('_', '-')}", str(config[key])]
        commands.append(shlex.join(words) + "  # rebuilt from the store's history")
    return commands


def export_command(marker: dict) -> str:
    """The command that made this export from the store."""
    settings, words = marker["settings"], ["dcign-store", "export", marker["store"]["url"], "OUT"]
    for factor in settings.get("factors", []):
        words += ["--factor", factor]
    for split in settings.get("splits", []):
        words += ["--split", split]
    return shlex.join(words)


def dataset_card(marker: dict) -> str:
    """OUT/README.md: front matter, then what the data is, its factors, guarantees, how to
    load and regroup it, and how to make it again."""
    spec = _spec(marker)
    g, b, h = spec.generator, spec.batch_size, spec.image_size
    table = ["| factor | unit | range | column | latent group | description |",
             "|---|---|---|---|---|---|"]
    for f in spec.factors:
        column = f"`{f.name}` (float32)" if not f.is_intrinsic else f"`{IDENTITY}` (int64)"
        table.append(f"| `{f.name}` | {f.unit} | {_span(f)} | {column} | {_latents(f)} | "
                     f"{f.description} |")
    counts = ["| split | varying factor | minibatches | images |", "|---|---|---|---|"]
    for s in marker["sections"]:
        n = _rows(marker, s["split"], s["factor"])
        counts.append(f"| {s['split']} | `{s['factor']}` | {n // b} | {n} |")
    commands = regenerate_commands(marker) or ["(the store records no command)"]
    first = next(iter(f.name for f in spec.factors if f.name in
                      {s["factor"] for s in marker["sections"]}))
    return "\n".join([
        front_matter(marker),
        f"# {_title(spec)}",
        "",
        f"Synthetic {_colours(spec)[0]} {h}×{h} images of {spec.dataset}, rendered by "
        f"dcign for training the Deep Convolutional Inverse Graphics "
        f"Network ({PAPER}). Images come in **minibatches of {b} in which exactly one factor "
        "of variation changes**; a row of the table is one image.",
        "",
        "![One minibatch of each factor: only its factor changes along a row](preview.png)",
        "",
        "## Factors",
        "",
        *table,
        "",
        "## The one-factor guarantee",
        "",
        f"In every minibatch exactly one factor varies (the row's `{VARYING}`), over distinct "
        "values; every other factor and the identity are bit-identical across its "
        f"{b} images. Scene constants (camera distance, light strength, ambient, background) "
        "are the same for the whole dataset. Train and test identities are disjoint. The "
        "renderer guarantees this and `dcign-store verify STORE` checks it; every minibatch "
        "was read back through its checksums when it was exported.",
        "",
        *counts,
        "",
        "## Columns",
        "",
        f"- `{IMAGE}`: the image, a lossless 8-bit {_colours(spec)[1]} PNG (the Hub's `Image` "
        "feature).",
        *[f"- `{f.name}`: float32, {f.unit} ({f.description}); unit and range are also in "
          "the Parquet field's metadata." for f in continuous_factors(spec.factors)],
        f"- `{IDENTITY}`: int64, which {_thing(spec)} the image shows.",
        f"- `{MINIBATCH}`: int64, the minibatch's index in the store; `{POSITION}`: int32, the "
        f"image's place in it (0…{b - 1}); `{VARYING}`: the factor that varies in it.",
        "",
        "## Loading, and regrouping rows into minibatches",
        "",
        "```python",
        "from datasets import load_dataset",
        f"data = load_dataset(\"PATH\", \"{first}\")     # one config per varying factor; "
        "\"all\" holds every one",
        "frame = data[\"train\"].to_pandas()",
        f"for (varying, k), rows in frame.groupby([\"{VARYING}\", \"{MINIBATCH}\"]):",
        f"    rows = rows.sort_values(\"{POSITION}\")   # one minibatch: only `varying` changes",
        "```",
        "",
        "Group rows by (`varying`, `minibatch`) and order each group by `position`: the groups "
        "are the store's minibatches, pixel for pixel. With dcign installed, "
        "`dcign.train.dataset.MinibatchDataset(\"PATH\", split=\"train\")` yields them as "
        "tensors, as it does from the store.",
        "",
        "## Provenance: making it again",
        "",
        f"- generator `{g.get('name')}` version {g.get('version')}, seed {g.get('seed')}",
        f"- object model `{spec.model.get('name')}` (fingerprint "
        f"`{spec.model.get('fingerprint')}`)",
        f"- exported by dcign {marker['dcign_version']} from a store of schema "
        f"{spec.schema_version} (content digest `{marker['store']['digest'][:16]}…`)",
        "",
        "A minibatch is a pure function of (seed, split, factor, index), so these commands "
        "render the same store again, byte for byte under the same GL rasteriser:",
        "",
        "```bash",
        *commands,
        export_command(marker),
        "```",
        "",
        "## Licence and intended use",
        "",
        _licence_text(spec),
        "",
        "Intended for research on disentangled representations and inverse graphics. The "
        "images are synthetic: no person was photographed and no personal data is held. "
        "They do not represent the variety of real faces or objects, and models trained on "
        "them alone should not be used to judge real people.",
        "",
        "## Citation",
        "",
        "```bibtex",
        BIBTEX,
        "```",
        ""])


def _licence_text(spec: StoreSpec) -> str:
    if licence(spec) == "mit":
        return ("MIT, as the dcign project: the images come from the models built into dcign "
                f"(`{spec.model.get('name')}`), which carry no third-party terms.")
    return (f"The images are renders of `{spec.model.get('name')}`, whose own licence "
            "applies to them (the Basel Face Models, for example, are for non-commercial "
            "research only); check it before sharing this export.")


# ----------------------------------------------------------------------------- Croissant

CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs",
    "column": "cr:column", "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract",
    "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key",
    "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
    "repeated": "cr:repeated", "replace": "cr:replace", "sc": "https://schema.org/",
    "samplingRate": "cr:samplingRate", "equivalentProperty": "cr:equivalentProperty",
    "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField",
    "transform": "cr:transform",
}


def _field(record: str, name: str, kind: str, description: str, source: dict) -> dict:
    return {"@type": "cr:Field", "@id": f"{record}/{name}", "name": f"{record}/{name}",
            "description": description, "dataType": kind, "source": source}


def _column(file_set: str, column: str, **transform) -> dict:
    source = {"fileSet": {"@id": file_set}, "extract": {"column": column}}
    return source | ({"transform": transform} if transform else {})


def _image_fields(spec: StoreSpec, record: str, file_set: str) -> list[dict]:
    fields = [_field(record, IMAGE, "sc:ImageObject",
                     f"the image: a lossless 8-bit {_colours(spec)[1]} PNG",
                     _column(file_set, IMAGE, jsonPath="bytes"))]
    for f in continuous_factors(spec.factors):
        fields.append(_field(record, f.name, "sc:Float", f"{f.description} ({f.unit}, "
                             f"{f.low:g} to {f.high:g})", _column(file_set, f.name)))
    fields += [
        _field(record, IDENTITY, "sc:Integer", "which object the image shows",
               _column(file_set, IDENTITY)),
        _field(record, MINIBATCH, "sc:Integer", "the minibatch's index in the store",
               _column(file_set, MINIBATCH)),
        _field(record, POSITION, "sc:Integer", "the image's place in its minibatch",
               _column(file_set, POSITION)),
        _field(record, VARYING, "sc:Text", "the one factor that varies in the minibatch",
               _column(file_set, VARYING)),
        _field(record, "split", "sc:Text", "train or test (from the file's name)",
               {"fileSet": {"@id": file_set}, "extract": {"fileProperty": "filename"},
                "transform": {"regex": "^(train|test)-.*\\.parquet$"}})]
    return fields


def _factor_table(spec: StoreSpec) -> dict:
    record = "factors"
    rows = [{f"{record}/name": f.name, f"{record}/unit": f.unit,
             f"{record}/low": f.low, f"{record}/high": f.high,
             f"{record}/latent_start": f.latents[0],
             f"{record}/latent_stop": LATENT_SIZE if f.latents[1] is None else f.latents[1],
             f"{record}/description": f.description} for f in spec.factors]
    kinds = {"name": "sc:Text", "unit": "sc:Text", "low": "sc:Float", "high": "sc:Float",
             "latent_start": "sc:Integer", "latent_stop": "sc:Integer",
             "description": "sc:Text"}
    return {"@type": "cr:RecordSet", "@id": record, "name": record,
            "description": "the factor table: each factor's unit, range and the DC-IGN latent "
                           f"group tied to it, latents [start, stop) of {LATENT_SIZE}",
            "key": {"@id": f"{record}/name"},
            "field": [{"@type": "cr:Field", "@id": f"{record}/{k}", "name": f"{record}/{k}",
                       "dataType": v} for k, v in kinds.items()],
            "data": rows}


def _last_run(marker: dict) -> str | None:
    """When the store's last run ended (its content's date), as Croissant's date."""
    times = [e.get("time") for e in marker["attrs"].get("history", []) if e.get("time")]
    return str(times[-1]) if times else None


def croissant(marker: dict) -> dict:
    """Croissant 1.0 metadata with its responsible-AI fields: the Parquet files (each with
    its sha256), a record set of images (every factor, one per varying factor) and the factor
    table."""
    spec = _spec(marker)
    files = [f for s in marker["sections"] for f in s["files"]]
    factors = list(dict.fromkeys(s["factor"] for s in marker["sections"]))
    distribution = [{"@type": "cr:FileObject", "@id": f["path"], "name": f["path"],
                     "contentUrl": f["path"], "encodingFormat": "application/x-parquet",
                     "contentSize": f"{f['bytes']} B",
                     "sha256": f["sha256"]} for f in files]
    record_sets = [_factor_table(spec)]
    for name in ["all", *factors]:
        file_set = f"parquet-{name}"
        distribution.append({
            "@type": "cr:FileSet", "@id": file_set, "name": file_set,
            "description": f"the Parquet files of {'every factor' if name == 'all' else name}",
            "encodingFormat": "application/x-parquet",
            "includes": f"data/{'*' if name == 'all' else name}/*.parquet"})
        record_sets.append({
            "@type": "cr:RecordSet", "@id": name, "name": name,
            "description": "images, one a record, with their factor values; regroup by "
                           "(varying, minibatch), ordered by position, for the minibatches"
                           + ("" if name == "all" else f" in which {name} varies"),
            "field": _image_fields(spec, name, file_set)})
    g = spec.generator
    commands = regenerate_commands(marker)
    return {
        "@context": CONTEXT, "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"dcign-{spec.dataset}",
        "description": f"{_title(spec)}. Synthetic {_colours(spec)[0]} {spec.image_size}x"
                       f"{spec.image_size} images in minibatches of {spec.batch_size} in "
                       "which exactly one factor of variation changes.",
        "license": ("https://spdx.org/licenses/MIT.html" if licence(spec) == "mit"
                    else f"see the licence of {spec.model.get('name')}"),
        "version": f"{g.get('version')}.0.0",
        "citeAs": BIBTEX,
        "keywords": ["synthetic", "disentanglement", "inverse graphics", spec.dataset],
        "isLiveDataset": False,
        **({"datePublished": _last_run(marker)} if _last_run(marker) else {}),
        "distribution": distribution,
        "recordSet": record_sets,
        # responsible AI (Croissant RAI 1.0): what applies to data drawn by a program
        "rai:dataCollection": (f"Rendered by dcign's generator {g.get('name')} v"
                               f"{g.get('version')} (seed {g.get('seed')}) from the object "
                               f"model {spec.model.get('name')} (fingerprint "
                               f"{spec.model.get('fingerprint')}); commands: "
                               + ("; ".join(commands) or "not recorded")),
        "rai:dataCollectionType": ["Synthetic data"],
        "rai:dataCollectionRawData": "None: every image is rendered from a seed.",
        "rai:dataCollectionMissingData": "None: only complete minibatches are exported.",
        "rai:dataPreprocessingProtocol": [
            ("Rendered in colour and converted to 8-bit gray; " if spec.channels == 1 else
             "Rendered in colour, 8 bits a channel; ") + "PNG-encoded losslessly for export."],
        "rai:dataAnnotationProtocol": ["Labels are the generator's own scene parameters, "
                                       "exact by construction; no human annotation."],
        "rai:personalSensitiveInformation": [
            "None: no person was photographed; faces are samples of a morphable model."
            if spec.dataset == "faces" else "None."],
        "rai:dataBiases": ["The identities are samples of the object model, so they inherit "
                           "its population (e.g. the scans a face model was built from)."],
        "rai:dataLimitations": ["Synthetic renders under fixed lighting constants and a plain "
                                "background; not representative of real photographs."],
        "rai:dataUseCases": ["Research on disentangled representations and inverse graphics "
                             "(DC-IGN and its baselines)."],
        "rai:dataSocialImpact": "Low: synthetic data holding no personal information.",
        "rai:dataReleaseMaintenancePlan": ("Regenerate from the recorded commands; the export "
                                           "is a pure function of the store."),
    }
