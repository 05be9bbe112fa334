"""What `detect infer` reads: turn SOURCE strings into image files and video captures.

A SOURCE is one of
    an image file            photo.jpg            (extension in IMAGE_EXTENSIONS)
    a folder                 photos/              (recursive; images and videos by extension)
    a glob                   'shots/**/*.png'     (quoted, so the shell leaves it alone)
    a video file             clip.mp4             (extension in VIDEO_EXTENSIONS)
    a camera index           0                    (cv2.VideoCapture(0))
    a stream URL             rtsp://host/path     (rtsp, rtmp, http(s), udp, tcp; cv2.VideoCapture)

`parse_sources(specs)` returns the image files and the video sources, in the order given; a missing
path, an empty folder or glob, or an unknown extension is a one-line DetectError. `open_capture` opens
a video source and `read_frames` yields its frames as HxWx3 uint8 RGB arrays; images are read by
detect.data.image_io.read_image (corrupt and truncated files are DataErrors naming the file).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from detect.errors import DetectError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".gif")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
_GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class ImageSource:
    """An image file; `name` is its path relative to the folder or glob root it was found under."""

    path: Path
    name: str


@dataclass(frozen=True)
class VideoSource:
    """A video file (`target` a path string), a camera (`target` an int) or a stream (`target` a URL)."""

    target: str | int
    kind: str  # "file" | "camera" | "stream"
    name: str  # a file-name-safe stem for the outputs

    @property
    def is_live(self) -> bool:
        """Cameras and streams have no end and no frame count."""
        return self.kind != "file"


def parse_sources(specs: list[str]) -> tuple[list[ImageSource], list[VideoSource]]:
    """All SOURCE strings -> (image files, video sources), each in the order found (folders sorted)."""
    if not specs:
        raise DetectError("no SOURCE given: pass image files, folders, globs, videos, a camera index or a URL")
    images: list[ImageSource] = []
    videos: list[VideoSource] = []
    seen: set = set()  # a file named twice (`dir/` and `dir/a.jpg`) is read once
    for spec in specs:
        found_images, found_videos = parse_source(spec)
        for found in [*found_images, *found_videos]:
            key = found.path.resolve() if isinstance(found, ImageSource) else _video_key(found)
            if key in seen:
                continue
            seen.add(key)
            (images if isinstance(found, ImageSource) else videos).append(found)
    return images, videos


def _video_key(source: VideoSource):
    return Path(source.target).resolve() if source.kind == "file" else source.target


def parse_source(spec: str) -> tuple[list[ImageSource], list[VideoSource]]:
    """One SOURCE string -> (image files, video sources). See the module docstring for the kinds."""
    text = str(spec).strip()
    if text.isdigit():
        return [], [VideoSource(int(text), "camera", f"camera{text}")]
    if text.lower().startswith(STREAM_SCHEMES):
        return [], [VideoSource(text, "stream", _stream_name(text))]
    path = Path(text).expanduser()
    if path.is_dir():
        return _classify(list(walk_files(path)), root=path, origin=f"folder {path}")
    if path.is_file():
        return _classify([path], root=path.parent, origin=None)
    if any(char in text for char in _GLOB_CHARACTERS):
        files = glob_files(path)
        if not files:
            raise DetectError(f"{text}: the glob matches no files")
        return _classify(files, root=_glob_root(path), origin=f"glob {text}")
    raise DetectError(f"{text}: no such file or folder (nor a camera index or stream URL)")


def _classify(files: list[Path], root: Path, origin: str | None) -> tuple[list[ImageSource], list[VideoSource]]:
    """Sort files into images and videos by extension; `origin` set: skip other files silently."""
    images, videos = [], []
    for file in files:
        suffix = file.suffix.lower()
        name = _relative_name(file, root)
        if suffix in IMAGE_EXTENSIONS:
            images.append(ImageSource(file, name))
        elif suffix in VIDEO_EXTENSIONS:
            videos.append(VideoSource(str(file), "file", str(Path(name).with_suffix(""))))
        elif origin is None:
            raise DetectError(
                f"{file}: unsupported file type '{file.suffix}' "
                f"(images: {' '.join(IMAGE_EXTENSIONS)}; videos: {' '.join(VIDEO_EXTENSIONS)})"
            )
    if origin is not None and not images and not videos:
        raise DetectError(f"{origin}: no images or videos in it (by extension)")
    return images, videos


def walk_files(root: Path) -> Iterator[Path]:
    """Every file below `root`, sorted folder by folder. Links to folders are followed, but no folder
    is entered twice (by its device and inode): a link back up the tree would otherwise never end,
    and Python's own recursive glob follows such loops until the path is too long."""
    seen = {_identity(root)}
    for folder, subfolders, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(subfolders):
            identity = _identity(Path(folder) / name)
            if identity is not None and identity not in seen:
                seen.add(identity)
                kept.append(name)
        subfolders[:] = kept
        for name in sorted(files):
            if (Path(folder) / name).is_file():  # not a broken link
                yield Path(folder) / name


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        status = folder.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def glob_files(pattern: Path) -> list[Path]:
    """The files a glob pattern names (`**` any number of folders), and every file inside a folder it
    names, found with `walk_files` from the pattern's fixed leading part, so no folder is read twice."""
    root = _glob_root(pattern)
    pattern_parts = pattern.parts[len(root.parts):] if root != Path(".") else pattern.parts
    found = []
    for file in walk_files(root):
        parts = file.relative_to(root).parts
        # The file itself, or one of the folders it lies in, matches.
        if any(_glob_match(pattern_parts, parts[:end]) for end in range(len(parts), 0, -1)):
            found.append(file)
    return found


def _glob_match(pattern_parts: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Shell-style matching name by name (fnmatch), `**` standing for any number of folders; as
    glob does, a wildcard does not match a name that starts with a dot."""
    if not pattern_parts:
        return not parts
    head, rest = pattern_parts[0], pattern_parts[1:]
    if head == "**":
        return any(_glob_match(rest, parts[start:]) for start in range(len(parts) + 1))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _glob_match(rest, parts[1:])


def _relative_name(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return file.name


def _glob_root(pattern: Path) -> Path:
    """The longest leading part of a glob pattern without glob characters: outputs keep paths below it."""
    parts = []
    for part in pattern.parts:
        if any(char in part for char in _GLOB_CHARACTERS):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _stream_name(url: str) -> str:
    """`rtsp://cam.local:554/live/1` -> `cam.local_554_live_1` (a file-name-safe stem)."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    safe = "".join(char if char.isalnum() or char in "-." else "_" for char in rest).strip("_")
    return safe or "stream"


# ---------------------------------------------------------------------------------------------------
# Reading


def open_capture(source: VideoSource) -> cv2.VideoCapture:
    """Open a video file, camera or stream; one that cannot be opened is a one-line DetectError."""
    if source.kind == "file" and not Path(str(source.target)).is_file():
        raise DetectError(f"{source.target}: no such video file")
    capture = _quietly(cv2.VideoCapture, source.target)
    if not capture.isOpened():
        capture.release()
        what = {"file": "video file", "camera": "camera", "stream": "stream"}[source.kind]
        raise DetectError(f"{source.target}: cannot open the {what} (OpenCV VideoCapture failed)")
    return capture


def _quietly(function, *args):
    """Call an OpenCV function with its own warnings muted (a failed open is reported by us, in one line)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        return function(*args)
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        return function(*args)
    finally:
        logging.setLogLevel(previous)


def capture_properties(capture: cv2.VideoCapture, default_fps: float = 25.0) -> tuple[float, int | None]:
    """(frames per second, frame count or None when unknown). Streams often report 0 fps: use the default."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = default_fps
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return float(fps), (count if count > 0 else None)


def read_frames(capture: cv2.VideoCapture, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Frames of an open capture as HxWx3 uint8 RGB, until the end (or `max_frames`)."""
    for frame, _ in read_timed_frames(capture, max_frames):
        yield frame


def read_timed_frames(capture: cv2.VideoCapture, max_frames: int | None = None,
                      fps: float = 25.0) -> Iterator[tuple[np.ndarray, float]]:
    """(frame as HxWx3 uint8 RGB, its time in seconds) until the end (or `max_frames`). The time is
    the container's timestamp of the frame, so variable-frame-rate video keeps its real times; where
    a source gives none that moves forward (cameras, some streams), frame index / `fps`."""
    count, previous = 0, -1.0
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        stamp = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        seconds = stamp if np.isfinite(stamp) and stamp > previous and (count == 0 or stamp > 0) else count / fps
        previous = seconds
        count += 1
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), seconds
