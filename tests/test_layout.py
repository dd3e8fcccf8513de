"""The package's layout (docs/architecture.rst): modules in layers, each
importing only its own layer and those below, with no import circle, every
import counted (for type checking only, and inside functions too); and one
module alone that looks the extension up in ``app.extensions``.

And the tests' layout: a helper two test modules share lives in
``tests/support/``, never in a test module or a conftest that the other
imports.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "flask_pow"

#: Bottom to top. A module may import modules of its own layer and below.
LAYERS = [
    # Plain values and rules: no request, no store.
    {
        "config",
        "loader",
        "mixins",
        "policy",
        "records",
        "serialization",
        "signals",
        "signing",
        "users",
    },
    # The stores.
    {
        "stores",
        "stores.cachelib",
        "stores.filesystem",
        "stores.locks",
        "stores.parsed",
        "stores.redis",
        "stores.redis_local",
        "stores.redis_scripts",
    },
    # The credentials rules, and all of SQLAlchemy.
    {"credentials", "detached", "orm", "sync"},
    # The extension's state, and the one lookup of it.
    {"state"},
    # The request: its checks, remember-me, its effects, its lifecycle.
    {"checks", "remember", "effects", "lifecycle"},
    # What views call.
    {"auth", "views"},
    # The top: the extension, the CLI, the test client, the public names.
    {"extension", "cli", "testing", "__init__"},
]
LAYER = {name: number for number, names in enumerate(LAYERS) for name in names}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """The flask_pow modules a module imports: every relative import,
    anywhere in it.
    """
    name = _module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")

    if name == "__init__":
        package = []

    found: set[str] = set()

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{target}.{alias.name}".strip(".") for alias in node.names]
            # A package choosing among its own modules (stores.store_for) is
            # not a circle between modules.
            found.update(
                c
                for c in [target, *names]
                if c in LAYER and c != name and not c.startswith(f"{name}.")
            )

    return found


def graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer() -> None:
    assert set(graph()) == set(LAYER)


@pytest.mark.parametrize("module", sorted(LAYER))
def test_module_imports_only_its_layer_and_below(module: str) -> None:
    above = {t for t in graph()[module] if LAYER[t] > LAYER[module]}
    assert above == set()


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


def test_only_state_looks_the_extension_up() -> None:
    looking = {
        _module_name(path)
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "extensions"
    }

    assert looking == {"state"}


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
