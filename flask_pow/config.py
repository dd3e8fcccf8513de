"""The ``POW_*`` configuration keys: their defaults, and the validation that
turns ``app.config`` into a frozen :class:`PowConfig` once, in
:meth:`~flask_pow.Pow.init_app`.

A bad value raises :exc:`ValueError` (or :exc:`TypeError` for a wrong type)
at setup, naming the key, the value and the fix, never at request time.
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

#: The key prefix inside the cache.
DEFAULT_NAMESPACE = "credentials"
#: The key in :data:`flask.session` that holds the signed token.
DEFAULT_SESSION_KEY = "pow_auth"
#: Idle timeout: records expire this long after the last write (OWASP: at
#: most 30 minutes for a low-risk application).
DEFAULT_CREDENTIALS_TTL = dt.timedelta(minutes=30)
#: A token older than this is rotated.
DEFAULT_SESSION_TTL_RENEWAL = dt.timedelta(minutes=15)
#: A rotated-away token keeps working this long, pointing at the new one.
DEFAULT_ROTATION_GRACE = dt.timedelta(seconds=30)
#: Columns whose attribute name matches one of these :mod:`fnmatch` patterns
#: (case-insensitive) are never written to the cache: secrets, such as
#: password hashes (``password_hash``, ``pw_hash``, ``hashed_password``),
#: tokens, salts, OTP seeds and keys. A column that is merely named like a
#: hash (``avatar_hash``, ``content_hash``) is not a secret, and is cached.
DEFAULT_CACHE_EXCLUDE: tuple[str, ...] = (
    "*password*",
    "*passwd*",
    "*passphrase*",
    "*passcode*",
    "*pincode*",
    "pin_hash",
    "pin_digest",
    "*_pin_hash",
    "*_pin_digest",
    "*pass_hash*",
    "*passhash*",
    "*pw_hash*",
    "*pwhash*",
    "hashed_pw*",
    "*secret*",
    "*token*",
    "*salt*",
    "otp*",
    "*_otp*",
    "*totp*",
    "*hotp*",
    "*api_key*",
    "*apikey*",
    "*private_key*",
    "*recovery_code*",
    "*uniquifier*",
)
#: The folder of the default store, a FileSystemCache, in the application's
#: instance folder: it survives restarts and reloads, and the workers of one
#: host share it.
DEFAULT_CACHE_FOLDER = "flask_pow"

#: Flashed on the redirect to the login view, as Flask-Login does.
DEFAULT_LOGIN_MESSAGE = "Please log in to access this page."
DEFAULT_LOGIN_MESSAGE_CATEGORY = "message"
#: Flashed on the redirect to the refresh view, as Flask-Login does.
DEFAULT_NEEDS_REFRESH_MESSAGE = "Please reauthenticate to access this page."

#: Live sessions one user may have; a login past it ends the least recently
#: used one.
DEFAULT_MAX_SESSIONS = 100

#: How long a remember-me login lasts, from the login with the password.
DEFAULT_REMEMBER_TTL = dt.timedelta(days=30)

#: Remember cookie flags that, unset, follow Flask's ``SESSION_COOKIE_*``.
REMEMBER_COOKIE_FLAGS = (
    "POW_REMEMBER_COOKIE_SECURE",
    "POW_REMEMBER_COOKIE_HTTPONLY",
    "POW_REMEMBER_COOKIE_SAMESITE",
    "POW_REMEMBER_COOKIE_DOMAIN",
    "POW_REMEMBER_COOKIE_PATH",
)

#: Every setting flask_pow reads.
KNOWN_SETTINGS = frozenset(
    {
        "POW_CACHE",
        "POW_REDIS_URL",
        "POW_NAMESPACE",
        "POW_SESSION_KEY",
        "POW_CREDENTIALS_TTL",
        "POW_SESSION_TTL_RENEWAL",
        "POW_ROTATION_GRACE",
        "POW_ABSOLUTE_TTL",
        "POW_CACHE_EXCLUDE",
        "POW_LOGIN_VIEW",
        "POW_RELOAD",
        "POW_RELOAD_BLUEPRINTS",
        "POW_BLUEPRINT_LOGIN_VIEWS",
        "POW_LOGIN_MESSAGE",
        "POW_LOGIN_MESSAGE_CATEGORY",
        "POW_SYNC_ON_COMMIT",
        "POW_ACCEPT_LONG_IDLE",
        "POW_MAX_SESSIONS",
        "POW_FRESHNESS",
        "POW_REFRESH_VIEW",
        "POW_NEEDS_REFRESH_MESSAGE",
        "POW_NEEDS_REFRESH_MESSAGE_CATEGORY",
        "POW_REMEMBER_COOKIE_NAME",
        "POW_REMEMBER_TTL",
        *REMEMBER_COOKIE_FLAGS,
        "POW_REDIS_LOCAL_CACHE",
        "POW_REDIS_LOCAL_CACHE_TTL",
        "POW_REDIS_LOCAL_CACHE_STALENESS",
        "POW_REDIS_LOCAL_CACHE_MAX_ENTRIES",
        "POW_REDIS_LOCAL_CACHE_MAX_BYTES",
    }
)

#: Seconds a worker serves a session from its Redis local cache at most.
DEFAULT_LOCAL_CACHE_TTL = 10
#: Seconds after the last answered heartbeat that a worker still answers
#: from its Redis local cache, at most: the longest a revocation can go
#: unseen by a worker whose path to Redis went silent.
DEFAULT_LOCAL_CACHE_STALENESS = 0.25
#: Sessions a worker's Redis local cache holds at most.
DEFAULT_LOCAL_CACHE_MAX_ENTRIES = 10_000
#: Bytes of records a worker's Redis local cache holds at most.
DEFAULT_LOCAL_CACHE_MAX_BYTES = 32 * 1024 * 1024

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


@dataclasses.dataclass(frozen=True)
class PowConfig:
    """The validated ``POW_*`` settings of one application. Durations are
    whole seconds, because that is what cachelib timeouts take.
    """

    #: The cache holding the records, given or built from the settings.
    cache: BaseCache
    namespace: str
    session_key: str
    credentials_ttl: int
    #: ``None`` means never rotate; ``0`` means every request.
    session_ttl_renewal: int | None
    rotation_grace: int
    #: ``None`` means no absolute timeout.
    absolute_ttl: int | None
    #: Live sessions per user; a login past it ends the least recently used.
    max_sessions: int
    cache_exclude: tuple[str, ...]
    login_view: str | None
    #: Reload the user from the database on every request.
    reload: bool = False
    #: Blueprint names (dotted for nested ones) whose views reload the user,
    #: with the blueprints nested in them.
    reload_blueprints: frozenset[str] = frozenset()
    #: Login views per blueprint name; ``None`` answers 401 there.
    blueprint_login_views: c.Mapping[str, str | None] = dataclasses.field(
        default_factory=dict
    )
    #: Flashed on the redirect to the login view; ``None`` flashes nothing.
    login_message: t.Any = DEFAULT_LOGIN_MESSAGE
    login_message_category: str = DEFAULT_LOGIN_MESSAGE_CATEGORY
    #: Seconds a proof of identity keeps a session fresh; ``None``: always.
    freshness: int | None = None
    refresh_view: str | None = None
    needs_refresh_message: t.Any = DEFAULT_NEEDS_REFRESH_MESSAGE
    needs_refresh_message_category: str = DEFAULT_LOGIN_MESSAGE_CATEGORY
    remember_cookie_name: str = "remember_token"
    #: Seconds a remember-me credential lasts from its login.
    remember_ttl: int = int(DEFAULT_REMEMBER_TTL.total_seconds())
    #: ``POW_REMEMBER_COOKIE_*`` flags that were set, by lower-case name
    #: (``secure``, ``httponly``, ...); the others follow the session's.
    remember_cookie: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)
    #: Update a user's cached record when an ORM commit changes the row.
    sync_on_commit: bool = True
    #: Serve repeat requests from a worker's copy kept true by Redis's
    #: invalidations (Redis stores only).
    redis_local_cache: bool = False
    redis_local_cache_ttl: int = DEFAULT_LOCAL_CACHE_TTL
    redis_local_cache_staleness: float = DEFAULT_LOCAL_CACHE_STALENESS
    redis_local_cache_max_entries: int = DEFAULT_LOCAL_CACHE_MAX_ENTRIES
    redis_local_cache_max_bytes: int = DEFAULT_LOCAL_CACHE_MAX_BYTES


def _seconds(key: str, value: object, *, allow_none: bool, minimum: int) -> int | None:
    """Validate one duration setting and return it in whole seconds."""
    if value is None and allow_none:
        return None

    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        expected = (
            "a timedelta, a number of seconds, or None"
            if allow_none
            else ("a timedelta or a number of seconds")
        )
        raise TypeError(f"{key} must be {expected}, got {value!r}.")

    if seconds != int(seconds):
        raise ValueError(
            f"{key} must be a whole number of seconds (the cache counts in"
            f" seconds), got {value!r}."
        )

    if seconds < minimum:
        raise ValueError(f"{key} must be at least {minimum} seconds, got {value!r}.")

    return int(seconds)


def _staleness(value: object, ttl: object) -> float:
    """Validate ``POW_REDIS_LOCAL_CACHE_STALENESS``: seconds (fractions
    too) above 0 and no longer than the local cache's TTL.
    """
    key = "POW_REDIS_LOCAL_CACHE_STALENESS"

    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"{key} must be a timedelta or a number of seconds, got {value!r}."
        )

    limit = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else ttl

    if not seconds > 0 or (isinstance(limit, (int, float)) and seconds > limit):
        raise ValueError(
            f"{key} must be above 0 and at most POW_REDIS_LOCAL_CACHE_TTL"
            f" ({ttl!r}), got {value!r}."
        )

    return seconds


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {value!r}.")

    if any(ch.isspace() for ch in value):
        raise ValueError(f"{key} must not contain white space, got {value!r}.")

    return value


def _message(key: str, value: object) -> t.Any:
    # A lazy translation (Flask-Babel's lazy_gettext) is not a str, and is
    # turned into one when it is flashed.
    if isinstance(value, (bytes, int, float, list, tuple, dict, set)):
        raise TypeError(
            f"{key} must be a string, or None to flash nothing, got {value!r}."
        )

    return value


def _count(key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key} must be a whole number, got {value!r}.")

    if value < 1:
        raise ValueError(f"{key} must be at least 1, got {value!r}.")

    return value


def _namespace(value: object) -> str:
    namespace = _text("POW_NAMESPACE", value)

    # Redis Cluster hashes only what is between the first { and the next }:
    # a brace here would move every key's hash tag, and the scripts, which
    # touch one user's keys in one slot, would fail.
    if "{" in namespace or "}" in namespace:
        raise ValueError(
            f"POW_NAMESPACE must not contain '{{' or '}}' (Redis Cluster hash"
            f" tags), got {namespace!r}."
        )

    return namespace


def _names(key: str, value: object, what: str = "names") -> tuple[str, ...]:
    # A bare string is iterable too, and would silently become one name per
    # character.
    if isinstance(value, (str, bytes)) or not isinstance(value, c.Iterable):
        raise TypeError(
            f"{key} must be a list of {what}, got {value!r}."
            f" Write [{value!r}] for a single one."
        )

    names = tuple(value)

    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{key} must contain only non-empty strings, got {name!r}."
            )

    return names


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
    config.setdefault("POW_CACHE", None)
    config.setdefault("POW_REDIS_URL", None)
    config.setdefault("POW_NAMESPACE", DEFAULT_NAMESPACE)
    config.setdefault("POW_SESSION_KEY", DEFAULT_SESSION_KEY)
    config.setdefault("POW_CREDENTIALS_TTL", DEFAULT_CREDENTIALS_TTL)
    config.setdefault("POW_SESSION_TTL_RENEWAL", DEFAULT_SESSION_TTL_RENEWAL)
    config.setdefault("POW_ROTATION_GRACE", DEFAULT_ROTATION_GRACE)
    config.setdefault("POW_ABSOLUTE_TTL", None)
    config.setdefault("POW_CACHE_EXCLUDE", DEFAULT_CACHE_EXCLUDE)
    config.setdefault("POW_LOGIN_VIEW", None)
    config.setdefault("POW_RELOAD", False)
    config.setdefault("POW_RELOAD_BLUEPRINTS", ())
    config.setdefault("POW_BLUEPRINT_LOGIN_VIEWS", {})
    config.setdefault("POW_LOGIN_MESSAGE", DEFAULT_LOGIN_MESSAGE)
    config.setdefault("POW_LOGIN_MESSAGE_CATEGORY", DEFAULT_LOGIN_MESSAGE_CATEGORY)
    config.setdefault("POW_SYNC_ON_COMMIT", True)
    config.setdefault("POW_ACCEPT_LONG_IDLE", False)
    config.setdefault("POW_MAX_SESSIONS", DEFAULT_MAX_SESSIONS)
    config.setdefault("POW_FRESHNESS", None)
    config.setdefault("POW_REMEMBER_COOKIE_NAME", "remember_token")
    config.setdefault("POW_REMEMBER_TTL", DEFAULT_REMEMBER_TTL)
    config.setdefault("POW_REDIS_LOCAL_CACHE", False)
    config.setdefault("POW_REDIS_LOCAL_CACHE_TTL", DEFAULT_LOCAL_CACHE_TTL)
    config.setdefault("POW_REDIS_LOCAL_CACHE_STALENESS", DEFAULT_LOCAL_CACHE_STALENESS)
    config.setdefault(
        "POW_REDIS_LOCAL_CACHE_MAX_ENTRIES", DEFAULT_LOCAL_CACHE_MAX_ENTRIES
    )
    config.setdefault("POW_REDIS_LOCAL_CACHE_MAX_BYTES", DEFAULT_LOCAL_CACHE_MAX_BYTES)

    for key in REMEMBER_COOKIE_FLAGS:
        config.setdefault(key, None)
    config.setdefault("POW_REFRESH_VIEW", None)
    config.setdefault("POW_NEEDS_REFRESH_MESSAGE", DEFAULT_NEEDS_REFRESH_MESSAGE)
    config.setdefault(
        "POW_NEEDS_REFRESH_MESSAGE_CATEGORY", DEFAULT_LOGIN_MESSAGE_CATEGORY
    )
    _warn_unknown(given)

    credentials_ttl = _seconds(
        "POW_CREDENTIALS_TTL",
        config["POW_CREDENTIALS_TTL"],
        allow_none=False,
        minimum=1,
    )
    assert credentials_ttl is not None
    renewal = _seconds(
        "POW_SESSION_TTL_RENEWAL",
        config["POW_SESSION_TTL_RENEWAL"],
        allow_none=True,
        minimum=0,
    )
    grace = _seconds(
        "POW_ROTATION_GRACE", config["POW_ROTATION_GRACE"], allow_none=False, minimum=0
    )
    assert grace is not None
    absolute = _seconds(
        "POW_ABSOLUTE_TTL", config["POW_ABSOLUTE_TTL"], allow_none=True, minimum=1
    )

    if renewal is not None and renewal >= credentials_ttl:
        raise ValueError(
            f"POW_SESSION_TTL_RENEWAL ({renewal} s) must be shorter than"
            f" POW_CREDENTIALS_TTL ({credentials_ttl} s): a session's records"
            " expire that long after its last rotation, so it would end before"
            " it is ever renewed. Lower the renewal, or set it to None to never"
            " rotate."
        )

    if grace >= credentials_ttl:
        raise ValueError(
            f"POW_ROTATION_GRACE ({grace} s) must be shorter than"
            f" POW_CREDENTIALS_TTL ({credentials_ttl} s)."
        )

    login_view = config["POW_LOGIN_VIEW"]
    reload = config["POW_RELOAD"]

    for key in (
        "POW_RELOAD",
        "POW_SYNC_ON_COMMIT",
        "POW_ACCEPT_LONG_IDLE",
        "POW_REDIS_LOCAL_CACHE",
    ):
        if not isinstance(config[key], bool):
            raise TypeError(f"{key} must be True or False, got {config[key]!r}.")

    login_message = _message("POW_LOGIN_MESSAGE", config["POW_LOGIN_MESSAGE"])
    refresh_message = _message(
        "POW_NEEDS_REFRESH_MESSAGE", config["POW_NEEDS_REFRESH_MESSAGE"]
    )
    refresh_view = config["POW_REFRESH_VIEW"]

    if refresh_view is not None:
        refresh_view = _text("POW_REFRESH_VIEW", refresh_view)

    if login_view is not None:
        login_view = _text("POW_LOGIN_VIEW", login_view)

    if (
        credentials_ttl > OWASP_IDLE_TIMEOUT.total_seconds()
        and not config["POW_ACCEPT_LONG_IDLE"]
    ):
        warnings.warn(
            f"POW_CREDENTIALS_TTL is {credentials_ttl} seconds. OWASP recommends"
            " an idle timeout of at most 30 minutes to limit session hijacking;"
            " consider lowering it, or set POW_ACCEPT_LONG_IDLE = True if the"
            " choice is deliberate.",
            InsecureTTLWarning,
            stacklevel=caller_stacklevel(),
        )

    cache = _cache(config["POW_CACHE"], config["POW_REDIS_URL"], instance_path)
    local_cache = config["POW_REDIS_LOCAL_CACHE"]

    if local_cache:
        _check_local_cache(cache)

    return PowConfig(
        cache=cache,
        namespace=_namespace(config["POW_NAMESPACE"]),
        session_key=_text("POW_SESSION_KEY", config["POW_SESSION_KEY"]),
        credentials_ttl=credentials_ttl,
        session_ttl_renewal=renewal,
        rotation_grace=grace,
        absolute_ttl=absolute,
        max_sessions=_count("POW_MAX_SESSIONS", config["POW_MAX_SESSIONS"]),
        cache_exclude=_names(
            "POW_CACHE_EXCLUDE", config["POW_CACHE_EXCLUDE"], "column name patterns"
        ),
        login_view=login_view,
        reload=reload,
        reload_blueprints=frozenset(
            _names("POW_RELOAD_BLUEPRINTS", config["POW_RELOAD_BLUEPRINTS"])
        ),
        blueprint_login_views=_login_views(config["POW_BLUEPRINT_LOGIN_VIEWS"]),
        login_message=login_message or None,
        login_message_category=_text(
            "POW_LOGIN_MESSAGE_CATEGORY", config["POW_LOGIN_MESSAGE_CATEGORY"]
        ),
        sync_on_commit=config["POW_SYNC_ON_COMMIT"],
        freshness=_seconds(
            "POW_FRESHNESS", config["POW_FRESHNESS"], allow_none=True, minimum=1
        ),
        refresh_view=refresh_view,
        remember_cookie_name=_text(
            "POW_REMEMBER_COOKIE_NAME", config["POW_REMEMBER_COOKIE_NAME"]
        ),
        remember_ttl=t.cast(
            int,
            _seconds(
                "POW_REMEMBER_TTL",
                config["POW_REMEMBER_TTL"],
                allow_none=False,
                minimum=60,
            ),
        ),
        remember_cookie={
            key.removeprefix("POW_REMEMBER_COOKIE_").lower(): config[key]
            for key in REMEMBER_COOKIE_FLAGS
            if config.get(key) is not None
        },
        redis_local_cache=local_cache,
        redis_local_cache_ttl=t.cast(
            int,
            _seconds(
                "POW_REDIS_LOCAL_CACHE_TTL",
                config["POW_REDIS_LOCAL_CACHE_TTL"],
                allow_none=False,
                minimum=1,
            ),
        ),
        redis_local_cache_staleness=_staleness(
            config["POW_REDIS_LOCAL_CACHE_STALENESS"],
            config["POW_REDIS_LOCAL_CACHE_TTL"],
        ),
        redis_local_cache_max_entries=_count(
            "POW_REDIS_LOCAL_CACHE_MAX_ENTRIES",
            config["POW_REDIS_LOCAL_CACHE_MAX_ENTRIES"],
        ),
        redis_local_cache_max_bytes=_count(
            "POW_REDIS_LOCAL_CACHE_MAX_BYTES", config["POW_REDIS_LOCAL_CACHE_MAX_BYTES"]
        ),
        needs_refresh_message=refresh_message or None,
        needs_refresh_message_category=_text(
            "POW_NEEDS_REFRESH_MESSAGE_CATEGORY",
            config["POW_NEEDS_REFRESH_MESSAGE_CATEGORY"],
        ),
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


def _check_local_cache(cache: BaseCache) -> None:
    """``POW_REDIS_LOCAL_CACHE`` needs a Redis (or Valkey) store, whose
    servers track keys for their clients.
    """
    if not isinstance(cache, BaseRedisCache):
        raise ValueError(
            "POW_REDIS_LOCAL_CACHE needs a Redis store (POW_CACHE a RedisCache or"
            f" ValkeyCache, or POW_REDIS_URL); POW_CACHE is a {type(cache).__name__}."
        )


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


def _login_views(value: object) -> dict[str, str | None]:
    key = "POW_BLUEPRINT_LOGIN_VIEWS"

    if not isinstance(value, c.Mapping):
        raise TypeError(
            f"{key} must map blueprint names to login endpoints, such as"
            f" {{'admin': 'admin.login'}}, got {value!r}."
        )

    views: dict[str, str | None] = {}

    for name, endpoint in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key} has a key that is not a blueprint name: {name!r}.")

        views[name] = None if endpoint is None else _text(f"{key}[{name!r}]", endpoint)

    return views
