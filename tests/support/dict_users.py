"""The smallest user adapter, for tests and benchmarks that need users but
no database: users are dicts with an ``id``.
"""

from __future__ import annotations

import typing as t

from flask_pow import UserAdapter


class DictUsers(UserAdapter[dict[str, t.Any]]):
    """:class:`~flask_pow.UserAdapter` for users that are dicts."""

    def key(self, user: dict[str, t.Any]) -> str:
        return f"User:{user['id']}"

    def dump(self, user: dict[str, t.Any]) -> dict[str, t.Any]:
        return dict(user)

    def load(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        return dict(data)

    def reload(self, user: dict[str, t.Any]) -> dict[str, t.Any] | None:
        return user

    def label(self, user: dict[str, t.Any]) -> str | None:
        return None
