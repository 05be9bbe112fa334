"""docs/config.md is generated from detect/config/schema.py: it must list every key, as the code has it now."""

from __future__ import annotations

import importlib.util
import re

import pytest
from pydantic import BaseModel

from detect.config import Config, FasterRCNNModelConfig, SSDModelConfig, config_to_dict
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
    every_model = {**FasterRCNNModelConfig().model_dump(mode="json"), **SSDModelConfig().model_dump(mode="json")}
    for key in dotted_keys({**config_to_dict(Config()), "model": every_model}):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        assert not row.rstrip().endswith("|  |"), f"{key} has no description"



def sections(model, prefix="", title=None, keys=None):
    """(title, section model) of every config section, as docs/config.md heads them (a union of sections,
    `model`: the keys its members share, then each member's own)."""
    found = [(title or prefix.rstrip(".") or "top level", model)]
    for name, field in model.model_fields.items():
        if keys is not None and name not in keys:
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += sections(field.annotation, f"{prefix}{name}.")
        members = load_tool().union_members(field.annotation)
        for sub_title, member, member_keys in (load_tool().union_sections(members, f"{prefix}{name}") if members
                                               else []):
            found += sections(member, f"{prefix}{name}.", sub_title, member_keys)
    return found


def test_every_architecture_has_its_own_model_section():
    titles = [title for title, _ in sections(Config)]
    assert {"model", "model (faster_rcnn)", "model (ssd, ssdlite)", "model.rpn", "model.ssd"} <= set(titles)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;])\s+", text.strip()) if s]


def says_twice(text: str, words: int = 4) -> bool:
    """Whether some run of `words` words comes twice (a description written twice, maybe reworded)."""
    tokens = re.findall(r"[\w'/-]+", text.lower())
    runs = [tuple(tokens[i:i + words]) for i in range(len(tokens) - words + 1)]
    return len(set(runs)) < len(runs)


def check_texts_whole_and_once(tool) -> None:
    """Each section's text is its whole docstring; no description is cut short, says a sentence
    twice, or repeats its section's text."""
    text = tool.render()
    for title, model in sections(Config):
        body = text.split(f"\n## `{title}`\n", 1)[1].split("\n## ", 1)[0].strip()
        intro = body.split("\n", 1)[0]
        for row in (line for line in body.splitlines() if line.startswith("| `")):
            meaning = row.rsplit(" | ", 1)[1].removesuffix(" |").strip()
            assert meaning.endswith((".", ")", "`")), f"description cut: {row}"
            assert not says_twice(meaning), f"repeated text: {row}"
            assert not set(sentences(meaning)) & set(sentences(intro)), f"repeats its section's text: {row}"
        assert intro == " ".join((model.__doc__ or "").split()), f"{title}: section text cut or changed"
        assert intro.endswith((".", ")")), f"{title}: section text cut"


def test_every_text_is_shown_whole_and_once():
    check_texts_whole_and_once(load_tool())


def test_a_cut_section_text_is_caught(monkeypatch):
    tool = load_tool()
    monkeypatch.setattr(tool, "section_text", lambda model: (model.__doc__ or "").strip().splitlines()[0])
    with pytest.raises(AssertionError, match="section text cut"):
        check_texts_whole_and_once(tool)


def test_says_twice_finds_a_reworded_repeat():
    assert says_twice(
        "Proposals smaller than this (pixels) are dropped. proposals smaller than this (pixels) are dropped")
    assert not says_twice("Clip the default boxes to the image, or only their size to the image.")


def test_a_repeated_description_is_caught(monkeypatch):
    tool = load_tool()
    monkeypatch.setattr(tool, "one_line", lambda text: " ".join(text.split()) + " " + " ".join(text.split()))
    with pytest.raises(AssertionError, match="repeated text"):
        check_texts_whole_and_once(tool)
