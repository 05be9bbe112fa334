"""The HTTP API: /v1/detect, /v1/model, /healthz, /readyz, /metrics and the page at /.

Routes read what they share from `request.app.state`: `model` (ServedModel), `queue` (BatchQueue),
`pixel_budget` (PixelBudget: decoded pixels held at once), `metrics` (ServerMetrics), `settings`
(ServeSettings) and `ready` (bool). No route fetches a URL a
client names: images arrive as uploaded bytes only.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from detect.errors import DetectError
from detect.serve.answers import annotated_jpeg_base64, image_record, keep_detections
from detect.serve.batching import QueueFull
from detect.serve.pixel_budget import PixelBudgetFull
from detect.serve.uploads import UploadError, decode_upload, upload_pixels

router = APIRouter()


class ApiError(HTTPException):
    """A 4xx/5xx answered as `{"error": message}` (the app's handler renders every HTTPException so)."""


@router.post("/v1/detect", tags=["detect"], summary="Detect objects in uploaded images")
async def detect(
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more images (JPEG, PNG, BMP, TIFF, WebP...).")],
    score_threshold: Annotated[float, Query(ge=0.0, le=1.0, description="Keep scores at least this.")] = 0.5,
    classes: Annotated[str | None, Query(description="Class names to keep, comma-separated; all if absent.")] = None,
    annotate: Annotated[bool, Query(description="Also return each image drawn, as base64 JPEG.")] = False,
) -> dict[str, Any]:
    """Run the detector on each uploaded image. The answer has one record per image, in upload order:
    `{"images": [{"id", "file", "height", "width", "detections": [{"box": [x1, y1, x2, y2], "score",
    "label", "class_name"}], "annotated_jpeg"?}]}`, boxes in the original image's pixels (the schema
    of `detect infer --json`'s detections.json)."""
    state = request.app.state
    labels = _labels_or_422(state.model, classes)
    max_files = min(state.settings.max_files, state.queue.capacity)  # more could never fit in the queue
    if len(files) > max_files:
        raise ApiError(422, f"{len(files)} files in one request; the limit is {max_files}")
    names = [upload.filename or f"files[{index}]" for index, upload in enumerate(files)]
    settings = state.settings
    try:
        state.queue.ensure_room(len(files))  # a busy server refuses before decoding
        uploads = [await upload.read() for upload in files]
        pixels = _declared_pixels(uploads, names, settings.max_pixels, settings.max_request_pixels)
        with state.pixel_budget.reserve(pixels):  # held until the answer is built, annotated copies included
            images = [await _decoded(data, name, settings.max_pixels) for data, name in zip(uploads, names)]
            del uploads
            found = await state.queue.submit(images)
            return {"images": await _records(names, images, found, score_threshold, labels, annotate,
                                             state.model.class_names)}
    except (QueueFull, PixelBudgetFull) as busy:
        raise ApiError(503, str(busy), headers={"Retry-After": str(busy.retry_after_s)}) from None


def _declared_pixels(uploads: list[bytes], names: list[str], max_pixels: int, max_request_pixels: int) -> int:
    """The pixels all uploads of a request declare in their headers (nothing decoded yet); 415 / 422
    for a file that is not an image or is over the per-image limit, 422 when all of them together
    are over the per-request limit."""
    try:
        pixels = [upload_pixels(data, name, max_pixels) for data, name in zip(uploads, names)]
    except UploadError as error:
        raise ApiError(error.status, str(error)) from None
    if sum(pixels) > max_request_pixels:
        raise ApiError(422, f"{len(uploads)} images of {sum(pixels)} pixels in all; the limit for one request is "
                            f"{max_request_pixels} pixels (--max-request-pixels)")
    return sum(pixels)


async def _records(names, images, found, score_threshold: float, labels, annotate: bool, class_names) -> list[dict]:
    records = []
    for index, (name, image, result) in enumerate(zip(names, images, found)):
        kept = keep_detections(result, score_threshold, labels)
        record = image_record(index, name, kept)
        if annotate:
            record["annotated_jpeg"] = await run_in_threadpool(annotated_jpeg_base64, image, kept, class_names)
        records.append(record)
    return records


def _labels_or_422(model, classes: str | None) -> set[int] | None:
    if classes is None:
        return None
    try:
        return model.labels_of(classes)
    except DetectError as error:
        raise ApiError(422, str(error)) from None


async def _decoded(data: bytes, name: str, max_pixels: int):
    try:  # decoding releases the GIL: off the event loop, it overlaps other requests
        return await run_in_threadpool(decode_upload, data, name, max_pixels)
    except UploadError as error:
        raise ApiError(error.status, str(error)) from None


@router.get("/v1/model", tags=["model"], summary="The served model")
async def model(request: Request) -> dict[str, Any]:
    """Architecture, backbone, class names, input size and checkpoint metadata (file, size, sha256,
    epoch, step, best validation mAP)."""
    return request.app.state.model.info


@router.get("/healthz", tags=["probes"], summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"], summary="Readiness")
async def readyz(request: Request) -> JSONResponse:
    """200 once the model is loaded and has answered a warm-up call; 503 before."""
    if request.app.state.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "starting"}, status_code=503)


@router.get("/metrics", tags=["probes"], summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text: answers by route and status, latency and batch size histograms, queue depth,
    process memory."""
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(resources.files("detect.serve").joinpath("static/index.html").read_text(encoding="utf-8"))
