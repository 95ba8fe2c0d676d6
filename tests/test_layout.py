"""The folder tree is the architecture: imports run cli → (benchmarks.suite →) engine → kernels, and
learning reads stores through ``engine.store``, never through ``engine.compose``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, type-only imports (``if TYPE_CHECKING``) left out."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


RULES = [
    ("kernels", ("engine", "cli")),
    ("engine", ("cli",)),
    ("engine/learn", ("engine.compose",)),
    ("engine/store", ("engine.compose", "engine.learn")),
    ("engine/assets", ("engine.compose", "engine.store", "engine.learn")),
    # the bench suite measures the engine: cli → benchmarks.suite → engine, never back
    ("kernels", ("benchmarks",)),
    ("engine", ("benchmarks",)),
    ("benchmarks/suite", ("cli",)),
]


@pytest.mark.parametrize("folder, forbidden", RULES)
def test_imports_point_one_way(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, "\n".join(bad)


def test_engine_subpackages_exist() -> None:
    for name in ("assets", "compose", "store", "learn"):
        assert (ROOT / "engine" / name / "__init__.py").is_file()
