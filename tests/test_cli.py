"""``flask pow``: list, show and revoke sessions, against FileSystemCache,
Redis and Redis Cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
import uuid

import pytest
from cachelib import SimpleCache
from click.testing import Result
from flask.testing import FlaskClient

from flask_pow import Pow

from .conftest import Env
from .conftest import make_app
from .servers import RedisServer
from .test_session import pow_value

#: The stores a CLI process can read.
stores = pytest.mark.parametrize(
    "backend", ["filesystem", "redis", "redis-cluster"], indirect=True
)

outputs: list[str] = []


def run(env: Env, *args: str, input: str | None = None) -> Result:
    result = env.app.test_cli_runner().invoke(args=["pow", *args], input=input)
    outputs.extend([result.stdout, result.stderr])
    return result


@pytest.fixture
def clients(env: Env) -> list[FlaskClient]:
    """Two sessions of Ada and one of Bob."""
    ada = env.add_user()
    bob = env.add_user("bob@example.com")
    found = []

    for user_id, agent in ((ada, "Firefox/145"), (ada, "Safari/19"), (bob, "curl/8")):
        client = env.app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = agent
        env.login(client, user_id)
        found.append(client)

    return found


def ids_of(env: Env, user_key: str) -> list[str]:
    with env.app.app_context():
        return [info.id for info in env.pow.credentials.sessions_by_key(user_key)]


@stores
def test_sessions_table_lists_every_session(
    env: Env, clients: list[FlaskClient]
) -> None:
    result = run(env, "sessions")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "SESSION", "USER", "LABEL", "LOGGED", "IN", "ROTATED", "EXPIRES", "IN", "IP",
        "USER", "AGENT",
    ]  # fmt: skip
    body = "\n".join(lines[2:])

    for sid in ids_of(env, "User:1") + ids_of(env, "User:2"):
        assert sid in body

    assert "ada@example.com" in body and "bob@example.com" in body
    assert "Safari/19" in body
    assert "30m" in body  # expires in, human
    assert len(lines) == 5


@stores
def test_sessions_json_has_documented_fields(
    env: Env, clients: list[FlaskClient]
) -> None:
    result = run(env, "sessions", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data) == 3
    assert set(data[0]) >= {
        "id",
        "user",
        "created_at",
        "inserted_at",
        "expires_at",
        "metadata",
    }
    assert {entry["user"] for entry in data} == {"User:1", "User:2"}
    assert {entry["metadata"]["user_agent"] for entry in data} == {
        "Firefox/145",
        "Safari/19",
        "curl/8",
    }


@stores
@pytest.mark.parametrize("user", ["1", "User:1"])
def test_sessions_filter_by_user(
    env: Env, clients: list[FlaskClient], user: str
) -> None:
    data = json.loads(run(env, "sessions", "--user", user, "--json").stdout)
    assert sorted(entry["id"] for entry in data) == sorted(ids_of(env, "User:1"))


@stores
def test_show_prints_one_session(env: Env, clients: list[FlaskClient]) -> None:
    sid = ids_of(env, "User:2")[0]
    result = run(env, "sessions", "show", sid)
    assert result.exit_code == 0
    assert sid in result.stdout
    assert "User:2 bob@example.com" in result.stdout
    assert "curl/8" in result.stdout


@stores
def test_show_json(env: Env, clients: list[FlaskClient]) -> None:
    sid = ids_of(env, "User:2")[0]
    data = json.loads(run(env, "sessions", "show", sid, "--json").stdout)
    assert (data["id"], data["user"], data["label"]) == (
        sid,
        "User:2",
        "bob@example.com",
    )


@stores
def test_show_unknown_is_not_found(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "show", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: no active session with id 'nope'.\n"


@stores
def test_revoke_one_ends_only_that_session(
    env: Env, clients: list[FlaskClient]
) -> None:
    first = ids_of(env, "User:1")
    me = [env.me(client) for client in clients[:2]]
    assert me == ["ada@example.com free"] * 2
    result = run(env, "sessions", "revoke", first[0])
    assert result.exit_code == 0
    assert result.stdout == f"Revoked {first[0]}.\n"
    assert sorted(env.me(client) for client in clients[:2]) == [
        "ada@example.com free",
        "anonymous",
    ]
    assert env.me(clients[2]) == "bob@example.com free"


@stores
def test_revoke_unknown_is_not_found(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "revoke", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: no active session with id 'nope'.\n"


@stores
def test_revoke_by_user_ends_all_of_theirs(
    env: Env, clients: list[FlaskClient]
) -> None:
    result = run(env, "sessions", "revoke", "--user", "1", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "Revoked 2 sessions of User:1.\n"
    assert [env.me(client) for client in clients] == [
        "anonymous",
        "anonymous",
        "bob@example.com free",
    ]


@stores
def test_revoke_by_user_asks_first(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "revoke", "--user", "User:1", input="n\n")
    assert result.exit_code == 1
    assert "End all 2 sessions of User:1?" in result.stderr
    assert len(ids_of(env, "User:1")) == 2
    result = run(env, "sessions", "revoke", "--user", "User:1", input="y\n")
    assert result.exit_code == 0
    assert ids_of(env, "User:1") == []


@stores
def test_revoke_by_user_without_sessions_is_not_found(
    env: Env, clients: list[FlaskClient]
) -> None:
    result = run(env, "sessions", "revoke", "--user", "99", "--yes")
    assert result.exit_code == 1
    assert result.stderr == "Error: User:99 has no active session.\n"


@pytest.mark.parametrize(
    "args", [["sessions", "revoke"], ["sessions", "revoke", "x", "--user", "1"]]
)
@stores
def test_revoke_usage_errors(
    env: Env, clients: list[FlaskClient], args: list[str]
) -> None:
    result = run(env, *args)
    assert result.exit_code == 2
    assert result.stderr == "Error: give session ids, or --user, but not both.\n"


@stores
def test_unknown_option_is_usage_error(env: Env) -> None:
    assert run(env, "sessions", "--nope").exit_code == 2


@stores
def test_users_counts_sessions(env: Env, clients: list[FlaskClient]) -> None:
    table = run(env, "users").stdout.splitlines()
    assert table[0].split() == ["USER", "LABEL", "SESSIONS"]
    assert table[2].split() == ["User:1", "ada@example.com", "2"]
    assert table[3].split() == ["User:2", "bob@example.com", "1"]
    data = json.loads(run(env, "users", "--json").stdout)
    assert data == [
        {"user": "User:1", "label": "ada@example.com", "sessions": 2},
        {"user": "User:2", "label": "bob@example.com", "sessions": 1},
    ]


@stores
def test_empty_store_says_so(env: Env) -> None:
    assert run(env, "sessions").stdout == "No active sessions.\n"
    assert run(env, "users").stdout == "No users with active sessions.\n"
    assert run(env, "sessions", "--json").stdout == "[]\n"


@stores
def test_no_token_in_any_output(env: Env, clients: list[FlaskClient]) -> None:
    outputs.clear()
    sids = ids_of(env, "User:1") + ids_of(env, "User:2")
    run(env, "sessions")
    run(env, "sessions", "--json")
    run(env, "users")
    run(env, "users", "--json")

    for sid in sids:
        run(env, "sessions", "show", sid)
        run(env, "sessions", "show", sid, "--json")

    text = "".join(outputs)
    assert len(text) > 1000

    for client in clients:
        value = pow_value(client)
        assert value is not None
        signed_token = value.split(".", 1)[1]
        assert value.split(".")[1] not in text  # the token
        assert signed_token not in text  # token and signature


@pytest.mark.parametrize("backend", ["simple"], indirect=True)
def test_in_process_cache_is_refused(env: Env) -> None:
    result = run(env, "sessions")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "in-process cache" in result.stderr
    assert "POW_REDIS_URL" in result.stderr and "FileSystemCache" in result.stderr


@pytest.mark.slow
def test_real_flask_command_lists_sessions(
    tmp_path: t.Any, redis_server: RedisServer
) -> None:
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    database = tmp_path / "cli.db"
    app, db, User = make_app(
        SimpleCache(threshold=100_000),
        f"sqlite:///{database}",
        POW_CACHE=None,
        POW_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        POW_NAMESPACE=namespace,
    )
    env = Env(app, db, User, Pow(app, db=db, user_model=User))

    from .conftest import add_routes

    add_routes(env)
    client = app.test_client()
    env.login(client, env.add_user())
    environ = {
        **os.environ,
        "POW_TEST_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "POW_TEST_NAMESPACE": namespace,
        "POW_TEST_DATABASE": str(database),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "tests.cli_app", "pow", "sessions",
         "--json"],
        env=environ,
        cwd=os.path.dirname(os.path.dirname(__file__)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)
    assert entry["user"] == "User:1"
    assert entry["label"] == "ada@example.com"
    value = pow_value(client)
    assert value is not None and value.split(".")[1] not in done.stdout
    env.pow.get_state(app).config.cache._write_client.close()  # type: ignore[attr-defined]
