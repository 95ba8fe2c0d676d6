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


def all_imports(path: Path) -> set[str]:
    """Every ``engine`` module a file imports: type-only and function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m.startswith("engine")}


def test_the_store_knows_no_compositor() -> None:
    """Not even for type hints: what the store writes is described in engine/store/written.py."""
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted((ROOT / "engine/store").rglob("*.py"))
           for m in sorted(all_imports(p)) if m.startswith(("engine.compose", "engine.learn"))]
    assert not bad, "\n".join(bad)


def test_store_modules_import_no_circle() -> None:
    """engine/store's modules import each other one way, function-level imports included."""
    modules = {f"engine.store.{p.stem}": p for p in (ROOT / "engine/store").glob("*.py") if p.stem != "__init__"}
    edges = {m: {i for i in all_imports(p) if i in modules and i != m} for m, p in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    circles = sorted(m for m in modules if reaches(m, m, {m}))
    assert not circles, f"modules in an import circle: {circles}"
