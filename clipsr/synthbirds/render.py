"""Procedural side-view birds: a seed gives a `BirdSpec`, `render` draws it with per-part masks.

Why the parts are shaped as they are: the captions describe crown, wing (bars) and belly colours and the
beak, and those parts are drawn thin (a 3-6 px cap stripe, 3-5 px wing bars, a 4-7 px breast stripe or
small speckles, a beak a few px thick), well under one LR pixel at 16x (16 HR px), so their colour is gone
from the LR image and only the caption carries it. Body, head, tail and background are large and stay
recoverable from the LR. Drawing is supersampled for antialiasing; a label image drawn with the same
shapes gives masks in which every pixel belongs to at most one part (later parts cover earlier ones).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from clipsr.synthbirds.colours import COLOURS, NAMES

SIZE = 256
SUPERSAMPLE = 2
PARTS: tuple[str, ...] = ("background", "body", "head", "tail", "wing", "crown", "belly", "beak", "eye")
DESCRIBED_PARTS: tuple[str, ...] = ("crown", "wing", "belly", "beak")
COLOURED_PARTS: tuple[str, ...] = ("body", "tail", "wing", "crown", "belly", "beak", "eye")
BACKGROUNDS: tuple[str, ...] = ("sky", "foliage", "gradient", "texture")
BELLY_PATTERNS: tuple[str, ...] = ("stripe", "speckle")
_LABEL = {part: i for i, part in enumerate(PARTS)}
_DETAIL = 255  # outlines, legs, highlights: pixels of no part
_GRID = 32  # backgrounds are built on a coarse grid and upsampled
_JITTER = 10  # per-channel colour jitter; anchors are > 80 apart, so a part stays nearest its own colour

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class BirdSpec:
    """Everything `render` needs; colours are vocabulary names, lengths are in 256-px HR pixels."""

    seed: int
    body: str
    tail: str
    crown: str
    wing: str
    belly: str
    beak: str
    eye: str
    facing_left: bool
    tilt: float  # body axis, degrees (positive: head down)
    length: float  # body length
    aspect: float  # body height / body length
    head_scale: float  # head radius / body half-height
    head_lift: float  # head raised by this many body half-heights
    tail_angle: float  # degrees below the body axis
    tail_length: float  # in body half-lengths
    position: tuple[float, float]  # where the bird sits in the free space, 0..1 along x and y
    crown_width: float
    bar_width: float
    n_bars: int
    belly_width: float
    belly_pattern: str
    beak_length: float
    beak_width: float
    background: str
    background_colours: tuple[RGB, RGB]
    perch: bool

    def __post_init__(self) -> None:
        for part in COLOURED_PARTS:
            if getattr(self, part) not in COLOURS:
                raise ValueError(f"BirdSpec.{part}={getattr(self, part)!r} is not a vocabulary colour "
                                 f"({', '.join(NAMES)})")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"BirdSpec.background={self.background!r} is not one of {BACKGROUNDS}")
        if self.belly_pattern not in BELLY_PATTERNS:
            raise ValueError(f"BirdSpec.belly_pattern={self.belly_pattern!r} is not one of {BELLY_PATTERNS}")

    @property
    def colours(self) -> dict[str, str]:
        """Colour name of every coloured part (head shares the body colour)."""
        return {part: getattr(self, part) for part in COLOURED_PARTS}


def sample_spec(seed: int) -> BirdSpec:
    """Draw a random bird from `seed` (numpy default_rng): same seed, same bird."""
    rng = np.random.default_rng(seed)
    colours = {part: NAMES[i] for part, i in zip(COLOURED_PARTS, rng.integers(0, len(NAMES), len(COLOURED_PARTS)))}
    colours["eye"] = "black"
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    return BirdSpec(
        seed=int(seed),
        **colours,
        facing_left=bool(rng.random() < 0.5),
        tilt=float(rng.uniform(-20, 20)),
        length=float(rng.uniform(70, 130)),
        aspect=float(rng.uniform(0.5, 0.65)),
        head_scale=float(rng.uniform(0.55, 0.7)),
        head_lift=float(rng.uniform(0.0, 0.25)),
        tail_angle=float(rng.uniform(-10, 35)),
        tail_length=float(rng.uniform(0.7, 1.0)),
        position=(float(rng.random()), float(rng.random())),
        crown_width=float(rng.uniform(8, 12)),
        bar_width=float(rng.uniform(6, 9)),
        n_bars=int(rng.integers(1, 3)),
        belly_width=float(rng.uniform(8, 14)),
        belly_pattern=BELLY_PATTERNS[rng.integers(len(BELLY_PATTERNS))],
        beak_length=float(rng.uniform(14, 22)),
        beak_width=float(rng.uniform(8, 12)),
        background=background,
        background_colours=_background_colours(background, rng),
        perch=bool(rng.random() < 0.7),
    )


def redraw_sizes(spec: BirdSpec, spans: dict[str, tuple[float, float]], rng: np.random.Generator) -> BirdSpec:
    """`spec` with each named size drawn uniformly from its span, in the order given; colours, pose and scene
    stay as they are (birds drawn otherwise than `sample_spec` draws them)."""
    return replace(spec, **{name: float(rng.uniform(*span)) for name, span in spans.items()})


def render(spec: BirdSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw `spec`: a (256, 256, 3) uint8 image and a (256, 256) bool mask per part in PARTS."""
    rng = np.random.default_rng([spec.seed, 1])  # texture, jitter, speckles: fixed by the seed, not colours
    canvas = _background(spec, rng)
    ops = _bird_ops(spec, rng)
    labels = Image.new("L", canvas.size, _LABEL["background"])
    draw_rgb, draw_label = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    for points, rgb, label, width in ops:
        xy = (points * SUPERSAMPLE).ravel().tolist()
        if width:
            draw_rgb.line(xy, fill=rgb, width=round(width * SUPERSAMPLE))
            draw_label.line(xy, fill=label, width=round(width * SUPERSAMPLE))
        else:
            draw_rgb.polygon(xy, fill=rgb)
            draw_label.polygon(xy, fill=label)
    image = np.asarray(canvas.reduce(SUPERSAMPLE))
    centre = SUPERSAMPLE // 2
    label_map = np.asarray(labels)[centre::SUPERSAMPLE, centre::SUPERSAMPLE]
    return image, {part: label_map == _LABEL[part] for part in PARTS}


def _background_colours(kind: str, rng: np.random.Generator) -> tuple[RGB, RGB]:
    if kind == "sky":
        low, high = ((90, 150, 210, 200, 215, 235), (140, 200, 255, 240, 245, 255))
    elif kind == "foliage":
        low, high = ((20, 60, 20, 90, 150, 60), (60, 110, 50, 160, 210, 110))
    else:
        low, high = (0,) * 6, (256,) * 6
    values = [int(v) for v in rng.integers(low, high)]
    return tuple(values[:3]), tuple(values[3:])  # type: ignore[return-value]


def _background(spec: BirdSpec, rng: np.random.Generator) -> Image.Image:
    """The scene behind the bird, drawn straight at the supersampled size (cheap: built from a coarse grid)."""
    c0, c1 = (np.array(c, dtype=np.float32) for c in spec.background_colours)
    if spec.background in ("sky", "gradient"):
        angle = math.pi / 2 if spec.background == "sky" else rng.uniform(0, 2 * math.pi)
        axis = np.linspace(-1.0, 1.0, _GRID, dtype=np.float32)
        mix = (math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]) * 0.5 + 0.5
    else:  # foliage and texture: smooth random blotches, texture with a finer layer on top
        blotches = Image.fromarray(rng.random((6, 6)).astype(np.float32), mode="F")
        mix = np.asarray(blotches.resize((_GRID, _GRID), Image.Resampling.BICUBIC))
        if spec.background == "texture":
            mix = 0.7 * mix + 0.3 * rng.random((_GRID, _GRID), dtype=np.float32)
    mix = np.clip(mix, 0.0, 1.0)[..., None]
    coarse = Image.fromarray(np.clip(c0 * (1 - mix) + c1 * mix, 0, 255).astype(np.uint8))
    smooth = coarse.resize((SIZE, SIZE), Image.Resampling.BICUBIC)  # then pixel-doubling: 3x cheaper
    image = smooth.resize((SIZE * SUPERSAMPLE,) * 2, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    if spec.background == "sky":
        for _ in range(int(rng.integers(0, 4))):
            x, y, w, h = rng.uniform((0, 0, 30, 10), (SIZE, SIZE * 0.7, 90, 25)) * SUPERSAMPLE
            tone = int(rng.integers(235, 256))
            draw.ellipse((x - w, y - h, x + w, y + h), fill=(tone, tone, tone))
    elif spec.background == "foliage":
        for x, y, w, h, angle, t in rng.uniform((0, 0, 6, 3, 0, 0), (SIZE, SIZE, 22, 9, 180, 1), (40, 6)):
            leaf = _ellipse((x, y), w, h, angle, n=10) * SUPERSAMPLE
            draw.polygon(leaf.ravel().tolist(), fill=tuple(int(v) for v in c0 * (1 - t) + c1 * t))
    return image


def _ellipse(
    centre: tuple[float, float], a: float, b: float, angle: float, t0: float = 0.0, t1: float = 360.0, n: int = 48
) -> np.ndarray:
    """Points of a rotated ellipse arc (angles in degrees, y pointing down), shape (n, 2)."""
    t = np.radians(np.linspace(t0, t1, n))
    x, y = a * np.cos(t), b * np.sin(t)
    rot = math.radians(angle)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], axis=1)


def _band(centre: tuple[float, float], a: float, b: float, angle: float, t0: float, t1: float,
          offset: float, width: float) -> np.ndarray:
    """A thin band following an ellipse arc, `offset` in from its edge: crown caps, wing bars, breast stripes."""
    outer = _ellipse(centre, a - offset, b - offset, angle, t0, t1, n=24)
    inner = _ellipse(centre, max(a - offset - width, 0.5), max(b - offset - width, 0.5), angle, t0, t1, n=24)
    return np.concatenate([outer, inner[::-1]])


def _shade(rgb: np.ndarray, factor: float) -> RGB:
    return tuple(int(v) for v in np.clip(rgb * factor, 0, 255))  # type: ignore[return-value]


def _bird_ops(spec: BirdSpec, rng: np.random.Generator) -> list[tuple[np.ndarray, RGB, int, float]]:
    """Shapes in drawing order as (points, colour, label, line width or 0 for a filled polygon)."""
    jitter = rng.integers(-_JITTER, _JITTER + 1, (len(COLOURED_PARTS), 3))
    rgb = {part: np.clip(np.array(COLOURS[getattr(spec, part)]) + j, 0, 255) for part, j in zip(COLOURED_PARTS, jitter)}
    col = {part: _shade(value, 1.0) for part, value in rgb.items()}
    a, b = spec.length / 2, spec.length * spec.aspect / 2
    r = spec.head_scale * b
    head = (0.72 * a, -(0.6 + spec.head_lift) * b)
    ops: list[tuple[np.ndarray, RGB, int, float]] = []

    ta = math.radians(spec.tail_angle)
    direction, normal = np.array([-math.cos(ta), math.sin(ta)]), np.array([math.sin(ta), math.cos(ta)])
    base_top, base_bottom = np.array([-0.6 * a, -0.5 * b]), np.array([-0.6 * a, 0.45 * b])
    tip = (base_top + base_bottom) / 2 + direction * spec.tail_length * a
    notch = tip - direction * 0.15 * spec.tail_length * a
    tail = np.stack([base_top, tip - normal * 0.6 * b, notch, tip + normal * 0.6 * b, base_bottom])
    ops.append((tail, col["tail"], _LABEL["tail"], 0))
    ops.append((_ellipse((0, 0), a, b, 0), col["body"], _LABEL["body"], 0))

    if spec.belly_pattern == "stripe":
        ops.append((_band((0, 0), a, b, 0, 20, 115, 1.0, spec.belly_width), col["belly"], _LABEL["belly"], 0))
    else:
        for t, rho in rng.uniform((25, 0.55), (120, 0.92), (14, 2)):
            centre = (rho * a * math.cos(math.radians(t)), rho * b * math.sin(math.radians(t)))
            dot = _ellipse(centre, spec.belly_width / 2.5, spec.belly_width / 2.5, 0, n=12)
            ops.append((dot, col["belly"], _LABEL["belly"], 0))

    wing_centre, wa, wb, wangle = (-0.15 * a, -0.15 * b), 0.62 * a, 0.5 * b, 6.0
    ops.append((_ellipse(wing_centre, wa, wb, wangle), _shade(rgb["body"], 0.85), _LABEL["body"], 0))
    ops.append((_band(wing_centre, wa, wb, wangle, 0, 360, 0, 1.2), _shade(rgb["body"], 0.5), _DETAIL, 0))
    for i in range(spec.n_bars):
        offset = 0.15 * wb + i * (spec.bar_width + 0.2 * wb)
        bar = _band(wing_centre, wa, wb, wangle, 20, 160, offset, spec.bar_width)
        ops.append((bar, col["wing"], _LABEL["wing"], 0))

    ops.append((_ellipse(head, r, r, 0), col["body"], _LABEL["head"], 0))
    ops.append((_band(head, r, r, 0, -165, -25, 0, spec.crown_width), col["crown"], _LABEL["crown"], 0))
    eye_r = max(2.5, 0.16 * r)
    eye = (head[0] + 0.4 * r, head[1] - 0.1 * r)
    ops.append((_ellipse(eye, eye_r, eye_r, 0, n=16), col["eye"], _LABEL["eye"], 0))
    glint = (eye[0] - 0.35 * eye_r, eye[1] - 0.35 * eye_r)
    ops.append((_ellipse(glint, 0.5, 0.5, 0, n=8), (250, 250, 250), _DETAIL, 0))

    down = math.radians(10)
    forward, across = np.array([math.cos(down), math.sin(down)]), np.array([-math.sin(down), math.cos(down)])
    beak_base = np.array(head) + forward * 0.8 * r
    beak = np.stack([
        beak_base - across * spec.beak_width / 2,
        np.array(head) + forward * (r + spec.beak_length),
        beak_base + across * spec.beak_width / 2,
    ])
    ops.append((beak, col["beak"], _LABEL["beak"], 0))
    return _place(spec, ops, rng, a, b)


def _place(spec: BirdSpec, ops: list, rng: np.random.Generator, a: float, b: float) -> list:
    """Turn, tilt and move the bird into the frame, then add legs and the perch in world coordinates."""
    rot = math.radians(spec.tilt)
    matrix = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    if spec.facing_left:
        matrix = matrix @ np.diag([-1.0, 1.0])
    placed = [(points @ matrix.T, *rest) for points, *rest in ops]
    leg_length = rng.uniform(0.4, 0.7) * b
    hips = np.array([[0.1 * a, 0.85 * b], [-0.15 * a, 0.85 * b]]) @ matrix.T
    feet = hips + [0.0, leg_length]
    feet[:, 1] = feet[:, 1].max()
    legs = [(np.stack([hip, foot]), (60, 50, 40), _DETAIL, 1.5) for hip, foot in zip(hips, feet)]
    placed = legs + placed
    points = np.concatenate([p for p, *_ in placed])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = 6.0
    free_low, free_high = margin - low, SIZE - margin - high
    shift = np.where(free_high > free_low, free_low + np.array(spec.position) * (free_high - free_low),
                     (free_low + free_high) / 2)
    placed = [(p + shift, *rest) for p, *rest in placed]
    perch_colour = tuple(int(v) for v in rng.integers((90, 55, 25), (140, 90, 50)))
    if spec.perch:
        y = feet[0, 1] + shift[1] + 2
        span, slope, thickness = rng.uniform((0.9, -0.08, 5), (1.6, 0.08, 9))
        x = shift[0]
        perch = np.array([[x - span * 2 * a, y - slope * span * 2 * a], [x + span * 2 * a, y + slope * span * 2 * a]])
        placed.insert(0, (perch, perch_colour, _LABEL["background"], thickness))
    return placed

