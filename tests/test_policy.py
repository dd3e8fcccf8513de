"""The session policy on its own: records and the time, no store."""

from __future__ import annotations

import pytest

from flask_pow.policy import Match
from flask_pow.policy import Policy
from flask_pow.records import SessionRecord

NOW = 1_800_000_000.0
POLICY = Policy(credentials_ttl=1800, rotation_grace=30, absolute_ttl=None)


def new(policy: Policy = POLICY) -> tuple[SessionRecord, str]:
    return policy.new_session("sid", "User:1", {"ip": "127.0.0.1"}, NOW)


def test_new_session_expires_after_the_idle_timeout() -> None:
    record, _ = new()
    assert (record.created_at, record.inserted_at, record.expires_at) == (
        NOW,
        NOW,
        NOW + 1800,
    )


def test_new_session_never_stores_its_token() -> None:
    record, token = new()
    assert token not in record.token


def test_absolute_timeout_caps_the_expiry() -> None:
    policy = Policy(credentials_ttl=1800, rotation_grace=30, absolute_ttl=600)
    record, _ = new(policy)
    assert record.expires_at == NOW + 600


def test_current_token_opens_the_session() -> None:
    record, token = new()
    assert POLICY.match(record, token, NOW + 10) == Match()


def test_other_token_does_not_open_the_session() -> None:
    record, _ = new()
    _, other = new()
    assert POLICY.match(record, other, NOW) is None


def test_expired_session_opens_with_no_token() -> None:
    record, token = new()
    assert POLICY.match(record, token, NOW + 1800) is None


def test_advance_leaves_the_record_it_was_given() -> None:
    record, token = new()
    before = (record.token, record.inserted_at)
    POLICY.advance(record, token, NOW + 900)
    assert (record.token, record.inserted_at) == before


def test_advanced_session_opens_with_the_fresh_token() -> None:
    record, token = new()
    advanced, fresh = POLICY.advance(record, token, NOW + 900)
    assert POLICY.match(advanced, fresh, NOW + 901) == Match()
    assert (advanced.id, advanced.created_at, advanced.metadata) == (
        record.id,
        record.created_at,
        record.metadata,
    )


def test_advance_restarts_the_idle_timeout() -> None:
    record, token = new()
    advanced, _ = POLICY.advance(record, token, NOW + 900)
    assert (advanced.inserted_at, advanced.expires_at) == (NOW + 900, NOW + 2700)


def test_advance_without_sliding_keeps_the_expiry() -> None:
    """A remember-me credential ends when its login said, however used."""
    policy = Policy(credentials_ttl=1800, rotation_grace=30, sliding=False)
    record, token = new(policy)
    record.expires_at = NOW + 7200
    advanced, _ = policy.advance(record, token, NOW + 900)
    assert (advanced.inserted_at, advanced.expires_at) == (NOW + 900, NOW + 7200)


def test_old_token_follows_to_the_fresh_one_inside_grace() -> None:
    record, token = new()
    advanced, fresh = POLICY.advance(record, token, NOW + 900)
    assert POLICY.match(advanced, token, NOW + 929) == Match(follow=fresh)


def test_old_token_is_dead_after_grace() -> None:
    record, token = new()
    advanced, _ = POLICY.advance(record, token, NOW + 900)
    assert POLICY.match(advanced, token, NOW + 930) is None


def test_old_token_is_dead_at_once_without_grace() -> None:
    policy = Policy(credentials_ttl=1800, rotation_grace=0)
    record, token = new(policy)
    advanced, _ = policy.advance(record, token, NOW + 900)
    assert POLICY.match(advanced, token, NOW + 900) is None


def test_token_two_rotations_old_is_dead() -> None:
    record, first = new()
    once, second = POLICY.advance(record, first, NOW + 1)
    twice, _ = POLICY.advance(once, second, NOW + 2)
    assert POLICY.match(twice, first, NOW + 3) is None


@pytest.mark.parametrize(
    ("absolute", "at", "past"),
    [(None, NOW + 10**9, False), (600, NOW + 599, False), (600, NOW + 600, True)],
)
def test_absolute_timeout(absolute: int | None, at: float, past: bool) -> None:
    policy = Policy(credentials_ttl=1800, rotation_grace=30, absolute_ttl=absolute)
    record, _ = new(policy)
    assert policy.is_past_absolute(record, at) is past
