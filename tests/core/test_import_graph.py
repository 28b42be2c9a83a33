"""The library's import graph, read from the source with `ast`: no circles, and core/ imports no role package.

Every import statement counts, at module level or inside a function (a lazy import is still a dependency).
An edge goes to the module an import names (`from core import tree` -> core.tree; `import pipelines` ->
pipelines/__init__.py), not to the packages above it, which Python also runs first.
"""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "benchmarks", "core", "envs", "launch", "learner", "pipelines", "policies", "replay", "wire")
ROLE_PACKAGES = {"actors", "envs", "launch", "learner", "pipelines", "policies", "replay"}


def library_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name an import statement in the file names, relative imports resolved."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = library_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            # `from a.b import c` names a.b.c if that is a module, else the module a.b (c is an attribute).
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def package_of(module: str) -> str:
    return module.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return e.args[1]
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "launch.role" in graph and "pipelines" in graph["launch.run_config"]
    assert "core.tree" in graph["learner.ppo"]  # `from core import tree` names the module
    assert "actors.actor" in graph["pipelines.sac"]  # an import inside a function counts


def test_no_module_imports_itself_through_others():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


def test_no_package_imports_itself_through_others():
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module))
    cycle = find_cycle(packages)
    assert cycle is None, f"package circle: {' -> '.join(cycle)}"


def test_core_imports_no_role_package():
    offending = {f"{module} -> {target}" for module, targets in import_graph().items() if package_of(module) == "core"
                 for target in targets if package_of(target) in ROLE_PACKAGES}
    assert not offending, f"core/ must not import role packages: {sorted(offending)}"
