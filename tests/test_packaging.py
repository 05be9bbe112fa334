"""What `pip install .` ships: every product package, the built-in configs from the top-level
configs/ folder, and nothing of the benchmarks; `detect config list` works from any folder."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile

import tomllib

from detect.config import builtin_config_dir, builtin_config_names
from tests.conftest import REPO_ROOT


def declared_packages() -> list[str]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["setuptools"]["packages"]


def test_the_package_list_matches_the_tree():
    on_disk = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts) for init in (REPO_ROOT / "detect").rglob("__init__.py")}
    assert set(declared_packages()) == on_disk | {"detect.configs"}


def _imported_modules(tree: ast.AST):
    """(line, module name) of every import statement in a parsed file."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module


def test_the_product_never_imports_the_benchmarks():
    """benchmarks/ is not installed: an import of it from detect/ would break every installed command."""
    importers = [f"{path.relative_to(REPO_ROOT)}:{line}"
                 for path in (REPO_ROOT / "detect").rglob("*.py")
                 for line, module in _imported_modules(ast.parse(path.read_text(), str(path)))
                 if module.split(".")[0] == "benchmarks"]
    assert importers == []


def test_a_source_checkout_reads_the_top_level_configs():
    assert builtin_config_dir() == REPO_ROOT / "configs"
    assert "synthetic_ssd" in builtin_config_names()


def test_the_wheel_ships_the_configs_and_config_list_works_from_any_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel"), str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "wheel").glob("detect-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    shipped = sorted(name.removeprefix("detect/configs/").removesuffix(".yaml")
                     for name in names if name.startswith("detect/configs/"))
    assert shipped == builtin_config_names()
    assert not any(name.startswith(("tests/", "tools/", "benchmarks/")) for name in names)
    # The unpacked wheel first on the path, run from a folder that has no configs/ of its own.
    environment = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    listed = subprocess.run([sys.executable, "-m", "detect", "config", "list"], capture_output=True, text=True,
                            cwd=tmp_path, env=environment, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in shipped)
    located = subprocess.run([sys.executable, "-c", "import detect.config as c; print(c.builtin_config_dir())"],
                             capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120)
    assert located.stdout.strip() == str(tmp_path / "site" / "detect" / "configs")
