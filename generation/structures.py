"""Procedural structures the builtin edit backend can draw, chosen from the prompt's words.

Owns: parsing a prompt into a `Recipe` (a known noun, colour words, size words, a count) and
drawing it: each structure is a few layers with an anti-aliased coverage, a colour and a
height field (in pixels toward the camera), composited nearest-on-top, shaded from the height
field's normals, with a soft contact shadow. Everything is deterministic for a seed.
Does not own: where the structure goes or how its depth is registered (the edit / depth stages).

What it follows: the nouns in `NOUNS` (ladybug/beetle/bug, flower/sunflower/daisy/rose/tulip/
poppy, mushroom/toadstool, stone/rock/pebble, drop/dew/bubble, leaf, house/hut/cabin, tree/bush,
coin/button, and anything else as a rounded blob), the colour words in `COLOURS`, size words
(tiny, small, big, large, huge) and a count (a digit or one..five). What it cannot follow:
anything else — poses, materials, relations, text, styles, or any noun not listed (those become
a blob in the named or a prompt-derived colour). Prompt-faithful content needs a model backend.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from generation.imaging import blur

COLOURS = {
    "red": (0.82, 0.1, 0.08), "orange": (0.95, 0.5, 0.08), "yellow": (0.98, 0.82, 0.1),
    "golden": (0.9, 0.7, 0.2), "gold": (0.9, 0.7, 0.2), "green": (0.2, 0.6, 0.15),
    "blue": (0.15, 0.3, 0.85), "purple": (0.5, 0.2, 0.65), "violet": (0.55, 0.3, 0.8),
    "pink": (0.97, 0.55, 0.7), "white": (0.96, 0.96, 0.94), "black": (0.06, 0.06, 0.06),
    "grey": (0.5, 0.5, 0.5), "gray": (0.5, 0.5, 0.5), "brown": (0.45, 0.28, 0.14),
    "silver": (0.78, 0.8, 0.82), "cyan": (0.2, 0.8, 0.85),
}
NOUNS = {
    "beetle": ("ladybug", "ladybird", "beetle", "bug", "insect"),
    "flower": ("flower", "sunflower", "daisy", "rose", "tulip", "poppy", "blossom"),
    "mushroom": ("mushroom", "toadstool", "fungus"),
    "stone": ("stone", "rock", "pebble", "boulder"),
    "drop": ("drop", "droplet", "dew", "bubble", "raindrop"),
    "leaf": ("leaf", "leaves"),
    "house": ("house", "hut", "cabin", "cottage"),
    "tree": ("tree", "bush", "shrub"),
    "coin": ("coin", "button", "disc", "disk"),
}
SIZES = {"tiny": 0.55, "small": 0.7, "little": 0.7, "big": 1.35, "large": 1.35, "huge": 1.6,
         "giant": 1.6}
COUNTS = {"one": 1, "a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5, "pair": 2}


@dataclass(frozen=True)
class Recipe:
    kind: str  # a key of NOUNS, or "blob"
    noun: str  # the word that chose it ("" for a blob)
    colour: tuple[float, float, float] | None  # from a colour word
    size: float  # multiplier of the base radius
    count: int
    understood: tuple[str, ...] = field(default=())  # the prompt words that changed the result


def parse_prompt(prompt: str) -> Recipe:
    words = re.findall(r"[a-z]+|\d+", prompt.lower())
    kind, noun, colour, size, count = "blob", "", None, 1.0, 1
    understood: list[str] = []
    for w in words:
        if not noun:
            for k, names in NOUNS.items():
                if w in names or (w.endswith("s") and w[:-1] in names):
                    kind, noun = k, w
                    understood.append(w)
                    break
        if w in COLOURS and colour is None:
            colour = COLOURS[w]
            understood.append(w)
        if w in SIZES:
            size = SIZES[w]
            understood.append(w)
        if w.isdigit() and 1 <= int(w) <= 5:
            count = int(w)
            understood.append(w)
        elif w in COUNTS and w not in ("a", "an", "one"):
            count = COUNTS[w]
            understood.append(w)
    return Recipe(kind, noun, colour, size, count, tuple(understood))


def prompt_colour(prompt: str) -> tuple[float, float, float]:
    """A stable, saturated colour derived from the prompt text (for unknown nouns)."""
    h = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    i = int(h * 6)
    f = h * 6 - i
    v, s = 0.85, 0.7
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]


# ---- drawing ----------------------------------------------------------------------------
class Canvas:
    """Layers of (coverage [H, W], colour [H, W, 3], height [H, W] px) composited on top, with
    how glossy, how diffusely lit and how shadow-casting each is (1, 1 for a matte, opaque
    thing; water: little diffuse shading, a light shadow)."""

    def __init__(self, height: int, width: int) -> None:
        self.alpha = np.zeros((height, width))
        self.rgb = np.zeros((height, width, 3))
        self.height = np.zeros((height, width))
        self.gloss = np.zeros((height, width))
        self.diffuse = np.ones((height, width))
        self.shadow = np.ones((height, width))

    def add(self, cover: np.ndarray, colour, height: np.ndarray | float,
            gloss: float = 0.0, diffuse: float = 1.0, shadow: float = 1.0) -> None:
        """Paint a layer over what is there (later layers lie on top)."""
        col = np.broadcast_to(np.asarray(colour, np.float64), self.rgb.shape)
        a = np.clip(cover, 0.0, 1.0)
        self.rgb = self.rgb * (1 - a[..., None]) + col * a[..., None]
        h = np.broadcast_to(np.asarray(height, np.float64), a.shape)
        self.height = np.where(a > 0.5, np.maximum(self.height, h), self.height)
        self.gloss = self.gloss * (1 - a) + gloss * a
        self.diffuse = self.diffuse * (1 - a) + diffuse * a
        self.shadow = self.shadow * (1 - a) + shadow * a
        self.alpha = 1 - (1 - self.alpha) * (1 - a)


def _cover(sdf_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf_px, 0.0, 1.0)


def _ellipse(x, y, cx, cy, a, b, angle=0.0):
    """(signed distance in radius units (approx.), normalised radius) of a rotated ellipse."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u, v = c * dx + s * dy, -s * dx + c * dy
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (r - 1.0) * min(a, b), r


def _dome(r: np.ndarray, peak: float) -> np.ndarray:
    return peak * np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))


def _noise(shape, rng, sigma: float) -> np.ndarray:
    n = blur(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-12)


def _mix(c1, c2, t):
    t = np.asarray(t, np.float64)[..., None]
    return np.asarray(c1, np.float64) * (1 - t) + np.asarray(c2, np.float64) * t


def draw(recipe: Recipe, canvas: Canvas, cu: float, cv: float, radius: float,
         rng: np.random.Generator, background: np.ndarray, prompt: str = "") -> None:
    """Draw one instance of `recipe` centred at pixel (cu, cv) with `radius` pixels."""
    H, W = canvas.alpha.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    x, y = (u - cu) / radius, (v - cv) / radius
    R = radius
    tex = _noise((H, W), rng, max(1.0, R / 25)) * 0.05
    col = recipe.colour
    k = recipe.kind
    if k == "beetle":
        body = col or COLOURS["red"]
        d, r = _ellipse(x, y, 0, 0.12, 0.78, 0.9)
        canvas.add(_cover(d * R), _mix(body, (0, 0, 0), 0.0) + tex[..., None], _dome(r, 0.6 * R),
                   gloss=1.0)
        spots = [(-0.35, -0.1), (0.35, -0.1), (-0.42, 0.35), (0.42, 0.35), (-0.18, 0.65),
                 (0.18, 0.65), (0.0, 0.25)]
        for sx, sy in spots:
            ds, _ = _ellipse(x, y, sx, sy, 0.14, 0.14)
            canvas.add(_cover(ds * R) * (d < 0), (0.04, 0.04, 0.04), _dome(r, 0.6 * R) + 0.3,
                       gloss=1.0)
        line = _cover((np.abs(x) - 0.015) * R) * (y > -0.5) * (d < 0)
        canvas.add(line, (0.03, 0.03, 0.03), _dome(r, 0.6 * R) + 0.3, gloss=0.5)
        dh, rh = _ellipse(x, y, 0, -0.85, 0.42, 0.26)
        canvas.add(_cover(dh * R), (0.05, 0.05, 0.05), _dome(rh, 0.3 * R), gloss=0.6)
        for side in (-1, 1):
            for ly, ang in ((-0.3, -0.5), (0.15, 0.0), (0.55, 0.5)):
                t = np.clip((x * side - 0.6) / 0.55, 0, 1)
                yy = ly + math.tan(ang) * (x * side - 0.6)
                leg = _cover((np.abs(y - yy) - 0.025) * R) * ((x * side > 0.6) & (x * side < 1.15))
                canvas.add(leg * (1 - t * 0.2), (0.05, 0.05, 0.05), 0.05 * R)
        for side in (-1, 1):  # antennae
            yy = -1.0 - 0.6 * (np.abs(x) - 0.1)
            ant = _cover((np.abs(y - yy) - 0.015) * R) * ((x * side > 0.1) & (x * side < 0.4))
            canvas.add(ant, (0.05, 0.05, 0.05), 0.2 * R)
    elif k == "flower":
        noun = recipe.noun
        petal, centre, n = {
            "sunflower": ((0.98, 0.78, 0.05), (0.35, 0.2, 0.06), 22),
            "daisy": ((0.97, 0.97, 0.95), (0.96, 0.78, 0.1), 18),
            "rose": ((0.8, 0.05, 0.15), (0.55, 0.02, 0.1), 9),
            "tulip": ((0.9, 0.15, 0.3), (0.95, 0.85, 0.2), 6),
            "poppy": ((0.9, 0.12, 0.05), (0.08, 0.08, 0.08), 5),
        }.get(noun.rstrip("s"), ((0.85, 0.4, 0.75), (0.96, 0.82, 0.15), 12))
        petal = col or petal
        for i in range(n):
            ang = 2 * math.pi * i / n + rng.uniform(-0.08, 0.08)
            px, py = 0.55 * math.cos(ang), 0.55 * math.sin(ang)
            d, r = _ellipse(x, y, px, py, 0.5, 0.17 if n > 10 else 0.3, angle=ang)
            shade = np.clip(1 - 0.35 * r, 0.6, 1.0)
            canvas.add(_cover(d * R), _mix((0, 0, 0), petal, shade) + tex[..., None],
                       0.12 * R * (1 - np.clip(r, 0, 1)) + 0.05 * R)
        d, r = _ellipse(x, y, 0, 0, 0.34, 0.34)
        seeds = 0.5 + 0.5 * np.sin(40 * np.sqrt(x * x + y * y) + 8 * np.arctan2(y, x))
        canvas.add(_cover(d * R), _mix(centre, np.asarray(centre) * 0.5, seeds * 0.6)
                   + tex[..., None], _dome(r, 0.22 * R) + 0.1 * R, gloss=0.2)
    elif k == "mushroom":
        cap = col or COLOURS["red"]
        ds, _ = _ellipse(x, y, 0, 0.45, 0.22, 0.55)
        canvas.add(_cover(ds * R), (0.92, 0.88, 0.78) + tex[..., None], 0.25 * R)
        d, r = _ellipse(x, y, 0, -0.15, 0.95, 0.6)
        canvas.add(_cover(d * R) * (y < 0.25), _mix(cap, (0, 0, 0), 0.0) + tex[..., None],
                   _dome(r, 0.55 * R) + 0.1 * R, gloss=0.4)
        for sx, sy, sr in ((-0.4, -0.3, 0.12), (0.35, -0.35, 0.1), (0.0, -0.5, 0.09),
                           (0.6, -0.05, 0.08), (-0.65, -0.02, 0.08)):
            dd, _ = _ellipse(x, y, sx, sy, sr, sr * 0.8)
            canvas.add(_cover(dd * R) * (d < 0), (0.96, 0.95, 0.9), _dome(r, 0.55 * R) + 0.12 * R)
    elif k == "stone":
        base = np.asarray(col or (0.55, 0.53, 0.5))
        ang = np.arctan2(y, x)
        wobble = 1 + sum(rng.uniform(0.03, 0.09) * np.sin(m * ang + rng.uniform(0, 6.3))
                         for m in (2, 3, 5))
        rr = np.sqrt((x / 1.0) ** 2 + (y / 0.75) ** 2) / wobble
        grain = _noise((H, W), rng, max(1.0, R / 12)) * 0.08 + tex * 1.5
        canvas.add(_cover((rr - 1) * 0.75 * R), base + grain[..., None], _dome(rr, 0.5 * R),
                   gloss=0.15)
    elif k == "drop":
        # water on a surface, seen as a magnifying glass: the surface under the drop, upright
        # and enlarged (1.6x at the centre, less toward the rim); a dark outline where the rim
        # bends the view toward the dark surroundings, the sky's reflection growing at grazing
        # angles, the light focused on the side away from it (a caustic), and the highlight
        # that `shade` adds; almost no diffuse shading and a light shadow (it is clear)
        d, r = _ellipse(x, y, 0, 0, 0.8, 0.8)
        lens = 0.62 + 0.3 * np.clip(r, 0, 1) ** 2
        coords = np.stack([cv + (v - cv) * lens - 0.5, cu + (u - cu) * lens - 0.5])
        under = np.stack([ndimage.map_coordinates(background[..., c], coords, order=1,
                                                  mode="nearest") for c in range(3)], -1)
        under = blur(under, max(0.5, R / 60))  # `blur` keeps the channels
        rim = np.clip((r - 0.75) / 0.25, 0, 1) ** 2
        caustic = np.exp(-((x - 0.22) ** 2 + (y - 0.26) ** 2) / (2 * 0.2 ** 2))
        tint = 1.0 - 0.35 * (1.0 - np.asarray(col or (0.88, 0.94, 1.0)))  # coloured water
        water = under * tint * (0.95 + 0.35 * caustic[..., None]) * (1 - 0.6 * rim[..., None])
        water = water + 0.12 * (np.clip(r, 0, 1) ** 4 * (1 - rim))[..., None]
        canvas.add(_cover(d * R), np.clip(water, 0, 1), _dome(r, 0.5 * R), gloss=1.5,
                   diffuse=0.1, shadow=0.3)
    elif k == "leaf":
        green = np.asarray(col or (0.25, 0.55, 0.15))
        ang = 0.5
        d, r = _ellipse(x, y, 0, 0, 0.45, 1.0, angle=ang)
        c, s = math.cos(ang), math.sin(ang)
        lu, lv = c * x + s * y, -s * x + c * y
        side = ((np.abs(lu) * 2.2 + lv * 0.8) % 0.3 - 0.15) ** 2 / 0.0006
        vein = np.exp(-(lu / 0.025) ** 2) + 0.6 * np.exp(-side) * (np.abs(lu) < 0.4)
        canvas.add(_cover(d * R), _mix(green, green * 0.55, np.clip(vein, 0, 1)) + tex[..., None],
                   0.08 * R * (1 - np.clip(r, 0, 1)) + 0.05 * R, gloss=0.3)
    elif k == "house":
        wall = np.asarray(col or (0.85, 0.78, 0.62))
        box = np.maximum(np.abs(x) - 0.7, np.abs(y - 0.3) - 0.55)
        canvas.add(_cover(box * R), wall + tex[..., None], 0.6 * R)
        roof = np.maximum(y - (-0.25), (np.abs(x) * 0.9 + (y + 1.05)) * 0.7 - 0.7 * 0.9)
        roof = np.maximum(roof, -(y + 1.2))
        canvas.add(_cover(roof * R), (0.55, 0.18, 0.12) + tex[..., None], 0.65 * R)
        door = np.maximum(np.abs(x) - 0.14, np.abs(y - 0.6) - 0.25)
        canvas.add(_cover(door * R), (0.3, 0.18, 0.1), 0.61 * R)
        for wx in (-0.42, 0.42):
            win = np.maximum(np.abs(x - wx) - 0.13, np.abs(y - 0.2) - 0.13)
            canvas.add(_cover(win * R), (0.25, 0.4, 0.55), 0.61 * R, gloss=0.8)
    elif k == "tree":
        trunk = np.maximum(np.abs(x) - 0.12, np.abs(y - 0.65) - 0.4)
        canvas.add(_cover(trunk * R), (0.35, 0.22, 0.12) + tex[..., None], 0.2 * R)
        leaves = np.asarray(col or (0.18, 0.45, 0.12))
        clumps = _noise((H, W), rng, max(1.0, R / 10)) * 0.12
        for cx_, cy_, cr in ((0, -0.3, 0.62), (-0.4, -0.05, 0.42), (0.4, -0.05, 0.42)):
            d, r = _ellipse(x, y, cx_, cy_, cr, cr * 0.9)
            canvas.add(_cover(d * R), leaves + clumps[..., None], _dome(r, 0.5 * R), gloss=0.1)
    elif k == "coin":
        metal = np.asarray(col or COLOURS["gold"])
        d, r = _ellipse(x, y, 0, 0, 0.75, 0.75)
        rim = (r > 0.85).astype(float)
        canvas.add(_cover(d * R), _mix(metal, metal * 0.7, rim) + tex[..., None],
                   0.08 * R + 0.03 * R * rim, gloss=1.2)
    else:  # blob in the named colour, or a colour derived from the prompt
        base = np.asarray(col or prompt_colour(prompt))
        ang = np.arctan2(y, x)
        rr = np.sqrt(x * x + y * y) / (1 + 0.06 * np.sin(3 * ang + rng.uniform(0, 6.3)))
        canvas.add(_cover((rr - 0.85) * R), base + tex[..., None] * 2, _dome(rr / 0.85, 0.5 * R),
                   gloss=0.5)


def shade(canvas: Canvas) -> np.ndarray:
    """[H, W, 3] colours lit from the upper left using the height field's normals."""
    gy, gx = np.gradient(canvas.height)
    n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    light = np.array([-0.45, -0.55, 0.7])
    light /= np.linalg.norm(light)
    lam = np.clip(n @ light, 0.0, 1.0)
    lambert = 1.0 + canvas.diffuse * (0.45 + 0.65 * lam - 1.0)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    spec = np.clip(n @ half, 0.0, 1.0) ** 40 * canvas.gloss * 0.6
    lit = canvas.rgb * lambert[..., None] + spec[..., None]
    return np.clip(lit, 0.0, 1.0)
