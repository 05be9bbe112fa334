"""docs/config.md is generated from detect/config.py: it must list every key, as the code has it now."""

from __future__ import annotations

import importlib.util

from detect.config import Config, config_to_dict
from tests.conftest import REPO_ROOT


def load_tool():
    spec = importlib.util.spec_from_file_location("config_reference", REPO_ROOT / "tools" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dotted_keys(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict):
            keys += dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_docs_config_md_is_up_to_date():
    tool = load_tool()
    assert (REPO_ROOT / "docs" / "config.md").read_text() == tool.render(), (
        "docs/config.md is stale: run `python tools/config_reference.py --write`"
    )


def test_every_key_is_documented_with_a_meaning():
    text = load_tool().render()
    for key in dotted_keys(config_to_dict(Config())):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        assert not row.rstrip().endswith("|  |"), f"{key} has no description"
