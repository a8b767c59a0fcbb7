"""The chair materials as Python writes them and as the shader reads them: one set of codes.

chair_parts encodes each part's material in a vertex colour (g = code / MATERIAL_CODE_SCALE,
b = pattern scale / PATTERN_SCALE_RANGE); mesh.frag decodes it and branches on the code. The
shader's source is parsed here, so renumbering either side alone fails a test instead of
silently texturing chairs with the wrong material."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dcign.render.objects.chair_parts import (
    FABRIC,
    LEATHER,
    MATERIAL_CODE_SCALE,
    METAL,
    PATTERN_SCALE_RANGE,
    PLAIN,
    PLASTIC,
    WOOD_X,
    WOOD_Y,
    WOOD_Z,
    encode_material,
)
from dcign.render.renderer.offscreen import SHADER_DIR

MATERIALS = (PLAIN, WOOD_X, WOOD_Y, WOOD_Z, FABRIC, METAL, LEATHER, PLASTIC)
SOURCE = (SHADER_DIR / "mesh.frag").read_text()


def _decoding(channel: str) -> float:
    """The constant the shader multiplies a material channel by (x: code, y: scale)."""
    match = re.search(rf"frag_material\.{channel} \* ([\d.]+)", SOURCE)
    assert match, f"mesh.frag no longer decodes frag_material.{channel}"
    return float(match.group(1))


def _branches() -> dict[tuple[int, int], str | None]:
    """The shader's material branches: (lowest, highest) code → texture function it calls
    (None: a branch that only changes the highlight)."""
    branches = {}
    for condition, body in re.findall(r"if \((material [^)]*)\) \{(.*?)\}", SOURCE, re.S):
        single = re.fullmatch(r"material == (\d+)", condition)
        ranged = re.fullmatch(r"material >= (\d+) && material <= (\d+)", condition)
        assert single or ranged, f"unexpected material branch: {condition}"
        low, high = (int(single[1]),) * 2 if single else (int(ranged[1]), int(ranged[2]))
        texture = re.search(r"albedo \*= (\w+)\(", body)
        branches[(low, high)] = texture[1] if texture else None
    return branches


def test_the_shader_decodes_the_scales_python_encodes_with():
    assert _decoding("x") == MATERIAL_CODE_SCALE
    assert _decoding("y") == PATTERN_SCALE_RANGE


@pytest.mark.parametrize("material", MATERIALS)
def test_every_code_survives_the_round_trip_through_a_vertex_colour(material):
    g, b = encode_material(material)
    assert 0.0 <= g <= 1.0 and 0.0 <= b <= 1.0  # a colour channel holds them unclamped
    decoded = int(np.float32(g) * np.float32(_decoding("x")) + np.float32(0.5))  # as GLSL's
    assert decoded == material


def test_each_python_material_selects_its_texture_in_the_shader():
    assert _branches() == {
        (WOOD_X, WOOD_Z): "wood",
        (FABRIC, FABRIC): "fabric",
        (METAL, METAL): "brushed",
        (LEATHER, LEATHER): "leather",
        (PLASTIC, PLASTIC): None,  # matte: plain albedo, a little highlight
    }
    assert (WOOD_X, WOOD_Y, WOOD_Z) == (WOOD_X, WOOD_X + 1, WOOD_X + 2)


def test_wood_grain_runs_along_the_axis_its_code_names():
    """`wood(p, material - k, ...)` must map WOOD_X, WOOD_Y, WOOD_Z to axes 0, 1, 2."""
    offset = re.search(r"wood\(frag_object, material - (\d+)", SOURCE)
    assert offset and int(offset[1]) == WOOD_X
    assert re.search(r"axis == 0 \? p\.yzx : \(axis == 1 \? p\.zxy : p\)", SOURCE), (
        "the grain axes' order changed: check WOOD_X/Y/Z against mesh.frag")


def test_plain_albedo_selects_no_branch():
    assert not any(low <= PLAIN <= high for low, high in _branches())
