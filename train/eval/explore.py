"""`dcign-explore`: a trained network in the browser. A held-out image of a store, or any
uploaded image, its reconstruction, and a re-render that follows a slider per factor; the
same edit through a baseline beside it; an interpolation between two images; the edit as a
`dcign-rerender` command.

The page is a Gradio app (`explore_page.py`, imported only once the checks have passed, so a
bad flag is one line at once) served on 127.0.0.1 (never another interface, no share link,
analytics off), and the network runs as PyTorch, unchanged, in this process
(`explore_model.py`). This module holds the command, the checks, and `Explorer`: what the
page's events are answered from, as plain numpy arrays. Nothing here sends anything anywhere.
"""

from __future__ import annotations

import errno
import hashlib
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from dcign.shared.cli import DcignCommand
from dcign.shared.errors import DcignError
from dcign.shared.store import Store, open_store

from ..device import pick_device
from ..shipped import NAMES, card, held_out_store, shipped_name
from . import explore_model as em
from .trained import Trained, check_same_kind, load_trained

HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_UPLOAD = 32 * 1024 * 1024  # bytes: any photo; more is refused in one line
MAX_HELD_OUT = 5000  # held-out images offered from a store (its first, section by section)

EPILOG = f"""\b
Examples:
  # a DC-IGN run, its held-out faces, and the VAE baseline beside it
  dcign-explore --checkpoint runs/faces64-dcign --baseline runs/faces64-vae \\
                --store datasets/faces64.zarr
\b
  # chairs with azimuth as a circle of two latents: one angle slider
  dcign-explore --checkpoint runs/chairs64-dcign-circle --store datasets/chairs64.zarr
\b
  # any image of your own (upload it on the page), another port, no browser opened
  dcign-explore --checkpoint runs/faces64-dcign/checkpoint.pt --port 8000 --no-browser
\b
  # a shipped model (faces64 is the default), held-out images rendered on the spot
  dcign-explore
  dcign-explore --checkpoint chairs64
\b
Shipped checkpoints: {', '.join(NAMES)} (model cards: train/shipped/NAME.md).
"""


@dataclass
class Explorer:
    """What the page's calls are answered from: the networks, their sliders, the held-out
    images, and the folder the inputs are written to (the command names them)."""

    main: Trained
    controls: list[em.Slider]
    folder: Path
    baseline: Trained | None = None
    baseline_controls: list[em.Slider] = field(default_factory=list)
    held_out: np.ndarray | None = None  # uint8 (N, H, W)
    held_out_labels: list[str] = field(default_factory=list)
    store_path: str | None = None

    def info(self) -> dict:
        about = (f"{self.main.name} ({self.main.settings}, step {self.main.step}, "
                 f"{self.main.image_size}×{self.main.image_size})")
        if self.store_path:
            about += f"; held-out images of {self.store_path}"
        return {"about": about, "checkpoint": str(self.main.checkpoint),
                "baseline": self.baseline.name if self.baseline else None,
                "held_out": 0 if self.held_out is None else len(self.held_out),
                "sliders": [{"label": s.label, "low": s.low, "high": s.high, "angle": s.angle,
                             "step": 1 if s.angle else round((s.high - s.low) / 200, 4)}
                            for s in self.controls]}

    def image(self, gray: np.ndarray, label: str) -> dict:  # (H, W), or (H, W, 3) rgb
        """An image the page will edit: written (for the command), encoded, reconstructed."""
        digest = hashlib.sha256(gray.tobytes()).hexdigest()[:12]
        path = self.folder / f"input-{digest}.png"
        if not path.exists():
            path.write_bytes(em.png_bytes(gray))
        code = em.encode(self.main, gray)
        answer = {"id": digest, "label": label, "input": gray,
                  "recon": em.decode(self.main, code), "code": code.tolist(),
                  "values": [s.value(code) for s in self.controls], "baseline_code": None}
        if self.baseline is not None:
            answer["baseline_code"] = em.encode(self.baseline, gray).tolist()
        return answer

    def pick(self, request: dict) -> dict:
        n = 0 if self.held_out is None else len(self.held_out)
        k = request.get("held_out")
        if not n:
            raise DcignError("no held-out images: start dcign-explore with --store")
        if isinstance(k, float) and k.is_integer():  # a number field gives 3.0
            k = int(k)
        if not isinstance(k, int) or not 0 <= k < n:
            raise DcignError(f"held-out image {k!r}: choose 0 to {n - 1}")
        return self.image(self.held_out[k], self.held_out_labels[k])

    def upload(self, data: bytes) -> dict:
        return self.image(em.read_image(data, self.main.image_size,
                                        self.main.model.arch.channels, "the upload"), "upload")

    def render(self, request: dict) -> dict:
        start = time.perf_counter()
        digest = request.get("id")
        if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{12}", digest)):
            raise DcignError("pick or upload an image first")
        code = self._code(request.get("code"), self.main)
        values = request.get("values")
        if (not isinstance(values, list) or len(values) != len(self.controls)
                or not all(isinstance(v, int | float) and np.isfinite(v) for v in values)):
            raise DcignError(f"values: {len(self.controls)} finite numbers, one a slider")
        edit = em.edited(code, self.controls, dict(enumerate(values)))
        answer = {"render": em.decode(self.main, edit), "baseline_render": None}
        if self.baseline is not None:
            theirs = self._code(request.get("baseline_code"), self.baseline)
            same = em.same_edit(self.controls, self.baseline_controls, theirs, edit)
            answer["baseline_render"] = em.decode(self.baseline, same)
        image = self.folder / f"input-{digest}.png"
        checkpoint = shipped_name(self.main.checkpoint) or self.main.checkpoint
        answer["command"] = em.rerender_command(checkpoint, image, edit, self.controls,
                                                self.main.method.assigns_latents)
        answer["latents"] = "  ".join(f"z{i + 1}={em.latent_text(edit[i])}"
                                      for s in self.controls for i in s.latents)
        answer["ms"] = round(1000 * (time.perf_counter() - start), 1)
        return answer

    def interpolate(self, request: dict) -> dict:
        a, b = (self._code(request.get(k), self.main) for k in ("a", "b"))
        t = request.get("t")
        if not isinstance(t, int | float) or not 0 <= t <= 1:
            raise DcignError(f"t {t!r}: a number from 0 to 1")
        return {"render": em.decode(self.main, em.interpolate(a, b, float(t)))}

    @staticmethod
    def _code(values, trained: Trained) -> np.ndarray:
        size = trained.model.arch.latent_size
        code = np.asarray(values if isinstance(values, list) else [], dtype=np.float64)
        if code.shape != (size,) or not np.isfinite(code).all():
            raise DcignError(f"a code of {size} finite numbers is needed")
        return code.astype(np.float32)


def held_out_images(store: Store, limit: int = MAX_HELD_OUT) -> tuple[np.ndarray, list[str]]:
    """The store's test images, section by section (at most `limit`), with labels."""
    images, labels = [], []
    for _, factor in store.sections("test"):
        group = store.read_complete("test", factor)
        for m, k in enumerate(group.indices):
            for j in range(group.images.shape[1]):
                images.append(group.images[m, j])
                labels.append(f"test/{factor} minibatch {int(k)} image {j}")
                if len(images) >= limit:
                    return np.stack(images), labels
    if not images:
        raise DcignError(f"{store.path} has no complete held-out (test) minibatch")
    return np.stack(images), labels


def build_explorer(checkpoint: str, baseline: str | None, store_path: str | None,
                   device: str = "cpu", folder: Path | None = None) -> Explorer:
    """Load and check everything the page needs; every mismatch is one line."""
    dev = pick_device(device)
    main = load_trained(checkpoint, dev)
    folder = folder or Path(tempfile.mkdtemp(prefix="dcign-explore-"))
    name = shipped_name(main.checkpoint)
    if store_path is None and name is not None:
        click.echo(f"rendering held-out images for {name} with dcign-render…", err=True)
        store_path = str(held_out_store(card(name)["render"], folder / f"{name}-held-out.zarr"))
    store = None
    if store_path is not None:
        store = open_store(store_path)
        check_same_kind(main, store.spec, store_path)
    other = None
    if baseline is not None:
        other = load_trained(baseline, dev)
        if describe(other) != describe(main):
            raise DcignError(f"--baseline {other.checkpoint} is a {describe(other)} network; "
                             f"{main.checkpoint} a {describe(main)} one")
    controls = em.sliders(main, store)
    if not controls:
        raise DcignError(f"{main.checkpoint}: no factor has a latent to slide")
    explorer = Explorer(main, controls, folder, other, em.sliders(other, store) if other else [],
                        store_path=store_path)
    if store is not None:
        explorer.held_out, explorer.held_out_labels = held_out_images(store)
    return explorer


def describe(trained: Trained) -> str:
    """What a baseline must share with the main run: '32×32 gray 'blobs''."""
    return (f"{trained.image_size}×{trained.image_size} {trained.store_spec.color} "
            f"{trained.store_spec.dataset!r}")


def free_port(port: int) -> int:
    """`port` on 127.0.0.1 if nothing listens there (0: a free one, chosen now: Gradio takes
    a port number, not 0), or one line saying why not; checked before anything is loaded or
    Gradio launched."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DcignError(f"port {port} on {HOST} is in use; give --port another "
                                 "(--port 0 takes any free one)") from None
            raise DcignError(f"cannot listen on {HOST}:{port} ({exc.strerror})") from None
        return probe.getsockname()[1]


@click.command(cls=DcignCommand, epilog=EPILOG,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--checkpoint", default=NAMES[0], show_default=True,
              help=f"Run directory, checkpoint.pt, or a shipped model: {', '.join(NAMES)} "
                   "(then held-out images are rendered on the spot unless --store is given).")
@click.option("--baseline", default=None,
              help="A second run (e.g. the VAE baseline) shown beside, with the same edit.")
@click.option("--store", "store_path", default=None,
              help="The store to pick held-out images from (its test split); it also sets "
                   "each slider's range, and chooses a baseline's latents as dcign-eval does.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the address.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or auto (a slider step is a few ms on one CPU core).")
def main(checkpoint, baseline, store_path, port, no_browser, device):
    """Explore a trained network in the browser: sliders per factor re-render an image.

    Serves one Gradio page on 127.0.0.1 only (no share link, analytics off, nothing sent
    anywhere) until Ctrl-C. Inputs shown are written to a temporary folder, so the
    dcign-rerender command the page gives re-renders the same edit.
    """
    port = free_port(port)  # a port in use is one line before anything is loaded
    explorer = build_explorer(checkpoint, baseline, store_path, device)
    try:
        from .explore_page import launch  # Gradio: imported once the checks have passed
    except ModuleNotFoundError as exc:
        if exc.name != "gradio":
            raise
        raise DcignError("dcign-explore's page needs Gradio: pip install 'dcign[explorer]'"
                         ) from None

    launch(explorer, HOST, port, MAX_UPLOAD, browser=not no_browser)

if __name__ == "__main__":
    main()
