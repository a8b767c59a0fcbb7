"""Procedural CAD chairs: a part-based generator whose every chair is a pure function of its
random generator (seeded from (seed, chair id) by the caller).

Designs: four-legged dining chairs (solid, slatted or spindle backs), armchairs, office
swivel chairs on a five-star base, stools with a back, cantilever and sled tube frames,
upholstered lounge chairs; proportions vary continuously within each. The parts and their
materials are `chair_parts`'.

Coordinates: metres, y up, the floor at y = 0, the seat's front toward +z. Parts are placed
so that each one touches the part it is fixed to (legs reach into the seat, posts into the
seat and the back), never floating; `chair_parts.parts_touch` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chair_parts import (
    FABRIC,
    LEATHER,
    METAL,
    PLASTIC,
    WOOD_X,
    WOOD_Y,
    WOOD_Z,
    Chair,
    Part,
    box,
    cushion,
    rotate_x,
    rounded_corner,
    sweep,
    tube,
    wood_box,
)

DESIGNS = ("dining", "armchair", "office", "stool", "cantilever", "sled", "lounge")


@dataclass
class Palette:
    """One chair's materials: its frame, its upholstery, its accents."""

    frame: int
    frame_albedo: float
    soft: int
    soft_albedo: float
    metal_albedo: float


def _palette(rng: np.random.Generator) -> Palette:
    return Palette(frame=int(rng.choice([WOOD_Y, METAL, PLASTIC], p=[0.6, 0.25, 0.15])),
                   frame_albedo=float(rng.uniform(0.25, 0.72)),
                   soft=int(rng.choice([FABRIC, LEATHER])),
                   soft_albedo=float(rng.uniform(0.15, 0.78)),
                   metal_albedo=float(rng.uniform(0.5, 0.8)))


def _frame_part(pal: Palette, lo, hi) -> Part:
    if pal.frame == WOOD_Y:
        return wood_box(lo, hi, pal.frame_albedo)
    return box(lo, hi, pal.frame, pal.frame_albedo)


def _leg(pal: Palette, top, bottom, r_top: float, r_bottom: float, square: bool) -> Part:
    if square:
        top, bottom = np.asarray(top), np.asarray(bottom)
        lo = np.minimum(top, bottom) - r_top
        hi = np.maximum(top, bottom) + r_top
        lo[1], hi[1] = bottom[1], top[1]
        return _frame_part(pal, lo, hi)
    material = WOOD_Y if pal.frame == WOOD_Y else pal.frame
    return tube(bottom, top, r_bottom, r_top, material, pal.frame_albedo)


def _seat(rng, pal: Palette, width, depth, height, thickness, upholstered: bool) -> list[Part]:
    lo, hi = (-width / 2, height - thickness, -depth / 2), (width / 2, height, depth / 2)
    if upholstered:
        board = _frame_part(pal, lo, (hi[0], height - thickness * 0.4, hi[2]))
        pad = cushion((-width / 2 + 0.01, height - thickness * 0.5, -depth / 2 + 0.01),
                      (width / 2 - 0.01, height + thickness * 0.6, depth / 2 - 0.01),
                      float(rng.uniform(0.2, 0.45)), pal.soft, pal.soft_albedo)
        return [board, pad]
    return [_frame_part(pal, lo, hi)]


def _four_legs(rng, pal: Palette, width, depth, height, thickness) -> list[Part]:
    inset = rng.uniform(0.01, 0.05)
    splay = rng.uniform(0.0, 0.06)
    r_top = rng.uniform(0.014, 0.028)
    r_bottom = r_top * rng.uniform(0.5, 1.0)
    square = pal.frame == WOOD_Y and rng.random() < 0.5
    if square:
        splay = 0.0  # square legs stand straight
    top_y = height - thickness + 0.004  # reaches into the seat: fixed, not floating
    parts = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (width / 2 - inset - r_top), sz * (depth / 2 - inset - r_top)
            top = (x, top_y, z)
            bottom = (x + sx * splay, 0.0, z + sz * splay) if not square else (x, 0.0, z)
            parts.append(_leg(pal, top, bottom, r_top, r_bottom, square))
    if rng.random() < 0.5:  # stretchers between the legs, low down
        y = rng.uniform(0.08, 0.2)
        x = width / 2 - inset - r_top + splay * (1 - y / height)
        z = depth / 2 - inset - r_top + splay * (1 - y / height)
        r = r_bottom * 0.7
        material = pal.frame if pal.frame != WOOD_Y else WOOD_X
        parts += [tube((-x, y, sz * z), (x, y, sz * z), r, r, material, pal.frame_albedo)
                  for sz in (-1, 1)]
        parts += [tube((sx * x, y, -z), (sx * x, y, z), r, r, WOOD_Z if material == WOOD_X
                       else material, pal.frame_albedo) for sx in (-1, 1)]
    return parts


def _back(rng, pal: Palette, width, depth, seat_y, height, tilt, style: str) -> list[Part]:
    """A back from the seat's rear edge up to `height` above it, tilted back by `tilt`."""
    z = -depth / 2
    post = rng.uniform(0.014, 0.024)
    pivot = (0, seat_y, z)
    top = seat_y + height
    parts = []
    if style == "upholstered":
        parts.append(cushion((-width / 2, seat_y - 0.01, z - 0.02),
                             (width / 2, top, z + rng.uniform(0.06, 0.12)),
                             float(rng.uniform(0.15, 0.4)), pal.soft, pal.soft_albedo))
    elif style == "panel":
        parts.append(_frame_part(pal, (-width / 2, seat_y - 0.01, z),
                                 (width / 2, top, z + rng.uniform(0.015, 0.03))))
    else:
        for sx in (-1, 1):
            x = sx * (width / 2 - post)
            parts.append(_frame_part(pal, (x - post, seat_y - 0.01, z),
                                     (x + post, top, z + 2 * post)))
        rail = rng.uniform(0.04, 0.09)
        parts.append(_frame_part(pal, (-width / 2 + post, top - rail, z + 0.002),
                                 (width / 2 - post, top, z + 2 * post - 0.002)))
        bottom = seat_y + rng.uniform(0.04, 0.1)
        inner = width - 4 * post
        if style == "slats":
            n = int(rng.integers(1, 4))
            span = top - rail - bottom
            for k in range(n):
                y0 = bottom + span * (k + 0.25) / n
                parts.append(_frame_part(pal, (-width / 2 + post, y0, z + 0.004),
                                         (width / 2 - post, y0 + span * 0.45 / n,
                                          z + 2 * post - 0.004)))
            parts.append(_frame_part(pal, (-width / 2 + post, bottom, z + 0.004),
                                     (width / 2 - post, bottom + 0.03, z + 2 * post - 0.004)))
        else:  # spindles: thin vertical rods between a low rail and the top rail
            parts.append(_frame_part(pal, (-width / 2 + post, bottom, z + 0.004),
                                     (width / 2 - post, bottom + 0.03, z + 2 * post - 0.004)))
            n = int(rng.integers(3, 8))
            r = rng.uniform(0.006, 0.011)
            for k in range(n):
                x = -inner / 2 + inner * (k + 0.5) / n
                parts.append(tube((x, bottom + 0.02, z + post), (x, top - rail + 0.005, z + post),
                                  r, r, WOOD_Y if pal.frame == WOOD_Y else pal.frame,
                                  pal.frame_albedo, sides=8))
    return [rotate_x(p, tilt, pivot) for p in parts]


def _arms(rng, pal: Palette, width, depth, seat_y, back_tilt) -> list[Part]:
    """Armrests over each side of the seat, each on a front support that stands on the seat."""
    height = rng.uniform(0.18, 0.26)
    thick = rng.uniform(0.025, 0.05)
    wide = rng.uniform(0.04, 0.07)
    back_z = -depth / 2 + np.tan(np.radians(back_tilt)) * -height - 0.01
    parts = []
    for sx in (-1, 1):
        x = sx * (width / 2 - wide / 2)
        y = seat_y + height
        parts.append(_frame_part(pal, (x - wide / 2, y, back_z),
                                 (x + wide / 2, y + thick, depth / 2 - 0.01)))
        front = depth / 2 - rng.uniform(0.04, 0.08)
        r = rng.uniform(0.012, 0.02)
        parts.append(_leg(pal, (x, y + 0.004, front), (x, seat_y - 0.01, front), r, r,
                          pal.frame == WOOD_Y))
    return parts


def _proportions(rng, seat_height=(0.42, 0.5)):
    return dict(width=rng.uniform(0.4, 0.55), depth=rng.uniform(0.38, 0.52),
                height=rng.uniform(*seat_height), thickness=rng.uniform(0.025, 0.06))


def dining(rng, pal: Palette) -> list[Part]:
    p = _proportions(rng)
    style = str(rng.choice(["panel", "slats", "spindles", "upholstered"]))
    tilt = rng.uniform(0, 14)
    parts = _seat(rng, pal, p["width"], p["depth"], p["height"], p["thickness"],
                  upholstered=rng.random() < 0.4)
    parts += _four_legs(rng, pal, p["width"], p["depth"], p["height"], p["thickness"])
    parts += _back(rng, pal, p["width"], p["depth"], p["height"], rng.uniform(0.35, 0.6), tilt,
                   style)
    if rng.random() < 0.3:
        parts += _arms(rng, pal, p["width"], p["depth"], p["height"], tilt)
    return parts


def armchair(rng, pal: Palette) -> list[Part]:
    p = _proportions(rng, (0.4, 0.46))
    width = p["width"] + 0.1
    tilt = rng.uniform(5, 18)
    parts = _seat(rng, pal, width, p["depth"] + 0.05, p["height"], p["thickness"] + 0.03, True)
    parts += _four_legs(rng, pal, width, p["depth"] + 0.05, p["height"], p["thickness"] + 0.03)
    parts += _back(rng, pal, width, p["depth"] + 0.05, p["height"], rng.uniform(0.4, 0.6), tilt,
                   str(rng.choice(["upholstered", "panel", "slats"])))
    parts += _arms(rng, pal, width, p["depth"] + 0.05, p["height"], tilt)
    return parts


def office(rng, pal: Palette) -> list[Part]:
    metal = rng.uniform(0.5, 0.8)
    height = rng.uniform(0.45, 0.55)
    width, depth = rng.uniform(0.44, 0.54), rng.uniform(0.42, 0.5)
    hub = rng.uniform(0.1, 0.16)
    base_radius = rng.uniform(0.26, 0.34)
    leg_material = int(rng.choice([METAL, PLASTIC]))
    parts = [tube((0, hub - 0.03, 0), (0, height - 0.05, 0), rng.uniform(0.02, 0.03), None,
                  METAL, metal),
             tube((0, hub - 0.06, 0), (0, hub, 0), 0.05, 0.04, leg_material, metal * 0.5)]
    for k in range(5):  # the five-star base: spokes from the hub to casters
        a = 2 * np.pi * k / 5 + np.pi / 2
        end = np.array([np.cos(a) * base_radius, 0.06, np.sin(a) * base_radius])
        parts.append(tube((0, hub - 0.03, 0), end, 0.022, 0.016, leg_material, metal * 0.6))
        parts.append(cushion(end + (-0.025, -0.06, -0.025), end + (0.025, -0.01, 0.025), 1.0,
                             PLASTIC, 0.1, rows=6, columns=10))
    parts.append(box((-0.08, height - 0.06, -0.08), (0.08, height - 0.03, 0.08), METAL, metal))
    parts.append(cushion((-width / 2, height - 0.035, -depth / 2), (width / 2, height + 0.06,
                         depth / 2), float(rng.uniform(0.2, 0.4)), pal.soft, pal.soft_albedo))
    back_height = rng.uniform(0.35, 0.6)
    tilt = rng.uniform(4, 15)
    gap = rng.uniform(0.06, 0.12)
    z = -depth / 2
    support = [box((-0.03, height - 0.05, z - 0.035), (0.03, height - 0.02, -0.06), METAL, metal),
               box((-0.03, height - 0.05, z - 0.035), (0.03, height + gap + 0.08, z - 0.01),
                   METAL, metal)]
    back = cushion((-width / 2 + 0.02, height + gap, z - 0.04),
                   (width / 2 - 0.02, height + gap + back_height, z + 0.03),
                   float(rng.uniform(0.2, 0.45)), pal.soft, pal.soft_albedo)
    parts += support + [rotate_x(back, tilt, (0, height + gap, z))]
    if rng.random() < 0.6:
        for sx in (-1, 1):
            x = sx * (width / 2 + 0.015)
            parts.append(box((x - 0.015, height - 0.04, -0.06), (x + 0.015, height + 0.2, -0.03),
                             PLASTIC, 0.12))
            parts.append(box((x - 0.03, height + 0.2, -0.16), (x + 0.03, height + 0.23, 0.1),
                             PLASTIC, 0.15))
            inner, outer = sorted((sx * 0.05, x))  # a bar from the seat plate to the post
            parts.append(box((inner, height - 0.045, -0.06), (outer, height - 0.025, -0.03),
                             METAL, metal))
    return parts


def stool(rng, pal: Palette) -> list[Part]:
    height = rng.uniform(0.62, 0.8)
    radius = rng.uniform(0.17, 0.23)
    thickness = rng.uniform(0.03, 0.06)
    seat = tube((0, height - thickness, 0), (0, height, 0), radius, radius,
                pal.soft if rng.random() < 0.4 else (WOOD_X if pal.frame == WOOD_Y else pal.frame),
                pal.frame_albedo, sides=24)
    parts = [seat]
    legs = int(rng.choice([3, 4]))
    splay = rng.uniform(0.03, 0.1)
    r = rng.uniform(0.014, 0.022)
    ring_y = rng.uniform(0.2, 0.3)
    for k in range(legs):
        a = 2 * np.pi * k / legs + np.pi / legs
        d = np.array([np.cos(a), 0, np.sin(a)])
        top = d * (radius * 0.7) + (0, height - thickness + 0.004, 0)
        bottom = d * (radius * 0.7 + splay)
        parts.append(_leg(pal, top, bottom, r, r * 0.8, False))
        # a foot rail between neighbouring legs
        b = 2 * np.pi * (k + 1) / legs + np.pi / legs
        d2 = np.array([np.cos(b), 0, np.sin(b)])
        frac = 1 - ring_y / height
        p0 = d * (radius * 0.7 + splay * frac) + (0, ring_y, 0)
        p1 = d2 * (radius * 0.7 + splay * frac) + (0, ring_y, 0)
        parts.append(tube(p0, p1, r * 0.6, None, METAL if pal.frame == METAL else pal.frame,
                          pal.frame_albedo, sides=8))
    back_h = rng.uniform(0.15, 0.3)
    z = -radius * 0.8
    for sx in (-1, 1):
        parts.append(_leg(pal, (sx * radius * 0.5, height + back_h, z),
                          (sx * radius * 0.5, height - 0.01, z), 0.012, 0.012, False))
    parts.append(_frame_part(pal, (-radius * 0.8, height + back_h - 0.07, z - 0.02),
                             (radius * 0.8, height + back_h + 0.01, z + 0.015)))
    return parts


def cantilever(rng, pal: Palette) -> list[Part]:
    """A tube bent into an S: along the floor, up the front, under the seat, up the back."""
    width, depth = rng.uniform(0.42, 0.5), rng.uniform(0.4, 0.48)
    height = rng.uniform(0.42, 0.47)
    back_h = rng.uniform(0.35, 0.5)
    r = rng.uniform(0.01, 0.014)
    tilt = rng.uniform(5, 15)
    lean = np.tan(np.radians(tilt)) * back_h
    seat_under = height - 0.03 - r
    parts = []
    for sx in (-1, 1):
        x = sx * (width / 2 - r)
        floor_back, floor_front = (x, r, -depth / 2 + 0.02), (x, r, depth / 2 + 0.02)
        seat_front, seat_back = (x, seat_under, depth / 2 - 0.02), (x, seat_under, -depth / 2)
        back_top = (x, seat_under + back_h, -depth / 2 - lean)
        points = (rounded_corner(floor_back, floor_front, seat_front, 0.06)
                  + rounded_corner(floor_front, seat_front, seat_back, 0.08)
                  + rounded_corner(seat_front, seat_back, back_top, 0.06) + [back_top])
        parts += sweep([floor_back] + points, r, METAL, pal.metal_albedo)
    seat = cushion((-width / 2 + 0.005, seat_under + r * 0.5, -depth / 2 + 0.01),
                   (width / 2 - 0.005, height + 0.01, depth / 2 - 0.03), 0.25,
                   pal.soft, pal.soft_albedo) if rng.random() < 0.6 else \
        _frame_part(pal, (-width / 2, seat_under + r * 0.5, -depth / 2 + 0.01),
                    (width / 2, height, depth / 2 - 0.03))
    back = cushion((-width / 2 + 0.005, seat_under + back_h * 0.4, -depth / 2 - r * 2),
                   (width / 2 - 0.005, seat_under + back_h, -depth / 2 + r),
                   0.25, pal.soft, pal.soft_albedo)
    parts += [seat, rotate_x(back, tilt, (0, seat_under, -depth / 2))]
    return parts


def sled(rng, pal: Palette) -> list[Part]:
    """Two closed runners (floor, front, seat, back legs) under a moulded seat and back."""
    width, depth = rng.uniform(0.42, 0.5), rng.uniform(0.4, 0.48)
    height = rng.uniform(0.43, 0.47)
    r = rng.uniform(0.008, 0.012)
    under = height - 0.02 - r
    parts = []
    for sx in (-1, 1):
        x = sx * (width / 2 - 0.03)
        loop = [(x, under, -depth / 2 + 0.04), (x, r, -depth / 2 + 0.02),
                (x, r, depth / 2 - 0.02), (x, under, depth / 2 - 0.04),
                (x, under, -depth / 2 + 0.04)]
        parts += sweep(loop, r, METAL, pal.metal_albedo)
    shell = int(rng.choice([PLASTIC, WOOD_Z, pal.soft]))
    albedo = float(rng.uniform(0.1, 0.78))
    parts.append(cushion((-width / 2, under + r * 0.5, -depth / 2), (width / 2, height + 0.01,
                         depth / 2), 0.2, shell, albedo))
    tilt = rng.uniform(6, 16)
    back = cushion((-width / 2, height - 0.02, -depth / 2 - 0.005),
                   (width / 2, height + rng.uniform(0.3, 0.45), -depth / 2 + 0.03), 0.2,
                   shell, albedo)
    parts.append(rotate_x(back, tilt, (0, height, -depth / 2)))
    return parts


def lounge(rng, pal: Palette) -> list[Part]:
    width, depth = rng.uniform(0.6, 0.85), rng.uniform(0.6, 0.8)
    base = rng.uniform(0.12, 0.22)
    seat_top = base + rng.uniform(0.15, 0.22)
    parts = []
    if rng.random() < 0.5:  # short legs under a plinth
        leg = rng.uniform(0.06, 0.14)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (width / 2 - 0.06), sz * (depth / 2 - 0.06)
                parts.append(_leg(pal, (x, leg + 0.01, z), (x, 0, z), 0.02, 0.012, False))
        base_lo = leg
    else:
        base_lo = 0.0
    arm_w = rng.uniform(0.08, 0.16)
    arm_h = seat_top + rng.uniform(0.1, 0.2)
    soft, albedo = pal.soft, pal.soft_albedo
    roundness = float(rng.uniform(0.15, 0.35))
    parts.append(cushion((-width / 2, base_lo, -depth / 2), (width / 2, base_lo + base,
                         depth / 2), roundness, soft, albedo))
    parts.append(cushion((-width / 2 + arm_w - 0.01, base_lo + base - 0.02, -depth / 2 + 0.12),
                         (width / 2 - arm_w + 0.01, base_lo + seat_top, depth / 2),
                         roundness, soft, albedo * 0.95))
    for sx in (-1, 1):
        x0, x1 = sorted((sx * width / 2, sx * (width / 2 - arm_w)))
        parts.append(cushion((x0, base_lo + base - 0.02, -depth / 2), (x1, base_lo + arm_h,
                             depth / 2), roundness, soft, albedo))
    tilt = rng.uniform(8, 22)
    back = cushion((-width / 2, base_lo + base - 0.03, -depth / 2),
                   (width / 2, base_lo + seat_top + rng.uniform(0.35, 0.55), -depth / 2 + 0.16),
                   roundness, soft, albedo)
    parts.append(rotate_x(back, tilt, (0, base_lo + base, -depth / 2 + 0.08)))
    return parts


BUILDERS = {"dining": dining, "armchair": armchair, "office": office, "stool": stool,
            "cantilever": cantilever, "sled": sled, "lounge": lounge}
DESIGN_WEIGHTS = (0.3, 0.14, 0.14, 0.1, 0.1, 0.08, 0.14)


def build_chair(rng: np.random.Generator) -> Chair:
    """One chair from its own generator (seeded from (seed, chair id) by the caller)."""
    design = str(rng.choice(DESIGNS, p=DESIGN_WEIGHTS))
    pal = _palette(rng)
    return Chair(design, BUILDERS[design](rng, pal))
