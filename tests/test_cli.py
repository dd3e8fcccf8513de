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
from cachelib import BaseCache
from cachelib import SimpleCache
from click.testing import Result
from flask.testing import FlaskClient

from flask_pow import Pow
from flask_pow import UserAdapter
from flask_pow.orm import SQLAlchemyUsers
from tests.support import raw
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import add_routes
from tests.support.env import make_app
from tests.support.raw import plant
from tests.support.servers import RedisServer
from tests.support.sessions import pow_value

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
@pytest.mark.parametrize("user", ["1", "User:1", "ada@example.com"])
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
    assert result.stderr == "Error: No active session with id 'nope'.\n"


@stores
def test_revoke_one_ends_only_that_session(
    env: Env, clients: list[FlaskClient]
) -> None:
    first = ids_of(env, "User:1")
    me = [env.me(client) for client in clients[:2]]
    assert me == ["ada@example.com free"] * 2
    result = run(env, "sessions", "revoke", first[0])
    assert result.exit_code == 0
    assert result.stdout == f"Ended session {first[0]}.\n"
    assert sorted(env.me(client) for client in clients[:2]) == [
        "ada@example.com free",
        "anonymous",
    ]
    assert env.me(clients[2]) == "bob@example.com free"


@stores
def test_revoke_unknown_is_not_found(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "revoke", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: No active session with id 'nope'.\n"


@stores
def test_revoke_by_user_ends_all_of_theirs(
    env: Env, clients: list[FlaskClient]
) -> None:
    result = run(env, "sessions", "revoke", "--user", "1", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "Ended 2 sessions of ada@example.com.\n"
    assert [env.me(client) for client in clients] == [
        "anonymous",
        "anonymous",
        "bob@example.com free",
    ]


@stores
def test_revoke_by_user_asks_first(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "revoke", "--user", "User:1", input="n\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("End 2 sessions of ada@example.com? [y/N]")
    assert result.stderr.endswith("\nError: No session was ended.\n")
    assert len(ids_of(env, "User:1")) == 2
    result = run(env, "sessions", "revoke", "--user", "User:1", input="y\n")
    assert result.exit_code == 0
    assert ids_of(env, "User:1") == []


@stores
@pytest.mark.parametrize(
    ("args", "user"),
    [
        (["sessions", "--user", "99"], "99"),
        (["sessions", "--user", "User:99", "--json"], "User:99"),
        (["sessions", "--user", "ada@example.org"], "ada@example.org"),
        (["sessions", "revoke", "--user", "99", "--yes"], "99"),
        (["sessions", "revoke", "--user", "ada@example.org"], "ada@example.org"),
    ],
)
def test_unknown_user_is_not_found(
    env: Env, clients: list[FlaskClient], args: list[str], user: str
) -> None:
    result = run(env, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: No user '{user}' has an active session (looked up as a user"
        " key, an id and a label).\n"
    )
    assert len(ids_of(env, "User:1")) == 2


@stores
def test_revoke_by_label(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "revoke", "--user", "ada@example.com", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "Ended 2 sessions of ada@example.com.\n"
    assert [env.me(client) for client in clients] == [
        "anonymous",
        "anonymous",
        "bob@example.com free",
    ]


@stores
def test_sessions_table_by_label(env: Env, clients: list[FlaskClient]) -> None:
    result = run(env, "sessions", "--user", "bob@example.com")
    assert result.exit_code == 0
    [row] = result.stdout.splitlines()[2:]
    assert row.split()[:3] == [ids_of(env, "User:2")[0], "User:2", "bob@example.com"]


@stores
def test_revoke_one_session_of_a_user_says_session(
    env: Env, clients: list[FlaskClient]
) -> None:
    result = run(env, "sessions", "revoke", "--user", "2", input="y\n")
    assert result.exit_code == 0
    assert result.stderr == "End 1 session of bob@example.com? [y/N]: y\n"
    assert result.stdout == "Ended 1 session of bob@example.com.\n"
    assert env.me(clients[2]) == "anonymous"


class LabelledByName(UserAdapter[t.Any]):
    """The model's own adapter, but labelling users by their name, which is
    not unique, and without ``key_for_id``.
    """

    def __init__(self, users: SQLAlchemyUsers[t.Any]) -> None:
        self.users = users

    def key(self, user: t.Any) -> str:
        return self.users.key(user)

    def dump(self, user: t.Any) -> dict[str, t.Any]:
        return self.users.dump(user)

    def load(self, data: dict[str, t.Any]) -> t.Any:
        return self.users.load(data)

    def reload(self, user: t.Any) -> t.Any:
        return self.users.reload(user)

    def label(self, user: t.Any) -> str | None:
        return str(user.name)


@pytest.fixture
def named_env(cache: BaseCache, tmp_path: t.Any) -> Env:
    """Ada, Bob and another Ada, labelled by name, each logged in once."""
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'named.db'}")
    users = LabelledByName(SQLAlchemyUsers(db, User))
    env = Env(app, db, User, Pow(app, users=users))
    add_routes(env)

    for email in ("ada@example.com", "bob@example.com", "ada@example.org"):
        env.login(app.test_client(), env.add_user(email))

    return env


@stores
@pytest.mark.parametrize(
    "args",
    [["sessions", "--user", "Ada"], ["sessions", "revoke", "--user", "Ada", "--yes"]],
)
def test_label_of_several_users_is_refused(named_env: Env, args: list[str]) -> None:
    result = run(named_env, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: 'Ada' names 2 users: User:1 by its label 'Ada' (--user"
        " key=User:1); User:3 by its label 'Ada' (--user key=User:3). Name one"
        " exactly by its user key.\n"
    )
    assert len(ids_of(named_env, "User:1")) == 1


@stores
def test_unique_label_of_another_adapter(named_env: Env) -> None:
    result = run(named_env, "sessions", "revoke", "--user", "Bob", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "Ended 1 session of Bob.\n"


@stores
def test_adapter_without_key_for_id_takes_keys_and_labels(named_env: Env) -> None:
    result = run(named_env, "sessions", "--user", "2")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: No user '2' has an active session (looked up as a user key and a"
        " label).\n"
    )
    data = json.loads(run(named_env, "sessions", "--user", "User:2", "--json").stdout)
    assert [entry["label"] for entry in data] == ["Bob"]


class StrictIds(LabelledByName):
    """An adapter whose ``key_for_id`` refuses what is not a number."""

    def key_for_id(self, ident: str) -> str:
        return f"User:{int(ident)}"


@stores
def test_label_that_key_for_id_refuses(cache: BaseCache, tmp_path: t.Any) -> None:
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'strict.db'}")
    env = Env(app, db, User, Pow(app, users=StrictIds(SQLAlchemyUsers(db, User))))
    add_routes(env)
    env.login(app.test_client(), env.add_user("bob@example.com"))
    assert run(env, "sessions", "revoke", "--user", "1", "--yes").exit_code == 0
    env.login(app.test_client(), 1)
    result = run(env, "sessions", "revoke", "--user", "Bob", "--yes")
    assert result.stdout == "Ended 1 session of Bob.\n"


class Unlabelled(LabelledByName):
    def label(self, user: t.Any) -> str | None:
        return None


@pytest.mark.parametrize("backend", ["filesystem"], indirect=True)
def test_empty_user_matches_no_unlabelled_user(
    cache: BaseCache, tmp_path: t.Any
) -> None:
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'unlabelled.db'}")
    env = Env(app, db, User, Pow(app, users=Unlabelled(SQLAlchemyUsers(db, User))))
    add_routes(env)
    env.login(app.test_client(), env.add_user())
    result = run(env, "sessions", "revoke", "--user", "", "--yes")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No user '' has an active session")
    assert len(ids_of(env, "User:1")) == 1


def user_record_key(env: Env, user_key: str) -> str:
    """The cache key of a user's record."""
    cache = env.pow.get_state(env.app).config.cache
    return raw.user_record_key(cache, ids_of(env, user_key)[0], user_key)


@stores
def test_user_with_unreadable_record_is_found_by_key(
    env: Env, clients: list[FlaskClient], cache: BaseCache
) -> None:
    """Such a user is missing from the users index, but their sessions can
    still be listed and ended by key or id; not by label, which is unknown.
    """
    plant(cache, user_record_key(env, "User:1"), b"not json")
    data = json.loads(run(env, "sessions", "--user", "User:1", "--json").stdout)
    assert sorted(entry["id"] for entry in data) == sorted(ids_of(env, "User:1"))
    assert run(env, "sessions", "--user", "ada@example.com").exit_code == 1
    result = run(env, "sessions", "revoke", "--user", "1", "--yes")
    assert result.stdout == "Ended 2 sessions of User:1.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sessions", "revoke"], "Give session ids, or --user USER."),
        (
            ["sessions", "revoke", "x", "--user", "1"],
            "Give session ids or --user USER, not both.",
        ),
        (
            ["sessions", "--user", "1", "revoke"],
            "Give --user after 'revoke', not before it.",
        ),
        (
            ["sessions", "--json", "show", "x"],
            "Give --json after 'show', not before it.",
        ),
        (["sessions", "--user", "1", "show", "x"], "'show' takes no --user option."),
    ],
)
@stores
def test_usage_errors(
    env: Env, clients: list[FlaskClient], args: list[str], message: str
) -> None:
    result = run(env, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"
    assert len(ids_of(env, "User:1")) == 2


@stores
def test_revoke_several_unknown_ids(env: Env, clients: list[FlaskClient]) -> None:
    sid = ids_of(env, "User:2")[0]
    result = run(env, "sessions", "revoke", "nope", sid, "gone")
    assert result.exit_code == 1
    assert result.stdout == f"Ended session {sid}.\n"
    assert result.stderr == "Error: No active session with ids 'nope', 'gone'.\n"


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


def test_testing_store_is_refused_naming_testing(make_env: MakeEnv) -> None:
    result = run(make_env(POW_CACHE=None), "sessions")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: TESTING is set and POW_CACHE is not, so flask_pow keeps the"
        " sessions in the application's memory (a SimpleCache), which this"
        " command cannot see. To test the command, set POW_CACHE to a"
        " cachelib.FileSystemCache in a temporary folder.\n"
    )


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
        [sys.executable, "-m", "flask", "--app", "tests.apps.cli_app", "pow",
         "sessions", "--json"],
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


@pytest.fixture
def id_and_label_env(cache: BaseCache, tmp_path: t.Any) -> Env:
    """User 1 is named "2"; user 2 is Bob: ``2`` is one's label and the
    other's id.
    """
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'clash.db'}")
    env = Env(app, db, User, Pow(app, users=StrictIds(SQLAlchemyUsers(db, User))))
    add_routes(env)
    env.login(app.test_client(), env.add_user("two@example.com", name="2"))
    env.login(app.test_client(), env.add_user("bob@example.com", name="Bob"))
    return env


@stores
@pytest.mark.parametrize(
    "args",
    [["sessions", "--user", "2"], ["sessions", "revoke", "--user", "2", "--yes"]],
)
def test_value_that_is_one_users_id_and_anothers_label_is_refused(
    id_and_label_env: Env, args: list[str]
) -> None:
    result = run(id_and_label_env, *args)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: '2' names 2 users: User:1 by its label '2' (--user key=User:1);"
        " User:2 by its id '2' (--user key=User:2). Name one exactly by its"
        " user key.\n"
    )
    assert len(ids_of(id_and_label_env, "User:1")) == 1
    assert len(ids_of(id_and_label_env, "User:2")) == 1


@stores
@pytest.mark.parametrize(
    ("value", "ended"),
    [("key=User:1", "User:1"), ("id=2", "User:2"), ("label=2", "User:1")],
)
def test_a_named_field_names_one_user_exactly(
    id_and_label_env: Env, value: str, ended: str
) -> None:
    result = run(id_and_label_env, "sessions", "revoke", "--user", value, "--yes")
    assert result.exit_code == 0
    assert ids_of(id_and_label_env, ended) == []
    other = "User:2" if ended == "User:1" else "User:1"
    assert len(ids_of(id_and_label_env, other)) == 1
