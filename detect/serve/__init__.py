"""`detect serve`: an HTTP API and a web page for a trained detector.

    app.py       the FastAPI app: routes behind the metrics, API key and upload guards
    routes.py    /v1/detect, /v1/model, /healthz, /readyz, /metrics, the page at /
    batching.py  the bounded queue that gathers concurrent requests' images into model calls
    model.py     the Detector loaded once, and what /v1/model says about it
    uploads.py   uploaded bytes -> RGB arrays, or the 4xx naming what is wrong
    answers.py   the per-image JSON (detections.json's schema) and the annotated JPEG
    guards.py    API key and upload size limit, both before the body is read
    metrics.py   Prometheus metrics
    server.py    load, build and run under uvicorn (what the CLI calls)
    static/      the page: plain HTML, CSS and JavaScript, no build step
"""
