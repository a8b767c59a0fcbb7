"""The page `dcign-explore` serves: a Gradio app (`gradio.Blocks`) whose events call an
`Explorer` (explore.py, which imports this module only to launch), which calls
`explore_model.py`. Gradio runs the PyTorch network unchanged in this process and keeps the
page's state per browser tab (`gr.State`: the image's code, the second image's);
every answer is a numpy image that Gradio sends as a lossless PNG.

Launched on 127.0.0.1 only, no share link, analytics off (set before gradio is imported),
and a theme of the system's fonts, so the page fetches nothing from anywhere but the
server. A slider's events run `always_last`: while one render runs, only the newest values
wait. Bad input is one line in the page (`#error`, and a `gr.Warning`), never a traceback;
loading an image clears it (a render that follows a failed upload leaves it).
"""

from __future__ import annotations

import html
import os
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio reads it
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import click  # noqa: E402
import gradio as gr  # noqa: E402

from dcign.shared.errors import DcignError  # noqa: E402

# System fonts only: Gradio's own theme fonts are served by Gradio, but a Google font would
# be fetched from the internet
THEME = gr.themes.Default(font=["system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])
CSS = """
.dcign-image img { image-rendering: pixelated; width: 100%; height: 100%;
                   object-fit: contain; }
#error { color: #b00020; font-weight: 600; min-height: 1.2em; }
#latents textarea, #command textarea { font-family: monospace; font-size: 12px; }
"""


def _error(exc: Exception) -> str:
    """One line for the page: a DcignError's first line, anything else named."""
    if isinstance(exc, DcignError):
        line = str(exc).splitlines()[0]
    else:
        first = str(exc).splitlines()[0] if str(exc) else ""
        line = f"internal error: {type(exc).__name__}: {first}"
    gr.Warning(line)
    return line


def _html_error(line: str) -> str:
    return f'<div role="alert">{html.escape(line)}</div>' if line else ""


def build_page(explorer: Any, max_upload: int = 32 * 2**20) -> gr.Blocks:
    """The Blocks app: its functions are the page's behaviour (tested without a browser
    through `page.fns`, and in Chromium by tests/eval/test_explore_browser.py)."""
    info = explorer.info()
    controls = explorer.controls
    n = info["held_out"]
    skip = gr.skip

    def load(request, raw: bool):
        """A held-out index or uploaded bytes → the image's state, pictures and sliders."""
        try:
            image = explorer.upload(request) if raw else explorer.pick({"held_out": request})
        except Exception as exc:  # one line in the page, never a traceback
            return [skip()] * (4 + len(controls)) + [_html_error(_error(exc))]
        state = {k: image[k] for k in ("id", "label", "code", "values", "baseline_code")}
        return [state, image["input"], image["recon"], image["label"],
                *(float(v) for v in image["values"]), ""]

    def pick(k):
        return load(k, False)

    def upload(data):
        if data is None:
            return [skip()] * (5 + len(controls))
        if len(data) > max_upload:
            line = _error(DcignError(f"the upload is {len(data) / 2**20:.0f} MiB; at most "
                                     f"{max_upload // 2**20} MiB"))
            return [skip()] * (4 + len(controls)) + [_html_error(line)]
        return load(data, True)

    def render(state, *values):
        try:
            if not state:
                raise DcignError("pick or upload an image first")
            answer = explorer.render({"id": state["id"], "code": state["code"],
                                      "baseline_code": state["baseline_code"],
                                      "values": [float(v) for v in values]})
        except Exception as exc:
            return [skip()] * 5 + [_html_error(_error(exc))]
        return [answer["render"], answer["baseline_render"], answer["latents"],
                answer["command"], f"re-render ({answer['ms']} ms)", skip()]

    def reset(state):
        if not state:
            return [skip()] * len(controls)
        return [float(v) for v in state["values"]]

    def load_second(request, raw: bool):
        try:
            if raw:
                if request is None:
                    return skip(), skip(), skip()
                image = explorer.upload(request)
            else:
                image = explorer.pick({"held_out": request})
        except Exception as exc:
            return skip(), skip(), _html_error(_error(exc))
        return {"code": image["code"], "label": image["label"]}, image["input"], ""

    def between(state, second, t):
        if not state or not second:
            return skip(), skip(), skip()
        try:
            answer = explorer.interpolate({"a": state["code"], "b": second["code"],
                                           "t": float(t)})
        except Exception as exc:
            return skip(), skip(), _html_error(_error(exc))
        return answer["render"], f"t = {float(t):g} ({second['label']})", skip()

    def start():
        """The first view: held-out image 0 (and 1 as the second image), when there are."""
        if not n:
            return [skip()] * (5 + len(controls))
        return pick(0)

    def start_second():
        return load_second(1, False) if n > 1 else (skip(), skip(), skip())

    def picture(label: str, elem_id: str, visible: bool = True) -> gr.Image:
        return gr.Image(label=label, type="numpy", format="png", interactive=False,
                        elem_id=elem_id, elem_classes=["dcign-image"], height=224,
                        buttons=["download"], visible=visible)

    def chooser(first: int, label: str, suffix: str) -> tuple:
        """A held-out image's number, its "show" button and an upload button (for a row)."""
        number = gr.Number(first, label=label, precision=0, minimum=0, maximum=max(0, n - 1),
                           elem_id=f"held-out{suffix}", interactive=bool(n))
        show = gr.Button("show", elem_id=f"pick{suffix}", interactive=bool(n))
        upload = gr.UploadButton("or upload an image", type="binary", file_types=["image"],
                                 elem_id=f"upload{suffix}")
        return number, show, upload

    with gr.Blocks(title="dcign-explore", analytics_enabled=False) as page:
        gr.Markdown(f"## dcign-explore\n{html.escape(info['about'])}", elem_id="about")
        error = gr.HTML("", elem_id="error")
        image_state, second_state = gr.State(None), gr.State(None)
        with gr.Row():
            held_out, pick_button, upload_button = chooser(
                0, f"held-out image, of {n} (0–{n - 1})" if n
                else "held-out image (no --store given)", "")
        with gr.Row():
            shown = picture("input, as the network reads it", "input")
            recon = picture("reconstruction", "recon")
            rendered = picture("re-render", "render")
            theirs = picture(f"{info['baseline']}, same edit" if info["baseline"] else
                             "baseline", "baseline-render", visible=bool(info["baseline"]))
        with gr.Row():
            label = gr.Textbox(label="image", interactive=False, elem_id="image-label")
            timing = gr.Textbox(label="re-render", interactive=False, elem_id="timing")
        with gr.Group():
            sliders = [gr.Slider(s.low, s.high, value=0.0,
                                 step=1 if s.angle else round((s.high - s.low) / 200, 4),
                                 label=s.label, elem_id=f"slider-{k}")
                       for k, s in enumerate(controls)]
        reset_button = gr.Button("back to the image's code", elem_id="reset")
        latents = gr.Textbox(label="latents", interactive=False, elem_id="latents")
        command = gr.Textbox(label="the same edit with dcign-rerender", interactive=False,
                             lines=2, buttons=["copy"], elem_id="command")
        with gr.Accordion("Interpolate to a second image", open=True):
            with gr.Row():
                held_out_b, pick_b, upload_b = chooser(1 if n > 1 else 0, "held-out image",
                                                       "-b")
            with gr.Row():
                second = picture("second image", "image-b")
                mixed = picture("interpolation", "between")
            t = gr.Slider(0, 1, value=0.5, step=0.05, label="t (first → second)", elem_id="t")
            caption = gr.Textbox(label="interpolation at", interactive=False,
                                 elem_id="between-caption")

        image_out = [image_state, shown, recon, label, *sliders, error]
        render_io = ([image_state, *sliders],
                     [rendered, theirs, latents, command, timing, error])
        between_io = ([image_state, second_state, t], [mixed, caption, error])
        second_out = [second_state, second, error]

        def after_image(event):
            event.then(render, *render_io, trigger_mode="always_last").then(between,
                                                                           *between_io)

        after_image(pick_button.click(pick, held_out, image_out))
        after_image(held_out.submit(pick, held_out, image_out))
        after_image(upload_button.upload(upload, upload_button, image_out))
        for slider in sliders:
            slider.input(render, *render_io, trigger_mode="always_last")
        reset_button.click(reset, image_state, sliders).then(render, *render_io)
        pick_b.click(lambda k: load_second(k, False), held_out_b, second_out).then(
            between, *between_io)
        upload_b.upload(lambda d: load_second(d, True), upload_b, second_out).then(
            between, *between_io)
        t.input(between, *between_io, trigger_mode="always_last")
        page.load(start, None, image_out).then(render, *render_io).then(
            start_second, None, second_out).then(between, *between_io)
    return page


def launch(explorer: Any, host: str, port: int, max_upload: int, browser: bool = True
           ) -> None:
    """Serve the page on host:port (127.0.0.1) until Ctrl-C; the first line printed is its
    address."""
    page = build_page(explorer, max_upload)
    page.queue(default_concurrency_limit=1)  # one network call at a time
    page.launch(server_name=host, server_port=port, share=False, inbrowser=browser,
                quiet=True, prevent_thread_lock=True, show_error=False, ssr_mode=False,
                max_file_size=max_upload, theme=THEME, css=CSS, footer_links=[],
                allowed_paths=[], pwa=False, mcp_server=False)
    click.echo(f"dcign-explore: http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        page.block_thread()
    except KeyboardInterrupt:
        click.echo("\nstopped")
    finally:
        page.close()
