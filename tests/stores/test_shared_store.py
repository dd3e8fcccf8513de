"""Two applications with different secret keys on one store (two services,
or staging and production, pointed at one cache directory, one memcached or
one Redis): neither reads, lists or ends the other's records, and a secret
key rotated with ``SECRET_KEY_FALLBACKS`` logs nobody out. On every
backend: each lays out its keys itself.
"""

from __future__ import annotations

import typing as t

import pytest
from flask.testing import FlaskClient

from tests.support.env import Env
from tests.support.env import MakeEnv

#: Each store lays out its keys itself: every test on every store.
pytestmark = pytest.mark.backends


def two_apps(make_env: MakeEnv, tmp_path: t.Any) -> tuple[Env, Env]:
    first = make_env(SECRET_KEY="the first app's key")
    second = make_env(
        SECRET_KEY="the second app's key",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'second.db'}",
    )
    # User 1 of each: another person, another plan.
    first.add_user("ada@example.com", plan="free")
    second.add_user("bob@example.com", plan="admin")
    return first, second


def logged_in(env: Env, user_id: int = 1) -> FlaskClient:
    client = env.app.test_client()
    env.login(client, user_id)
    return client


def session_ids(env: Env, user_key: str = "User:1") -> list[str]:
    with env.app.app_context():
        return [info.id for info in env.pow.credentials.sessions_by_key(user_key)]


def test_each_app_sees_its_own_user_with_the_same_key(
    make_env: MakeEnv, tmp_path: t.Any
) -> None:
    first, second = two_apps(make_env, tmp_path)
    ada = logged_in(first)
    bob = logged_in(second)
    assert first.me(ada) == "ada@example.com free"
    assert second.me(bob) == "bob@example.com admin"


def test_logout_everywhere_in_one_app_leaves_the_other_apps_sessions(
    make_env: MakeEnv, tmp_path: t.Any
) -> None:
    first, second = two_apps(make_env, tmp_path)
    ada = logged_in(first)
    logged_in(second)

    with second.app.app_context():
        assert second.pow.credentials.delete_sessions_by_key("User:1") == 1

    assert first.me(ada) == "ada@example.com free"


def test_listings_show_only_the_apps_own_records(
    make_env: MakeEnv, tmp_path: t.Any
) -> None:
    first, second = two_apps(make_env, tmp_path)
    logged_in(first)
    logged_in(second)
    [ours] = session_ids(first)
    [theirs] = session_ids(second)
    assert ours != theirs

    with first.app.app_context():
        credentials = first.pow.credentials
        assert [user.email for user in credentials.users()] == ["ada@example.com"]
        assert credentials.get(theirs) is None


def test_an_app_cannot_end_another_apps_session_by_its_id(
    make_env: MakeEnv, tmp_path: t.Any
) -> None:
    first, second = two_apps(make_env, tmp_path)
    logged_in(first)
    bob = logged_in(second)
    [theirs] = session_ids(second)

    with first.app.app_context():
        assert not first.pow.credentials.delete(theirs)
        first.pow.credentials.delete_sessions_by_key("User:1")

    assert second.me(bob) == "bob@example.com admin"


def rotated(env: Env, make_env: MakeEnv) -> Env:
    """The same application after its secret key was rotated: a new key,
    the old one kept as a fallback.
    """
    return make_env(SECRET_KEY="the new key", SECRET_KEY_FALLBACKS=[env.app.secret_key])


def carried(client: FlaskClient, env: Env) -> FlaskClient:
    """``client``'s cookies, in a client of ``env``'s application."""
    other = env.app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    other.set_cookie("session", cookie.value)
    return other


def test_rotating_the_secret_key_with_a_fallback_logs_nobody_out(
    make_env: MakeEnv,
) -> None:
    before = make_env(SECRET_KEY="the old key")
    before.add_user()
    after = rotated(before, make_env)
    client = carried(logged_in(before), after)
    assert after.me(client) == "ada@example.com free"


def test_sessions_from_before_a_key_rotation_are_listed_and_ended(
    make_env: MakeEnv,
) -> None:
    before = make_env(SECRET_KEY="the old key")
    before.add_user()
    old = logged_in(before)
    after = rotated(before, make_env)
    new = logged_in(after)
    old = carried(old, after)
    assert len(session_ids(after)) == 2

    with after.app.app_context():
        assert [u.email for u in after.pow.credentials.users()] == ["ada@example.com"]
        assert after.pow.credentials.delete_sessions_by_key("User:1") == 2

    assert after.me(old) == "anonymous"
    assert after.me(new) == "anonymous"
