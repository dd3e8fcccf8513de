"""The credentials cache: the sessions and cached users of one application,
with the session rules (:mod:`flask_pow.policy`) applied over a store
(:class:`~flask_pow.stores.SessionStore`). Nothing here knows keys, locks
or scripts: the same code runs on every backend.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import logging
import time
import typing as t

from blinker import NamedSignal

from . import signals
from .policy import Policy
from .records import SessionInfo
from .records import SessionRecord
from .records import seal
from .records import unseal
from .records import utc
from .stores import CorruptLog
from .stores import SessionStore
from .stores import StoreUnavailable
from .users import UserAdapter
from .users import check_user_key
from .users import reloads_by_key

logger = logging.getLogger("flask_pow")


@dataclasses.dataclass
class Restored:
    """A session a remember-me credential restored (or that a parallel
    request restored from it moments ago).

    :meta private:
    """

    session_id: str
    session_token: str
    remember_token: str
    #: When the credential ends (its login plus ``POW_REMEMBER_TTL``).
    expires_at: float


@dataclasses.dataclass
class Authenticated:
    """What the store says about a request's token, and its user.

    :meta private:
    """

    record: SessionRecord
    #: The user, built from the cache; ``None`` if the session cannot be
    #: used (:attr:`end` says whether it must end).
    user: t.Any
    user_data: dict[str, t.Any] | None
    #: The token the client should hold from now on, if it presented a
    #: rotated-away one inside the grace window.
    follow: str | None = None
    #: The token is due for a routine rotation (``POW_SESSION_TTL_RENEWAL``).
    due: bool = False
    #: The session must end: past its absolute timeout, or its user is gone.
    end: bool = False


#: A record written this many seconds in this worker's future means the
#: workers' clocks disagree: logged once.
CLOCK_SKEW_WARNING = 2.0

#: Sessions revoked per store operation by a revoke-all.
REVOKE_BATCH = 500

#: How many times a rotation retries when the session keeps changing under
#: it.
ROTATE_ATTEMPTS = 3


def _batches(items: list[str], size: int = REVOKE_BATCH) -> c.Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _remembered_device(record: SessionRecord) -> SessionInfo:
    """How a remember-me credential is listed when its device has no live
    session: a device that logs in again until the credential ends.
    """
    return dataclasses.replace(
        record.info(), remembered_until=utc(record.expires_at), kind="remember"
    )


def _no_signals(signal: NamedSignal, **kwargs: t.Any) -> None:
    pass


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
    :param send: sends a signal with keyword arguments, with the
        application as sender (the extension gives it).
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
        self.renewal = renewal
        self._send = send
        # A store that keeps its own clock (Redis: the server's) decides
        # every deadline by it, whatever this worker's clock says.
        store_clock = getattr(store, "clock", None)

        if store_clock is not None:
            self.clock = store_clock
        self.adapter = users
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

        if record.inserted_at - now > CLOCK_SKEW_WARNING:
            self._warn_skew(record.inserted_at - now)

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

        if self.policy.is_past_absolute(record, now):
            return Authenticated(record, None, None, end=True)

        user_key, user_data = record.user_key, found.user_data

        if user_data is None:
            # The store lost the user record of a valid session. The session
            # ends if the user is gone from the database (as a reload
            # finds); an adapter that cannot load by key leaves it.
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
            user = self.load_user(user_key, user_data)

            if user is None:
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

        due = (
            match.follow is None
            and self.renewal is not None
            and record.inserted_at + self.renewal < now
        )
        return Authenticated(record, user, user_data, match.follow, due)

    def _warn_skew(self, skew: float) -> None:
        """Log, once, a record written in this worker's future: another
        worker's clock is ahead, and every deadline it writes (expiry,
        grace, absolute timeout) is off here by as much.
        """
        if not self._warned_skew:
            self._warned_skew = True
            logger.warning(
                "A session record was written %.0f s in this worker's future:"
                " the clocks of the processes sharing the credentials store"
                " disagree, and session deadlines are off by as much. Keep"
                " them in sync (NTP), or use Redis, whose server clock"
                " flask_pow uses.",
                skew,
            )

    def load_user(self, user_key: str, user_data: dict[str, t.Any]) -> t.Any | None:
        """Build a user from cached data; ``None`` (logged once) if it is
        corrupt.

        :meta private:
        """
        try:
            return self.adapter.load(user_data)
        except (ValueError, TypeError, KeyError):
            self._corrupt("user", f"user:{user_key}")
            return None

    def _recache(
        self, user_key: str, fresh: t.Any | None, why: str
    ) -> tuple[t.Any, dict[str, t.Any]] | None:
        """Write a user just loaded from the database back to the cache for
        every session of theirs, and log why; ``None`` if there was none.
        """
        if fresh is None:
            return None

        user_data = self.adapter.dump(fresh)
        self.store.write_user(user_key, user_data, self.clock())
        logger.info(why)
        return fresh, user_data

    # -- writes -------------------------------------------------------------

    def info_of(self, record: SessionRecord) -> SessionInfo:
        """What a record says of its session now, freshness included.

        :meta private:
        """
        return record.info(fresh=self.policy.is_fresh(record, self.clock()))

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
        (:meth:`store_login`): a request knows its new session, id
        included, from the moment it logs someone in.

        :param remember: a remember-me credential will be issued with it
            (:meth:`remember`): the record says until when.
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
        self._create(record, user_data, self.clock())

    def remember(
        self, session: SessionRecord, user_data: dict[str, t.Any]
    ) -> tuple[str, str]:
        """Issue a remember-me credential for the device of a session just
        made at a login: a series id and a single-use token (the store keeps
        its digest). It lives ``remember_ttl`` from the login, however often
        it is used.

        :meta private:
        """
        now = self.clock()
        series = self.store.new_session_id(session.user_key, now)
        record, token = self.remember_policy.new_session(
            series, session.user_key, session.metadata, session.created_at, fresh=False
        )
        record.kind = "remember"
        record.linked = session.id
        self._create(record, user_data, now, keep=(session.id,))
        return series, token

    def _create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        keep: c.Collection[str] = (),
    ) -> None:
        """Store a new session or remember credential; past
        ``max_sessions`` the user's least recently used credentials end
        (never this one, nor those in ``keep``), each with
        :data:`~flask_pow.session_revoked`.
        """
        evicted = self.store.create(
            record, user_data, now, max_sessions=self.max_sessions, keep=keep
        )

        for ended_id in evicted:
            self._send(
                signals.session_revoked, session_id=ended_id, user_key=record.user_key
            )

    def restore(
        self,
        series: str,
        token: str,
        metadata: dict[str, t.Any],
        *,
        ip: str | None = None,
    ) -> Restored | None:
        """Use a remember-me credential: a new session (not fresh) for its
        user and device, and a new token for the credential (the one used
        keeps working for the grace window, and moves a parallel request to
        the same new session and token). ``None`` if the credential is not
        valid. A token used again after its grace window means two parties
        hold the credential: every session and credential of the user ends,
        and :data:`~flask_pow.remember_token_reused` is sent.

        :meta private:
        """
        # From the store itself: theft detection must see the latest token.
        found = self.store.read(series, fresh=True)

        if found is None or found.record.kind != "remember":
            return None

        record = found.record
        now = self.clock()
        match = self.remember_policy.match(record, token, now)

        if match is None:
            # The cookie's signature says flask_pow issued this token for
            # this series, and the series lives on with another one: the
            # token was replaced (however many replacements ago) and is
            # used again, so two parties hold the credential (the
            # series-and-token scheme of Spring Security's remember-me).
            if now < record.expires_at:
                self._stolen(record, ip)

            return None

        if match.follow is not None:
            return self._followed(record, token)

        if found.user_data is None:
            return None

        session_id = self.store.new_session_id(record.user_key, now)
        session, session_token = self.policy.new_session(
            session_id, record.user_key, record.metadata, now, fresh=False
        )
        session.remembered_until = record.expires_at
        self._create(session, found.user_data, now, keep=(series,))
        advanced, fresh_token = self.remember_policy.advance(record, token, now)
        advanced.linked = session_id
        advanced.linked_sealed = seal(session_token, token)
        swapped = self.store.swap(
            advanced, record.token, now, user_data=found.user_data, wait=True
        )

        if swapped.ok:
            # The device's session before: its cookie is gone (that is why
            # the credential was used), so it ends, and the device is listed
            # once.
            if record.linked is not None:
                self.store.delete(record.user_key, [record.linked], now)

            return Restored(
                session_id,
                session_token,
                fresh_token,
                expires_at=advanced.expires_at,
            )

        # A parallel request used the credential first: this session goes,
        # and the client follows that request's.
        self.store.delete(record.user_key, [session_id], now)

        if swapped.current is None:
            return None

        return self._followed(swapped.current, token)

    def _followed(self, record: SessionRecord, token: str) -> Restored | None:
        """The session and token a parallel restore issued, unsealed with the
        token this request holds.
        """
        if record.rotated_to is None or record.linked is None:
            return None

        if record.linked_sealed is None:
            return None

        return Restored(
            record.linked,
            unseal(record.linked_sealed, token),
            unseal(record.rotated_to, token),
            expires_at=record.expires_at,
        )

    def _stolen(self, record: SessionRecord, ip: str | None) -> None:
        ended = self.delete_sessions_by_key(record.user_key)
        logger.warning(
            "A remember-me token was used again after it was replaced: two"
            " parties hold the credential. Every session of the user was"
            " ended (%d).",
            ended,
        )
        self._send(
            signals.remember_token_reused,
            user_key=record.user_key,
            series=record.id,
            ip=ip,
        )

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
        metadata. The old token keeps working for the grace window.

        Of concurrent rotations one wins, on every store, by a
        compare-and-set on the token: the others are moved to the winner's
        token. A caller that cannot tell in a moment (a lock-based store
        with many requests queued) carries on with its own token.

        With ``wait``, a privilege change: the caller waits for the store,
        rotates on from a session a concurrent request just rotated, and
        rotates *hard*: no earlier token of the session works afterwards, not
        even inside the grace window, so the session ends on a token issued
        after the change and a stolen copy of an older one is dead.

        :param session_id: the session.
        :param token: the token the caller holds.
        :param user_data: the user's data, written if the user record is gone.
        :param record: the session's record as the caller read it, if it
            did; saves a read.
        :param confirm: the user proved who they are again
            (:func:`~flask_pow.confirm_login`): the session is fresh from
            now. Takes ``wait``.
        :return: the token the client should hold now and whether this call
            rotated it, or ``None`` if the client keeps its own.
        """
        if record is None:
            record = self.store.read_session(session_id)

        for _ in range(ROTATE_ATTEMPTS):
            found = (
                None
                if record is None
                else self.policy.match(record, token, self.clock())
            )

            if record is None or found is None:
                return None

            if found.follow is not None:
                if not (wait or confirm):
                    return found.follow, False

                # A privilege change rotates on from where the session went.
                token = found.follow
                continue

            now = self.clock()
            candidate, fresh = self.policy.advance(
                record, token, now, hard=wait or confirm, confirm=confirm
            )
            swapped = self.store.swap(
                candidate, record.token, now, user_data=user_data, wait=wait or confirm
            )

            if swapped.ok:
                return fresh, True

            if swapped.undecided and (
                swapped.current is None or swapped.current.token == record.token
            ):
                # Still held by a writer that has not rotated it yet.
                return None

            record = swapped.current

        if wait or confirm:
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
            remembered = self._remembering(user_key, {session_id})

        ended = self.store.delete(user_key, [session_id, *remembered], self.clock())
        return user_key if session_id in ended else None

    def _remembering(self, user_key: str, session_ids: c.Collection[str]) -> list[str]:
        """The remember credentials of a user linked to these sessions: a
        device's credential ends with its session.
        """
        return [
            record.id
            for record in self.store.sessions(user_key, self.clock())
            if record.kind == "remember" and record.linked in session_ids
        ]

    def delete(self, session_id: str) -> bool:
        """Revoke a session: its token stops working at once. Sends
        :data:`~flask_pow.session_revoked`.

        :return: whether there was such a session.
        """
        user_key = self.end(session_id)

        if user_key is None:
            return False

        self._send(signals.session_revoked, session_id=session_id, user_key=user_key)
        return True

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
            record.id: record.linked
            for record in found
            if record.kind == "remember" and record.linked in live
        }
        # The caller's session stays, with its device's remember credential.
        kept = {keep, *(rid for rid, sid in remembering.items() if sid == keep)}
        ids = [sid for sid in self.store.session_ids(user_key) if sid not in kept]
        ended = 0

        # In batches, so that a user with thousands of sessions does not
        # hold the store for long, and a failure part way keeps what is done.
        for batch in _batches(ids):
            deleted = [
                sid
                for sid in self.store.delete(user_key, batch, self.clock())
                if sid not in remembering
            ]
            ended += len(deleted)

            for session_id in deleted:
                self._send(
                    signals.session_revoked, session_id=session_id, user_key=user_key
                )

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
        """:meth:`update_user` with values already dumped by the adapter.

        :meta private:
        """
        # A user with no live session is not cached: there is nothing to
        # update, and nothing is written.
        updated = self.store.write_user(user_key, user_data, self.clock())
        self._send(signals.user_synced, user_key=user_key, updated=updated)
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
            record
            for record in self.store.sessions(user_key, now)
            if record.expires_at > now and record.user_key == user_key
        ]
        live = {record.id for record in found if record.kind == "session"}
        remembered = {
            record.linked: record.expires_at
            for record in found
            if record.kind == "remember" and record.linked in live
        }
        infos = [
            dataclasses.replace(
                self.info_of(record),
                remembered_until=utc(remembered[record.id])
                if record.id in remembered
                else None,
            )
            for record in found
            if record.kind == "session"
        ]
        # A device whose session ended but whose remember-me credential
        # still logs it in is listed by the credential's id.
        infos += [
            _remembered_device(record)
            for record in found
            if record.kind == "remember" and record.linked not in live
        ]
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    def users(self) -> list[t.Any]:
        """The users with a live session, loaded from the cache (no query),
        in user key order.
        """
        return list(self.users_by_key().values())

    def users_by_key(self) -> dict[str, t.Any]:
        """:meth:`users`, keyed by user key."""
        users = {}

        for user_key, data in sorted(
            self.store.users(self.clock()), key=lambda pair: pair[0]
        ):
            if (user := self.load_user(user_key, data)) is not None:
                users[user_key] = user

        return users
