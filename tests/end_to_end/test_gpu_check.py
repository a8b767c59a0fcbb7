"""The GPU check is ready for the first machine with CUDA: it refuses a machine without one in
one line, and its every section runs (at toy sizes, on the CPU) to a JSON and a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_without_cuda_the_check_refuses_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--json", tmp_path / "g.json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and not (tmp_path / "g.json").exists()
    assert done.stderr.strip().splitlines() == [
        "Error: the GPU check needs CUDA, and torch sees no CUDA device here"]


def test_every_section_runs_and_is_recorded(tmp_path):
    out = tmp_path / "g.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--json", out],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    render = result["render"]
    for workers in (1, 2):  # each rate measured, not a difference of timings
        assert render[f"images_per_s_{workers}_workers"] > 0
        steady = render[f"steady_images_per_s_{workers}_workers"]  # load may leave it unknown
        assert steady is None or steady > 0
    assert render["gl_renderer"]
    assert [row["images_per_s"] > 0 for row in result["training"]] == [True]
    assert "skipped" in result["ddp"]  # no GPU, so no node of several
    assert set(result["quality"]["r"]) == {"azimuth", "elevation", "light"}
    table = done.stdout.splitlines()
    assert table[0].startswith("# CPU smoke run") and table[-1] == f"wrote {out}"
