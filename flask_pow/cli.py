"""``flask pow``: list, inspect and revoke sessions from the shell.

Exit status: 0 on success, 1 when something asked for is not found (or a
confirmation is declined), 2 on a usage or configuration error, with a
one-line message on standard error. Nothing printed holds a token, and
nothing printed lets anyone log in.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import typing as t

import click
from flask.cli import AppGroup
from flask.cli import with_appcontext

from .checks import is_process_local
from .records import SessionInfo
from .records import utc
from .state import PowState
from .state import find_state

pow_cli = AppGroup("pow", help="Inspect and revoke flask_pow sessions.")

#: Columns of the sessions table, and how wide the user agent may get.
USER_AGENT_WIDTH = 40


def _fail(message: str, code: int) -> t.NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(code)


def _state() -> PowState:
    state = find_state()

    if state is None:
        _fail("flask_pow is not set up on this application.", 2)

    if is_process_local(state):
        _fail(
            "POW_CACHE is an in-process cache (SimpleCache): the sessions live"
            " in the memory of the server processes, which this command cannot"
            " see. Set POW_REDIS_URL, or POW_CACHE to a cachelib FileSystemCache"
            " or RedisCache.",
            2,
        )

    return state


def _find_user(state: PowState, text: str) -> tuple[str, str]:
    """The user that ``--user`` names, as its key and its label (``""``
    when it has none).

    ``text`` is matched as a user key (``User:42``), as an id (``42``, if
    the adapter implements ``key_for_id``) and as the label the listings show
    (``ada@example.com``), against the users index: the users with a live
    session. ``key=``, ``id=`` or ``label=`` before it matches that field
    alone. Exits with status 1 if nothing matches, or if the value matches
    more than one user (a username ``2`` and the user whose id is 2): the
    message lists each, with the ``key=`` form that names it exactly.
    """
    credentials = state.credentials
    users = credentials.users_by_key()
    field, given, rest = text.partition("=")
    fields: tuple[str, ...] = ("key", "id", "label")

    if given and field in fields:
        text, fields = rest, (field,)

    # Every user the text names, and how.
    found: dict[str, list[str]] = {}
    tried = []

    def match(key: str, how: str) -> None:
        found.setdefault(key, []).append(how)

    if "key" in fields:
        tried.append("a user key")

        # A user whose cached record cannot be read is missing from the
        # users index, but their sessions can still be listed and ended.
        if text in users or credentials.sessions_by_key(text):
            match(text, "its user key")

    if "id" in fields:
        try:
            key = state.users.key_for_id(text)
        except ValueError:
            tried.append("an id")  # not an id of this adapter's: maybe a label
        else:
            # None: an adapter whose users have no id to be named by.
            if key is not None:
                tried.append("an id")

                if key in users or credentials.sessions_by_key(key):
                    match(key, f"its id {text!r}")

    if "label" in fields:
        tried.append("a label")

        # An empty --user would otherwise match every user without a label.
        for key, user in users.items():
            if text and _label(state, user) == text:
                match(key, f"its label {text!r}")

    if len(found) > 1:
        candidates = "; ".join(
            f"{key} by {' and '.join(how)} (--user key={key})"
            for key, how in sorted(found.items())
        )
        _fail(
            f"{text!r} names {len(found)} users: {candidates}. Name one"
            " exactly by its user key.",
            1,
        )

    if not found:
        listed = (
            ", ".join(tried[:-1]) + f" and {tried[-1]}" if len(tried) > 1 else tried[0]
        )
        _fail(
            f"No user {text!r} has an active session (looked up as {listed}).",
            1,
        )

    [key] = found
    return key, _label(state, users.get(key))


def _sessions(count: int) -> str:
    return f"{count} session{'s' * (count != 1)}"


def _ago(moment: dt.datetime, now: dt.datetime) -> str:
    return f"{_duration(now - moment)} ago"


def _duration(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))

    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            smaller = {"d": (3600, "h"), "h": (60, "m"), "m": (1, "s")}[unit]
            part = rest // smaller[0]
            return f"{whole}{unit}" + (f" {part}{smaller[1]}" if part else "")

    return f"{seconds}s"


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _label(state: PowState, user: t.Any) -> str:
    if user is None:
        return ""

    return state.users.label(user) or ""


def _as_json(info: SessionInfo, label: str) -> dict[str, t.Any]:
    return {
        "id": info.id,
        "user": info.user_key,
        "label": label or None,
        "created_at": info.created_at.isoformat(),
        "inserted_at": info.inserted_at.isoformat(),
        "expires_at": info.expires_at.isoformat(),
        "fresh_at": None if info.fresh_at is None else info.fresh_at.isoformat(),
        "fresh": info.fresh,
        "remembered_until": None
        if info.remembered_until is None
        else info.remembered_until.isoformat(),
        "kind": info.kind,
        "metadata": info.metadata,
    }


def _dump(value: t.Any) -> str:
    # Metadata may hold tagged types (dates, UUIDs); show them as text.
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(header), *(len(row[i]) for row in rows)) if rows else len(header)
        for i, header in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join(
        [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    )


def _all_sessions(
    state: PowState, user: tuple[str, str] | None
) -> list[tuple[SessionInfo, str]]:
    """Sessions with their user's label, from the users and per-user
    indexes: never a scan of the store.

    :param user: only this user's, as :func:`_find_user` gives it.
    """
    credentials = state.credentials

    if user is not None:
        user_key, label = user
        return [(info, label) for info in credentials.sessions_by_key(user_key)]

    found = []

    for key, found_user in credentials.users_by_key().items():
        label = _label(state, found_user)
        found += [(info, label) for info in credentials.sessions_by_key(key)]

    return found


def _check_subcommand(
    ctx: click.Context, name: str, *, user: str | None, as_json: bool
) -> None:
    """Refuse the group's own options before a subcommand, where they would
    be ignored: ``sessions --user 1 revoke`` would otherwise end nothing
    and say that no user was given.
    """
    command = sessions_command.get_command(ctx, name)
    takes = {opt for param in command.params for opt in param.opts} if command else ()

    for option, given in (("--user", user is not None), ("--json", as_json)):
        if given and option in takes:
            _fail(f"Give {option} after {name!r}, not before it.", 2)
        elif given:
            _fail(f"{name!r} takes no {option} option.", 2)


@pow_cli.group("sessions", invoke_without_command=True)
@click.option(
    "--user",
    "user",
    metavar="USER",
    help="Only this user: an id, a user key or the label the listing shows.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
@with_appcontext
def sessions_command(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """List the active sessions (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        _check_subcommand(ctx, ctx.invoked_subcommand, user=user, as_json=as_json)
        return

    state = _state()
    found = _all_sessions(state, None if user is None else _find_user(state, user))

    if as_json:
        click.echo(_dump([_as_json(info, label) for info, label in found]))
        return

    if not found:
        click.echo("No active sessions.")
        return

    now = utc(state.credentials.clock())
    rows = [
        [
            info.id,
            info.user_key,
            label,
            _when(info.created_at),
            _ago(info.inserted_at, now),
            _duration(info.expires_at - now),
            str(info.metadata.get("ip") or ""),
            str(info.metadata.get("user_agent") or "")[:USER_AGENT_WIDTH],
        ]
        for info, label in found
    ]
    headers = [
        "SESSION",
        "USER",
        "LABEL",
        "LOGGED IN",
        "ROTATED",
        "EXPIRES IN",
        "IP",
        "USER AGENT",
    ]
    click.echo(_table(headers, rows))


@sessions_command.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show_command(session_id: str, as_json: bool) -> None:
    """Show one session in full."""
    state = _state()
    info = state.credentials.get(session_id)

    if info is None:
        _fail(f"No active session with id {session_id!r}.", 1)

    # The listing knows whether the device is remembered.
    info = next(
        (
            listed
            for listed in state.credentials.sessions_by_key(info.user_key)
            if listed.id == info.id
        ),
        info,
    )

    label = _label(state, state.credentials.users_by_key().get(info.user_key))

    if as_json:
        click.echo(_dump(_as_json(info, label)))
        return

    now = utc(state.credentials.clock())
    lines = [
        (
            "Session",
            info.id
            if info.kind == "session"
            else f"{info.id} (a remembered device: its session ended, and its"
            " next request logs it in again)",
        ),
        ("User", f"{info.user_key} {label}".rstrip()),
        ("Logged in", f"{_when(info.created_at)} ({_ago(info.created_at, now)})"),
        ("Rotated", f"{_when(info.inserted_at)} ({_ago(info.inserted_at, now)})"),
        (
            "Expires",
            f"{_when(info.expires_at)} (in {_duration(info.expires_at - now)})",
        ),
        (
            "Password",
            "never in this session"
            if info.fresh_at is None
            else f"{_when(info.fresh_at)} ({_ago(info.fresh_at, now)})"
            + ("" if info.fresh else ", no longer fresh"),
        ),
        (
            "Remembered",
            "no"
            if info.remembered_until is None
            else f"until {_when(info.remembered_until)}",
        ),
    ]
    lines += [(str(key), str(value)) for key, value in info.metadata.items()]
    width = max(len(name) for name, _ in lines)

    for name, value in lines:
        click.echo(f"{name.ljust(width)}  {value}")


@sessions_command.command("revoke")
@click.argument("session_ids", nargs=-1, metavar="[SESSION_ID]...")
@click.option(
    "--user",
    "user",
    metavar="USER",
    help="Every session of this user: an id, a user key or a label.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def revoke_command(session_ids: tuple[str, ...], user: str | None, yes: bool) -> None:
    """End sessions: by id, or all of a user's with --user."""
    if not session_ids and user is None:
        _fail("Give session ids, or --user USER.", 2)

    if session_ids and user is not None:
        _fail("Give session ids or --user USER, not both.", 2)

    state = _state()
    credentials = state.credentials

    if user is not None:
        user_key, label = _find_user(state, user)
        name = label or user_key
        count = len(credentials.sessions_by_key(user_key))

        if not count:
            _fail(f"{name} has no active session.", 1)

        if not yes and not click.confirm(
            f"End {_sessions(count)} of {name}?", err=True
        ):
            _fail("No session was ended.", 1)

        ended = credentials.delete_sessions_by_key(user_key)
        click.echo(f"Ended {_sessions(ended)} of {name}.")
        return

    missing = [sid for sid in session_ids if not credentials.delete(sid)]

    for sid in session_ids:
        if sid not in missing:
            click.echo(f"Ended session {sid}.")

    if missing:
        ids = "id" if len(missing) == 1 else "ids"
        _fail(f"No active session with {ids} {', '.join(map(repr, missing))}.", 1)


@pow_cli.command("cleanup")
def cleanup_command() -> None:
    """Delete expired session records the store keeps on disk. Needed only
    for a FileSystemCache, and run by flask_pow itself once an hour; Redis
    and Memcached expire records by themselves.
    """
    # A file's expiry is in this host's clock, whatever the sessions use.
    removed = _state().credentials.store.cleanup(time.time())
    noun = "record" if removed == 1 else "records"
    click.echo(f"Removed {removed} expired {noun}.")


@pow_cli.command("users")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def users_command(as_json: bool) -> None:
    """List the users with active sessions, and how many each has."""
    state = _state()
    credentials = state.credentials
    found = [
        (key, _label(state, user), len(credentials.sessions_by_key(key)))
        for key, user in credentials.users_by_key().items()
    ]
    found = [entry for entry in found if entry[2]]

    if as_json:
        click.echo(
            _dump(
                [
                    {"user": key, "label": label or None, "sessions": count}
                    for key, label, count in found
                ]
            )
        )
        return

    if not found:
        click.echo("No users with active sessions.")
        return

    rows = [[key, label, str(count)] for key, label, count in found]
    click.echo(_table(["USER", "LABEL", "SESSIONS"], rows))
