"""Write the configuration reference (docs/config.md) from the typed config in detect/config/.

    python tools/config_reference.py            # print it
    python tools/config_reference.py --write    # update docs/config.md

Every key's description is the docstring written under its field in detect/config/ (schema.py,
model_sections.py); the test tests/test_config_reference.py keeps docs/config.md in step with the code.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detect.config import Config  # noqa: E402

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "config.md"

HEADER = """# Configuration reference

Generated from the typed config in `detect/config/` by `python tools/config_reference.py --write`; do not edit by hand.
Every key can be set in a YAML config or with `--set key.sub=value`. Defaults are those of the code;
the built-in configs in `configs/` override many of them.
"""


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None").replace("Literal", "one of ")


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return ""
    return json.dumps(value if not isinstance(value, tuple) else list(value))


def one_line(text: str) -> str:
    """A docstring as one paragraph: its lines joined with single spaces."""
    return " ".join(text.split())


def section_text(model: type[BaseModel]) -> str:
    """The section's whole docstring, as one paragraph."""
    return one_line(model.__doc__ or "")


def union_members(annotation: Any) -> list[type[BaseModel]]:
    """The sections of a field that is a union of sections (`model`: one per architecture); [] otherwise."""
    if typing.get_origin(annotation) is not Union:
        return []
    members = [typing.get_args(m)[0] if typing.get_origin(m) is Annotated else m for m in typing.get_args(annotation)]
    return [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]


def union_sections(members: list[type[BaseModel]], name: str) -> list[tuple[str, type[BaseModel], list[str]]]:
    """(title, section, its keys) for a union field: the keys all members share under `name`, then each
    member's own keys under `name (its arch values)`."""
    common = next(base for base in members[0].__mro__ if all(issubclass(m, base) for m in members))
    found = [(name, common, list(common.model_fields))]
    for member in members:
        archs = ", ".join(typing.get_args(member.model_fields["arch"].annotation))
        found.append((f"{name} ({archs})", member, [k for k in member.model_fields if k not in common.model_fields]))
    return found


def _section(model: type[BaseModel], prefix: str, out: list[str], title: str | None = None,
             keys: list[str] | None = None) -> None:
    rows, subsections = [], []
    for name, field in model.model_fields.items():
        if keys is not None and name not in keys:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            subsections.append((annotation, f"{prefix}{name}"))
            continue
        members = union_members(annotation)
        if members:
            for sub_title, member, member_keys in union_sections(members, f"{prefix}{name}"):
                subsections.append((member, f"{prefix}{name}", sub_title, member_keys))
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list) and default and isinstance(default[0], BaseModel):
            default = [item.model_dump(mode="json") for item in default]
        description = one_line(field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {_type_name(annotation).replace('|', 'or')} | "
                    f"`{_default(default)}` | {description} |")
    if rows or title:  # a union member's section is shown even when its keys are all sub-sections
        title = title or prefix.rstrip(".") or "top level"
        out += [f"\n## `{title}`\n", section_text(model)]
        out += ["", "| key | type | default | meaning |", "|---|---|---|---|", *rows] if rows else []
    for sub_model, sub_prefix, *titled in subsections:
        _section(sub_model, f"{sub_prefix}.", out, *titled)


def render() -> str:
    out = [HEADER]
    _section(Config, "", out)
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH}")
    args = parser.parse_args()
    text = render()
    if args.write:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text)
        print(f"wrote {DOC_PATH}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
