"""Procedural cartoon faces for the demo data set, their expression drawn in local facial regions.

Each of the seven expressions is encoded redundantly over four facial regions (brows, eyes,
nose, mouth) so that hiding any single region still leaves every pair of classes separable,
which is the situation Point Adversarial Self Mining is designed to exploit.  Faces carry
identity, pose, lighting, noise and background nuisance so that learning them is not trivial.
Everything is drawn with PIL at 4x resolution and downsampled, and is deterministic per seed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pasm.data.labels import CLASSES, NUM_CLASSES

REGIONS: tuple[str, ...] = ("brows", "eyes", "nose", "mouth")
"""Facial regions carrying expression evidence; occluder indices refer to this order."""

CLASS_CODES: dict[str, dict[str, str]] = {
    "angry": {"brows": "lowered_v", "eyes": "narrow", "nose": "plain", "mouth": "tight"},
    "disgust": {"brows": "lowered_flat", "eyes": "normal", "nose": "wrinkled", "mouth": "raised_lip"},
    "fear": {"brows": "raised_inner", "eyes": "wide", "nose": "plain", "mouth": "stretched"},
    "happy": {"brows": "neutral", "eyes": "smiling", "nose": "plain", "mouth": "smile"},
    "sad": {"brows": "raised_inner", "eyes": "normal", "nose": "plain", "mouth": "frown"},
    "surprise": {"brows": "raised_arched", "eyes": "wide", "nose": "plain", "mouth": "open_o"},
    "neutral": {"brows": "neutral", "eyes": "normal", "nose": "plain", "mouth": "flat"},
}
"""Feature state of every region per class; any two classes differ in at least two regions."""

_SUPERSAMPLE = 4
_MIN_SIZE = 32

# Geometry of the feature states.  Vertical quantities are in units of the face half-height b,
# horizontal ones in units of the face half-width a, both relative to the face centre (y down).
# Brows: (inner end y, outer end y, arch height) relative to the eye line.
_BROWS: dict[str, tuple[float, float, float]] = {
    "neutral": (-0.31, -0.32, 0.05),
    "lowered_v": (-0.25, -0.39, 0.0),
    "lowered_flat": (-0.255, -0.27, 0.01),
    "raised_inner": (-0.47, -0.31, 0.02),
    "raised_arched": (-0.43, -0.43, 0.09),
}
# Eyes: (upper-lid height, lower-lid depth, inner-corner droop of the upper lid).  A negative
# lower-lid depth pushes the lower lid up into a crescent (smiling eyes).
_EYES: dict[str, tuple[float, float, float]] = {
    "normal": (0.075, 0.055, 0.0),
    "narrow": (0.03, 0.02, 0.025),
    "wide": (0.12, 0.095, 0.0),
    "smiling": (0.085, -0.06, 0.0),
}
# Mouth: (half-width in units of the mouth width, corner y, centre-line sag, upper opening,
# lower opening, roundness exponent, one-sided upper-lip raise, lip-line scale).
_MOUTHS: dict[str, tuple[float, ...]] = {
    "flat": (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0),
    "tight": (0.7, 0.01, 0.0, 0.0, 0.0, 1.0, 0.0, 0.65),
    "raised_lip": (0.95, 0.0, 0.0, 0.0, 0.03, 1.0, 0.1, 1.0),
    "stretched": (1.3, 0.025, 0.0, 0.05, 0.07, 0.55, 0.0, 1.0),
    "smile": (1.12, -0.085, 0.09, 0.0, 0.05, 1.0, 0.0, 1.0),
    "frown": (0.95, 0.075, -0.075, 0.0, 0.0, 1.0, 0.0, 1.0),
    "open_o": (0.5, 0.0, 0.0, 0.13, 0.15, 0.5, 0.0, 1.0),
}
# Fixed region boxes (vertical extent, b units, relative to the eye line) covering every state,
# so an occluder's shape reveals nothing about the expression behind it.
_REGION_V: dict[str, tuple[float, float]] = {
    "brows": (-0.60, -0.205),
    "eyes": (-0.145, 0.115),
    "nose": (0.175, 0.455),
    "mouth": (0.50, 0.91),
}
_MOUTH_LINE = 0.70  # mouth centre below the eye line (b units)

_SKIN_TONES = np.array(
    [
        (255, 224, 196),
        (241, 194, 167),
        (224, 172, 138),
        (198, 134, 99),
        (161, 102, 68),
        (118, 74, 48),
        (86, 56, 38),
    ],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [
        (20, 16, 14),
        (54, 36, 24),
        (96, 64, 38),
        (150, 110, 62),
        (214, 182, 120),
        (160, 70, 36),
        (150, 150, 150),
        (230, 228, 220),
    ],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array(
    [(60, 40, 25), (100, 70, 40), (60, 110, 160), (70, 120, 80), (30, 25, 25)], dtype=np.float64
)


def _rgb(c: np.ndarray | tuple[float, ...]) -> tuple[int, int, int, int]:
    """Clamp a float colour to an opaque PIL RGBA tuple; PIL wants plain ints."""
    r, g, b = (int(min(255, max(0, round(float(v))))) for v in c[:3])
    return (r, g, b, 255)


def _mix(c1: np.ndarray, c2: np.ndarray | tuple[float, ...], w: float) -> np.ndarray:
    """Blend colour c1 towards c2 by weight w, for shades and feature colours."""
    return (1.0 - w) * np.asarray(c1, dtype=np.float64) + w * np.asarray(c2, dtype=np.float64)


_QUARTER = np.linspace(0.0, 90.0, 6)


@functools.lru_cache(maxsize=None)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and sines of n equally spaced angles (cached: ellipses are drawn often)."""
    ang = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.cos(ang), np.sin(ang)


@functools.lru_cache(maxsize=None)
def _lin(start: float, stop: float, n: int) -> np.ndarray:
    """Cached, read-only np.linspace for the fixed curve parametrisations."""
    out = np.linspace(start, stop, n)
    out.setflags(write=False)
    return out


class _Face:
    """Per-image identity, layout and pose; maps face coordinates to supersampled pixels."""

    def __init__(self, rng: np.random.Generator, s: int) -> None:
        # Pose: in-plane rotation and scale about the image centre, plus a shift.
        theta = math.radians(rng.uniform(-10.0, 10.0))
        scale = rng.uniform(0.92, 1.08)
        self.k = scale
        self.rc, self.rs = math.cos(theta) * scale, math.sin(theta) * scale
        shift = rng.uniform(-3.0, 3.0, 2) * s / 64.0
        self.ox, self.oy = s / 2.0 + shift[0], s / 2.0 + shift[1]
        self.dy = 0.02 * s  # the face centre sits slightly below the image centre
        # Identity.
        self.a = s * 0.28 * rng.uniform(0.9, 1.1)
        self.b = s * 0.36 * rng.uniform(0.93, 1.07)
        self.eye_y = rng.uniform(-0.02, 0.02)
        self.eye_x = rng.uniform(0.36, 0.44)
        self.eye_w = rng.uniform(0.17, 0.21)
        self.brow_len = rng.uniform(0.2, 0.26)
        self.brow_th = rng.uniform(0.065, 0.09)
        self.mouth_y = self.eye_y + _MOUTH_LINE + rng.uniform(-0.015, 0.02)
        self.mouth_w = rng.uniform(0.3, 0.35)
        self.lip_th = rng.uniform(0.04, 0.055)
        tone = rng.uniform(0, len(_SKIN_TONES) - 1)
        lo = int(tone)
        hi = min(lo + 1, len(_SKIN_TONES) - 1)
        self.skin = _mix(_SKIN_TONES[lo], _SKIN_TONES[hi], tone - lo) * rng.uniform(0.93, 1.05, 3)
        self.hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
        self.hair_style = int(rng.integers(4))
        self.iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]
        self.clothes = rng.uniform(20, 235, 3)
        self.feature_dark = _mix(self.skin, (12, 8, 6), rng.uniform(0.85, 0.95))
        self.brow_colour = _mix(self.hair, (12, 8, 6), rng.uniform(0.45, 0.8))
        self.lip = _mix(self.skin, (120, 30, 40), rng.uniform(0.45, 0.7))

    def pts(self, u: np.ndarray | list[float], v: np.ndarray | list[float]) -> list[float]:
        """Flat pixel coordinates [x0, y0, x1, ...] of posed face coordinates (u, v)."""
        x = np.asarray(u, dtype=np.float64) * self.a
        y = np.asarray(v, dtype=np.float64) * self.b + self.dy
        out = np.empty((x.size, 2))
        out[:, 0] = self.ox + self.rc * x - self.rs * y
        out[:, 1] = self.oy + self.rs * x + self.rc * y
        return out.ravel().tolist()

    def stroke(
        self,
        d: ImageDraw.ImageDraw,
        u: np.ndarray,
        v: np.ndarray,
        thickness_b: float,
        fill: tuple[int, int, int, int],
    ) -> None:
        """Draw a smooth thick curve as one ribbon polygon (much cheaper than curved joints)."""
        x = np.asarray(u, dtype=np.float64) * self.a
        y = np.asarray(v, dtype=np.float64) * self.b + self.dy
        p = np.column_stack([self.ox + self.rc * x - self.rs * y, self.oy + self.rs * x + self.rc * y])
        tangent = np.empty_like(p)
        tangent[1:-1] = p[2:] - p[:-2]
        tangent[0] = p[1] - p[0]
        tangent[-1] = p[-1] - p[-2]
        normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
        normal *= (0.5 * max(1.0, thickness_b * self.b * self.k)) / np.maximum(
            np.linalg.norm(normal, axis=1, keepdims=True), 1e-9
        )
        d.polygon(np.concatenate([p + normal, (p - normal)[::-1]]).ravel().tolist(), fill=fill)

    def width(self, frac_b: float) -> int:
        """Line width in pixels for a thickness given in face half-heights."""
        return max(1, int(round(frac_b * self.b * self.k)))

    def ellipse(self, u0: float, v0: float, u1: float, v1: float, n: int = 32) -> list[float]:
        """Polygon of an axis-aligned face-coordinate ellipse (rotated with the pose)."""
        cos, sin = _unit_circle(n)
        return self.pts((u0 + u1) / 2 + (u1 - u0) / 2 * cos, (v0 + v1) / 2 + (v1 - v0) / 2 * sin)

    def rect(self, u0: float, v0: float, u1: float, v1: float, radius_b: float = 0.0) -> list[float]:
        """Polygon of a face-coordinate rectangle with corners rounded by radius_b half-heights."""
        r = min(radius_b * self.b, (u1 - u0) * self.a / 2, (v1 - v0) * self.b / 2)
        if r <= 0:
            return self.pts([u0, u1, u1, u0], [v0, v0, v1, v1])
        ru, rv = r / self.a, r / self.b
        us, vs = [], []
        for cu, cv, start in (
            (u1 - ru, v1 - rv, 0),
            (u0 + ru, v1 - rv, 90),
            (u0 + ru, v0 + rv, 180),
            (u1 - ru, v0 + rv, 270),
        ):
            ang = np.radians(start + _QUARTER)
            us.append(cu + ru * np.cos(ang))
            vs.append(cv + rv * np.sin(ang))
        return self.pts(np.concatenate(us), np.concatenate(vs))


def _draw_head(d: ImageDraw.ImageDraw, f: _Face, rng: np.random.Generator) -> None:
    """Draw shoulders, neck, back hair, ears, face oval and fringe: the identity nuisance."""
    d.polygon(f.ellipse(-2.3, 1.45, 2.3, 2.9, 40), fill=_rgb(f.clothes))
    d.polygon(f.rect(-0.42, 0.5, 0.42, 1.8), fill=_rgb(f.skin * 0.86))
    hair = _rgb(f.hair)
    if f.hair_style == 1:  # long hair falling behind the shoulders
        d.polygon(f.rect(-1.28, -1.15, 1.28, 1.55, 0.7), fill=hair)
    elif f.hair_style == 2:  # big rounded volume
        d.polygon(f.ellipse(-1.35, -1.35, 1.35, 0.55, 40), fill=hair)
    else:
        d.polygon(f.ellipse(-1.1, -1.2, 1.1, 0.1, 40), fill=hair)
    if f.hair_style != 1:
        for side in (-1, 1):
            d.polygon(f.ellipse(side * 0.88, -0.15, side * 1.12, 0.28, 16), fill=_rgb(f.skin * 0.93))
    d.polygon(f.ellipse(-1, -1, 1, 1, 48), fill=_rgb(f.skin))
    # Fringe: stays above v = -0.66 so it never touches the brows.
    if f.hair_style == 3:  # side parting
        side = 1 if rng.random() < 0.5 else -1
        d.polygon(
            f.pts(
                [side * -1.05, side * 0.2, side * 1.05, side * 1.05, side * -1.05],
                [-0.72, -0.68, -0.95, -1.3, -1.3],
            ),
            fill=hair,
        )
    else:
        low = rng.uniform(-0.74, -0.67)
        d.polygon(f.ellipse(-1.02, low - 0.8, 1.02, low, 40), fill=hair)


def _draw_brows(d: ImageDraw.ImageDraw, f: _Face, state: str, t: float) -> None:
    """Draw both eyebrows as tapered curves, interpolated from neutral by intensity t."""
    n_in, n_out, n_arch = _BROWS["neutral"]
    s_in, s_out, s_arch = _BROWS[state]
    y_in = n_in + t * (s_in - n_in)
    y_out = n_out + t * (s_out - n_out)
    arch = n_arch + t * (s_arch - n_arch)
    knit = 0.05 * t if state in ("lowered_v", "lowered_flat") else 0.0  # brows drawn together
    s = _lin(0.0, 1.0, 12)
    centre = f.eye_y + y_in + (y_out - y_in) * s - arch * 4 * s * (1 - s)
    half_th = 0.5 * f.brow_th * (1.0 - 0.35 * s)
    inner = f.eye_x - f.brow_len - knit
    u = inner + (2 * f.brow_len + knit) * s
    for side in (-1, 1):
        d.polygon(
            f.pts(
                np.concatenate([side * u, side * u[::-1]]),
                np.concatenate([centre - half_th, (centre + half_th)[::-1]]),
            ),
            fill=_rgb(f.brow_colour),
        )


def _clipped_disc(
    u_c: float, v_c: float, r_u: float, r_v: float, us: np.ndarray, upper: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Outline of a disc clipped to the region between two lid curves, or None if hidden."""
    uu = np.linspace(max(u_c - r_u, us[0]), min(u_c + r_u, us[-1]), 15)
    half = r_v * np.sqrt(np.clip(1.0 - ((uu - u_c) / r_u) ** 2, 0.0, 1.0))
    top = np.maximum(v_c - half, np.interp(uu, us, upper))
    bot = np.minimum(v_c + half, np.interp(uu, us, lower))
    keep = bot > top
    if keep.sum() < 2:
        return None
    uu, top, bot = uu[keep], top[keep], bot[keep]
    return np.concatenate([uu, uu[::-1]]), np.concatenate([top, bot[::-1]])


def _draw_eyes(d: ImageDraw.ImageDraw, f: _Face, state: str, t: float, gaze: float) -> None:
    """Draw both eyes (sclera, clipped iris and pupil, lids) with lid shapes set by the state."""
    n_up, n_lo, n_droop = _EYES["normal"]
    s_up, s_lo, s_droop = _EYES[state]
    up = n_up + t * (s_up - n_up)
    lo = n_lo + t * (s_lo - n_lo)
    droop = n_droop + t * (s_droop - n_droop)
    s = _lin(-1.0, 1.0, 15)
    bump = 1.0 - s**2
    r_px = 0.55 * f.eye_w * f.a
    lid = _rgb(f.feature_dark)
    lower_lid = _rgb(_mix(f.skin, f.feature_dark, 0.6))
    for side in (-1, 1):
        us = side * f.eye_x + s * f.eye_w
        # The upper lid drops towards the inner corner (at side * s = -1) in the angry squint.
        lower = f.eye_y + lo * bump
        upper = np.minimum(f.eye_y - up * bump + droop * 0.5 * (1.0 - side * s), lower)
        if float(np.max(lower - upper)) * f.b > 1.0:
            d.polygon(
                f.pts(np.concatenate([us, us[::-1]]), np.concatenate([upper, lower[::-1]])),
                fill=(250, 248, 244, 255),
            )
            iu = side * f.eye_x + gaze * 0.25 * f.eye_w
            iv = f.eye_y + 0.2 * (lo - up)
            for radius, colour in ((r_px, _rgb(f.iris)), (0.45 * r_px, (10, 8, 8, 255))):
                disc = _clipped_disc(iu, iv, radius / f.a, radius / f.b, us, upper, lower)
                if disc is not None:
                    d.polygon(f.pts(*disc), fill=colour)
        f.stroke(d, us, upper, 0.03, lid)
        f.stroke(d, us, lower, 0.015, lower_lid)


def _draw_nose(d: ImageDraw.ImageDraw, f: _Face, state: str, t: float) -> None:
    """Draw nostrils and tip; the wrinkled state adds bridge creases and flared nostrils."""
    shade = _rgb(_mix(f.skin, f.feature_dark, 0.45))
    dark = _rgb(_mix(f.skin, f.feature_dark, 0.85))
    wrinkled = state == "wrinkled"
    flare = 0.35 * t if wrinkled else 0.0
    y0 = f.eye_y
    d.line(f.pts([0.07, 0.1], [y0 + 0.22, y0 + 0.36]), fill=shade, width=f.width(0.02))
    s = _lin(-1.0, 1.0, 9)
    f.stroke(d, s * 0.1, y0 + 0.42 + 0.025 * (1 - s**2), 0.02, shade)
    for side in (-1, 1):
        nu, nv = side * (0.1 + 0.03 * flare), y0 + 0.4 - 0.02 * flare
        ru, rv = 0.055 * (1 + flare), 0.025 * (1 + flare)
        d.polygon(f.ellipse(nu - ru, nv - rv, nu + ru, nv + rv, 12), fill=dark)
    if wrinkled:
        crease = _rgb(_mix(f.skin, f.feature_dark, 0.45 + 0.5 * t))
        cs = _lin(-1.0, 1.0, 7)
        for k, v in enumerate((0.22, 0.275, 0.33)):
            half = 0.12 + 0.02 * k
            f.stroke(d, cs * half, y0 + v - 0.025 * (1 - cs**2), 0.03, crease)


def _draw_mouth(d: ImageDraw.ImageDraw, f: _Face, state: str, t: float, side: int, smile_open: float) -> None:
    """Draw the mouth from a parametric lip model interpolated from the flat mouth by t."""
    neutral = np.asarray(_MOUTHS["flat"])
    target = np.asarray(_MOUTHS[state], dtype=np.float64).copy()
    if state == "smile":
        target[4] *= smile_open
    half_w, corner, sag, up, lo, rnd, raise_, lip_scale = neutral + t * (target - neutral)
    s = _lin(-1.0, 1.0, 25)
    us = s * half_w * f.mouth_w
    shape = np.clip(1.0 - s**2, 0.0, 1.0) ** rnd
    centre = f.mouth_y + corner + sag * (1.0 - s**2)
    bump = np.exp(-(((s - side * 0.4) / 0.35) ** 2)) * (1.0 - s**2)
    upper = centre - up * shape - raise_ * bump
    lower = centre + lo * shape
    lip_th = f.lip_th * lip_scale
    lip = _rgb(f.lip)
    if float(np.max(lower - upper)) * f.b > 2.0:
        d.polygon(
            f.pts(np.concatenate([us, us[::-1]]), np.concatenate([upper, lower[::-1]])),
            fill=(55, 18, 24, 255),
        )
        teeth = np.minimum(upper + 0.045, lower)  # upper teeth just under the upper lip
        d.polygon(
            f.pts(np.concatenate([us, us[::-1]]), np.concatenate([upper, teeth[::-1]])),
            fill=(236, 232, 222, 255),
        )
        f.stroke(d, us, lower, lip_th, lip)
    f.stroke(d, us, upper, lip_th, lip)


def _region_box(f: _Face, region: str) -> tuple[float, float, float, float]:
    """Face-coordinate box (u0, v0, u1, v1) that contains the region in every state."""
    v0, v1 = _REGION_V[region]
    if region == "mouth":
        half = 1.3 * f.mouth_w + 0.07
        return (-half, v0 + f.mouth_y - _MOUTH_LINE, half, v1 + f.mouth_y - _MOUTH_LINE)
    if region == "brows":
        half = f.eye_x + f.brow_len + 0.05
    elif region == "eyes":
        half = f.eye_x + f.eye_w + 0.05
    else:
        half = 0.22
    return (-half, v0 + f.eye_y, half, v1 + f.eye_y)


def _draw_occluder(d: ImageDraw.ImageDraw, f: _Face, region: str, rng: np.random.Generator) -> None:
    """Draw an opaque random occluder (hand, band, scarf, hat, sunglasses) over one region."""
    u0, v0, u1, v1 = _region_box(f, region)
    margin = 0.015
    v0 -= margin
    v1 += margin
    u0 -= rng.uniform(0.0, 0.6)
    u1 += rng.uniform(0.0, 0.6)
    if region == "brows" and rng.random() < 0.5:
        v0 = -1.4  # a hat or cap pulled down to the brows
    if region == "mouth" and rng.random() < 0.5:
        v1 = rng.uniform(1.0, 1.5)  # a scarf or mask covering the chin
    kind = int(rng.integers(3))
    if kind == 0:  # a hand in some skin tone, with finger creases
        colour = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.85, 1.05)
    else:
        colour = rng.uniform(0, 255, 3)
    fill = _rgb(colour)
    if region == "eyes" and kind == 2:  # sunglasses: two lenses, a bridge and the arms
        half = f.eye_w + 0.07
        for side in (-1, 1):
            d.polygon(f.rect(side * f.eye_x - half, v0, side * f.eye_x + half, v1, 0.05), fill=fill)
        d.polygon(f.rect(-f.eye_x, v0 + 0.02, f.eye_x, v0 + 0.07), fill=fill)
        for side in (-1, 1):
            d.line(
                f.pts([side * (f.eye_x + half), side * 1.02], [v0 + 0.04, v0 + 0.02]),
                fill=fill,
                width=f.width(0.03),
            )
        return
    d.polygon(f.rect(u0, v0, u1, v1, 0.3 * min(v1 - v0, (u1 - u0) * f.a / f.b)), fill=fill)
    if kind == 0:
        crease = _rgb(colour * 0.72)
        for k in (1, 2, 3):
            v = v0 + (v1 - v0) * k / 4
            d.line(f.pts([u0 + 0.1, u1 - 0.25], [v, v]), fill=crease, width=f.width(0.015))
    elif kind == 1:  # patterned fabric
        stripe = _rgb(_mix(colour, rng.uniform(0, 255, 3), 0.5))
        step = rng.uniform(0.12, 0.25)
        u = u0 + step / 2
        while u < u1 - 0.15:
            d.line(f.pts([u, u + 0.1], [v0 + 0.01, v1 - 0.01]), fill=stripe, width=f.width(0.03))
            u += step


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] for an image of the given size (cached)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size - 1) * 2 - 1
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random-colour background with a linear gradient and an optional Fourier texture."""
    yy, xx = _grid(size)
    base = rng.uniform(15, 240, 3).astype(np.float32)
    other = rng.uniform(15, 240, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(ang) + yy * math.sin(ang)) * 0.5 + 0.5
    bg = base + (other - base) * (ramp * rng.uniform(0.0, 0.7))[..., None]
    kind = int(rng.integers(3))
    if kind > 0:  # 1: soft blotches, 2: finer waves
        n_waves, fmax = (4, 2.5) if kind == 1 else (2, 9.0)
        tex = np.zeros_like(xx)
        for _ in range(n_waves):
            fx, fy = rng.uniform(-fmax, fmax, 2)
            tex += np.cos((xx * (math.pi * fx) + yy * (math.pi * fy)) + rng.uniform(0, 2 * math.pi))
        tex *= rng.uniform(8, 35) / n_waves**0.5
        bg += tex[..., None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
    return bg


def render_one(expression: int, occlude: int, seed: int, size: int) -> np.ndarray:
    """Render one face; the occluder uses its own stream so it never perturbs the face."""
    rng = np.random.default_rng([seed, 0])
    occ_rng = np.random.default_rng([seed, 1])
    codes = CLASS_CODES[CLASSES[expression]]
    s = size * _SUPERSAMPLE
    f = _Face(rng, s)
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    _draw_head(d, f, rng)
    t = rng.uniform(0.35, 1.0)  # expression intensity, shared by all regions ...
    intens = np.clip(t * rng.uniform(0.75, 1.15, 4), 0.25, 1.0)  # ... up to a per-region jitter
    _draw_brows(d, f, codes["brows"], float(intens[0]))
    _draw_eyes(d, f, codes["eyes"], float(intens[1]), rng.uniform(-1, 1))
    _draw_nose(d, f, codes["nose"], float(intens[2]))
    _draw_mouth(
        d, f, codes["mouth"], float(intens[3]), 1 if rng.random() < 0.5 else -1, rng.uniform(0.0, 1.6)
    )
    if occlude >= 0:
        _draw_occluder(d, f, REGIONS[occlude], occ_rng)

    # Box-filter downsampling (PIL averages premultiplied colours), then alpha compositing.
    small = np.asarray(layer.reduce(_SUPERSAMPLE), dtype=np.float32)
    alpha = small[..., 3:4] * np.float32(1.0 / 255.0)
    img = small[..., :3] * alpha + _background(rng, size) * (1.0 - alpha)

    # Lighting: directional gradient, white balance, brightness and contrast; then blur, noise.
    yy, xx = _grid(size)
    ang = rng.uniform(0, 2 * math.pi)
    gain = 1.0 + rng.uniform(0.0, 0.4) * (xx * math.cos(ang) + yy * math.sin(ang))
    img *= gain[..., None]
    img *= (rng.uniform(0.92, 1.08, 3) * rng.uniform(0.75, 1.15)).astype(np.float32)
    pivot = rng.uniform(90.0, 160.0)  # a fixed pivot keeps expression changes local
    img = (img - pivot) * rng.uniform(0.7, 1.15) + pivot
    blur = rng.uniform(0.0, 0.7) if rng.random() < 0.5 else 0.0
    if blur > 0.05:
        pil = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))
        img = np.asarray(pil.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    sigma = np.float32(rng.uniform(2.0, 12.0))
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(img, 0, 255).round().astype(np.uint8)


def check_size(size: int) -> None:
    """Reject image sizes at which the facial features would no longer be resolvable."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < _MIN_SIZE:
        raise ValueError(f"size must be >= {_MIN_SIZE} pixels, got {size}")


def image_seeds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw one independent seed per image, so images can be rendered in any order."""
    return rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)


def render_faces(
    expressions: np.ndarray,
    rng: np.random.Generator,
    size: int = 64,
    occlude_region: np.ndarray | None = None,
) -> np.ndarray:
    """Render synthetic faces of the given canonical class indices as uint8 (N, size, size, 3).

    occlude_region holds, per image, an index into REGIONS to hide under an occluder or -1.
    Each image draws one seed from rng, so the same rng state gives the same faces with or
    without occluders.
    """
    check_size(size)
    expr = np.asarray(expressions)
    if expr.ndim != 1 or (expr.size and not np.issubdtype(expr.dtype, np.integer)):
        raise ValueError("expressions must be a 1-D integer array of class indices")
    if expr.size and (expr.min() < 0 or expr.max() >= NUM_CLASSES):
        raise ValueError(f"expression indices must lie in [0, {NUM_CLASSES - 1}]")
    if occlude_region is None:
        occ = np.full(expr.shape, -1, dtype=np.int64)
    else:
        occ = np.asarray(occlude_region)
        if occ.shape != expr.shape or (occ.size and not np.issubdtype(occ.dtype, np.integer)):
            raise ValueError("occlude_region must be an integer array shaped like expressions")
        if occ.size and (occ.min() < -1 or occ.max() >= len(REGIONS)):
            raise ValueError(f"occlude_region values must be -1 or in [0, {len(REGIONS) - 1}]")
    seeds = image_seeds(rng, expr.shape[0])
    out = np.empty((expr.shape[0], size, size, 3), dtype=np.uint8)
    for i in range(expr.shape[0]):
        out[i] = render_one(int(expr[i]), int(occ[i]), int(seeds[i]), size)
    return out
