"""The records of one session, and its tokens: 256 random bits, of which the
store keeps the SHA-256 digest. After a rotation the new token is kept
*sealed* under the old one for the grace window: a client holding the old
token can follow, a reader of the store learns neither.
"""

from __future__ import annotations

import base64
import collections.abc as c
import dataclasses
import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import typing as t


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def digest(token: str) -> str:
    """The SHA-256 digest under which a token is known to the store."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def seal(token: str, old_token: str) -> str:
    """XOR a token with a pad only the old token gives (so also unseals)."""
    pad = hmac.new(old_token.encode("ascii"), b"flask_pow.rotated_to", "sha256")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return _b64(bytes(a ^ b for a, b in zip(raw, pad.digest(), strict=True)))


unseal = seal


def new_token() -> str:
    """A token of 256 random bits."""
    return _b64(secrets.token_bytes(32))


def new_session_id() -> str:
    """128 random bits, never starting with ``-`` (an option on a command line)."""
    while True:
        session_id = _b64(secrets.token_bytes(16))

        if not session_id.startswith("-"):
            return session_id


def utc(timestamp: float) -> dt.datetime:
    """A Unix time as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """One session as the store has it, with no token: nothing here logs in."""

    #: The stable id of this login on this device; survives rotations.
    id: str
    #: The identity key of the user, ``"<Model>:<primary key>"``.
    user_key: str
    #: When the user logged in.
    created_at: dt.datetime
    #: When the current token was issued (login or last rotation).
    inserted_at: dt.datetime
    #: When the session ends unless rotated first (idle, or absolute, timeout).
    expires_at: dt.datetime
    #: ``ip`` and ``user_agent`` at login, plus the application's own keys.
    metadata: dict[str, t.Any]
    #: When the user last proved who they are (a login with a password, or
    #: :func:`~flask_pow.confirm_login`); ``None`` if never (``fresh=False``).
    fresh_at: dt.datetime | None = None
    #: Whether the session is fresh now (proved within ``POW_FRESHNESS``).
    fresh: bool = False
    #: Until when this device's remember-me credential lasts, or ``None``.
    remembered_until: dt.datetime | None = None
    #: ``"session"``, or ``"remember"`` for a listed device that only its
    #: remember-me credential keeps (until :attr:`expires_at`); end it by id.
    kind: str = "session"


_Shape = c.Callable[[t.Any], object] | None
_NUMBER = (int, float)
_NUMBER_OR_NONE = (int, float, type(None))
_FINITE = math.isfinite
_TEXT_OR_NONE = (str, type(None))
_USER_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,1024}").fullmatch
_DIGEST = re.compile(r"[0-9a-f]{64}").fullmatch
_SEALED = re.compile(r"[A-Za-z0-9_-]{43}").fullmatch
# 22 characters, or 30 on Redis (a user's hash tag first).
_ID = re.compile(r"[A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{30}").fullmatch

_REQUIRED: t.Any = object()
# A time left out when it equals created_at: fresh_at of a record from before
# freshness was kept, and the compact record's inserted_at and fresh_at.
_CREATED: t.Any = object()

# Attribute, stored key, the long key that earlier versions wrote (read,
# never written), default, types, shape. Code downstream assumes the shape
# (compare_digest wants ASCII, unseal 32 bytes, the clock finite times). The
# keys are short because every session stores them: they were a third of a
# record, on Redis 96 bytes of its memory.
_FIELDS: tuple[tuple[str, str, str, t.Any, t.Any, _Shape], ...] = (
    ("user_key", "u", "user", _REQUIRED, str, _USER_KEY),
    ("token", "t", "token", _REQUIRED, str, _DIGEST),
    ("created_at", "c", "created_at", _REQUIRED, _NUMBER, _FINITE),
    ("inserted_at", "i", "inserted_at", _CREATED, _NUMBER, _FINITE),
    ("expires_at", "e", "expires_at", _REQUIRED, _NUMBER, _FINITE),
    ("metadata", "m", "metadata", _REQUIRED, dict, None),
    ("previous", "p", "previous", None, _TEXT_OR_NONE, _DIGEST),
    ("previous_until", "pu", "previous_until", 0.0, _NUMBER, _FINITE),
    ("rotated_to", "r", "rotated_to", None, _TEXT_OR_NONE, _SEALED),
    ("fresh_at", "f", "fresh_at", _CREATED, _NUMBER_OR_NONE, _FINITE),
    ("kind", "k", "kind", "session", str, re.compile("session|remember").fullmatch),
    ("linked", "l", "linked", None, _TEXT_OR_NONE, _ID),
    ("linked_sealed", "ls", "linked_sealed", None, _TEXT_OR_NONE, _SEALED),
    ("remembered_until", "ru", "remembered_until", None, _NUMBER_OR_NONE, _FINITE),
)

_Field = tuple[str, str, t.Any, t.Any, _Shape]


class _Form(t.NamedTuple):
    """One stored form: (attribute, key, default, types, shape) per field,
    the keys it requires, and its key of ``created_at``.
    """

    fields: tuple[_Field, ...]
    required: frozenset[str]
    created_at: str


def _form(*, long: bool) -> _Form:
    fields = tuple(
        (name, long_key if long else key, default, types, shape)
        for name, key, long_key, default, types, shape in _FIELDS
    )
    keys = {name: key for name, key, *_ in fields}
    required = frozenset(field[1] for field in fields if field[2] is _REQUIRED)
    return _Form(fields, required, keys["created_at"])


_COMPACT, _LONG = _form(long=False), _form(long=True)


@dataclasses.dataclass
class SessionRecord:
    """A ``session:<id>`` record, validated."""

    id: str
    user_key: str
    token: str
    created_at: float
    inserted_at: float
    expires_at: float
    metadata: dict[str, t.Any]
    previous: str | None = None
    previous_until: float = 0.0
    rotated_to: str | None = None
    fresh_at: float | None = None
    # "remember": a remember-me credential, so every revocation ends it too.
    kind: str = "session"
    # A remember credential's last restored session, and its token sealed
    # under the credential's previous one, for parallel restores to follow.
    linked: str | None = None
    linked_sealed: str | None = None
    # When the remember-me credential of this session's device ends.
    remembered_until: float | None = None

    def copy(self) -> SessionRecord:
        """A shallow copy (the metadata shared), at a quarter of
        :func:`copy.copy`'s cost: the request path makes one.
        """
        own = object.__new__(SessionRecord)
        own.__dict__.update(self.__dict__)
        return own

    @classmethod
    def parse(cls, session_id: str, value: t.Any) -> SessionRecord:
        """Validate a stored value, or raise :exc:`ValueError`."""
        if not isinstance(value, dict):
            raise ValueError("not a session record")

        form = _COMPACT if "u" in value else _LONG

        if not value.keys() >= form.required:
            raise ValueError("not a session record")

        created_at = value[form.created_at]
        parsed = {}

        for name, key, default, types, shape in form.fields:
            item = value.get(key, default)

            if item is _CREATED:
                item = created_at

            if (
                not isinstance(item, types)
                or isinstance(item, bool)
                or (item is not None and shape is not None and not shape(item))
            ):
                raise ValueError(f"bad {name}")

            parsed[name] = item

        if (parsed["previous"] is None) != (parsed["rotated_to"] is None):
            raise ValueError("bad rotation")

        return cls(id=session_id, **parsed)

    def dump(self) -> dict[str, t.Any]:
        """The compact record: every field not at its default, which
        :meth:`parse` reads back as such.
        """
        fields = vars(self)
        created_at = fields["created_at"]
        return {
            key: fields[name]
            for name, key, default, _, _ in _COMPACT.fields
            if fields[name] != (created_at if default is _CREATED else default)
        }

    def info(self, *, fresh: bool = False) -> SessionInfo:
        fresh_at, until = self.fresh_at, self.remembered_until
        return SessionInfo(
            id=self.id,
            user_key=self.user_key,
            created_at=utc(self.created_at),
            inserted_at=utc(self.inserted_at),
            expires_at=utc(self.expires_at),
            metadata=dict(self.metadata),
            fresh_at=None if fresh_at is None else utc(fresh_at),
            fresh=fresh,
            remembered_until=None if until is None else utc(until),
        )
