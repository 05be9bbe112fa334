"""Synthetic video clips with a tracking ground truth: the shapes of synthetic.py moving over a textured
background, for measuring `detect infer --track` (`detect data synth --video OUT`).

Each clip holds objects that enter from an edge or start inside, move at a constant velocity with an
occasional turn, cross each other (a drawing order stands for depth, so nearer shapes hide farther
ones) and leave. Per frame, the ground truth is each object's visible box (the tight box of its
visible pixels), written in the MOTChallenge format (`<clip>.gt.txt`, one line per object and frame):

    frame (1-based), id, left, top, width, height, 1, class (1-based, SYNTHETIC_CLASSES), visibility

An object with under MIN_VISIBLE of its pixels in view (hidden or half out of the frame) is left out
of that frame's ground truth. Everything follows from `seed`.

    summary = generate_video_clips(out, num_clips=3, frames=300, width=640, height=480, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detect.data.synthetic import (
    SYNTHETIC_CLASSES,
    add_noise,
    draw_background,
    is_earlier_generation,
    unit_polygon,
    write_marker,
)
from detect.outputs import staged_folder

MIN_VISIBLE = 0.3  # share of an object's pixels that must show for it to be in the ground truth
SIZE_RANGE = (0.1, 0.3)  # object size as a fraction of the frame height
SPEED_RANGE = (1.5, 6.0)  # pixels per frame
TURN_CHANCE = 0.01  # per object and frame: a new direction
SPAWN_CHANCE = 0.04  # per frame: a new object enters (up to MAX_OBJECTS in view)
MAX_OBJECTS = 6


@dataclass
class MovingObject:
    object_id: int
    label: int  # 1-based, SYNTHETIC_CLASSES
    sprite: np.ndarray  # bool [h, w]: the shape's pixels
    colour: np.ndarray
    position: np.ndarray  # float [2]: top-left x, y
    velocity: np.ndarray  # float [2]: pixels per frame


def shape_sprite(rng: np.random.Generator, name: str, extent: float) -> np.ndarray:
    """A bool mask of one shape about `extent` pixels across (random aspect and rotation)."""
    aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    half_w, half_h = extent * np.sqrt(aspect) / 2, extent / np.sqrt(aspect) / 2
    side = int(np.ceil(2 * max(half_w, half_h) * 1.5)) + 2
    mask = np.zeros((side, side), np.uint8)
    centre = np.array([side / 2, side / 2])
    if name in ("circle", "ring"):
        axes = (max(2, int(half_w)), max(2, int(half_h)))
        cv2.ellipse(mask, (side // 2, side // 2), axes, float(rng.uniform(-25, 25)), 0, 360, 1, thickness=-1)
        if name == "ring":
            cv2.ellipse(mask, (side // 2, side // 2), (int(axes[0] * 0.55), int(axes[1] * 0.55)), 0, 0, 360, 0, -1)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (unit_polygon(name) * np.array([half_w, half_h])) @ rotation.T + centre
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    rows, cols = np.nonzero(mask)
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(bool)


def spawn(rng: np.random.Generator, object_id: int, width: int, height: int, inside: bool,
          background: np.ndarray) -> MovingObject:
    label = int(rng.integers(1, len(SYNTHETIC_CLASSES) + 1))
    sprite = shape_sprite(rng, SYNTHETIC_CLASSES[label - 1], height * rng.uniform(*SIZE_RANGE))
    h, w = sprite.shape
    speed = rng.uniform(*SPEED_RANGE)
    if inside:
        position = np.array([rng.uniform(0, width - w), rng.uniform(0, height - h)])
        angle = rng.uniform(0, 2 * np.pi)
    else:  # just outside an edge, heading inwards
        edge = int(rng.integers(4))
        position = np.array([[-w + 1.0, rng.uniform(0, height - h)], [width - 1.0, rng.uniform(0, height - h)],
                             [rng.uniform(0, width - w), -h + 1.0], [rng.uniform(0, width - w), height - 1.0]][edge])
        angle = [0.0, np.pi, np.pi / 2, -np.pi / 2][edge] + rng.uniform(-0.6, 0.6)
    colour = contrasting_colour(rng, background)
    return MovingObject(object_id, label, sprite, colour, position, speed * np.array([np.cos(angle), np.sin(angle)]))


def contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """Of 12 random colours, the one farthest from the closest of 32 background samples: a moving shape
    crosses the whole background, so it must stand out from all of it (not only from where it starts)."""
    samples = background[rng.integers(0, background.shape[0], 32), rng.integers(0, background.shape[1], 32)]
    candidates = rng.integers(0, 256, (12, 3))
    distance = np.abs(candidates[:, None, :].astype(int) - samples[None].astype(int)).sum(-1).min(axis=1)
    return candidates[int(np.argmax(distance))].astype(np.uint8)


def render(background: np.ndarray, objects: list[MovingObject], rng: np.random.Generator):
    """(frame BGR, [(object, visible box xyxy, visibility)]) with later objects drawn over earlier ones."""
    height, width = background.shape[:2]
    frame = background.copy()
    owner = np.full((height, width), -1, np.int32)
    for index, obj in enumerate(objects):
        x, y = (int(round(v)) for v in obj.position)
        h, w = obj.sprite.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        part = obj.sprite[y0 - y:y1 - y, x0 - x:x1 - x]
        frame[y0:y1, x0:x1][part] = obj.colour
        owner[y0:y1, x0:x1][part] = index
    add_noise(rng, frame)
    shown = []
    for index, obj in enumerate(objects):
        rows, cols = np.nonzero(owner == index)
        visibility = len(rows) / obj.sprite.sum()
        if len(rows) and visibility >= MIN_VISIBLE:
            shown.append((obj, (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1), visibility))
    return frame, shown


def generate_clip(path: Path, frames: int, width: int, height: int, seed: int) -> dict:
    """Writes `path` (H.264 MP4 through detect.infer's video writer) and `<path stem>.gt.txt`."""
    from detect.video_writer import open_writer

    rng = np.random.default_rng(seed)
    side = max(width, height)
    background = draw_background(rng, side)[:height, :width].copy()
    objects = [spawn(rng, i + 1, width, height, True, background) for i in range(int(rng.integers(3, 5)))]
    next_id = len(objects) + 1
    writer = open_writer(path, path, 25.0, width, height)
    lines, ids_seen = [], set()
    try:
        for frame_index in range(frames):
            frame, shown = render(background, objects, rng)
            writer.write(frame)
            for obj, (x0, y0, x1, y1), visibility in shown:
                ids_seen.add(obj.object_id)
                lines.append(f"{frame_index + 1},{obj.object_id},{x0},{y0},{x1 - x0},{y1 - y0},1,{obj.label},"
                             f"{visibility:.3f}\n")
            for obj in objects:
                if rng.random() < TURN_CHANCE:
                    speed, turn = np.linalg.norm(obj.velocity), rng.uniform(-1.2, 1.2)
                    angle = np.arctan2(obj.velocity[1], obj.velocity[0]) + turn
                    obj.velocity = speed * np.array([np.cos(angle), np.sin(angle)])
                obj.position = obj.position + obj.velocity
            objects = [o for o in objects if _in_view(o, width, height)]
            if len(objects) < MAX_OBJECTS and rng.random() < SPAWN_CHANCE:
                objects.append(spawn(rng, next_id, width, height, False, background))
                next_id += 1
    finally:
        writer.release()
    path.with_suffix(".gt.txt").write_text("".join(lines))
    return {"frames": frames, "objects": len(ids_seen), "boxes": len(lines)}


def _in_view(obj: MovingObject, width: int, height: int) -> bool:
    x, y = obj.position
    h, w = obj.sprite.shape
    return x + w > 0 and y + h > 0 and x < width and y < height


def generate_video_clips(out: str | Path, num_clips: int = 3, frames: int = 300, width: int = 640,
                         height: int = 480, seed: int = 0) -> dict:
    """`out/clip_<k>.mp4` and `out/clip_<k>.gt.txt` for k < num_clips; returns totals. Like the image
    datasets, built beside `out` and moved into place whole (`out`: absent, empty, or an earlier
    generation)."""
    totals = {"clips": num_clips, "frames": 0, "objects": 0, "boxes": 0}
    settings = {"clips": num_clips, "frames": frames, "width": width, "height": height, "seed": seed}
    with staged_folder("detect data synth --video", out, own=is_earlier_generation) as staging:
        for k in range(num_clips):
            summary = generate_clip(staging / f"clip_{k}.mp4", frames, width, height, seed * 1000 + k)
            for key in ("frames", "objects", "boxes"):
                totals[key] += summary[key]
        write_marker(staging, "video", settings)
    return totals
