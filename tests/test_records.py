"""Bad input gives an anonymous request, never a 500, and nothing stored is
ever unpickled (DESIGN.md section 5).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import typing as t

import pytest
from cachelib import BaseCache
from flask.testing import FlaskClient
from itsdangerous import Signer

from tests.support.env import Env
from tests.support.raw import plant
from tests.support.raw import session_record_key
from tests.support.raw import user_record_key
from tests.support.sessions import pow_value
from tests.support.sessions import session_ids
from tests.support.sessions import set_value


def sign(payload: str, key: str = "test secret key") -> str:
    signer = Signer(
        key,
        salt="flask_pow.session",
        key_derivation="hmac",
        digest_method=hashlib.sha256,
    )
    return signer.sign(payload).decode()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(12345, id="int"),
        pytest.param(["a", "b"], id="list"),
        pytest.param({"sid": "x"}, id="dict"),
        pytest.param("", id="empty"),
        pytest.param("x" * 10_000, id="oversized"),
        pytest.param("no-signature-at-all", id="unsigned"),
        pytest.param("\x00\xff", id="binary"),
    ],
)
def test_wrong_values_are_anonymous(
    env: Env, client: FlaskClient, value: t.Any
) -> None:
    set_value(client, value)
    response = client.get("/me")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "anonymous"


def test_tampered_signature_is_anonymous(env: Env, logged_in: FlaskClient) -> None:
    value = pow_value(logged_in)
    assert value is not None
    # A middle character: the last one of a base64 signature carries padding
    # bits, and some changes to it decode to the same bytes.
    i = len(value) - 10
    set_value(logged_in, value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :])
    assert env.me(logged_in) == "anonymous"


def test_tampered_token_is_anonymous(env: Env, logged_in: FlaskClient) -> None:
    value = pow_value(logged_in)
    assert value is not None
    i = 30
    set_value(logged_in, value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :])
    assert env.me(logged_in) == "anonymous"


def test_truncated_value_is_anonymous(env: Env, logged_in: FlaskClient) -> None:
    value = pow_value(logged_in)
    assert value is not None
    set_value(logged_in, value[: len(value) // 2])
    assert env.me(logged_in) == "anonymous"


def test_unsigned_session_id_is_anonymous_and_kept(
    env: Env, logged_in: FlaskClient
) -> None:
    """T7: an unsigned id gives no user, and the stored session is untouched."""
    value = pow_value(logged_in)
    assert value is not None
    unsigned = value.rsplit(".", 1)[0]
    set_value(logged_in, unsigned)
    assert env.me(logged_in) == "anonymous"
    assert len(session_ids(env)) == 1
    set_value(logged_in, value)
    assert env.me(logged_in) == "ada@example.com free"


def test_signed_unknown_session_is_anonymous(env: Env, client: FlaskClient) -> None:
    """T6: a validly signed id the store does not know gives no user."""
    set_value(client, sign("A" * 22 + "." + "B" * 43))
    assert env.me(client) == "anonymous"


def test_signed_malformed_payload_is_anonymous(env: Env, client: FlaskClient) -> None:
    set_value(client, sign("../../etc/passwd"))
    assert env.me(client) == "anonymous"


def test_value_signed_for_another_salt_is_anonymous(
    env: Env, client: FlaskClient
) -> None:
    signer = Signer("test secret key", salt="other", digest_method=hashlib.sha256)
    set_value(client, signer.sign("A" * 22 + "." + "B" * 43).decode())
    assert env.me(client) == "anonymous"


def test_garbage_session_cookie_is_anonymous(env: Env, client: FlaskClient) -> None:
    client.set_cookie("session", "garbage.garbage.garbage")
    assert env.me(client) == "anonymous"


def session_key(env: Env) -> str:
    """The cache key of the only session."""
    [sid] = session_ids(env)
    return session_record_key(env.pow.get_state(env.app).config.cache, sid)


def user_key(env: Env) -> str:
    """The cache key of User 1's record."""
    [sid] = session_ids(env)
    return user_record_key(env.pow.get_state(env.app).config.cache, sid, "User:1")


@pytest.mark.backends
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"user": 1}', id="wrong-shape"),
        pytest.param(b"[1, 2, 3]", id="list"),
        pytest.param(b'{"\\u0000dt": "not a date"}', id="bad-tag"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_corrupt_session_record_is_anonymous(
    env: Env, logged_in: FlaskClient, cache: BaseCache, raw: bytes
) -> None:
    plant(cache, session_key(env), raw)
    response = logged_in.get("/me")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "anonymous"


@pytest.mark.backends
def test_corrupt_record_is_logged_once(
    env: Env, logged_in: FlaskClient, cache: BaseCache, caplog: pytest.LogCaptureFixture
) -> None:
    key = session_key(env)
    plant(cache, key, b'{"user": 1}')

    with caplog.at_level(logging.WARNING, logger="flask_pow"):
        env.me(logged_in)
        env.me(logged_in)

    warnings = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 1
    assert key.rsplit(":", 1)[1] not in warnings[0].getMessage()


@pytest.mark.backends
def test_corrupt_user_record_is_read_as_lost_and_heals(
    env: Env, logged_in: FlaskClient, cache: BaseCache
) -> None:
    """A user record that does not decode is a lost one: the valid session's
    user is loaded from the database again (still yourself, never a 500).
    """
    plant(cache, user_key(env), b'{"key": "User:1", "data": {"id": "x"')
    assert env.me(logged_in) == "ada@example.com free"


@pytest.mark.backends
def test_user_record_of_another_user_is_never_used(
    env: Env, logged_in: FlaskClient, cache: BaseCache
) -> None:
    env.add_user("bob@example.com")
    plant(cache, user_key(env), b'{"key": "User:2", "data": {"id": 2}}')
    assert env.me(logged_in) == "ada@example.com free"


class Exploit:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    path = ""

    def __reduce__(self) -> tuple[t.Any, ...]:
        return (open, (self.path, "w"))


@pytest.mark.backends
def test_planted_pickle_is_never_unpickled(
    env: Env, logged_in: FlaskClient, cache: BaseCache, tmp_path: t.Any
) -> None:
    marker = tmp_path / "pwned"
    Exploit.path = str(marker)
    payload = pickle.dumps(Exploit())
    keys = [session_key(env), user_key(env)]

    for key in keys:
        plant(cache, key, payload)
    assert env.me(logged_in) == "anonymous"
    assert not os.path.exists(marker)
