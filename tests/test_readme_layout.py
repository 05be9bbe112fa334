"""The README's layout section names every module of the product and of benchmarks/, and nothing that
is gone."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def layout_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Layout"):]
    return section[: section.index("```", section.index("```") + 3)]


def test_every_module_is_named_and_every_name_exists():
    layout = layout_section()
    modules = [path for folder in ("detect", "benchmarks") for path in (REPO_ROOT / folder).rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")]
    missing = [str(path.relative_to(REPO_ROOT)) for path in modules if path.name not in layout]
    assert not missing, f"not in the README's layout: {missing}"
    named = set(re.findall(r"\b([a-z_]+\.py)\b", layout))
    existing = {path.name for path in modules}
    assert named <= existing | {"eval_map.py"}, f"named but absent: {sorted(named - existing)}"
