"""The report folder: its guard against overwriting, report.json (the evaluation's numbers),
a self-contained report.html (figures inlined as base64 data URIs, plain HTML/CSS) and the
terminal table."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from dcign.shared.errors import DcignError

REPORT_FORMAT = "dcign-eval-report/1"
REPORT_JSON = "report.json"
# Reports written before the run log, the report and the scores had names of their own.
EARLIER_REPORT_JSON = "metrics.json"


def check_out(out: Path) -> Path:
    """Refuse a file or a non-empty folder that is not a previous report (before any work)."""
    if out.exists():
        if not out.is_dir():
            raise DcignError(f"{out} exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not is_report(out):
            raise DcignError(f"{out} is a non-empty folder that is not a dcign-eval report; "
                             "choose another --out")
    return out


def prepare_out(out: Path) -> Path:
    """Create the report folder, refusing what `check_out` refuses."""
    check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DcignError(f"cannot create {out}: {exc.strerror or exc}") from None
    return out


def is_report(path: Path) -> bool:
    """A folder dcign-eval wrote (and may therefore overwrite)."""
    for name in (REPORT_JSON, EARLIER_REPORT_JSON):
        try:
            if json.loads((path / name).read_text()).get("format") == REPORT_FORMAT:
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def write_json(data: dict, out: Path) -> Path:
    path = out / REPORT_JSON
    path.write_text(json.dumps({"format": REPORT_FORMAT} | data, indent=2) + "\n")
    (out / EARLIER_REPORT_JSON).unlink(missing_ok=True)  # an earlier report's numbers: stale
    return path


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3e}" if 0 < abs(value) < 1e-2 else f"{value:.3f}"
    return str(value)


def text_table(header: list[str], rows: list[list]) -> str:
    """Fixed-width columns for the terminal."""
    cells = [header] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def inline_png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
img{max-width:100%;display:block;margin:.5em 0 1.5em}p.note{color:#555;font-size:.9em}"""


def write_html(title: str, sections: list[dict], out: Path) -> Path:
    """sections: {heading, tables: [(header, rows)], figures: [(path, caption)], notes: []}."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s['heading'])}</h2>")
        for header, rows in s.get("tables", []):
            parts.append(html_table(header, rows))
        for path, caption in s.get("figures", []):
            parts.append(inline_png(path, caption))
            parts.append(f"<p class='note'>{html.escape(caption)}</p>")
        for note in s.get("notes", []):
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path
