"""``flask pow``: list, inspect and revoke sessions from the shell.

Exit status: 0 on success, 1 when something asked for is not found (or a
confirmation is declined), 2 on a usage or configuration error, with a
one-line message on standard error. Nothing printed holds a token, and
nothing printed lets anyone log in.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import click
from cachelib import SimpleCache
from flask import current_app
from flask.cli import AppGroup
from flask.cli import with_appcontext

from .credentials import CredentialsCache
from .records import SessionInfo

if t.TYPE_CHECKING:  # pragma: no cover
    from .extension import PowState

pow_cli = AppGroup("pow", help="Inspect and revoke flask_pow sessions.")

#: Columns of the sessions table, and how wide the user agent may get.
USER_AGENT_WIDTH = 40


def _fail(message: str, code: int) -> t.NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(code)


def _state() -> PowState:
    pow_ = current_app.extensions.get("pow")

    if pow_ is None:
        _fail("flask_pow is not set up on this application.", 2)

    state: PowState = pow_.get_state()

    if isinstance(state.config.cache, SimpleCache):
        _fail(
            "POW_CACHE is the in-process cache: the sessions live in the memory"
            " of the server processes, which this command cannot see. Set"
            " POW_REDIS_URL, or POW_CACHE to a cachelib FileSystemCache or"
            " RedisCache.",
            2,
        )

    return state


def _user_key(state: PowState, user: str) -> str:
    """A user key from ``--user``: a key (``User:42``) or an id (``42``)."""
    if ":" in user:
        return user

    key_for_id = getattr(state.users, "key_for_id", None)

    if key_for_id is None:
        _fail(f"give --user as a user key such as 'User:{user}'.", 2)

    return t.cast(str, key_for_id(user))


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


def _clock(credentials: CredentialsCache) -> dt.datetime:
    return dt.datetime.fromtimestamp(credentials.clock(), dt.timezone.utc)


def _all_sessions(
    state: PowState, user_key: str | None
) -> list[tuple[SessionInfo, str]]:
    """Sessions with their user's label, from the users and per-user
    indexes: never a scan of the store.
    """
    credentials = state.credentials

    if user_key is not None:
        users = credentials.users_by_key()
        label = _label(state, users.get(user_key))
        return [(info, label) for info in credentials.sessions_by_key(user_key)]

    found = []

    for key, user in credentials.users_by_key().items():
        label = _label(state, user)
        found += [(info, label) for info in credentials.sessions_by_key(key)]

    return found


@pow_cli.group("sessions", invoke_without_command=True)
@click.option("--user", "user", metavar="USER", help="Only this user: an id or a key.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
@with_appcontext
def sessions_command(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """List the active sessions (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return

    state = _state()
    user_key = None if user is None else _user_key(state, user)
    found = _all_sessions(state, user_key)

    if as_json:
        click.echo(_dump([_as_json(info, label) for info, label in found]))
        return

    if not found:
        click.echo("No active sessions.")
        return

    now = _clock(state.credentials)
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
        _fail(f"no active session with id {session_id!r}.", 1)

    label = _label(state, state.credentials.users_by_key().get(info.user_key))

    if as_json:
        click.echo(_dump(_as_json(info, label)))
        return

    now = _clock(state.credentials)
    lines = [
        ("Session", info.id),
        ("User", f"{info.user_key} {label}".rstrip()),
        ("Logged in", f"{_when(info.created_at)} ({_ago(info.created_at, now)})"),
        ("Rotated", f"{_when(info.inserted_at)} ({_ago(info.inserted_at, now)})"),
        (
            "Expires",
            f"{_when(info.expires_at)} (in {_duration(info.expires_at - now)})",
        ),
    ]
    lines += [(str(key), str(value)) for key, value in info.metadata.items()]
    width = max(len(name) for name, _ in lines)

    for name, value in lines:
        click.echo(f"{name.ljust(width)}  {value}")


@sessions_command.command("revoke")
@click.argument("session_ids", nargs=-1)
@click.option("--user", "user", metavar="USER", help="Every session of this user.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def revoke_command(session_ids: tuple[str, ...], user: str | None, yes: bool) -> None:
    """End sessions: by id, or all of a user's with --user."""
    if bool(session_ids) == (user is not None):
        _fail("give session ids, or --user, but not both.", 2)

    state = _state()
    credentials = state.credentials

    if user is not None:
        user_key = _user_key(state, user)
        count = len(credentials.sessions_by_key(user_key))

        if not count:
            _fail(f"{user_key} has no active session.", 1)

        if not yes and not click.confirm(
            f"End all {count} sessions of {user_key}?", err=True
        ):
            _fail("nothing was revoked.", 1)

        ended = credentials.delete_sessions_by_key(user_key)
        click.echo(f"Revoked {ended} session{'s' * (ended != 1)} of {user_key}.")
        return

    missing = [sid for sid in session_ids if not credentials.delete(sid)]

    for sid in session_ids:
        if sid not in missing:
            click.echo(f"Revoked {sid}.")

    if missing:
        _fail(f"no active session with id {', '.join(map(repr, missing))}.", 1)


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
