"""`detect infer`: run a Detector on every SOURCE and write what it found.

Images: annotated copies, and with `--json` detections.json and detections_coco.json. Videos,
cameras and streams: an annotated MP4 and a JSONL record per frame (detect/infer/video_output.py).
Sources are parsed by detect/infer/sources.py; every output is written whole or not at all
(detect.outputs.atomic_output).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from detect.data.box_formats import xyxy_to_voc
from detect.errors import DataError, DetectError
from detect.infer.detector import Detections, Detector
from detect.infer.video_output import VideoOutput
from detect.outputs import atomic_output
from detect.video_writer import DEFAULT_CODEC

log = logging.getLogger(__name__)


@dataclass
class InferenceSummary:
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    videos: int = 0
    frames: int = 0
    detections: int = 0
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    tracker_seconds: float = 0.0  # with tracking: the share of `seconds` spent tracking (VideoTracking.seconds)


def run_inference(
    detector: Detector,
    specs: list[str],
    out_dir: Path,
    write_json: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
    inputs: Sequence[Path] = (),
    tracking: Any = None,
    codec: str = DEFAULT_CODEC,
) -> InferenceSummary:
    """Run `detector` on every SOURCE in `specs` and write the results under `out_dir`.

    Images: `out_dir/<name>` annotated (names relative to the folder or glob they came from), and
    with `write_json` `out_dir/detections.json` (per image: file, size, detections in original pixels,
    xyxy) and `out_dir/detections_coco.json` (COCO results, category_id = label, or the COCO category
    id for a COCO-trained checkpoint). For a checkpoint trained on VOC-layout data (voc, synthetic)
    the results are what `detect eval --detections` scores against such data: image_id = the file's
    stem, bbox in the XML's 1-based corner convention. Otherwise (COCO data) image_id = the file's
    name, which `detect eval --detections` maps to the annotation file's image id, and bbox in pixels
    as detections.json has them. Videos, cameras, streams:
    `out_dir/<name>.mp4` annotated at the input's frame rate and size (H.264 by default: `codec`), and
    `out_dir/<name>.jsonl`, one line per frame. Output names are unique in a run; no output may replace
    a source or one of `inputs` (the checkpoint). `tracking`: (track config, score threshold) to track objects in videos
    (detect/infer/tracking.py): track ids in the JSONL and the drawing, and `out_dir/<name>.tracks.csv`.
    """
    from detect.infer.sources import parse_sources

    images, videos = parse_sources(specs)  # every path checked before any work starts
    out_dir = Path(out_dir)
    names = _unique_names([annotated_name(source.name) for source in images])
    images = [replace(source, name=name) for source, name in zip(images, names)]
    videos = [replace(video, name=name) for video, name in zip(videos, _unique_names([v.name for v in videos]))]
    _refuse_to_overwrite_inputs(images, videos, out_dir, inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = InferenceSummary()
    started = time.perf_counter()
    if images:
        _infer_images(detector, images, out_dir, write_json, summary, progress)
    for video in videos:
        _infer_video(detector, video, out_dir, summary, max_frames, progress, tracking, codec)
    summary.seconds = time.perf_counter() - started
    return summary


def _refuse_to_overwrite_inputs(images, videos, out_dir: Path, other_inputs: Sequence[Path] = ()) -> None:
    """`--out` pointing at the input folder would write annotated copies over the originals."""
    from detect.outputs import refuse_overwrite

    inputs = [source.path for source in images] + [Path(v.target) for v in videos if v.kind == "file"]
    outputs = [out_dir / source.name for source in images]
    outputs += [out_dir / f"{v.name}{suffix}" for v in videos for suffix in (".mp4", ".jsonl")]
    outputs += [out_dir / "detections.json", out_dir / "detections_coco.json"]
    refuse_overwrite("--out", outputs, [*inputs, *other_inputs], given=out_dir)


def _infer_images(detector: Detector, images, out_dir: Path, write_json: bool, summary: InferenceSummary,
                  progress: bool) -> None:
    from tqdm import tqdm

    from detect.data.image_io import read_image

    records, coco_results = [], []
    names = [source.name for source in images]
    voc_layout = detector.config.data.format in ("voc", "synthetic")
    xyxy_to_corners = xyxy_to_voc if voc_layout else None
    bar = tqdm(total=len(images), unit="img", disable=not progress, desc="images")
    for chunk_start in range(0, len(images), detector.batch_size):
        chunk = list(zip(images[chunk_start:chunk_start + detector.batch_size],
                         names[chunk_start:chunk_start + detector.batch_size]))
        arrays, readable = [], []
        for source, name in chunk:
            try:
                arrays.append(read_image(source.path, max_pixels=detector.max_pixels))
                readable.append((source, name))
            except DataError as error:
                log.warning("skipping %s", error)
                summary.skipped.append(str(source.path))
        for (source, name), array, found in zip(readable, arrays, detector.detect_arrays(arrays) if arrays else []):
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, draw_detections(array, found, detector.class_names))
            summary.outputs.append(target)
            summary.images += 1
            summary.detections += len(found)
            image_id = len(records)
            records.append({
                "id": image_id, "file": str(source.path), "output": str(target),
                "height": found.image_size[0], "width": found.image_size[1], "detections": found.to_list(),
            })
            # VOC: the annotation's id, the file stem. COCO: the file's name, which `detect eval
            # --detections` maps to the annotation file's image id (infer has no annotation file).
            results_id = source.path.stem if voc_layout else source.path.name
            coco_results.extend(found.to_coco(results_id, detector.category_ids, xyxy_to_corners))
        bar.update(len(chunk))
    bar.close()
    if write_json:
        ids = detector.category_ids or range(1, len(detector.class_names) + 1)
        categories = [{"id": int(category_id), "label": label, "name": name}
                      for label, (category_id, name) in enumerate(zip(ids, detector.class_names), start=1)]
        json_path = out_dir / "detections.json"
        write_json_file(json_path, {"categories": categories, "images": records})
        coco_path = out_dir / "detections_coco.json"
        write_json_file(coco_path, coco_results)
        summary.outputs += [json_path, coco_path]


# Formats an annotated copy keeps (they hold colour and OpenCV writes them); other inputs (PGM and PBM
# are grey or black and white, GIF animated) get a PNG copy: `scan.pgm` -> `scan.png`.
COLOUR_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def annotated_name(name: str) -> str:
    """The annotated copy's name for an input image's name (relative path)."""
    path = Path(name)
    return name if path.suffix.lower() in COLOUR_OUTPUT_SUFFIXES else str(path.with_suffix(".png"))


def _unique_names(names: list[str]) -> list[str]:
    """Output names, unique in the run: the first source of a name keeps it; a later one gets `_1`,
    `_2` ... before the extension, skipping every name a source has of its own (`a/x.jpg`, `b/x.jpg`,
    `c/x_1.jpg` -> `x.jpg`, `x_2.jpg`, `x_1.jpg`). The same inputs give the same names."""
    own = set(names)
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, count = name, 0
        while candidate in taken or (count and candidate in own):
            count += 1
            path = Path(name)
            candidate = str(path.with_name(f"{path.stem}_{count}{path.suffix}"))
        taken.add(candidate)
        unique.append(candidate)
    return unique


def _infer_video(detector: Detector, video, out_dir: Path, summary: InferenceSummary, max_frames: int | None,
                 progress: bool, tracking=None, codec: str = DEFAULT_CODEC) -> None:
    from tqdm import tqdm

    from detect.infer.sources import capture_properties, open_capture
    from detect.infer.tracking import VideoTracking

    capture = open_capture(video)
    fps, frame_count = capture_properties(capture)
    if max_frames is not None and frame_count is not None:
        frame_count = min(frame_count, max_frames)
    tracks = VideoTracking(*tracking, detector.class_names) if tracking is not None else None
    draw = tracks.draw if tracks is not None else (
        lambda frame, found: draw_detections(frame, found, detector.class_names))
    output = VideoOutput(out_dir / f"{video.name}.mp4", out_dir / f"{video.name}.jsonl", fps, draw, codec=codec)
    bar = tqdm(total=frame_count, unit="frame", disable=not progress, desc=video.name)
    batch_size = video_batch_size(detector.batch_size, capture, video.name)
    try:
        for items in _batched(_prefetch(capture, max_frames, detector.prepare, fps), batch_size):
            frames, seconds, samples = (list(column) for column in zip(*items))
            results = detector.detect_arrays(frames, samples=samples)
            if tracks is not None:
                results = [tracks.track(found, frame) for found, frame in zip(results, frames)]
            output.put(frames, results, seconds)
            summary.detections += sum(len(found) for found in results)
            bar.update(len(frames))
    except KeyboardInterrupt:  # a live stream ends when the user says so; keep what was written
        log.warning("%s: stopped after %d frames", video.target, bar.n)
    finally:
        bar.close()
        capture.release()
        frames_done = output.close()
    if frames_done == 0:
        raise DetectError(f"{video.target}: opened, but no frame could be read")
    summary.videos += 1
    summary.frames += frames_done
    summary.outputs += [output.video_path, output.jsonl_path]
    if tracks is not None:
        summary.outputs.append(tracks.write_csv(out_dir / f"{video.name}.tracks.csv"))
        summary.tracker_seconds += tracks.seconds


# The most pixels of video frames one model call takes (with their preprocessed copies, they are what
# a batch holds in memory): `--batch-size 100000` must not buffer a whole video.
MAX_VIDEO_BATCH_PIXELS = 32_000_000


def video_batch_size(batch_size: int, capture, name: str) -> int:
    """`batch_size`, or fewer frames where that many would pass MAX_VIDEO_BATCH_PIXELS (said once)."""
    import cv2

    pixels = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) * int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if pixels <= 0 or batch_size * pixels <= MAX_VIDEO_BATCH_PIXELS:
        return batch_size
    capped = max(1, MAX_VIDEO_BATCH_PIXELS // pixels)
    log.warning("%s: %d frames per model call instead of --batch-size %d (at most %d pixels a call)", name, capped,
                batch_size, MAX_VIDEO_BATCH_PIXELS)
    return capped


def _prefetch(capture, max_frames: int | None, prepare, fps: float,
              depth: int = 32) -> Iterator[tuple[np.ndarray, float, Any]]:
    """(frame, its time in seconds, prepare(frame)), decoded and preprocessed on a background thread,
    so that both overlap the model (OpenCV and the resize release the GIL)."""
    from detect.infer.sources import read_timed_frames

    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            for frame, seconds in read_timed_frames(capture, max_frames, fps):
                item = (frame, seconds, prepare(frame))
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer below
            failure.append(error)
        finally:
            items.put(end)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    """Encodes by `path`'s suffix and writes under a temporary name first (detect.outputs.atomic_output)."""
    import cv2

    ok, encoded = cv2.imencode(path.suffix if path.suffix else ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DetectError(f"{path}: cannot encode the annotated image")
    with atomic_output(path) as temporary:
        encoded.tofile(str(temporary))


def write_json_file(path: Path, value) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(value))


def draw_detections(image_rgb: np.ndarray, found: Detections, class_names: Sequence[str]) -> np.ndarray:
    """A copy of the image with boxes, class names and scores drawn (detect.draw: a colour per class,
    labels on filled backgrounds)."""
    from detect.draw import draw_boxes

    return draw_boxes(image_rgb, found.boxes, found.labels, class_names, found.scores)
