"""The package's layout: no import circle among flask_pow's modules, at
import time or in a function, so that each module can be read (and
imported) on its own terms. Imports for type checking only do not count.

And the tests' layout: a helper two test modules share lives in
``tests/support/``, never in a test module or a conftest that the other
imports.
"""

from __future__ import annotations

import ast
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "flask_pow"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING") or (
        isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
    )


def _imports(source: str) -> set[str]:
    """The flask_pow modules a module imports, outside type-checking blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return

        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)

        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {
        name: _imports((PACKAGE / f"{name}.py").read_text()) & modules
        for name in modules
    }


def test_no_import_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        for target in sorted(edges[name]):
            if target in path:
                circles.append([*path[path.index(target) :], target])
            elif len(path) < len(edges):
                walk(target, [*path, target])

    for name in sorted(edges):
        walk(name, [name])

    assert circles == []


def _is_test_module(name: str) -> bool:
    return name.startswith("test_") or name == "conftest"


def _imported_test_modules(path: pathlib.Path) -> list[str]:
    """The test modules (and conftests) ``path`` imports, anywhere in it."""
    found: list[str] = []

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")

            if node.level == 0 and parts[0] != "tests":
                continue

            names = [alias.name for alias in node.names]

            if any(_is_test_module(part) for part in parts) or (
                not node.module and any(_is_test_module(n) for n in names)
            ):
                found.append("." * node.level + (node.module or ",".join(names)))
        elif isinstance(node, ast.Import):
            found.extend(
                alias.name
                for alias in node.names
                if alias.name.startswith("tests.")
                and any(_is_test_module(p) for p in alias.name.split("."))
            )

    return found


def test_no_test_module_imports_another() -> None:
    imports = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := _imported_test_modules(path))
    }

    assert imports == {}, "move the shared helpers to tests/support/"
