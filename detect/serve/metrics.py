"""Prometheus metrics of the server (prometheus_client, one registry per app).

    detect_requests_total{route, status}        answers by route template and HTTP status
    detect_request_seconds{route}               latency histogram, request start to last byte
    detect_batch_size                           images per model call (histogram)
    detect_queue_depth                          images waiting for the model (gauge)
    process_resident_memory_bytes, ...          the process collector's memory and CPU figures

`MetricsMiddleware` wraps the whole app, so refusals by the API key and upload guards are counted too.
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self, max_batch: int, queue_depth: Callable[[], int]):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("detect_requests", "HTTP answers by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("detect_request_seconds", "HTTP request latency in seconds", ["route"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        batch_buckets = sorted({1, 2, 4, 8, 16, 32, 64, max_batch} & set(range(1, max_batch + 1)))
        self.batch_size = Histogram("detect_batch_size", "images per model call", buckets=batch_buckets,
                                    registry=self.registry)
        depth = Gauge("detect_queue_depth", "images waiting for the model", registry=self.registry)
        depth.set_function(queue_depth)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """(Prometheus text exposition, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware: counts every HTTP answer and times it. The route label is the matched route's
    template (`/v1/detect`); a request refused before routing (API key, upload limit) is labelled with
    its path when that is one of `known_paths`; anything else is `/static` or `other`, so that clients
    cannot grow the label set by inventing paths."""

    def __init__(self, app, metrics: ServerMetrics, known_paths: frozenset[str] = frozenset()):
        self.app, self.metrics, self.known_paths = app, metrics, known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.observe_request(self._route(scope), status["code"], time.perf_counter() - started)

    def _route(self, scope) -> str:
        matched = getattr(scope.get("route"), "path", None)
        if matched:
            return matched
        path = scope.get("path", "")
        if path in self.known_paths:
            return path
        return "/static" if path.startswith("/static/") else "other"
