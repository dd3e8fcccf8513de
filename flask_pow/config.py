"""The ``POW_*`` configuration keys: their defaults, and the validation that
turns ``app.config`` into a frozen :class:`PowConfig` once, in
:meth:`~flask_pow.Pow.init_app`.

Each key is written once, as a row of one table: a ``setting(key, default,
validator)`` field in the body of :class:`PowConfig`, or, for the few keys
that fill no one field, a row of ``_INPUTS``. The known keys, the defaults
set in ``app.config`` (so that they can be seen there) and the checks all
come from it; the rules between keys follow it, in :func:`load_config`. A
bad value raises :exc:`ValueError` (or :exc:`TypeError` for a wrong type) at
setup, naming the key, the value and the fix, never at request time.
"""

from __future__ import annotations

import collections.abc as c
import copy
import dataclasses
import datetime as dt
import difflib
import os
import sys
import typing as t
import warnings

from cachelib import BaseCache
from cachelib.redis_base import BaseRedisCache

#: Columns whose attribute name matches one of these :mod:`fnmatch` patterns
#: (case-insensitive) are never written to the cache: secrets, such as
#: password hashes (``password_hash``, ``pw_hash``, ``hashed_password``),
#: tokens, salts, OTP seeds and keys. A column that is merely named like a
#: hash (``avatar_hash``, ``content_hash``) is not a secret, and is cached.
DEFAULT_CACHE_EXCLUDE: tuple[str, ...] = tuple(
    """
    *password* *passwd* *passphrase* *passcode* *pincode* pin_hash pin_digest
    *_pin_hash *_pin_digest *pass_hash* *passhash* *pw_hash* *pwhash*
    hashed_pw* *secret* *token* *salt* otp* *_otp* *totp* *hotp* *api_key*
    *apikey* *private_key* *recovery_code* *uniquifier*
    """.split()
)

#: Remember cookie flags that, unset, follow Flask's ``SESSION_COOKIE_*``.
REMEMBER_COOKIE_FLAGS = (
    "POW_REMEMBER_COOKIE_SECURE",
    "POW_REMEMBER_COOKIE_HTTPONLY",
    "POW_REMEMBER_COOKIE_SAMESITE",
    "POW_REMEMBER_COOKIE_DOMAIN",
    "POW_REMEMBER_COOKIE_PATH",
)

#: Above this idle timeout a warning is given once (OWASP idle timeout).
OWASP_IDLE_TIMEOUT = dt.timedelta(minutes=30)


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning given by the function calling
    this point at the first frame outside flask_pow: the application's
    ``Pow(app)`` or ``init_app(app)`` line, however deep in flask_pow the
    warning is given (a fixed number is right for only one of the two).

    :meta private:
    """
    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1

    while frame.f_back is not None and os.path.abspath(
        frame.f_code.co_filename
    ).startswith(package + os.sep):
        frame = frame.f_back
        level += 1

    return level


class InsecureTTLWarning(UserWarning):
    """The configured ``POW_CREDENTIALS_TTL`` is longer than the 30 minutes
    OWASP recommends as an idle timeout. ``POW_ACCEPT_LONG_IDLE = True``
    says the choice is deliberate, and silences it.
    """


class UnknownSettingWarning(UserWarning):
    """A ``POW_*`` key in the application's config that flask_pow does not
    read: most likely a typo, which would otherwise be silently ignored.
    """


class LateSettingWarning(UserWarning):
    """A ``POW_*`` key was set, changed or removed in the application's
    config after :meth:`~flask_pow.Pow.init_app` read it (a test fixture
    that sets ``POW_CACHE`` after a module-level ``Pow(app)``). flask_pow
    goes on with what ``init_app`` read; given once, at the application's
    first request.
    """


# -- one validator per kind of value: (key, value) -> the value to keep ------

Validator = c.Callable[[str, t.Any], t.Any]


def as_given(key: str, value: object) -> object:
    return value


def flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be True or False, got {value!r}.")

    return value


def duration(key: str, value: object, *, none: bool = False) -> float:
    """Seconds, fractions too, from a timedelta or a number."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)

    if none:
        raise TypeError(
            f"{key} must be a timedelta, a number of seconds, or None, got {value!r}."
        )

    raise TypeError(f"{key} must be a timedelta or a number of seconds, got {value!r}.")


def seconds(minimum: int, *, none: bool = False) -> Validator:
    """Whole seconds (what cachelib timeouts take), at least ``minimum``;
    with ``none``, ``None`` too.
    """

    def validate(key: str, value: object) -> int | None:
        if value is None and none:
            return None

        total = duration(key, value, none=none)

        if total != int(total):
            raise ValueError(
                f"{key} must be a whole number of seconds (the cache counts in"
                f" seconds), got {value!r}."
            )

        if total < minimum:
            raise ValueError(
                f"{key} must be at least {minimum} seconds, got {value!r}."
            )

        return int(total)

    return validate


def count(key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key} must be a whole number, got {value!r}.")

    if value < 1:
        raise ValueError(f"{key} must be at least 1, got {value!r}.")

    return value


def text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {value!r}.")

    if any(ch.isspace() for ch in value):
        raise ValueError(f"{key} must not contain white space, got {value!r}.")

    return value


def optional(validate: Validator) -> Validator:
    """``None``, or what ``validate`` accepts."""
    return lambda key, value: None if value is None else validate(key, value)


def prefix(key: str, value: object) -> str:
    """Text that can prefix a Redis key, hash tags included."""
    name = text(key, value)

    # Redis Cluster hashes only what is between the first { and the next }:
    # a brace here would move every key's hash tag, and the scripts, which
    # touch one user's keys in one slot, would fail.
    if "{" in name or "}" in name:
        raise ValueError(
            f"{key} must not contain '{{' or '}}' (Redis Cluster hash"
            f" tags), got {name!r}."
        )

    return name


def message(key: str, value: object) -> t.Any:
    # A lazy translation (Flask-Babel's lazy_gettext) is not a str, and is
    # turned into one when it is flashed.
    if isinstance(value, (bytes, int, float, list, tuple, dict, set)):
        raise TypeError(
            f"{key} must be a string, or None to flash nothing, got {value!r}."
        )

    return value or None


def names(
    what: str = "names", into: c.Callable[[tuple[str, ...]], t.Any] = tuple
) -> Validator:
    """A list of non-empty strings, made ``into`` a tuple or a frozenset."""

    def validate(key: str, value: object) -> t.Any:
        # A bare string is iterable too, and would silently become one name
        # per character.
        if isinstance(value, (str, bytes)) or not isinstance(value, c.Iterable):
            raise TypeError(
                f"{key} must be a list of {what}, got {value!r}."
                f" Write [{value!r}] for a single one."
            )

        items = tuple(value)

        for name in items:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"{key} must contain only non-empty strings, got {name!r}."
                )

        return into(items)

    return validate


def login_views(key: str, value: object) -> dict[str, str | None]:
    if not isinstance(value, c.Mapping):
        raise TypeError(
            f"{key} must map blueprint names to login endpoints, such as"
            f" {{'admin': 'admin.login'}}, got {value!r}."
        )

    views: dict[str, str | None] = {}

    for name, endpoint in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key} has a key that is not a blueprint name: {name!r}.")

        views[name] = optional(text)(f"{key}[{name!r}]", endpoint)

    return views


# -- the table ---------------------------------------------------------------


class Setting(t.NamedTuple):
    """One ``POW_*`` key: its default, and the validator of its kind."""

    key: str
    default: object
    validate: Validator


def setting(key: str, default: object, validate: Validator) -> t.Any:
    """A :class:`PowConfig` field read from the key ``key``."""
    return dataclasses.field(metadata={"setting": Setting(key, default, validate)})


def built() -> t.Any:
    """A :class:`PowConfig` field that :func:`load_config` builds from
    several keys.
    """
    return dataclasses.field()


@dataclasses.dataclass(frozen=True)
class PowConfig:
    """The validated ``POW_*`` settings of one application. Durations are
    whole seconds, because that is what cachelib timeouts take.

    The body is the table of settings: a field that one key fills is
    ``setting(key, default, validator)``; a field that
    :func:`load_config` builds from several keys (listed in ``_INPUTS``)
    is ``built()``.
    """

    #: The cache holding the records, given or built from the settings.
    cache: BaseCache = built()
    namespace: str = setting("POW_NAMESPACE", "credentials", prefix)
    #: The key in :data:`flask.session` that holds the signed token.
    session_key: str = setting("POW_SESSION_KEY", "pow_auth", text)
    #: Idle timeout: records expire this long after the last write (OWASP: at
    #: most 30 minutes for a low-risk application).
    credentials_ttl: int = setting(
        "POW_CREDENTIALS_TTL", dt.timedelta(minutes=30), seconds(1)
    )
    #: A token older than this is rotated. ``None`` means never rotate;
    #: ``0`` means every request.
    session_ttl_renewal: int | None = setting(
        "POW_SESSION_TTL_RENEWAL", dt.timedelta(minutes=15), seconds(0, none=True)
    )
    #: A rotated-away token keeps working this long, pointing at the new one.
    rotation_grace: int = setting(
        "POW_ROTATION_GRACE", dt.timedelta(seconds=30), seconds(0)
    )
    #: ``None`` means no absolute timeout.
    absolute_ttl: int | None = setting("POW_ABSOLUTE_TTL", None, seconds(1, none=True))
    #: Live sessions per user; a login past it ends the least recently used.
    max_sessions: int = setting("POW_MAX_SESSIONS", 100, count)
    cache_exclude: tuple[str, ...] = setting(
        "POW_CACHE_EXCLUDE", DEFAULT_CACHE_EXCLUDE, names("column name patterns")
    )
    login_view: str | None = setting("POW_LOGIN_VIEW", None, optional(text))
    #: Reload the user from the database on every request.
    reload: bool = setting("POW_RELOAD", False, flag)
    #: Blueprint names (dotted for nested ones) whose views reload the user,
    #: with the blueprints nested in them.
    reload_blueprints: frozenset[str] = setting(
        "POW_RELOAD_BLUEPRINTS", (), names(into=frozenset)
    )
    #: Login views per blueprint name; ``None`` answers 401 there.
    blueprint_login_views: c.Mapping[str, str | None] = setting(
        "POW_BLUEPRINT_LOGIN_VIEWS", {}, login_views
    )
    #: Flashed on the redirect to the login view, as Flask-Login does;
    #: ``None`` flashes nothing.
    login_message: t.Any = setting(
        "POW_LOGIN_MESSAGE", "Please log in to access this page.", message
    )
    login_message_category: str = setting("POW_LOGIN_MESSAGE_CATEGORY", "message", text)
    #: Seconds a proof of identity keeps a session fresh; ``None``: always.
    freshness: int | None = setting("POW_FRESHNESS", None, seconds(1, none=True))
    refresh_view: str | None = setting("POW_REFRESH_VIEW", None, optional(text))
    #: Flashed on the redirect to the refresh view, as Flask-Login does.
    needs_refresh_message: t.Any = setting(
        "POW_NEEDS_REFRESH_MESSAGE",
        "Please reauthenticate to access this page.",
        message,
    )
    needs_refresh_message_category: str = setting(
        "POW_NEEDS_REFRESH_MESSAGE_CATEGORY", "message", text
    )
    remember_cookie_name: str = setting(
        "POW_REMEMBER_COOKIE_NAME", "remember_token", text
    )
    #: Seconds a remember-me credential lasts from its login with the password.
    remember_ttl: int = setting("POW_REMEMBER_TTL", dt.timedelta(days=30), seconds(60))
    #: ``POW_REMEMBER_COOKIE_*`` flags that were set, by lower-case name
    #: (``secure``, ``httponly``, ...); the others follow the session's.
    remember_cookie: t.Mapping[str, t.Any] = built()
    #: Update a user's cached record when an ORM commit changes the row.
    sync_on_commit: bool = setting("POW_SYNC_ON_COMMIT", True, flag)
    #: Serve repeat requests from a worker's copy kept true by Redis's
    #: invalidations (Redis stores only).
    redis_local_cache: bool = setting("POW_REDIS_LOCAL_CACHE", False, flag)
    #: Seconds a worker serves a session from its copy at most.
    redis_local_cache_ttl: int = setting("POW_REDIS_LOCAL_CACHE_TTL", 10, seconds(1))
    #: Seconds after the last answered heartbeat that a worker still answers
    #: from its copy, at most: the longest a revocation can go unseen by a
    #: worker whose path to Redis went silent.
    redis_local_cache_staleness: float = setting(
        "POW_REDIS_LOCAL_CACHE_STALENESS", 0.25, duration
    )
    #: Sessions, and bytes of records, a worker's copy holds at most.
    redis_local_cache_max_entries: int = setting(
        "POW_REDIS_LOCAL_CACHE_MAX_ENTRIES", 10_000, count
    )
    redis_local_cache_max_bytes: int = setting(
        "POW_REDIS_LOCAL_CACHE_MAX_BYTES", 32 * 1024 * 1024, count
    )


#: The keys that fill no one field: the cache is built from the first two
#: (:func:`_cache`), the remember cookie's flags are gathered into
#: :attr:`PowConfig.remember_cookie`, and the last silences the OWASP warning.
_INPUTS = (
    Setting("POW_CACHE", None, as_given),
    Setting("POW_REDIS_URL", None, as_given),
    *(Setting(key, None, as_given) for key in REMEMBER_COOKIE_FLAGS),
    Setting("POW_ACCEPT_LONG_IDLE", False, flag),
)
#: The field each of the other keys fills.
_FIELDS = {
    field.name: field.metadata["setting"]
    for field in dataclasses.fields(PowConfig)
    if "setting" in field.metadata
}
#: Every setting flask_pow reads, in the order it checks them.
SETTINGS = (*_INPUTS, *_FIELDS.values())
#: Every setting flask_pow reads.
KNOWN_SETTINGS = frozenset(row.key for row in SETTINGS)


def load_config(config: c.MutableMapping[str, t.Any], instance_path: str) -> PowConfig:
    """Read the ``POW_*`` keys of an application's config, setting the
    defaults in it so that they can be seen there, and validate them. A
    ``POW_*`` key that is not one of them warns, naming the closest one.

    :param config: the application's :attr:`~flask.Flask.config`.
    :param instance_path: the application's instance folder, where the
        default store lives.
    :raise ValueError: if a value is out of range.
    :raise TypeError: if a value has the wrong type.
    """
    given = [key for key in config if key.startswith("POW_")]

    for row in SETTINGS:
        # A copy: a default dict changed in one application's config would
        # otherwise change every other's.
        config.setdefault(row.key, copy.copy(row.default))

    _warn_unknown(given)
    checked = {row.key: row.validate(row.key, config[row.key]) for row in SETTINGS}
    values = {name: checked[row.key] for name, row in _FIELDS.items()}
    ttl = values["credentials_ttl"]
    renewal = values["session_ttl_renewal"]

    if renewal is not None and renewal >= ttl:
        raise ValueError(
            f"POW_SESSION_TTL_RENEWAL ({renewal} s) must be shorter than"
            f" POW_CREDENTIALS_TTL ({ttl} s): a session's records"
            " expire that long after its last rotation, so it would end before"
            " it is ever renewed. Lower the renewal, or set it to None to never"
            " rotate."
        )

    if values["rotation_grace"] >= ttl:
        raise ValueError(
            f"POW_ROTATION_GRACE ({values['rotation_grace']} s) must be shorter"
            f" than POW_CREDENTIALS_TTL ({ttl} s)."
        )

    if not 0 < values["redis_local_cache_staleness"] <= values["redis_local_cache_ttl"]:
        raise ValueError(
            "POW_REDIS_LOCAL_CACHE_STALENESS must be above 0 and at most"
            f" POW_REDIS_LOCAL_CACHE_TTL ({config['POW_REDIS_LOCAL_CACHE_TTL']!r}),"
            f" got {config['POW_REDIS_LOCAL_CACHE_STALENESS']!r}."
        )

    if ttl > OWASP_IDLE_TIMEOUT.total_seconds() and not checked["POW_ACCEPT_LONG_IDLE"]:
        warnings.warn(
            f"POW_CREDENTIALS_TTL is {ttl} seconds. OWASP recommends"
            " an idle timeout of at most 30 minutes to limit session hijacking;"
            " consider lowering it, or set POW_ACCEPT_LONG_IDLE = True if the"
            " choice is deliberate.",
            InsecureTTLWarning,
            stacklevel=caller_stacklevel(),
        )

    cache = _cache(checked["POW_CACHE"], checked["POW_REDIS_URL"], instance_path)

    # The local cache needs a Redis (or Valkey) store, whose servers track
    # keys for their clients.
    if values["redis_local_cache"] and not isinstance(cache, BaseRedisCache):
        raise ValueError(
            "POW_REDIS_LOCAL_CACHE needs a Redis store (POW_CACHE a RedisCache or"
            f" ValkeyCache, or POW_REDIS_URL); POW_CACHE is a {type(cache).__name__}."
        )

    remember_cookie = {
        key.removeprefix("POW_REMEMBER_COOKIE_").lower(): checked[key]
        for key in REMEMBER_COOKIE_FLAGS
        if checked[key] is not None
    }
    return PowConfig(cache=cache, remember_cookie=remember_cookie, **values)


def _warn_unknown(given: list[str]) -> None:
    """Warn about each ``POW_*`` key the application set that is not a
    setting (a typo such as ``POW_CREDENTIAL_TTL`` would be ignored).
    """
    for key in given:
        if key in KNOWN_SETTINGS:
            continue

        close = difflib.get_close_matches(key, sorted(KNOWN_SETTINGS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        warnings.warn(
            f"{key!r} is not a flask_pow setting, and is ignored.{hint}",
            UnknownSettingWarning,
            stacklevel=caller_stacklevel(),
        )


#: The values compared by equality, against a copy taken at ``init_app``
#: (so that a list changed in place is seen), when all they hold is of
#: these types; any other object (a cache, a lazy translation) is compared
#: by identity, since it is that object that flask_pow uses.
_DATA_TYPES = (type(None), bool, int, float, str, bytes, dt.timedelta)


def _is_data(value: object) -> bool:
    if isinstance(value, _DATA_TYPES):
        return True

    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_data(item) for item in value)

    if isinstance(value, dict):
        return all(_is_data(k) and _is_data(v) for k, v in value.items())

    return False


def read_settings(config: c.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What :meth:`~flask_pow.Pow.init_app` read: every ``POW_*`` key of
    the application's config (the defaults set too), plain data copied and
    other objects kept as they are, for :func:`changed_settings`.

    :meta private:
    """
    return {
        key: copy.deepcopy(value) if _is_data(value) else value
        for key, value in config.items()
        if key.startswith("POW_")
    }


def changed_settings(
    read: c.Mapping[str, t.Any], config: c.Mapping[str, t.Any]
) -> list[str]:
    """The ``POW_*`` keys that were added, removed or changed in ``config``
    since :func:`read_settings` returned ``read``: plain data compared by
    equality, other objects by identity (a cache configured in place is
    the same cache; an equal new one is not the object flask_pow uses).

    :meta private:
    """
    keys = set(read).union(key for key in config if key.startswith("POW_"))
    return sorted(
        key
        for key in keys
        if key not in read or key not in config or not _same(read[key], config[key])
    )


def _same(read: object, now: object) -> bool:
    return read is now or (_is_data(read) and _is_data(now) and read == now)


# -- the cache object (moves to flask_pow.stores) ---------------------------------

#: The folder of the default store, a FileSystemCache, in the application's
#: instance folder: it survives restarts and reloads, and the workers of one
#: host share it.
DEFAULT_CACHE_FOLDER = "flask_pow"
#: Timeouts given to a client built from ``POW_REDIS_URL``, unless the URL
#: sets its own (``?socket_timeout=0.5``): a request waits at most this long
#: on a server that went away before it answers 503.
REDIS_SOCKET_TIMEOUT = 2.0
REDIS_CONNECT_TIMEOUT = 2.0


def _redis_cache(url: object) -> BaseCache:
    if not isinstance(url, str) or url.split("://", 1)[0] not in (
        "redis",
        "rediss",
        "unix",
    ):
        raise ValueError(
            "POW_REDIS_URL must be a redis://, rediss:// or unix:// URL, such as"
            f" 'redis://localhost:6379/0', got {url!r}."
        )

    import redis
    from cachelib import RedisCache
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        # One immediate retry: a pooled connection the server dropped (a
        # restart) reconnects; a server that is down answers 503 at once,
        # not after a backoff.
        retry=Retry(NoBackoff(), 1),
    )
    return RedisCache(host=client)


def _cache(value: object, redis_url: object, instance_path: str) -> BaseCache:
    if redis_url is not None:
        if value is not None:
            raise ValueError(
                "POW_CACHE and POW_REDIS_URL are both set; set only one. Use"
                " POW_CACHE = cachelib.RedisCache(host=redis_client) for a client"
                " you configure yourself."
            )

        return _redis_cache(redis_url)

    if value is None:
        from cachelib import FileSystemCache

        # threshold=0: cachelib's pruning would evict live sessions.
        folder = os.path.join(instance_path, DEFAULT_CACHE_FOLDER)
        return FileSystemCache(folder, threshold=0, mode=0o600)

    if not isinstance(value, BaseCache):
        raise TypeError(
            "POW_CACHE must be a cachelib cache such as"
            " cachelib.FileSystemCache('/var/cache/myapp') or"
            f" cachelib.RedisCache(...), got {value!r}."
        )

    return value
