"""tools/ and benchmarks/ only measure: they call the product's public code, never a private name of it,
and never patch it (a benchmark that replaced product code would measure something else)."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT


def root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def product_use_problems(source: str) -> list[str]:
    """What a script does with the product that a measuring tool must not: (line, what) as text."""
    tree = ast.parse(source)
    product_names: set[str] = set()  # names bound to detect's modules and objects
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "detect":
            for alias in node.names:
                product_names.add(alias.asname or alias.name)
                if is_private(alias.name) or any(is_private(part) for part in node.module.split(".")):
                    problems.append(f"line {node.lineno}: imports the private {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "detect":
                    product_names.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and root_name(node) in product_names:
            problems.append(f"line {node.lineno}: reads the private .{node.attr}")
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            if isinstance(target, ast.Attribute) and root_name(target) in product_names:
                problems.append(f"line {node.lineno}: replaces {ast.unparse(target)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                and node.args and root_name(node.args[0]) in product_names:
            problems.append(f"line {node.lineno}: {node.func.id} on {ast.unparse(node.args[0])}")
    return sorted(problems, key=lambda problem: int(problem.split(':')[0].split()[1]))


def test_tools_and_benchmarks_use_only_public_product_code():
    found = {}
    for path in sorted([*(REPO_ROOT / "tools").glob("*.py"), *(REPO_ROOT / "benchmarks").glob("*.py")]):
        problems = product_use_problems(path.read_text(encoding="utf-8"))
        if problems:
            found[str(path.relative_to(REPO_ROOT))] = problems
    assert not found, found


def test_the_scan_finds_private_names_and_patches():
    source = """
from detect.cli import _track_config
from detect.infer import tracking as tracking_module
import detect.infer.run
tracking_module.VideoTracking.track = lambda *a: None
setattr(detect.infer.run, "run_inference", None)
value = tracking_module._private_helper
from torchvision.models.detection.ssd import _vgg_extractor
"""
    problems = product_use_problems(source)
    assert [problem.split(":")[0] for problem in problems] == ["line 2", "line 5", "line 6", "line 7"]
