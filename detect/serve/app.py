"""The ASGI app of `detect serve`: FastAPI routes behind the metrics, API key and upload guards.

    app = create_app(load_served_model("best.pt"), ServeSettings(max_batch=8))
    uvicorn.run(app, host="127.0.0.1", port=8000)

On start-up the batch queue's worker starts and one warm-up image goes through the model; `/readyz`
answers 200 from then on. Every error is answered as JSON `{"error": "one line"}` (422s from
parameter checks add `details`), and the server keeps serving after any of them.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from detect.data.image_header import DEFAULT_MAX_PIXELS
from detect.serve.batching import BatchQueue
from detect.serve.guards import ApiKeyMiddleware, UploadLimitMiddleware
from detect.serve.metrics import MetricsMiddleware, ServerMetrics
from detect.serve.model import ServedModel
from detect.serve.pixel_budget import PixelBudget
from detect.serve.routes import router

log = logging.getLogger(__name__)
WARM_UP_SIZE = (64, 64)


@dataclass
class ServeSettings:
    """max_batch images per model call, waiting at most max_wait_ms for them; queue_capacity images may
    wait (more: 503); max_upload_mb bounds a request's body; max_files the images in one request;
    max_pixels one image's pixels, max_request_pixels a request's in all (422 above, from the headers,
    before decoding); max_held_pixels the decoded pixels of all requests in flight (503 above);
    api_key: None leaves the API open."""

    max_batch: int = 8
    max_wait_ms: float = 10.0
    queue_capacity: int = 64
    max_upload_mb: float = 20.0
    max_files: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_request_pixels: int = 2 * DEFAULT_MAX_PIXELS
    max_held_pixels: int = 4 * DEFAULT_MAX_PIXELS
    api_key: str | None = None

    def __post_init__(self):
        # A request allowed on its own must fit the server's budget, and one image must fit a request.
        self.max_request_pixels = max(self.max_request_pixels, self.max_pixels)
        self.max_held_pixels = max(self.max_held_pixels, self.max_request_pixels)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


def create_app(model: ServedModel, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    queue = BatchQueue(model.predict, max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000.0,
                       capacity=max(settings.queue_capacity, settings.max_batch))
    metrics = ServerMetrics(settings.max_batch, lambda: queue.depth)
    queue.on_batch = metrics.batch_size.observe

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        await queue.run_once([np.zeros((*WARM_UP_SIZE, 3), np.uint8)])
        app.state.ready = True
        yield
        app.state.ready = False
        await queue.stop()

    app = FastAPI(title="detect", summary=f"Object detection with {model.name}", lifespan=lifespan,
                  description=_description(settings))
    app.state.model, app.state.queue, app.state.metrics = model, queue, metrics
    app.state.settings, app.state.ready = settings, False
    app.state.pixel_budget = PixelBudget(settings.max_held_pixels)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(resources.files("detect.serve") / "static")), name="static")
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    # Added last = outermost: metrics see every answer, the key is checked before the upload is read.
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=frozenset(route.path for route in router.routes))
    return app


def _description(settings: ServeSettings) -> str:
    text = (f"Batches up to {settings.max_batch} images per model call (waiting up to {settings.max_wait_ms:g} ms); "
            f"uploads up to {settings.max_upload_mb:g} MB.")
    if settings.api_key:
        text += " Send the API key as the `X-API-Key` header (or `Authorization: Bearer KEY`) to /v1/* and /metrics."
    return text


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """500 as JSON with the error's one-line summary; the traceback goes to the server's log."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    first_line = (str(error).strip().splitlines() or [""])[0]
    return JSONResponse({"error": f"internal error: {type(error).__name__}: {first_line}"}, status_code=500)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with one line naming each bad or missing field, and FastAPI's details."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query"))
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    details = [{"loc": list(item.get("loc", ())), "msg": item.get("msg"), "type": item.get("type")}
               for item in error.errors()]
    return JSONResponse({"error": "; ".join(problems) or "invalid request", "details": details}, status_code=422)
