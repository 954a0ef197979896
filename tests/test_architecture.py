"""The import graph of ``autoseg`` follows its layers (DESIGN §2, docs/architecture.md).

Every ``import`` and ``from ... import`` in the package is read with ``ast``, at module
level and inside functions alike (a lazy import is still a dependency), and mapped to the
top-level packages it joins. A package may import its own layer's packages or lower ones,
never a higher one; ``training`` and ``inference`` do not import each other (the
end-of-fold validation is the ``pipeline`` step that calls both); nothing imports ``cli``
but ``python -m autoseg``; and no two packages import each other, however indirectly.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import autoseg

PACKAGE = Path(autoseg.__file__).parent

# Top to bottom. Imports flow down (or sideways within a layer), never up.
LAYERS: list[set[str]] = [
    {"__main__"},  # python -m autoseg: dispatches to the command line
    {"cli"},
    {"pipeline"},
    {"training", "inference", "evaluation", "reporting"},
    {"planning", "preprocessing", "networks"},
    {"data", "synthetic"},
    {"plans"},
    {"core"},
    {"__init__"},  # autoseg/__init__.py: the version and the axis convention only
]
# Same-layer pairs that must stay apart.
APART = [{"training", "inference"}]
# Documented exceptions: (importer package, imported package) -> why it is allowed for now.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def rank(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"autoseg.{package} is in no layer of {__name__}.LAYERS; add it")


def package_of(module: str) -> str:
    """``autoseg.core.atomic`` -> ``core``; ``autoseg`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every autoseg module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path).split(".")
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own if is_package else own[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            if target == "autoseg":  # ``from autoseg import cli`` imports a package
                found |= {f"autoseg.{a.name}" for a in node.names if _is_module(a.name)}
    return {name for name in found if name == "autoseg" or name.startswith("autoseg.")}


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def package_edges() -> dict[tuple[str, str], list[str]]:
    """``{(importer package, imported package): ["module -> module", ...]}``."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        importer = (
            "__main__"
            if path.name == "__main__.py" and path.parent == PACKAGE
            else (package_of(source))
        )
        for target in imported_modules(path):
            imported = package_of(target)
            if imported != importer:
                edges[(importer, imported)].append(f"{source} -> {target}")
    return edges


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module_name(p)) for p in PACKAGE.rglob("*.py")} | {"__main__"}
    for package in packages:
        rank(package)


def test_imports_never_run_up_a_layer() -> None:
    violations = [
        f"{importer} (layer {rank(importer)}) imports {imported} (layer {rank(imported)}): "
        + "; ".join(sorted(links))
        for (importer, imported), links in sorted(package_edges().items())
        if rank(imported) < rank(importer) and (importer, imported) not in KNOWN_EXCEPTIONS
    ]
    assert not violations, "\n".join(violations)


def test_packages_kept_apart_do_not_import_each_other() -> None:
    edges = package_edges()
    violations = [
        f"{a} imports {b}: " + "; ".join(sorted(edges[(a, b)]))
        for pair in APART
        for a in sorted(pair)
        for b in sorted(pair - {a})
        if (a, b) in edges
    ]
    assert not violations, "\n".join(violations)


def test_only_python_m_autoseg_imports_the_command_line() -> None:
    importers = sorted(a for (a, b) in package_edges() if b == "cli" and a != "__main__")
    assert not importers, f"packages importing autoseg.cli: {importers}"


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported in package_edges():
        graph[importer].add(imported)
    cycles = [path for start in sorted(graph) if (path := _cycle_from(start, graph))]
    assert not cycles, "\n".join(" -> ".join(path) for path in cycles)


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path ``start -> ... -> start`` (depth first), or None."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_the_graph_is_read() -> None:
    """The checks above mean something only if imports are found, lazy ones included."""
    edges = package_edges()
    assert ("pipeline", "training") in edges
    assert ("__main__", "cli") in edges
    assert any(
        "autoseg.cli.train -> autoseg.pipeline.fit_fold" in e for e in edges[("cli", "pipeline")]
    )
