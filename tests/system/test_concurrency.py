"""Concurrent requests with one stale token, against a real threaded server
on a loopback port.
"""

from __future__ import annotations

import collections.abc as c
import threading

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_pow import session_rotated
from tests.support.env import Env
from tests.support.http import all_at_once
from tests.support.http import pow_token
from tests.support.http import request

#: A rotation race is decided by the store: every test on every store.
pytestmark = pytest.mark.backends

PARALLEL = 50


@pytest.fixture
def server(env: Env) -> c.Iterator[tuple[str, int]]:
    srv = make_server("127.0.0.1", 0, env.app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", srv.server_port
    srv.shutdown()
    thread.join(timeout=10)


@pytest.mark.slow
def test_parallel_requests_with_stale_token_rotate_once(
    env: Env, server: tuple[str, int], user_id: int
) -> None:
    _, cookie = request(server, "POST", f"/login/{user_id}", None)
    assert cookie is not None
    env.clock.advance(15 * 60 + 1)
    rotations: list[str] = []

    def record(sender: Flask, session_id: str, **kwargs: object) -> None:
        rotations.append(session_id)

    with session_rotated.connected_to(record, env.app):
        results = all_at_once([server] * PARALLEL, "/slow-me", cookie)

    assert len(results) == PARALLEL
    assert {body for body, _ in results} == {"ada@example.com free"}
    assert len(rotations) == 1
    new_tokens = {pow_token(env.app, c) for _, c in results if c is not None}
    assert len(new_tokens) == 1
    assert new_tokens != {pow_token(env.app, cookie)}
    # The client ends on the new token, and it works.
    [final] = [c for _, c in results if c is not None][:1]
    assert request(server, "GET", "/me", final)[0] == "ada@example.com free"


@pytest.mark.slow
def test_every_parallel_request_ends_on_the_winners_token(
    env: Env, server: tuple[str, int], user_id: int
) -> None:
    """The losers of a rotation race follow the winner, on every store (the
    Redis store learns it from its compare-and-set, the others by waiting a
    moment for the winner's lock): no response leaves its client on the old
    token, which would die when the grace window ends.
    """
    _, cookie = request(server, "POST", f"/login/{user_id}", None)
    assert cookie is not None
    env.clock.advance(15 * 60 + 1)
    results = all_at_once([server] * PARALLEL, "/slow-me", cookie)
    tokens = [None if c is None else pow_token(env.app, c) for _, c in results]
    assert None not in tokens
    assert len(set(tokens)) == 1
    assert tokens[0] != pow_token(env.app, cookie)
