"""``flask pow``: list, inspect and revoke sessions (see docs/cli.rst)."""

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


def _fail(message: str, code: int) -> t.NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(code)


def _state() -> PowState:
    state = find_state()

    if state is None:
        _fail("flask_pow is not set up on this application.", 2)

    if state.config.testing_store:
        _fail(
            "TESTING is set and POW_CACHE is not, so flask_pow keeps the"
            " sessions in the application's memory (a SimpleCache), which this"
            " command cannot see. To test the command, set POW_CACHE to a"
            " cachelib.FileSystemCache in a temporary folder.",
            2,
        )

    if is_process_local(state):
        _fail(
            "POW_CACHE is an in-process cache (SimpleCache), which this command"
            " cannot see. Set POW_REDIS_URL, or POW_CACHE to a cachelib"
            " FileSystemCache or RedisCache.",
            2,
        )

    return state


def _find_user(state: PowState, text: str) -> tuple[str, str]:
    """The key and label of the one user with a session that ``--user`` names."""
    credentials = state.credentials
    users = credentials.users_by_key()
    field, given, rest = text.partition("=")
    fields: tuple[str, ...] = ("key", "id", "label")

    if given and field in fields:
        text, fields = rest, (field,)

    found: dict[str, list[str]] = {}
    tried = []

    if "key" in fields:
        tried.append("a user key")

        # A user whose cached record is unreadable is not in the users index.
        if text in users or credentials.sessions_by_key(text):
            found.setdefault(text, []).append("its user key")

    if "id" in fields:
        try:
            # None: an adapter whose users have no id to be named by.
            key = state.users.key_for_id(text)
        except ValueError:
            key = ""  # not an id of this adapter's: maybe a label

        if key is not None:
            tried.append("an id")

        if key and (key in users or credentials.sessions_by_key(key)):
            found.setdefault(key, []).append(f"its id {text!r}")

    if "label" in fields:
        tried.append("a label")

        # An empty --user would otherwise match every user without a label.
        for key, user in users.items():
            if text and _label(state, user) == text:
                found.setdefault(key, []).append(f"its label {text!r}")

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
        listed = ", ".join(tried[:-1]) + " and " * (len(tried) > 1) + tried[-1]
        _fail(f"No user {text!r} has an active session (looked up as {listed}).", 1)

    [key] = found
    return key, _label(state, users.get(key))


def _sessions(count: int) -> str:
    return f"{count} session{'s' * (count != 1)}"


def _duration(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    units = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))

    # The largest unit that fits, and the next one down: "2h 5m".
    for (size, unit), (smaller, small) in zip(units, units[1:], strict=False):
        if seconds >= size:
            part = seconds % size // smaller
            return f"{seconds // size}{unit}" + (f" {part}{small}" if part else "")

    return f"{seconds}s"


def _when(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    when = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return when if now is None else f"{when} ({_duration(now - moment)} ago)"


def _label(state: PowState, user: t.Any) -> str:
    return "" if user is None else state.users.label(user) or ""


def _as_json(info: SessionInfo, label: str) -> dict[str, t.Any]:
    data: dict[str, t.Any] = {
        "id": info.id,
        "user": info.user_key,
        "label": label or None,
    }
    fields = "created_at inserted_at expires_at fresh_at fresh remembered_until kind"

    for name in (*fields.split(), "metadata"):
        value = getattr(info, name)
        data[name] = value.isoformat() if isinstance(value, dt.datetime) else value

    return data


def _echo_json(value: t.Any) -> None:
    # Metadata may hold tagged types (dates, UUIDs); show them as text.
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _echo_list(
    as_json: bool, data: list[t.Any], empty: str, headers: str, rows: list[list[str]]
) -> None:
    if as_json:
        _echo_json(data)
        return

    if not rows:
        click.echo(empty)
        return

    titles = headers.split("|")
    widths = [max(len(cell) for cell in col) for col in zip(titles, *rows, strict=True)]

    for cells in [titles, ["-" * width for width in widths], *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True))
        click.echo(line.rstrip())


@pow_cli.group("sessions", invoke_without_command=True)
@click.option("--user", metavar="USER", help="Only this user: an id, key or label.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
@with_appcontext
def sessions_command(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """List the active sessions (or run a subcommand)."""
    # Ignored before a subcommand: "sessions --user 1 revoke" would end nothing.
    if (name := ctx.invoked_subcommand) is not None:
        command = sessions_command.get_command(ctx, name)
        takes = {opt for param in getattr(command, "params", ()) for opt in param.opts}

        for option, given in (("--user", user is not None), ("--json", as_json)):
            if given and option in takes:
                _fail(f"Give {option} after {name!r}, not before it.", 2)
            elif given:
                _fail(f"{name!r} takes no {option} option.", 2)

        return

    state = _state()
    credentials = state.credentials

    # From the users and per-user indexes: never a scan of the store.
    if user is None:
        named = [(k, _label(state, u)) for k, u in credentials.users_by_key().items()]
    else:
        named = [_find_user(state, user)]

    found = [(s, label) for k, label in named for s in credentials.sessions_by_key(k)]
    now = utc(credentials.clock())
    rows = [
        [
            info.id,
            info.user_key,
            label,
            _when(info.created_at),
            f"{_duration(now - info.inserted_at)} ago",
            _duration(info.expires_at - now),
            str(info.metadata.get("ip") or ""),
            str(info.metadata.get("user_agent") or "")[:40],
        ]
        for info, label in found
    ]
    data = [_as_json(info, label) for info, label in found]
    headers = "SESSION|USER|LABEL|LOGGED IN|ROTATED|EXPIRES IN|IP|USER AGENT"
    _echo_list(as_json, data, "No active sessions.", headers, rows)


@sessions_command.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show_command(session_id: str, as_json: bool) -> None:
    """Show one session in full."""
    state = _state()
    credentials = state.credentials
    info = credentials.get(session_id)

    if info is None:
        _fail(f"No active session with id {session_id!r}.", 1)

    # The listing knows whether the device is remembered.
    listed = credentials.sessions_by_key(info.user_key)
    info = next((entry for entry in listed if entry.id == info.id), info)
    label = _label(state, credentials.users_by_key().get(info.user_key))

    if as_json:
        _echo_json(_as_json(info, label))
        return

    now = utc(credentials.clock())
    session = info.id
    password = "never in this session"

    if info.kind != "session":
        session += (
            " (a remembered device: its session ended, and its next request"
            " logs it in again)"
        )

    if info.fresh_at is not None:
        fresh = "" if info.fresh else ", no longer fresh"
        password = _when(info.fresh_at, now) + fresh

    until = info.remembered_until
    expires_in = _duration(info.expires_at - now)
    lines = [
        ("Session", session),
        ("User", f"{info.user_key} {label}".rstrip()),
        ("Logged in", _when(info.created_at, now)),
        ("Rotated", _when(info.inserted_at, now)),
        ("Expires", f"{_when(info.expires_at)} (in {expires_in})"),
        ("Password", password),
        ("Remembered", "no" if until is None else f"until {_when(until)}"),
        *((str(key), str(value)) for key, value in info.metadata.items()),
    ]
    width = max(len(name) for name, _ in lines)

    for name, value in lines:
        click.echo(f"{name.ljust(width)}  {value}")


@sessions_command.command("revoke")
@click.argument("session_ids", nargs=-1, metavar="[SESSION_ID]...")
@click.option("--user", metavar="USER", help="All sessions of a user: id, key, label.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def revoke_command(session_ids: tuple[str, ...], user: str | None, yes: bool) -> None:
    """End sessions: by id, or all of a user's with --user."""
    if bool(session_ids) == (user is not None):
        both = " or --user USER, not both" if session_ids else ", or --user USER"
        _fail(f"Give session ids{both}.", 2)

    state = _state()
    credentials = state.credentials

    if user is not None:
        user_key, label = _find_user(state, user)
        name = label or user_key
        count = len(credentials.sessions_by_key(user_key))

        if not count:
            _fail(f"{name} has no active session.", 1)

        if not (yes or click.confirm(f"End {_sessions(count)} of {name}?", err=True)):
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
    """Delete the expired records a FileSystemCache keeps on disk (flask_pow
    also does it hourly; Redis and Memcached need none).
    """
    # A file's expiry is in this host's clock, whatever the sessions use.
    removed = _state().credentials.store.cleanup(time.time())
    click.echo(f"Removed {removed} expired record{'s' * (removed != 1)}.")


@pow_cli.command("users")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def users_command(as_json: bool) -> None:
    """List the users with active sessions, and how many each has."""
    state = _state()
    credentials = state.credentials
    found = [
        (key, _label(state, user), count)
        for key, user in credentials.users_by_key().items()
        if (count := len(credentials.sessions_by_key(key)))
    ]

    data = [{"user": k, "label": name or None, "sessions": n} for k, name, n in found]
    rows = [[k, name, str(n)] for k, name, n in found]
    empty = "No users with active sessions."
    _echo_list(as_json, data, empty, "USER|LABEL|SESSIONS", rows)
