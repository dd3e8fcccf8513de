"""The records of one session, and the tokens that authenticate it.

A token is 256 random bits, known to the client only: the store keeps its
SHA-256 digest. After a rotation the new token is kept *sealed* under the old
one (XOR with an HMAC keyed by the old token) for the grace window, so a
client holding the old token can be moved to the new one while a reader of
the store learns neither.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import typing as t

#: Session ids and tokens are this many random bytes, base64url-encoded.
SESSION_ID_BYTES = 16
TOKEN_BYTES = 32

#: What the fields of a stored record must look like.
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SEALED = re.compile(r"[A-Za-z0-9_-]{43}")
_ID = re.compile(r"[A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{30}")
_USER_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,1024}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digest(token: str) -> str:
    """The SHA-256 digest under which a token is known to the store."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _pad(token: str) -> bytes:
    return hmac.new(token.encode("ascii"), b"flask_pow.rotated_to", "sha256").digest()


def _xor_pad(token: str, old_token: str) -> str:
    # XOR with a pad only the old token gives: its own inverse, so the one
    # operation both seals and unseals.
    raw = _unb64(token)
    return _b64(bytes(a ^ b for a, b in zip(raw, _pad(old_token), strict=True)))


def seal(new_token: str, old_token: str) -> str:
    """Seal the new token so that only a holder of the old one can read it:
    the store never holds a usable token, even during the grace window.
    """
    return _xor_pad(new_token, old_token)


def unseal(sealed: str, old_token: str) -> str:
    """Read a token sealed by :func:`seal`."""
    return _xor_pad(sealed, old_token)


def new_token() -> str:
    """A token of 256 random bits from :mod:`secrets`."""
    return _b64(secrets.token_bytes(TOKEN_BYTES))


def new_session_id() -> str:
    """A session id of 128 random bits, drawn again in the 1 case of 64
    where it would start with ``-``: operators paste ids into commands
    (``flask pow sessions show ID``), where a leading dash reads as an
    option.
    """
    while True:
        session_id = _b64(secrets.token_bytes(SESSION_ID_BYTES))

        if not session_id.startswith("-"):
            return session_id


def utc(timestamp: float) -> dt.datetime:
    """A Unix time as an aware UTC datetime, as :class:`SessionInfo` gives
    every moment.
    """
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """One session as the store has it. Holds no token: nothing here lets
    anyone log in.
    """

    #: The stable id of this login on this device; survives rotations.
    id: str
    #: The identity key of the user, ``"<Model>:<primary key>"``.
    user_key: str
    #: When the user logged in.
    created_at: dt.datetime
    #: When the current token was issued (login or last rotation).
    inserted_at: dt.datetime
    #: When the session ends unless rotated first (idle timeout, capped by the
    #: absolute timeout).
    expires_at: dt.datetime
    #: ``ip`` and ``user_agent`` at login, plus the application's own keys.
    metadata: dict[str, t.Any]
    #: When the user last proved who they are in this session (a login with
    #: a password, or :func:`~flask_pow.confirm_login`); ``None`` if never
    #: (a login with ``fresh=False``).
    fresh_at: dt.datetime | None = None
    #: Whether the session is fresh now: proved within ``POW_FRESHNESS``
    #: (for its whole life when that is ``None``).
    fresh: bool = False
    #: Until when this device is remembered (a remember-me credential was
    #: issued with or restored this session), or ``None``.
    remembered_until: dt.datetime | None = None
    #: ``"session"``; or ``"remember"`` in a listing, for a device that
    #: only its remember-me credential keeps: its session ended, and its
    #: next request logs it in again (until :attr:`remembered_until`,
    #: which is also its :attr:`expires_at`). End it by this id like any
    #: other session.
    kind: str = "session"


@dataclasses.dataclass
class SessionRecord:
    """A ``session:<id>`` record, validated.

    :meta private:
    """

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
    #: When the user last proved who they are; ``None`` if never.
    fresh_at: float | None = None
    #: ``"session"``, or ``"remember"`` for a remember-me credential, kept
    #: like a session (same keys, same index) so that every revocation path
    #: ends it too.
    kind: str = "session"
    #: A remember credential's device: the session it last restored (or
    #: was issued with), and that session's token sealed under the
    #: credential's previous token, for parallel restores to follow.
    linked: str | None = None
    linked_sealed: str | None = None
    #: A session's remember-me deadline: when the credential issued with
    #: it (or that restored it) ends; ``None`` if the device is not
    #: remembered.
    remembered_until: float | None = None

    @classmethod
    def parse(cls, session_id: str, value: t.Any) -> SessionRecord:
        """Validate a stored value.

        :raise ValueError: if it is not a session record.
        """
        if not isinstance(value, dict):
            raise ValueError("not a dict")

        try:
            record = cls(
                id=session_id,
                user_key=value["user"],
                token=value["token"],
                created_at=value["created_at"],
                inserted_at=value["inserted_at"],
                expires_at=value["expires_at"],
                metadata=value["metadata"],
                previous=value.get("previous"),
                previous_until=value.get("previous_until", 0.0),
                rotated_to=value.get("rotated_to"),
                # A record from before freshness was kept: its login was.
                fresh_at=value.get("fresh_at", value["created_at"]),
                kind=value.get("kind", "session"),
                linked=value.get("linked"),
                linked_sealed=value.get("linked_sealed"),
                remembered_until=value.get("remembered_until"),
            )
        except (KeyError, TypeError):
            raise ValueError("missing fields") from None

        for name, kind in (
            ("user_key", str),
            ("token", str),
            ("created_at", (int, float)),
            ("inserted_at", (int, float)),
            ("expires_at", (int, float)),
            ("metadata", dict),
            ("previous", (str, type(None))),
            ("previous_until", (int, float)),
            ("rotated_to", (str, type(None))),
            ("fresh_at", (int, float, type(None))),
            ("kind", str),
            ("linked", (str, type(None))),
            ("linked_sealed", (str, type(None))),
            ("remembered_until", (int, float, type(None))),
        ):
            value = getattr(record, name)

            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"bad {name}")

        # The right types are not enough: every value reaches code that
        # assumes its shape (compare_digest wants ASCII, unseal 32 bytes).
        if _USER_KEY.fullmatch(record.user_key) is None:
            raise ValueError("bad user_key")

        if _DIGEST.fullmatch(record.token) is None:
            raise ValueError("bad token")

        if (record.previous is None) != (record.rotated_to is None):
            raise ValueError("bad rotation")

        if record.kind not in ("session", "remember"):
            raise ValueError("bad kind")

        for name, shape in (
            ("previous", _DIGEST),
            ("rotated_to", _SEALED),
            ("linked", _ID),
            ("linked_sealed", _SEALED),
        ):
            value = getattr(record, name)

            if value is not None and shape.fullmatch(value) is None:
                raise ValueError(f"bad {name}")

        if not all(
            math.isfinite(getattr(record, name))
            for name in ("created_at", "inserted_at", "expires_at", "previous_until")
        ) or any(
            value is not None and not math.isfinite(value)
            for value in (record.fresh_at, record.remembered_until)
        ):
            raise ValueError("bad time")

        return record

    def dump(self) -> dict[str, t.Any]:
        value: dict[str, t.Any] = {
            "user": self.user_key,
            "token": self.token,
            "created_at": self.created_at,
            "inserted_at": self.inserted_at,
            "expires_at": self.expires_at,
            "metadata": self.metadata,
            "fresh_at": self.fresh_at,
        }

        if self.kind != "session":
            value["kind"] = self.kind
            value["linked"] = self.linked
            value["linked_sealed"] = self.linked_sealed

        if self.remembered_until is not None:
            value["remembered_until"] = self.remembered_until

        if self.previous is not None:
            value["previous"] = self.previous
            value["previous_until"] = self.previous_until
            value["rotated_to"] = self.rotated_to

        return value

    def info(self, *, fresh: bool = False) -> SessionInfo:
        return SessionInfo(
            id=self.id,
            user_key=self.user_key,
            created_at=utc(self.created_at),
            inserted_at=utc(self.inserted_at),
            expires_at=utc(self.expires_at),
            metadata=dict(self.metadata),
            fresh_at=None if self.fresh_at is None else utc(self.fresh_at),
            fresh=fresh,
            remembered_until=None
            if self.remembered_until is None
            else utc(self.remembered_until),
        )
