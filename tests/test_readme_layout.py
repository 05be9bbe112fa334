"""docs/layout.md names every file of the tree (every module of the product and of benchmarks/, every
tool, doc, page asset and top-level file, every test folder; the configs through the README's
Configuration table), and nothing that is gone; the README stays an entry page (at most 12 KB) whose
links all lead somewhere."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO_ROOT

# Folders whose files the layout names one by one (besides the modules of detect/ and benchmarks/).
LISTED_FOLDERS = ("tools", "docs", "detect/serve/static", ".ci")


def layout_section() -> str:
    text = (REPO_ROOT / "docs" / "layout.md").read_text()
    return text[: text.index("```", text.index("```") + 3)]


def tracked_files() -> list[str]:
    """The files git tracks (untracked work files are not the tree); skips outside a git checkout."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout:
        pytest.skip("not a git checkout")
    return listed.stdout.splitlines()


def test_every_module_is_named_and_every_name_exists():
    layout = layout_section()
    modules = [path for folder in ("detect", "benchmarks") for path in (REPO_ROOT / folder).rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")]
    missing = [str(path.relative_to(REPO_ROOT)) for path in modules if path.name not in layout]
    assert not missing, f"not in docs/layout.md: {missing}"
    named = set(re.findall(r"\b([a-z_]+\.py)\b", layout))
    existing = {path.name for path in modules} | {path.name for path in (REPO_ROOT / "tools").glob("*.py")}
    assert named <= existing, f"named but absent: {sorted(named - existing)}"


def test_every_tool_doc_asset_and_top_level_file_is_named_and_every_name_exists():
    layout = layout_section()
    files = tracked_files()
    listed = [path for path in files if "/" not in path or path.rsplit("/", 1)[0] in LISTED_FOLDERS]
    missing = [path for path in listed if path.rsplit("/", 1)[-1] not in layout]
    assert not missing, f"not in docs/layout.md: {missing}"
    named = set(re.findall(r"\b([\w.-]+\.(?:sh|md|png|html|js|css|toml))\b", layout))
    existing = {path.rsplit("/", 1)[-1] for path in files}
    assert named <= existing, f"named but absent: {sorted(named - existing)}"


def test_every_test_folder_is_named():
    layout = layout_section()
    folders = sorted(path.name for path in (REPO_ROOT / "tests").iterdir() if (path / "__init__.py").is_file())
    tests_row = layout.split("\ntests/", 1)[1]
    assert [name for name in folders if f"{name}/" not in tests_row] == []


def test_every_config_is_in_the_configuration_table():
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Configuration"):]
    table = section[:section.index("\n## ", 3)]
    names = [path.stem for path in (REPO_ROOT / "configs").glob("*.yaml")]
    assert [name for name in names if f"`{name}`" not in table] == []


def test_the_readme_is_an_entry_page_whose_links_lead_somewhere():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert targets and [target for target in targets if not (REPO_ROOT / target).exists()] == []
