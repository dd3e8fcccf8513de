"""The credentials cache: the sessions and cached users of one application,
with the session rules (:mod:`flask_pow.policy`) applied over a store
(:class:`~flask_pow.stores.SessionStore`). Nothing here knows keys, locks,
scripts or Flask: the same code runs on every backend, and signals go out
through the ``send`` function the extension gives.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import logging
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

logger = logging.getLogger("flask_pow")

#: A record written this many seconds in this worker's future means the
#: workers' clocks disagree: logged once.
CLOCK_SKEW_WARNING = 2.0
#: Sessions revoked per store operation by a revoke-all.
REVOKE_BATCH = 500
#: How many times a rotation retries when the session keeps changing.
ROTATE_ATTEMPTS = 3


@dataclasses.dataclass
class Authenticated:
    """A session a request's token opens, and its user.

    :meta private:
    """

    record: SessionRecord
    #: The user built from the cache; ``None`` if the session cannot be used.
    user: t.Any
    user_data: dict[str, t.Any] | None
    #: The token the client should hold from now on, if it presented a
    #: rotated-away one inside the grace window.
    follow: str | None = None
    #: The token is due for a routine rotation (``POW_SESSION_TTL_RENEWAL``).
    due: bool = False
    #: The session must end: past its absolute timeout, or its user is gone.
    end: bool = False


def _remembered_device(record: SessionRecord) -> SessionInfo:
    """How a device is listed whose session ended and whose remember-me
    credential still logs it in.
    """
    return dataclasses.replace(
        record.info(), remembered_until=utc(record.expires_at), kind="remember"
    )


def _no_signals(signal: t.Any, **kwargs: t.Any) -> None:
    pass


def _first(pair: tuple[str, t.Any]) -> str:
    return pair[0]


class CredentialsCache:
    """The sessions and cached users of one application, on a
    :class:`~flask_pow.stores.SessionStore`. Reach it as
    ``pow.credentials``.

    :param store: where the records live.
    :param users: the user adapter.
    :param credentials_ttl: idle timeout in seconds.
    :param rotation_grace: how long a rotated-away token still works.
    :param absolute_ttl: seconds after login when a session ends, or ``None``.
    :param max_sessions: live sessions per user; a login past it ends the
        least recently used ones (:data:`~flask_pow.session_revoked` is sent
        for each).
    :param freshness: seconds a proof of identity keeps a session fresh, or
        ``None`` for its whole life.
    :param remember_ttl: seconds a remember-me credential lives.
    :param renewal: seconds after which a token is due for rotation, or
        ``None`` for never.
    :param send: sends a signal with keyword arguments, the application as
        sender.
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
        send: c.Callable[..., None] = _no_signals,
    ) -> None:
        self.store = store
        self.adapter = users
        self.renewal = renewal
        self.send = send
        # A store that keeps its own clock (Redis: the server's) decides
        # every deadline by it, whatever this worker's clock says.
        self.clock = getattr(store, "clock", None) or self.clock
        self.policy = Policy(credentials_ttl, rotation_grace, absolute_ttl, freshness)
        self.max_sessions = max_sessions
        # A remember credential lives remember_ttl from its login, however
        # often it is used: its idle and absolute timeouts are the same.
        self.remember_policy = Policy(remember_ttl, rotation_grace, remember_ttl)
        self._corrupt = CorruptLog()
        self._warned_skew = False

    # -- the request path ---------------------------------------------------

    def authenticate(self, session_id: str, token: str) -> Authenticated | None:
        """Look up the session a client presents and build its user. ``None``
        unless the token is the session's current one, or its previous one
        inside the grace window, and its user's index still lists the
        session. A user record the store lost, or one written for other
        columns than the adapter caches now, is loaded from the database
        once and cached again.

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
                " the clocks of the processes sharing the credentials store"
                " disagree, and session deadlines are off by as much. Keep"
                " them in sync (NTP), or use Redis, whose server clock"
                " flask_pow uses.",
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

        absolute = self.policy.absolute_ttl

        if absolute is not None and now >= record.created_at + absolute:
            return Authenticated(record, None, None, end=True)

        user_key, user_data = record.user_key, found.user_data

        if user_data is None:
            # The store lost the user record. The session ends if the user
            # is gone; an adapter that cannot load by key leaves it.
            by_key = reloads_by_key(self.adapter)
            healed = self._recache(
                user_key,
                self.adapter.reload_key(user_key) if by_key else None,
                "Loaded a user whose cached record the store had lost from"
                " the database, and cached it again.",
            )

            if healed is None:
                return Authenticated(record, None, None, end=by_key)

            user, user_data = healed
        else:
            try:
                user = self.adapter.load(user_data)
            except (ValueError, TypeError, KeyError):
                self._corrupt("user", f"user:{user_key}")
                return None

            if self.adapter.is_stale(user_data):
                healed = self._recache(
                    user_key,
                    self.adapter.reload(user),
                    "Rewrote a cached user whose record held other columns than"
                    " the model caches now (a deploy changed them).",
                )

                if healed is None:
                    return Authenticated(record, None, None, end=True)

                user, user_data = healed

        renewal = self.renewal
        due = (
            match.follow is None
            and renewal is not None
            and record.inserted_at + renewal < now
        )
        return Authenticated(record, user, user_data, match.follow, due)

    def _recache(
        self, user_key: str, fresh: t.Any | None, why: str
    ) -> tuple[t.Any, dict[str, t.Any]] | None:
        """Cache a user just loaded from the database again, for every
        session of theirs, and log why; ``None`` if there was none.
        """
        if fresh is None:
            return None

        user_data = self.adapter.dump(fresh)
        self.store.write_user(user_key, user_data, self.clock())
        logger.info(why)
        return fresh, user_data

    def info_of(self, record: SessionRecord) -> SessionInfo:
        """What a record says of its session now, freshness included.

        :meta private:
        """
        return record.info(fresh=self.policy.is_fresh(record, self.clock()))

    # -- logins -------------------------------------------------------------

    def put(
        self,
        user: t.Any,
        metadata: dict[str, t.Any] | None = None,
        *,
        fresh: bool = True,
    ) -> tuple[SessionInfo, str]:
        """Store a new session for ``user`` and return it with its token.
        This is what :func:`~flask_pow.login_user` does once the view has
        returned; call it directly to issue a session outside a request (a
        test, a login link), and hand the token to the client yourself.

        :param user: the user logging in.
        :param metadata: the session's metadata (JSON-serializable).
        :param fresh: whether the user proved who they are for this login
            (:func:`~flask_pow.login_user`'s ``fresh``).
        :return: the session and the token the client must hold. The token
            is shown here only: the store keeps its digest.
        """
        record, token = self.new_login(user, metadata, fresh=fresh)
        self.store_login(record, self.adapter.dump(user))
        return self.info_of(record), token

    def new_login(
        self,
        user: t.Any,
        metadata: dict[str, t.Any] | None = None,
        *,
        fresh: bool = True,
        remember: bool = False,
    ) -> tuple[SessionRecord, str]:
        """The record of a new login and its token, not stored yet
        (:meth:`store_login`): a request knows its new session from the
        moment it logs someone in. With ``remember``, the record says until
        when the device's credential (:meth:`remember`) lives.

        :meta private:
        """
        user_key = check_user_key(self.adapter.key(user))
        now = self.clock()
        session_id = self.store.new_session_id(user_key, now)
        record, token = self.policy.new_session(
            session_id, user_key, metadata, now, fresh=fresh
        )

        if remember:
            record.remembered_until = now + self.remember_policy.credentials_ttl

        return record, token

    def store_login(self, record: SessionRecord, user_data: dict[str, t.Any]) -> None:
        """Store a session made by :meth:`new_login`.

        :meta private:
        """
        self.create(record, user_data, self.clock())

    def create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        keep: c.Collection[str] = (),
    ) -> None:
        """Store a new session or credential; past ``max_sessions`` the
        user's least recently used ones end (never this one, nor ``keep``).

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
        """Issue a new token for a session, keeping its id, creation time and
        metadata; the old token keeps working for the grace window. Of
        concurrent rotations one wins, by a compare-and-set on the token,
        and the others move to the winner's token.

        :param session_id: the session.
        :param token: the token the caller holds.
        :param user_data: the user's data, written if the user record is gone.
        :param wait: a privilege change: wait for the store, rotate on from a
            concurrent rotation, and rotate *hard*: no earlier token works
            afterwards, not even inside the grace window.
        :param record: the session's record, if the caller read it.
        :param confirm: the user proved who they are again
            (:func:`~flask_pow.confirm_login`): the session is fresh from
            now. Takes ``wait``.
        :return: the token the client should hold now and whether this call
            rotated it, or ``None`` if the client keeps its own.
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
        """End a session without sending :data:`~flask_pow.session_revoked`
        (a logout, or a timeout), with the remember-me credentials of its
        device: ``remembered`` names them when the caller knows (a request
        with the device's cookie), else they are looked up. ``user_key``, if
        the caller knows it, saves a read.

        :return: the user key of the session, or ``None`` if there was none.
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
        """Revoke every session of a user ("log out everywhere"), for
        example after a password change or when an administrator disables
        the account. Sends :data:`~flask_pow.session_revoked` for each.

        :param user: the user.
        :param keep: a session id to leave alone (the caller's own).
        :return: how many sessions were ended.
        """
        return self.delete_sessions_by_key(self.adapter.key(user), keep=keep)

    def delete_sessions_by_key(self, user_key: str, *, keep: str | None = None) -> int:
        """:meth:`delete_user_sessions` for a user key. Counts, and sends
        the signal for, what :meth:`sessions` lists: the sessions, and the
        remembered devices whose session had ended.
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

        # In batches, so that a user with thousands of sessions does not
        # hold the store for long, and a failure part way keeps what is done.
        for start in range(0, len(ids), REVOKE_BATCH):
            batch = ids[start : start + REVOKE_BATCH]

            for sid in self.store.delete(user_key, batch, self.clock()):
                if sid not in remembering:
                    ended += 1
                    self._revoked(sid, user_key)

        return ended

    def update_user(self, user: t.Any) -> bool:
        """Write a user's current values to the cache: the next request of
        every session of that user sees them, with no query and no rotation.
        For use outside a request (a background job, a shell); in a request,
        :func:`~flask_pow.sync_user` also rotates the current token.

        :return: whether the user had a live session to update.
        """
        return self.update_user_data(self.adapter.key(user), self.adapter.dump(user))

    def update_user_data(self, user_key: str, user_data: dict[str, t.Any]) -> bool:
        """:meth:`update_user` with values already dumped by the adapter. A
        user with no live session is not cached, and nothing is written.

        :meta private:
        """
        updated = self.store.write_user(user_key, user_data, self.clock())
        self.send(signals.user_synced, user_key=user_key, updated=updated)
        return updated

    # -- reading ------------------------------------------------------------

    def get(self, session_id: str) -> SessionInfo | None:
        """The session with this id, or ``None`` if it has ended. The id of
        a remembered device that :meth:`sessions` lists with ``kind``
        ``"remember"`` gives it too.
        """
        record = self.store.read_session(session_id)

        if record is None or record.expires_at <= self.clock():
            return None

        if record.kind == "remember":
            return _remembered_device(record)

        return self.info_of(record)

    def sessions(self, user: t.Any) -> list[SessionInfo]:
        """The live sessions of a user, oldest login first, and the devices
        that a remember-me credential still logs in once their session
        ended (:attr:`SessionInfo.kind <flask_pow.SessionInfo.kind>`
        ``"remember"``). Reads the user's index and their session records,
        never the whole store.
        """
        return self.sessions_by_key(self.adapter.key(user))

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
            # A device whose session ended but whose remember-me credential
            # still logs it in is listed by the credential's id.
            else _remembered_device(r)
            for r in found
            if r.kind == "session" or r.linked not in live
        ]
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    def users(self) -> list[t.Any]:
        """The users with a live session, loaded from the cache (no query),
        in user key order.
        """
        return list(self.users_by_key().values())

    def users_by_key(self) -> dict[str, t.Any]:
        """:meth:`users`, keyed by user key.

        :meta private:
        """
        users = {}

        for user_key, data in sorted(self.store.users(self.clock()), key=_first):
            try:
                users[user_key] = self.adapter.load(data)
            except (ValueError, TypeError, KeyError):
                self._corrupt("user", f"user:{user_key}")

        return users
