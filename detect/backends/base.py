"""What every backend shares: the registry it joins. What it loads, a LoadedModel, is the detection
contract's (detect/detections/loaded.py)."""

from __future__ import annotations

from detect.registry import Registry

BACKENDS = Registry("backend", "--backend")
