"""ASGI guards in front of the routes: the API key and the upload size limit.

Both answer before the request body is read: a client without the key, or one announcing too large
a body, is refused at once; a body without a Content-Length (chunked) is counted as it arrives and
refused as soon as it passes the limit, so no more than the limit is ever read.
"""

from __future__ import annotations

import json
import secrets

from starlette.exceptions import HTTPException

API_KEY_HEADER = "x-api-key"
# Open without a key: the page itself (it asks for the key), the docs, and the probes.
OPEN_PATHS = ("/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/healthz", "/readyz")
OPEN_PREFIXES = ("/static/",)


async def send_json_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error answer `{"error": message}` straight through ASGI."""
    body = json.dumps({"error": message}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: str) -> str | None:
    value = _header_bytes(scope, name)
    return None if value is None else value.decode("latin-1")


def _header_bytes(scope, name: str) -> bytes | None:
    """The header's raw bytes: a key with non-ASCII characters arrives as its UTF-8 bytes, and is
    compared as such (decoding them as Latin-1 first made such a key never match)."""
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value
    return None


class ApiKeyMiddleware:
    """401 unless the request carries the key as `X-API-Key: KEY` or `Authorization: Bearer KEY`
    (compared in constant time). Paths in OPEN_PATHS / OPEN_PREFIXES need no key."""

    def __init__(self, app, api_key: str):
        self.app, self.api_key = app, api_key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _is_open(scope["path"]) or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        await send_json_error(send, 401, "missing or wrong API key: send it as the X-API-Key header",
                              {"www-authenticate": 'Bearer realm="detect"'})

    def _authorised(self, scope) -> bool:
        given = _header_bytes(scope, API_KEY_HEADER)
        if given is None:
            authorization = _header_bytes(scope, "authorization") or b""
            if authorization.lower().startswith(b"bearer "):
                given = authorization[len(b"bearer "):].strip()
        return given is not None and secrets.compare_digest(given, self.api_key)


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit. An HTTPException, so that the framework's
    body parser passes it on (it turns other errors into 400) and the app answers 413 with it."""

    def __init__(self, max_bytes: int):
        super().__init__(413, upload_too_large_message(f"more than {max_bytes} bytes", max_bytes))


def upload_too_large_message(size: str, max_bytes: int) -> str:
    return f"upload too large: {size}, the limit is {max_bytes / 2**20:.3g} MB (--max-upload-mb)"


class UploadLimitMiddleware:
    """413 for a request body over `max_bytes`: from its Content-Length before reading any of it, or,
    without one, as soon as the bytes received pass the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, "content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"{int(declared)} bytes")
            return
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, f"more than {self.max_bytes} bytes")

    async def _refuse(self, send, size: str) -> None:
        await send_json_error(send, 413, upload_too_large_message(size, self.max_bytes), {"connection": "close"})
