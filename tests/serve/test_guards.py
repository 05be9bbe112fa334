"""The upload limit and the API key at the ASGI level: refused before the body is read."""

from __future__ import annotations

import asyncio
import json

from detect.serve.guards import ApiKeyMiddleware, UploadLimitMiddleware


async def _read_whole_body(scope, receive, send):
    """An app that reads the whole body, then answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes], path: str = "/v1/detect"):
    """(status, JSON body, chunks the app pulled) for one request of `chunks`."""
    pulled = []
    sent = []

    async def receive():
        index = len(pulled)
        pulled.append(index)
        return {"type": "http.request", "body": chunks[index], "more_body": index + 1 < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    return status, json.loads(b"".join(m.get("body", b"") for m in sent[1:])), len(pulled)


def test_declared_length_over_the_limit_is_refused_without_reading():
    app = UploadLimitMiddleware(_read_whole_body, max_bytes=10_000)
    status, body, pulled = _call(app, [(b"content-length", b"50000")], [b"x" * 1000] * 50)
    assert (status, pulled) == (413, 0)
    assert "50000 bytes" in body["error"]


def test_chunked_body_is_cut_off_at_the_limit():
    app = UploadLimitMiddleware(_read_whole_body, max_bytes=10_000)
    status, body, pulled = _call(app, [], [b"x" * 1000] * 100)  # no Content-Length: 100 kB streamed
    assert status == 413 and "upload too large" in body["error"]
    assert pulled == 11  # the chunk that passed 10 000 bytes is the last one read


def test_body_within_the_limit_passes():
    app = UploadLimitMiddleware(_read_whole_body, max_bytes=10_000)
    status, body, _ = _call(app, [(b"content-length", b"5000")], [b"x" * 1000] * 5)
    assert (status, body) == (200, {"size": 5000})


def test_api_key_refuses_before_the_body_is_read():
    app = ApiKeyMiddleware(_read_whole_body, api_key="k")
    status, body, pulled = _call(app, [(b"x-api-key", b"nope")], [b"x" * 1000] * 5)
    assert (status, pulled) == (401, 0) and "API key" in body["error"]
    assert _call(app, [(b"x-api-key", b"k")], [b"x"])[0] == 200
    assert _call(app, [], [b"x"], path="/healthz")[0] == 200
