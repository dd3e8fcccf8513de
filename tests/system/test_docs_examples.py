"""Every code example in docs/ is a file in docs/examples/ that the pages
include, and each is run here.
"""

from __future__ import annotations

import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys
import typing as t

import pytest
from flask import Flask

from flask_pow import login_user
from tests.support.http import Browser
from tests.support.processes import ROOT
from tests.support.processes import server_environ
from tests.support.processes import stop_group
from tests.support.processes import wait_until_serving
from tests.support.servers import free_port

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


#: The user the quickstart tests add, as docs/quickstart.rst does.
ADA = "ada@example.com"


def flask_command(*args: str) -> list[str]:
    """``flask ARGS``: the ``flask`` command of the environment under test."""
    return [sys.executable, "-m", "flask", *args]


def quickstart_copy(tmp_path: pathlib.Path) -> tuple[pathlib.Path, dict[str, str]]:
    """A folder holding a copy of the quickstart, as a reader saves it (its
    instance folder is made there, not in the checkout), and the
    environment of a shell that followed the page: ``FLASK_SECRET_KEY`` set
    (by the autouse fixture), and this checkout's flask_pow found first.
    """
    folder = tmp_path / "quickstart"
    folder.mkdir()
    shutil.copy(EXAMPLES / "quickstart.py", folder)
    python_path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return folder, {**server_environ({}), "PYTHONPATH": os.pathsep.join(python_path)}


@pytest.mark.slow
def test_quickstart_logs_in_and_out_as_its_page_says(tmp_path: pathlib.Path) -> None:
    """docs/quickstart.rst's steps in a shell: ``flask --app quickstart
    create-user``, typing the password twice when asked, then ``flask --app
    quickstart run --debug`` (on a free port); a browser is sent to the
    form, logs in with it, sees who is logged in, and logs out.
    """
    folder, env = quickstart_copy(tmp_path)
    added = subprocess.run(
        flask_command("--app", "quickstart", "create-user", ADA),
        cwd=folder,
        env=env,
        input="secret pw\nsecret pw\n",
        capture_output=True,
        text=True,
        timeout=60,
        # No controlling terminal: the password prompt reads what is typed
        # on its standard input.
        start_new_session=True,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    port = free_port()
    log = tmp_path / "flask.log"

    with open(log, "wb") as output:
        server = subprocess.Popen(
            flask_command("--app", "quickstart", "run", "--debug", "--port", str(port)),
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            # The reloader runs the server as its child: both go at the end.
            start_new_session=True,
        )

    try:
        wait_until_serving(port, server, log, "/login")
        browser = Browser(port)
        assert browser.send("GET", "/").location == "/login?next=%2F"
        assert '<form method="post">' in browser.get("/login")
        form = {"email": ADA, "password": "secret pw"}
        assert browser.send("POST", "/login", form).location == "/"
        assert f"Logged in as {ADA}." in browser.get("/")
        assert browser.send("POST", "/logout").location == "/login"
        assert browser.send("GET", "/").location == "/login?next=%2F"
    finally:
        stop_group(server)


def test_quickstart_refuses_a_wrong_password() -> None:
    app = load("quickstart")["app"]
    added = app.test_cli_runner().invoke(
        args=["create-user", ADA], input="secret pw\nsecret pw\n"
    )
    assert added.exit_code == 0, added.output
    client = app.test_client()

    response = client.post("/login", data={"email": ADA, "password": "nope"})

    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


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
