"""What `detect infer` writes for a video, camera or stream: the annotated video and a JSONL record
per frame, written on a background thread so the model never waits for the encoder.

    output = VideoOutput(video_path, jsonl_path, fps, class_names, draw)
    output.put(frames, results, seconds)    frames HxWx3 uint8 RGB; results: one Detections each;
                                            seconds: each frame's time in the source
    frames_written = output.close()         raises what failed on the thread

Both files are written under temporary names and renamed when `close()` finds the video whole (it
opens it again and counts the frames): a full disk or an error leaves no half-written video behind,
and says so in one line. The video is H.264 in MP4 (yuv420p, index first), which browsers play,
through PyAV (its wheels carry FFmpeg; `codec`: h264, hevc or mpeg4); without PyAV, MPEG-4 Part 2 through
OpenCV, with a warning. Both need an even width and height of at least 2: other frames are padded
with black on the right and bottom, so boxes keep their pixel positions.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from detect.errors import DetectError
from detect.outputs import OutOfSpaceError, is_out_of_space, out_of_space_message, temporary_name
from detect.video_writer import DEFAULT_CODEC, open_writer


def encodable_size(width: int, height: int) -> tuple[int, int]:
    """The smallest even size of at least 2 x 2 that holds `width` x `height`."""
    return max(2, width + width % 2), max(2, height + height % 2)


def pad_to(frame_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    pad_bottom, pad_right = height - frame_bgr.shape[0], width - frame_bgr.shape[1]
    if pad_bottom == 0 and pad_right == 0:
        return frame_bgr
    return cv2.copyMakeBorder(frame_bgr, 0, pad_bottom, 0, pad_right, cv2.BORDER_CONSTANT, value=0)


class VideoOutput:
    """See the module docstring. `draw(frame_rgb, detections)` returns the annotated RGB frame."""

    def __init__(self, video_path: Path, jsonl_path: Path, fps: float, draw: Callable, depth: int = 4,
                 codec: str = DEFAULT_CODEC):
        self.video_path, self.jsonl_path, self.fps, self.draw = video_path, jsonl_path, fps, draw
        self.codec = codec
        self._temporary_video, self._temporary_jsonl = temporary_name(video_path), temporary_name(jsonl_path)
        self.frames_done = 0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, frames: list[np.ndarray], results: Sequence, seconds: Sequence[float]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((frames, results, seconds))

    def close(self) -> int:
        """Waits for the queue to drain; renames the files into place when the video is whole; returns
        the number of frames written. Errors of the thread are raised here, the temporaries removed."""
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            if self.frames_done:
                self._check_whole()
                os.replace(self._temporary_video, self.video_path)
                os.replace(self._temporary_jsonl, self.jsonl_path)
        except OSError as error:
            if is_out_of_space(error, self.video_path.parent):
                raise OutOfSpaceError(out_of_space_message(self.video_path.parent, self.video_path.name)) from None
            raise DetectError(f"{self.video_path}: cannot write the video ({error.strerror or error})") from None
        finally:
            for path in (self._temporary_video, self._temporary_jsonl):
                path.unlink(missing_ok=True)
        return self.frames_done

    def _check_whole(self) -> None:
        """The encoder does not report failed writes: read the file's frame count back."""
        capture = cv2.VideoCapture(str(self._temporary_video))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
        capture.release()
        if frames == self.frames_done:
            return
        folder = self.video_path.parent
        if is_out_of_space(None, folder):
            raise OutOfSpaceError(out_of_space_message(folder, self.video_path.name))
        raise DetectError(f"{self.video_path}: the encoder wrote {max(frames, 0)} of {self.frames_done} frames; "
                          f"not written")

    def _run(self) -> None:
        writer, jsonl, size = None, None, None
        try:
            while (item := self._queue.get()) is not None:
                for frame, found, seconds in zip(*item):
                    if writer is None:
                        size = encodable_size(frame.shape[1], frame.shape[0])
                        writer = open_writer(self._temporary_video, self.video_path, self.fps, *size, self.codec)
                        jsonl = open(self._temporary_jsonl, "w")
                    annotated = cv2.cvtColor(self.draw(frame, found), cv2.COLOR_RGB2BGR)
                    writer.write(pad_to(annotated, *size))
                    record = {"frame": self.frames_done, "time": round(float(seconds), 4),
                              "detections": found.to_list()}
                    jsonl.write(json.dumps(record) + "\n")
                    self.frames_done += 1
        except BaseException as error:  # handed to the main thread by put() / close()
            self._error = error
            while self._queue.get() is not None:  # drain, so that put() never blocks after a failure
                pass
        finally:
            if writer is not None:
                writer.release()
            if jsonl is not None:
                try:
                    jsonl.close()
                except OSError as error:  # the last buffered lines met a full disk
                    self._error = self._error or error
