"""The package's import graph has no circle, and the lower floors never import the top.

Imports are read from the source (module level and inside functions; `if
TYPE_CHECKING:` blocks are left out, as they never run), so a lazy import cannot
hide a circle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tusd_py

PACKAGE = Path(tusd_py.__file__).parent
# The top floors: nothing below them may import them (docs/architecture.md).
TOP = {"tusd_py.cli", "tusd_py.server", "tusd_py.app", "tusd_py.routing", "tusd_py.handlers", "tusd_py.ietf_handler"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tusd_py"):
            for alias in node.names:  # `from tusd_py import protocol` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: imports(path, known) - {name} for name, path in paths.items()}


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if target.startswith(node + "."):  # a package's __init__ importing its own modules
                continue
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (circle := walk(target)) is not None:
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (circle := walk(node)) is not None:
            return circle
    return None


def test_the_checker_finds_a_circle() -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle() -> None:
    assert find_circle(graph()) is None


def test_no_upward_imports() -> None:
    """Only the top imports the top: cli -> server -> app -> routing -> the two protocols."""
    allowed = {
        "tusd_py.__main__": {"tusd_py.cli"},
        "tusd_py.cli": {"tusd_py.server"},
        "tusd_py.server": {"tusd_py.app"},
        "tusd_py.app": {"tusd_py.routing", "tusd_py.handlers", "tusd_py.ietf_handler"},
        "tusd_py.routing": set(),
        "tusd_py.handlers": set(),
        "tusd_py.ietf_handler": set(),
    }
    for name, targets in graph().items():
        upward = (targets & TOP) - allowed.get(name, set())
        assert not upward, f"{name} imports {sorted(upward)}"


def test_the_engine_knows_no_http_framework() -> None:
    for name in ("engine", "writes", "capabilities", "errors"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {m for m in modules if m.startswith(("starlette", "uvicorn"))}, name
