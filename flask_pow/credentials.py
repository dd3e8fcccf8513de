"""The credentials cache: the session rules (:mod:`flask_pow.policy`) over
a store. No keys, locks, scripts or Flask here: the same code runs on every
backend, and signals go out through the ``send`` the extension gives.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import logging
import operator
import time
import typing as t

from . import signals
from .policy import Policy
from .records import SessionInfo
from .records import SessionRecord
from .records import utc
from .stores import CorruptLog
from .stores import SessionStore
from .stores import StoreUnavailable
from .users import UserAdapter
from .users import check_user_key
from .users import reloads_by_key
from .users import resolve_user

logger = logging.getLogger("flask_pow")

#: A record this many seconds in this worker's future: the clocks disagree.
CLOCK_SKEW_WARNING = 2.0
REVOKE_BATCH = 500
ROTATE_ATTEMPTS = 3


@dataclasses.dataclass
class Authenticated:
    """A session a request's token opens, and its user (``None``: the
    session cannot be used, and ``end``: it must end); ``follow``: the token
    the client holds from now on (a rotated-away one was presented); ``due``:
    the token is due for a routine rotation.

    :meta private:
    """

    record: SessionRecord
    user: t.Any
    user_data: dict[str, t.Any] | None
    follow: str | None = None
    due: bool = False
    end: bool = False


def _remembered_device(record: SessionRecord) -> SessionInfo:
    """A device whose session ended and whose credential logs it in."""
    return dataclasses.replace(
        record.info(), remembered_until=utc(record.expires_at), kind="remember"
    )


class CredentialsCache:
    """The sessions and cached users of one application, on a
    :class:`~flask_pow.stores.SessionStore`: ``pow.credentials``. The
    timeouts are seconds, as :doc:`configuration` describes them.

    :param store: where the records live.
    :param users: the user adapter.
    :param credentials_ttl: ``POW_CREDENTIALS_TTL``.
    :param rotation_grace: ``POW_ROTATION_GRACE``.
    :param absolute_ttl: ``POW_ABSOLUTE_TTL``.
    :param max_sessions: ``POW_MAX_SESSIONS``.
    :param freshness: ``POW_FRESHNESS``.
    :param remember_ttl: ``POW_REMEMBER_TTL``.
    :param renewal: ``POW_SESSION_TTL_RENEWAL``.
    :param send: sends a signal, the application as sender.
    """

    #: The clock, seconds since the epoch. Tests may replace it.
    clock: c.Callable[[], float] = staticmethod(time.time)

    def __init__(
        self,
        store: SessionStore,
        users: UserAdapter[t.Any],
        *,
        credentials_ttl: int,
        rotation_grace: int,
        absolute_ttl: int | None,
        max_sessions: int = 100,
        freshness: int | None = None,
        remember_ttl: int = 30 * 24 * 3600,
        renewal: int | None = None,
        send: c.Callable[..., None] | None = None,
    ) -> None:
        self.store = store
        self.adapter = users
        self.renewal = renewal
        self.send = send or (lambda signal, **kwargs: None)
        # A store that keeps its own clock (Redis: the server's) decides
        # every deadline by it, whatever this worker's clock says.
        self.clock = getattr(store, "clock", None) or self.clock
        self.policy = Policy(credentials_ttl, rotation_grace, absolute_ttl, freshness)
        self.max_sessions = max_sessions
        # A remember credential lives remember_ttl (or its login's duration)
        # from its login, however often it is used: a use keeps its expiry.
        self.remember_policy = Policy(remember_ttl, rotation_grace, sliding=False)
        self._corrupt = CorruptLog()
        self._warned_skew = False

    # -- the request path ---------------------------------------------------

    def authenticate(self, session_id: str, token: str) -> Authenticated | None:
        """The session a client's token opens and its user, or ``None``.

        :meta private:
        """
        found = self.store.read(session_id)

        if found is None:
            return None

        record, now = found.record, self.clock()

        if record.inserted_at - now > CLOCK_SKEW_WARNING and not self._warned_skew:
            self._warned_skew = True
            logger.warning(
                "A session record was written %.0f s in this worker's future:"
                " the workers' clocks disagree, and so do session deadlines."
                " Keep them in sync (NTP), or use Redis, whose clock is used.",
                record.inserted_at - now,
            )

        match = self.policy.match(record, token, now)

        if match is None and found.maybe_stale:
            # The local copy may predate a rotation whose invalidation is
            # still on its way: the store has the last word on a refusal.
            found = self.store.read(session_id, fresh=True)

            if found is None:
                return None

            record = found.record
            match = self.policy.match(record, token, now)

        if match is None:
            return None

        absolute, renewal = self.policy.absolute_ttl, self.renewal

        if absolute is not None and now >= record.created_at + absolute:
            return Authenticated(record, None, None, end=True)

        due = renewal is not None and record.inserted_at + renewal < now
        due = due and match.follow is None
        user_key, user_data = record.user_key, found.user_data
        user = None

        if user_data is not None:
            try:
                user = self.adapter.load(user_data)
            except (ValueError, TypeError, KeyError):
                self._corrupt("user", f"user:{user_key}")
                return None

            if not self.adapter.is_stale(user_data):
                return Authenticated(record, user, user_data, match.follow, due)

        # The store lost the user record, or it holds other columns than the
        # adapter caches now (a deploy): loaded once from the database and
        # cached again. The session ends if the user is gone, unless the
        # adapter cannot load a lost user by key.
        if user is None:
            by_key = reloads_by_key(self.adapter)
            fresh = self.adapter.reload_key(user_key) if by_key else None
        else:
            by_key, fresh = True, self.adapter.reload(user)

        if fresh is None:
            return Authenticated(record, None, None, end=by_key)

        user_data = self.adapter.dump(fresh)
        self.store.write_user(user_key, user_data, now)
        logger.info("Cached a user again from the database (lost or stale).")
        return Authenticated(record, fresh, user_data, match.follow, due)

    def _key(self, user: t.Any) -> str:  # a proxy too
        return self.adapter.key(resolve_user(user))

    def info_of(self, record: SessionRecord) -> SessionInfo:
        """:meta private:"""
        return record.info(fresh=self.policy.is_fresh(record, self.clock()))

    # -- logins -------------------------------------------------------------

    def put(
        self,
        user: t.Any,
        metadata: dict[str, t.Any] | None = None,
        *,
        fresh: bool = True,
    ) -> tuple[SessionInfo, str]:
        """Store a new session for ``user`` as :func:`~flask_pow.login_user`
        does, to hand its token to a client yourself (a test, a login link).

        :param user: the user logging in.
        :param metadata: the session's metadata (JSON-serializable).
        :param fresh: whether the user proved who they are for this login.
        :return: the session, and its token (the store keeps its digest).
        """
        user = resolve_user(user)
        record, token = self.new_login(user, metadata, fresh=fresh)
        self.create(record, self.adapter.dump(user), self.clock())
        return self.info_of(record), token

    def new_login(
        self,
        user: t.Any,
        metadata: dict[str, t.Any] | None = None,
        *,
        fresh: bool = True,
        remember: bool = False,
        remember_for: float | None = None,
    ) -> tuple[SessionRecord, str]:
        """The record of a new login and its token, not stored yet;
        ``remember_for``: the seconds its remember-me credential lasts,
        instead of ``POW_REMEMBER_TTL``.

        :meta private:
        """
        user_key = check_user_key(self.adapter.key(user))
        now = self.clock()
        session_id = self.store.new_session_id(user_key, now)
        record, token = self.policy.new_session(
            session_id, user_key, metadata, now, fresh=fresh
        )

        if remember:
            default = self.remember_policy.credentials_ttl
            lifetime = default if remember_for is None else remember_for
            record.remembered_until = now + lifetime

        return record, token

    def create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        keep: c.Collection[str] = (),
    ) -> None:
        """Store a session or credential; past ``max_sessions`` the user's
        least recently used ones end (not this one, nor ``keep``).

        :meta private:
        """
        evicted = self.store.create(
            record, user_data, now, max_sessions=self.max_sessions, keep=keep
        )

        for ended_id in evicted:
            self._revoked(ended_id, record.user_key)

    def _revoked(self, session_id: str, user_key: str) -> None:
        self.send(signals.session_revoked, session_id=session_id, user_key=user_key)

    # -- rotation and ends --------------------------------------------------

    def rotate(
        self,
        session_id: str,
        token: str,
        user_data: dict[str, t.Any],
        *,
        wait: bool = False,
        record: SessionRecord | None = None,
        confirm: bool = False,
    ) -> tuple[str, bool] | None:
        """Issue a new token for a session, keeping its id; the old token
        works for the grace window. Of concurrent rotations one wins (a
        compare-and-set on the token) and the others follow its token.

        :param session_id: the session.
        :param token: the token the caller holds.
        :param user_data: the user's data, written if the user record is gone.
        :param wait: a privilege change: wait for the store, rotate on from a
            concurrent rotation, and rotate *hard*: no earlier token works
            afterwards, not even inside the grace window.
        :param record: the session's record, if the caller read it.
        :param confirm: ``wait``, and the session is fresh from now
            (:func:`~flask_pow.confirm_login`).
        :return: the client's token from now and whether this call rotated
            it, or ``None`` if the client keeps its own.
        """
        hard = wait or confirm

        if record is None:
            record = self.store.read_session(session_id)

        for _ in range(ROTATE_ATTEMPTS):
            if record is None:
                return None

            found = self.policy.match(record, token, self.clock())

            if found is None:
                return None

            if found.follow is not None:
                if not hard:
                    return found.follow, False

                # A privilege change rotates on from where the session went.
                token = found.follow
                continue

            now = self.clock()
            candidate, fresh = self.policy.advance(
                record, token, now, hard=hard, confirm=confirm
            )
            swapped = self.store.swap(
                candidate, record.token, now, user_data=user_data, wait=hard
            )

            if swapped.ok:
                return fresh, True

            if swapped.undecided and (
                swapped.current is None or swapped.current.token == record.token
            ):
                # Still held by a writer that has not rotated it yet.
                return None

            record = swapped.current

        if hard:
            raise StoreUnavailable("The session kept changing during a rotation.")

        return None

    def end(
        self,
        session_id: str,
        user_key: str | None = None,
        *,
        remembered: c.Collection[str] | None = None,
    ) -> str | None:
        """End a session (a logout, a timeout; no signal) with its device's
        remember-me credentials: ``remembered``, or else looked up.

        :return: the session's user key, or ``None`` if there was none.
        :meta private:
        """
        if user_key is None:
            record = self.store.read_session(session_id)

            if record is None:
                return None

            user_key = record.user_key

        if remembered is None:
            remembered = [
                record.id
                for record in self.store.sessions(user_key, self.clock())
                if record.kind == "remember" and record.linked == session_id
            ]

        ended = self.store.delete(user_key, [session_id, *remembered], self.clock())
        return user_key if session_id in ended else None

    def delete(self, session_id: str) -> bool:
        """Revoke a session: its token stops working at once. Sends
        :data:`~flask_pow.session_revoked`.

        :return: whether there was such a session.
        """
        user_key = self.end(session_id)

        if user_key is not None:
            self._revoked(session_id, user_key)

        return user_key is not None

    def delete_user_sessions(self, user: t.Any, *, keep: str | None = None) -> int:
        """Revoke every session of a user ("log out everywhere": after a
        password change, or an account disabled), each with
        :data:`~flask_pow.session_revoked`.

        :param user: the user.
        :param keep: a session id to leave alone (the caller's own).
        :return: how many sessions were ended.
        """
        return self.delete_sessions_by_key(self._key(user), keep=keep)

    def delete_sessions_by_key(self, user_key: str, *, keep: str | None = None) -> int:
        """:meth:`delete_user_sessions` for a user key. Counts what
        :meth:`sessions` lists, remembered devices included.
        """
        now = self.clock()
        found = self.store.sessions(user_key, now)
        live = {r.id for r in found if r.kind == "session" and r.expires_at > now}
        # A device's credential is not counted beside its live session.
        remembering = {
            r.id: r.linked for r in found if r.kind == "remember" and r.linked in live
        }
        # The caller's session stays, with its device's remember credential.
        kept = {keep, *(rid for rid, sid in remembering.items() if sid == keep)}
        ids = [sid for sid in self.store.session_ids(user_key) if sid not in kept]
        ended = 0

        # In batches: a user with thousands of sessions holds the store for
        # a moment only, and a failure part way keeps what is done.
        for start in range(0, len(ids), REVOKE_BATCH):
            batch = ids[start : start + REVOKE_BATCH]

            for sid in self.store.delete(user_key, batch, self.clock()):
                if sid not in remembering:
                    ended += 1
                    self._revoked(sid, user_key)

        return ended

    def update_user(self, user: t.Any) -> bool:
        """Write a user's current values to the cache for every session of
        theirs, with no rotation: for use outside a request (a job, a shell).

        :return: whether the user had a live session to update.
        """
        user = resolve_user(user)
        return self.update_user_data(self.adapter.key(user), self.adapter.dump(user))

    def update_user_data(self, user_key: str, user_data: dict[str, t.Any]) -> bool:
        """:meth:`update_user` with dumped values.

        :meta private:
        """
        updated = self.store.write_user(user_key, user_data, self.clock())
        self.send(signals.user_synced, user_key=user_key, updated=updated)
        return updated

    # -- reading ------------------------------------------------------------

    def get(self, session_id: str) -> SessionInfo | None:
        """The session with this id (or a remembered device's, as
        :meth:`sessions` lists it), or ``None`` if it has ended.
        """
        record = self.store.read_session(session_id)

        if record is None or record.expires_at <= self.clock():
            return None

        if record.kind == "remember":
            return _remembered_device(record)

        return self.info_of(record)

    def sessions(self, user: t.Any) -> list[SessionInfo]:
        """The live sessions of a user, oldest login first, and the devices
        a remember-me credential still logs in (:attr:`SessionInfo.kind
        <flask_pow.SessionInfo.kind>` ``"remember"``), from the user's index.
        """
        return self.sessions_by_key(self._key(user))

    def sessions_by_key(self, user_key: str) -> list[SessionInfo]:
        """:meth:`sessions` for a user key."""
        now = self.clock()
        found = [
            r
            for r in self.store.sessions(user_key, now)
            if r.expires_at > now and r.user_key == user_key
        ]
        live = {r.id for r in found if r.kind == "session"}
        remembered = {
            r.linked: utc(r.expires_at)
            for r in found
            if r.kind == "remember" and r.linked in live
        }
        infos = [
            dataclasses.replace(self.info_of(r), remembered_until=remembered.get(r.id))
            if r.kind == "session"
            # A device whose session ended is listed by its credential's id.
            else _remembered_device(r)
            for r in found
            if r.kind == "session" or r.linked not in live
        ]
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    def users(self) -> list[t.Any]:
        """The users with a live session, from the cache, by user key."""
        return list(self.users_by_key().values())

    def users_by_key(self) -> dict[str, t.Any]:
        """:meta private:"""
        users = {}

        for user_key, data in sorted(
            self.store.users(self.clock()), key=operator.itemgetter(0)
        ):
            try:
                users[user_key] = self.adapter.load(data)
            except (ValueError, TypeError, KeyError):
                self._corrupt("user", f"user:{user_key}")

        return users
