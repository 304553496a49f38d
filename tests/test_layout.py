"""The package stays readable: short functions, no private imports, no import cycles.

Each check reads every module of ``src/mlrsnet`` with :mod:`ast` (nothing is imported):

- no function or method is longer than :data:`MAX_FUNCTION_LINES` (its ``def`` line to its
  last line, nested functions included);
- no module imports a private name (one underscore, not a dunder) from another module, a
  package's own ``__init__`` included;
- the modules import each other without a cycle, counting the imports inside functions too;
- the run loop (:data:`RUN_LOOP`) fits one screen (:data:`MAX_LOOP_LINES`).

An import is an edge to the module it names: ``import a.b`` to ``a.b``; ``from a import b``
to ``a.b`` when ``b`` is a submodule, else to ``a``. The packages above it, which Python
initialises first, are not counted: a package's ``__init__`` that imports its own submodules
would otherwise close a cycle with each of them.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mlrsnet"
MAX_FUNCTION_LINES = 120
MAX_LOOP_LINES = 80
#: The module and function that hold the training loop.
RUN_LOOP = ("mlrsnet.lab.runner", "_run")

Function = ast.FunctionDef | ast.AsyncFunctionDef


# -- reading the modules -----------------------------------------------------------------


def module_name(path: Path) -> str:
    """``src/mlrsnet/lab/runner.py`` -> ``mlrsnet.lab.runner``; a package is its ``__init__``."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, tuple[Path, ast.Module]]:
    """Every module of the package: its name -> (file, syntax tree)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def is_package(name: str) -> bool:
    return modules()[name][0].name == "__init__.py"


def functions(tree: ast.Module) -> Iterator[tuple[str, Function]]:
    """Every function and method of ``tree``, at any depth, with its dotted name."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, Function]]:
        for child in ast.iter_child_nodes(node):
            name = f"{prefix}{getattr(child, 'name', '')}"
            if isinstance(child, Function):
                yield name, child
            walk_prefix = f"{name}." if isinstance(child, Function | ast.ClassDef) else prefix
            yield from walk(child, walk_prefix)

    return walk(tree, "")


def length(node: ast.AST) -> int:
    """Lines from a definition's first line (its ``def``) to its last."""
    return node.end_lineno - node.lineno + 1


def imports(name: str) -> Iterator[tuple[str, ast.Import | ast.ImportFrom]]:
    """The absolute module each import of module ``name`` reads from, at any depth."""
    for node in ast.walk(modules()[name][1]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            yield resolved(name, node), node


def resolved(name: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` in module ``name`` reads from."""
    if not node.level:
        return node.module or ""
    package = name if is_package(name) else name.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


# -- the import graph --------------------------------------------------------------------


def edges(name: str) -> set[str]:
    """The package's modules that module ``name`` imports."""
    known = modules()
    found = set()
    for source, node in imports(name):
        names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else [""]
        for imported in names:
            target = f"{source}.{imported}" if f"{source}.{imported}" in known else source
            while target and target not in known:  # ``import mlrsnet.x.y`` of a name in x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: edges(name) for name in modules()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected ``component``."""
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for successor in sorted(graph[node] & set(component)):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                frontier.append(successor)
    raise AssertionError(f"{component} is not strongly connected")


# -- the checks --------------------------------------------------------------------------


def test_every_module_is_read():
    assert {"mlrsnet", "mlrsnet.lab.runner", "mlrsnet.lab.tasks.registry"} <= set(modules())


def test_no_function_is_longer_than_the_limit():
    too_long = [
        f"{path.relative_to(SRC)}:{qualname}:{length(node)}"
        for path, tree in modules().values()
        for qualname, node in functions(tree)
        if length(node) > MAX_FUNCTION_LINES
    ]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def is_private(name: str) -> bool:
    """``_name``, not ``__name__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{modules()[name][0].relative_to(SRC)}:{node.lineno}: {alias.name} from {source}"
        for name in modules()
        for source, node in imports(name)
        if isinstance(node, ast.ImportFrom) and source.split(".")[0] == "mlrsnet"
        for alias in node.names
        if is_private(alias.name) and f"{source}.{alias.name}" not in modules()
    ]
    assert not private, f"private names imported across modules: {private}"


def test_the_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    cycles = [" -> ".join(cycle_in(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    (component,) = strongly_connected(graph)
    assert component == ["a", "b", "c"]
    assert cycle_in(graph, component) == ["a", "b", "c", "a"]


def test_the_run_loop_fits_one_screen():
    module, function = RUN_LOOP
    (node,) = [n for q, n in functions(modules()[module][1]) if q == function]
    assert length(node) <= MAX_LOOP_LINES, f"{module}.{function}: {length(node)} lines"
