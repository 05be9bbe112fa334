"""How many decoded pixels the server holds at once, over all requests in flight.

A per-image limit alone lets a request of 16 images just under it, or many such requests at once,
hold gigabytes of decoded pixels. Each request therefore declares its pixels (read from the headers,
before anything is decoded) and reserves them here until its answer is built:

    budget = PixelBudget(capacity=200_000_000)
    with budget.reserve(pixels):     # PixelBudgetFull when they do not fit now (the route answers 503)
        ... decode, detect, answer ...

All calls happen on the event loop's thread, so a plain counter is enough.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class PixelBudgetFull(Exception):
    """The pixels of a request do not fit beside those held by the requests in flight."""

    def __init__(self, wanted: int, held: int, capacity: int):
        super().__init__(f"the server is busy: {held} decoded pixels are held by other requests and this request "
                         f"needs {wanted} of the {capacity} allowed at once; retry in 1 s")
        self.retry_after_s = 1


class PixelBudget:
    """A counter of the pixels reserved by requests in flight, at most `capacity`."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 pixel, got {capacity}")
        self.capacity = capacity
        self.held = 0

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Holds `pixels` for the `with` block; PixelBudgetFull at once when they do not fit."""
        if self.held + pixels > self.capacity:
            raise PixelBudgetFull(pixels, self.held, self.capacity)
        self.held += pixels
        try:
            yield
        finally:
            self.held -= pixels
