"""Run the server: load the checkpoint once, build the app, serve it with uvicorn."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from detect.serve.app import ServeSettings, create_app
from detect.serve.model import load_served_model

log = logging.getLogger(__name__)


def run_server(checkpoint: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
               settings: ServeSettings | None = None, backend: str = "auto", weights: Path | None = None) -> None:
    """Blocks until the server is stopped (Ctrl-C)."""
    import uvicorn

    settings = settings or ServeSettings()
    if not _is_loopback(host) and not settings.api_key:
        log.warning("serving on %s without an API key: anyone who can reach it can use it "
                    "(set --api-key or DETECT_API_KEY)", host)
    model = load_served_model(checkpoint, device, backend, weights)
    app = create_app(model, settings)
    print(f"detect serve: {model.name} ({model.info['arch']}, {len(model.class_names)} classes) on "
          f"{model.info['device']} with {model.info['backend']}; page at http://{_url_host(host)}:{port}/, "
          f"API docs at /docs",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
