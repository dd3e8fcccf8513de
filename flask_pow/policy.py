"""The session policy, with no storage in it: which token opens a session,
how a session advances when its token rotates, when it expires. Functions
of a record and the time, so that every store applies the same rules and
they can be tested on their own.

- A session opens with its **current token** until its expiry, and with
  the **previous token** until the grace window ends; the previous token
  also tells the client where the session went (the new token, sealed
  under the old one).
- A **rotation** issues a fresh token, keeps the session id, creation time
  and metadata, restarts the idle timeout (never past the absolute one),
  and keeps the old token for the grace window; with no grace window, or
  for a privilege change (a *hard* rotation), the old token is dead at
  once.
- A session past its **absolute timeout** is over, however active.
"""

from __future__ import annotations

import dataclasses
import hmac
import typing as t

from .records import SessionRecord
from .records import digest
from .records import new_token
from .records import seal
from .records import unseal


@dataclasses.dataclass(frozen=True)
class Match:
    """A token that opens a session."""

    #: The token the client should hold from now on, when it presented a
    #: rotated-away one inside the grace window; else ``None``.
    follow: str | None = None


#: The match of the current token, shared: a Match cannot change.
_MATCHED = Match()


@dataclasses.dataclass(frozen=True)
class Policy:
    """The timing rules of one application.

    :param credentials_ttl: the idle timeout, in seconds.
    :param rotation_grace: how long a rotated-away token still works.
    :param absolute_ttl: seconds after login when a session ends, or ``None``.
    """

    credentials_ttl: int
    rotation_grace: int
    absolute_ttl: int | None = None
    #: Seconds a proof of identity keeps a session fresh; ``None``: all its life.
    freshness: int | None = None
    #: Whether a rotation restarts the idle timeout. ``False``: a record
    #: ends when it was made to end, however often it rotates (a remember-me
    #: credential, whose lifetime its login chose).
    sliding: bool = True

    def is_fresh(self, record: SessionRecord, now: float) -> bool:
        """Whether the user proved who they are within ``POW_FRESHNESS``."""
        fresh_at, freshness = record.fresh_at, self.freshness
        return fresh_at is not None and (
            freshness is None or now < fresh_at + freshness
        )

    def expiry(self, now: float, created_at: float) -> float:
        """When a session written at ``now`` expires (idle, capped by absolute)."""
        expires = now + self.credentials_ttl

        if self.absolute_ttl is not None:
            expires = min(expires, created_at + self.absolute_ttl)

        return expires

    def is_past_absolute(self, record: SessionRecord, now: float) -> bool:
        """Whether a session is past its absolute timeout."""
        ttl = self.absolute_ttl
        return ttl is not None and now >= record.created_at + ttl

    def match(self, record: SessionRecord, token: str, now: float) -> Match | None:
        """Whether ``token`` opens the session at ``now``: ``None``, or a
        :class:`Match` that says whether the client must move to another token.
        """
        if now >= record.expires_at:
            return None

        presented = digest(token)

        if hmac.compare_digest(presented, record.token):
            return _MATCHED

        if (
            record.previous is not None
            and record.rotated_to is not None
            and hmac.compare_digest(presented, record.previous)
            and now < record.previous_until
        ):
            return Match(follow=unseal(record.rotated_to, token))

        return None

    def advance(
        self,
        record: SessionRecord,
        token: str,
        now: float,
        *,
        hard: bool = False,
        confirm: bool = False,
    ) -> tuple[SessionRecord, str]:
        """Rotate a session: a copy of the record after the rotation, and the
        fresh token, sealed under the current ``token`` for the grace window.
        ``hard`` (a privilege change) keeps no grace window; ``confirm`` (the
        user proved who they are again) makes the session fresh from ``now``.
        """
        fresh = new_token()
        grace = bool(self.rotation_grace) and not hard
        advanced = dataclasses.replace(
            record,
            token=digest(fresh),
            inserted_at=now,
            expires_at=(
                self.expiry(now, record.created_at)
                if self.sliding
                else record.expires_at
            ),
            fresh_at=now if confirm else record.fresh_at,
            previous=record.token if grace else None,
            previous_until=now + self.rotation_grace if grace else 0.0,
            rotated_to=seal(fresh, token) if grace else None,
        )
        return advanced, fresh

    def new_session(
        self,
        session_id: str,
        user_key: str,
        metadata: t.Mapping[str, t.Any] | None,
        now: float,
        *,
        fresh: bool = True,
    ) -> tuple[SessionRecord, str]:
        """The record of a new login, and its token; ``fresh`` if proved."""
        token = new_token()
        record = SessionRecord(
            id=session_id,
            user_key=user_key,
            token=digest(token),
            created_at=now,
            inserted_at=now,
            expires_at=self.expiry(now, now),
            metadata=dict(metadata or {}),
            fresh_at=now if fresh else None,
        )
        return record, token
