"""The house rules of ``pipeline/``, read from the source with ``ast``.

One stage of the flow per subpackage (design.md): a name another stage uses is public,
no two modules import each other, and the science stages never import the command
line, the cluster deployments or the demo world.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
SCIENCE = ("sources", "targets", "predictors", "model", "fields")
FORBIDDEN_IN_SCIENCE = ("cli", "clusters", "demo")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str:
    """``pipeline.model.train`` -> ``model``; a top-level module (``pipeline.io``) is a stage."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """Every ``(imported module, imported name or None, line)`` of a module, at any depth."""
    path = MODULES[module]
    return _imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")


def _imports_in(source: str, module: str, is_package: bool) -> list[tuple[str, str | None, int]]:
    out: list[tuple[str, str | None, int]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("pipeline")]
            out += [(name, None, node.lineno) for name in names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("pipeline"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # "from pipeline.demo import truth": a module
                    out.append((sub, None, node.lineno))
                else:
                    out.append((base, alias.name, node.lineno))
    return out


def test_the_walk_sees_every_stage():
    stages = {_stage(m) for m in MODULES}
    assert {*SCIENCE, *FORBIDDEN_IN_SCIENCE, "run", "report", "images"} <= stages
    assert len(MODULES) > 60


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_private_name_of_another_stage(module):
    bad = [
        f"{MODULES[module].name}:{line}: {name} from {target}"
        for target, name, line in _imports(module)
        if name and name.startswith("_") and not name.startswith("__")
        if _stage(target) != _stage(module)
    ]
    assert not bad, f"make these public in their own stage: {bad}"


def test_no_two_modules_import_each_other():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    pairs = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph[b]})
    assert not pairs


@pytest.mark.parametrize("module", [m for m in sorted(MODULES) if _stage(m) in SCIENCE])
def test_science_stages_never_import_the_cli_the_clusters_or_the_demo(module):
    bad = [
        f"{MODULES[module].name}:{line}: {target}"
        for target, _, line in _imports(module)
        if _stage(target) in FORBIDDEN_IN_SCIENCE
    ]
    assert not bad


def test_the_walk_sees_nested_relative_and_module_imports():
    source = (
        "from pipeline.targets.particles import _hidden\n"
        "def f():\n    import pipeline.cli\n    from .split import assign_folds\n"
        "from pipeline.demo import truth\n"
    )
    assert sorted(_imports_in(source, "pipeline.model.train", is_package=False)) == [
        ("pipeline.cli", None, 3),
        ("pipeline.demo.truth", None, 5),
        ("pipeline.model.split", "assign_folds", 4),
        ("pipeline.targets.particles", "_hidden", 1),
    ]
    assert [_stage(m) for m in ("pipeline.targets.particles", "pipeline.io", "pipeline")] == [
        "targets",
        "io",
        "",
    ]
