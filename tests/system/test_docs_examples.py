"""Every code example in docs/ is a file in docs/examples/ that the pages
include, and each is run here.
"""

from __future__ import annotations

import pathlib
import re
import runpy
import subprocess
import sys
import typing as t

import pytest
from flask import Flask
from werkzeug.security import generate_password_hash

from flask_pow import login_user

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent.parent / "docs" / "examples"


@pytest.fixture(autouse=True)
def secret_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where every example reads it from.
    monkeypatch.setenv("FLASK_SECRET_KEY", "test secret key")


#: A secret key written into code: ``SECRET_KEY = "..."``,
#: ``SECRET_KEY="..."``, ``["SECRET_KEY"] = "..."``, a fallback list of
#: literals, or a literal default of ``environ.get``.
LITERAL_SECRET = re.compile(
    # A quoted value, unless it is a shell command or a <placeholder>.
    r"""SECRET_KEY(_FALLBACKS)?["']?\]?\s*=\s*(\[\s*)?["'](?![$<\[])"""
    r"""|SECRET_KEY["'],\s*["']"""
)


def test_no_copied_example_holds_a_secret_key() -> None:
    """Whoever copies an example with a literal key accepts a publicly
    known signing key: Flask session cookies can be forged.
    """
    root = EXAMPLES.parent.parent
    files = [
        root / "README.rst",
        *EXAMPLES.parent.glob("*.rst"),
        *EXAMPLES.rglob("*.py"),
        *(root / "example").glob("*.py"),
    ]
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LITERAL_SECRET.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == []


def load(name: str) -> dict[str, t.Any]:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"docs_{name}")


def test_every_example_is_included_by_a_page() -> None:
    pages = "".join(p.read_text() for p in EXAMPLES.parent.glob("*.rst"))

    for example in EXAMPLES.glob("*.py"):
        assert f"examples/{example.name}" in pages, example.name


def test_quickstart_logs_in_and_out() -> None:
    example = load("quickstart")
    app, db, User = example["app"], example["db"], example["User"]

    with app.app_context():
        db.create_all()
        db.session.add(
            User(email="ada@example.com", password_hash=generate_password_hash("pw"))
        )
        db.session.commit()

    client = app.test_client()
    assert client.get("/me").status_code == 401
    form = {"email": "ada@example.com", "password": "nope"}
    assert client.post("/login", data=form).status_code == 401
    form["password"] = "pw"
    assert client.post("/login", data=form).get_data(as_text=True) == "logged in"
    assert client.get("/me").get_data(as_text=True) == "ada@example.com"
    client.post("/logout")
    assert client.get("/me").status_code == 401


def test_custom_adapter_logs_in() -> None:
    example = load("custom_users")
    app: Flask = example["app"]

    @app.post("/login")
    def login() -> str:
        login_user(example["ACCOUNTS"][1])
        return "ok"

    @app.get("/me")
    def me() -> str:
        from flask import g

        return str(g.current_user.email)

    client = app.test_client()
    client.post("/login")
    assert client.get("/me").get_data(as_text=True) == "ada@example.com"


@pytest.mark.parametrize("files", [False, True])
def test_production_settings_set_up(
    monkeypatch: pytest.MonkeyPatch, files: bool
) -> None:
    if files:
        monkeypatch.setenv("USE_FILES", "1")

    example = load("production")
    config = example["app"].config
    assert config["SESSION_COOKIE_NAME"] == "__Host-session"
    assert (config.get("POW_CACHE") is not None) == files


def test_redis_clients_connect(
    monkeypatch: pytest.MonkeyPatch, redis_server: t.Any, redis_cluster: t.Any
) -> None:
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(redis_server.port))
    monkeypatch.setenv("REDIS_CLUSTER_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_CLUSTER_PORT", str(redis_cluster.nodes[0].port))
    example = load("redis_clients")

    try:
        assert example["client"].ping()
        assert example["cluster"].ping()
    finally:
        example["client"].close()
        example["cluster"].close()


@pytest.mark.parametrize(
    "example",
    [
        # docs/migrating.rst: the factory-layout app and the tests it shows.
        "myapp_tests.py",
        # docs/testing.rst: how to test an application that uses flask_pow.
        "testing_tests.py",
    ],
)
def test_example_test_suite_passes(example: str) -> None:
    """A page's example test suite, run as an application's suite runs."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / example),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout
