"""The package's layout by pipeline stage: every import points to its own stage or a lower one, and no
modules import each other in a loop. The stages are those of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: stages from the ground up; a module belongs to the first entry whose name is it or its parent
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("nadkit.version", "nadkit.errors", "nadkit.config", "nadkit.schema", "nadkit.fileio")),
    ("sources", ("nadkit.sources",)),
    ("features", ("nadkit.features",)),
    ("simulation", ("nadkit.simulate",)),
    ("evaluation protocol", ("nadkit.evaluation",)),
    ("models", ("nadkit.models",)),
    ("alert records", ("nadkit.alerts",)),
    ("pictures", ("nadkit.pictures",)),
    ("training", ("nadkit.training",)),
    ("detection", ("nadkit.detection",)),
    ("lifecycle", ("nadkit.lifecycle",)),
    ("services", ("nadkit.service", "nadkit.stream")),
    ("interfaces", ("nadkit.cli", "nadkit.demo", "nadkit.api", "nadkit.__main__", "nadkit")),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "nadkit").rglob("*.py"))}


def _stage(module: str) -> int:
    for rank, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if prefix == "nadkit" and module != "nadkit":
                continue
            if module == prefix or module.startswith(prefix + "."):
                return rank
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES and to docs/architecture.md")


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The nearest module of the package that an imported name lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Every module of the package that ``module`` imports (at any depth of its code), with a line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            if not name.startswith("nadkit"):
                continue
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.setdefault(target, node.lineno)
    # `from nadkit.x import y` also names the package `nadkit.x` itself: keep the deepest only
    return {t: n for t, n in found.items() if not any(o.startswith(t + ".") for o in found)}


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_stage(graph: dict[str, dict[str, int]]) -> None:
    for module in graph:
        _stage(module)


def test_no_import_runs_up_a_stage(graph: dict[str, dict[str, int]]) -> None:
    upward = [
        f"{module}:{line} imports {target} ({STAGES[_stage(target)][0]} above {STAGES[_stage(module)][0]})"
        for module, targets in graph.items()
        for target, line in targets.items()
        if _stage(target) > _stage(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle(graph: dict[str, dict[str, int]]) -> None:
    # Tarjan's strongly connected components over the module graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, f"modules that import each other: {circles}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The walk reads relative imports, imports inside functions and `from package import module`."""
    package = tmp_path / "nadkit"
    (package / "features").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "features" / "__init__.py").write_text("")
    (package / "features" / "x.py").write_text("def f():\n    from ..detection import detect\n")
    (package / "detection").mkdir()
    (package / "detection" / "__init__.py").write_text("")
    (package / "detection" / "detect.py").write_text("")
    modules = {
        "nadkit": package / "__init__.py",
        "nadkit.features": package / "features" / "__init__.py",
        "nadkit.features.x": package / "features" / "x.py",
        "nadkit.detection": package / "detection" / "__init__.py",
        "nadkit.detection.detect": package / "detection" / "detect.py",
    }
    found = _imports("nadkit.features.x", modules["nadkit.features.x"], modules)
    assert found == {"nadkit.detection.detect": 2}
    assert _stage("nadkit.detection.detect") > _stage("nadkit.features.x")


def test_no_module_does_several_jobs_in_800_lines() -> None:
    long = {
        str(path.relative_to(SRC)): count
        for path in (SRC / "nadkit").rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 800
    }
    assert not long, f"split these by job: {long}"
