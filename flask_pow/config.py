"""The ``POW_*`` keys: one table of settings, the body of :class:`PowConfig`,
read and validated once in :meth:`~flask_pow.Pow.init_app` (docs/configuration.rst).
"""

from __future__ import annotations

import collections.abc as c
import copy
import dataclasses
import datetime as dt
import difflib
import os
import re
import sys
import typing as t
import warnings

from cachelib import BaseCache
from cachelib.redis_base import BaseRedisCache

#: Attribute names never cached (:mod:`fnmatch`, case-insensitive): secrets.
DEFAULT_CACHE_EXCLUDE: tuple[str, ...] = tuple(
    """
    *password* *passwd* *passphrase* *passcode* *pincode* pin_hash pin_digest
    *_pin_hash *_pin_digest *pass_hash* *passhash* *pw_hash* *pwhash*
    hashed_pw* *secret* *token* *salt* otp* *_otp* *totp* *hotp* *api_key*
    *apikey* *private_key* *recovery_code* *uniquifier*
    """.split()
)

#: Remember cookie flags that, unset, follow Flask's ``SESSION_COOKIE_*``.
_COOKIE_FLAGS = ("secure", "httponly", "samesite", "domain", "path")


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside flask_pow (``Pow(app)``)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)
    level = 1

    while frame.f_back and os.path.abspath(frame.f_code.co_filename).startswith(
        package
    ):
        frame = frame.f_back
        level += 1

    return level


class InsecureTTLWarning(UserWarning):
    """``POW_CREDENTIALS_TTL`` is longer than the 30 minutes OWASP recommends
    as an idle timeout; ``POW_ACCEPT_LONG_IDLE = True`` silences it.
    """


class UnknownSettingWarning(UserWarning):
    """A ``POW_*`` key in the config that flask_pow does not read: a typo?"""


class UnsupportedSettingWarning(UserWarning):
    """A Flask-Login setting flask_pow cannot honour is set; the message
    says what flask_pow does instead. Given at :meth:`~flask_pow.Pow.init_app`.
    """


class MissingUserMixinWarning(UserWarning):
    """The user model has no ``is_authenticated``: for a logged-in user,
    ``current_user.is_authenticated`` raises, and a template that tests it
    sees everyone as anonymous. Add :class:`flask_pow.UserMixin` to the model.
    """


class LateSettingWarning(UserWarning):
    """A ``POW_*`` key was set, changed or removed after
    :meth:`~flask_pow.Pow.init_app` read it; given once. See :doc:`configuration`.
    """


# -- one validator per kind of value: (key, value) -> the value to keep ------

Validator = c.Callable[[str, t.Any], t.Any]


def as_given(key: str, value: object) -> object:
    return value


def flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be True or False, got {value!r}.")

    return value


def seconds(
    minimum: float = float("-inf"), *, none: bool = False, whole: bool = True
) -> Validator:
    """Seconds from a timedelta or a number, at least ``minimum``."""

    def validate(key: str, value: object) -> float | None:
        if value is None and none:
            return None

        if isinstance(value, dt.timedelta):
            total = value.total_seconds()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total = float(value)
        else:
            kinds = "a timedelta or a number of seconds" + (", or None" if none else "")
            raise TypeError(f"{key} must be {kinds}, got {value!r}.")

        if whole and total != int(total):
            raise ValueError(
                f"{key} must be a whole number of seconds (the cache counts in"
                f" seconds), got {value!r}."
            )

        if total < minimum:
            raise ValueError(
                f"{key} must be at least {minimum} seconds, got {value!r}."
            )

        return int(total) if whole else total

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
    return lambda key, value: None if value is None else validate(key, value)


def prefix(key: str, value: object) -> str:
    name = text(key, value)

    if "{" in name or "}" in name:
        raise ValueError(
            f"{key} must not contain '{{' or '}}' (Redis Cluster hash"
            f" tags), got {name!r}."
        )

    return name


def message(key: str, value: object) -> t.Any:
    # Not only str: a lazy translation (lazy_gettext) is one when flashed.
    if isinstance(value, (bytes, int, float, list, tuple, dict, set)):
        raise TypeError(
            f"{key} must be a string, or None to flash nothing, got {value!r}."
        )

    return value or None


def names(
    what: str = "names", into: c.Callable[[tuple[str, ...]], t.Any] = tuple
) -> Validator:
    """A list of non-empty strings (not one bare string), made ``into``."""

    def validate(key: str, value: object) -> t.Any:
        if isinstance(value, (str, bytes)) or not isinstance(value, c.Iterable):
            raise TypeError(
                f"{key} must be a list of {what}, got {value!r}."
                f" Write [{value!r}] for a single one."
            )

        items = tuple(value)

        if bad := [name for name in items if not isinstance(name, str) or not name]:
            raise ValueError(
                f"{key} must contain only non-empty strings, got {bad[0]!r}."
            )

        return into(items)

    return validate


#: How a login view given as a URL starts, as Flask-Login tells one from an
#: endpoint: a path on the site, or a page elsewhere (single sign-on).
LOGIN_URL_PREFIXES = ("/", "http://", "https://")


def is_login_url(view: str) -> bool:
    """Whether a login or refresh view is a URL rather than an endpoint."""
    return view.startswith(LOGIN_URL_PREFIXES)


def login_views(key: str, value: object) -> dict[str, str | None]:
    if not isinstance(value, c.Mapping):
        raise TypeError(
            f"{key} must map blueprint names to login endpoints or URLs, such"
            f" as {{'admin': 'admin.login'}}, got {value!r}."
        )

    for name in value:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key} has a key that is not a blueprint name: {name!r}.")

    return {
        name: optional(text)(f"{key}[{name!r}]", endpoint)
        for name, endpoint in value.items()
    }


def setting(default: object, validate: Validator) -> t.Any:
    """A :class:`PowConfig` field, read from its ``POW_`` key in capitals."""
    return dataclasses.field(metadata={"setting": (default, validate)})


@dataclasses.dataclass(frozen=True)
class PowConfig:
    """The validated ``POW_*`` settings, durations in whole seconds: one row a key."""

    cache: BaseCache
    #: The ``POW_REMEMBER_COOKIE_*`` flags set, by lower-case name.
    remember_cookie: t.Mapping[str, t.Any]
    #: Whether ``cache`` is the in-memory store of an application with
    #: ``TESTING`` set and neither ``POW_CACHE`` nor ``POW_REDIS_URL``.
    testing_store: bool
    namespace: str = setting("credentials", prefix)
    session_key: str = setting("pow_auth", text)
    credentials_ttl: int = setting(dt.timedelta(minutes=30), seconds(1))
    #: ``None`` means never rotate; ``0`` means every request.
    session_ttl_renewal: int | None = setting(
        dt.timedelta(minutes=15), seconds(0, none=True)
    )
    rotation_grace: int = setting(dt.timedelta(seconds=30), seconds(0))
    absolute_ttl: int | None = setting(None, seconds(1, none=True))
    max_sessions: int = setting(100, count)
    cache_exclude: tuple[str, ...] = setting(
        DEFAULT_CACHE_EXCLUDE, names("column name patterns")
    )
    cache_relationships: tuple[str, ...] = setting((), names("relationship names"))
    login_view: str | None = setting(None, optional(text))
    reload: bool = setting(False, flag)
    reload_blueprints: frozenset[str] = setting((), names(into=frozenset))
    blueprint_login_views: c.Mapping[str, str | None] = setting({}, login_views)
    login_message: t.Any = setting("Please log in to access this page.", message)
    login_message_category: str = setting("message", text)
    freshness: int | None = setting(None, seconds(1, none=True))
    refresh_view: str | None = setting(None, optional(text))
    needs_refresh_message: t.Any = setting(
        "Please reauthenticate to access this page.", message
    )
    needs_refresh_message_category: str = setting("message", text)
    remember_cookie_name: str = setting("remember_token", text)
    remember_ttl: int = setting(dt.timedelta(days=30), seconds(60))
    sync_on_commit: bool = setting(True, flag)
    redis_local_cache: bool = setting(False, flag)
    redis_local_cache_ttl: int = setting(10, seconds(1))
    redis_local_cache_staleness: float = setting(0.25, seconds(whole=False))
    redis_local_cache_max_entries: int = setting(10_000, count)
    redis_local_cache_max_bytes: int = setting(32 * 1024 * 1024, count)


_ROWS = {
    f"POW_{f.name.upper()}": f for f in dataclasses.fields(PowConfig) if f.metadata
}
#: Every key flask_pow reads, in the order it checks them: (default, validator).
SETTINGS: dict[str, tuple[object, Validator]] = {
    "POW_CACHE": (None, as_given),
    "POW_REDIS_URL": (None, as_given),
    **{f"POW_REMEMBER_COOKIE_{f.upper()}": (None, as_given) for f in _COOKIE_FLAGS},
    "POW_ACCEPT_LONG_IDLE": (False, flag),
    **{key: field.metadata["setting"] for key, field in _ROWS.items()},
}
KNOWN_SETTINGS = frozenset(SETTINGS)
#: Flask-Login's remember-me keys, each read in place of the ``POW_*`` key
#: it names when that one is not set (so Flask-Login's config works as it is).
FLASK_LOGIN_SETTINGS: dict[str, str] = {
    "REMEMBER_COOKIE_NAME": "POW_REMEMBER_COOKIE_NAME",
    "REMEMBER_COOKIE_DURATION": "POW_REMEMBER_TTL",
    **{
        f"REMEMBER_COOKIE_{f.upper()}": f"POW_REMEMBER_COOKIE_{f.upper()}"
        for f in _COOKIE_FLAGS
    },
}
#: Flask-Login's keys that flask_pow cannot honour, and what it does instead.
UNSUPPORTED_FLASK_LOGIN_SETTINGS: dict[str, str] = {
    "REMEMBER_COOKIE_REFRESH_EACH_REQUEST": (
        "a remember-me credential, and its cookie, last POW_REMEMBER_TTL (or"
        " login_user()'s duration) from the login however often they are used;"
        " a used cookie is replaced, with the same expiry. To keep users logged"
        " in longer, raise POW_REMEMBER_TTL"
    ),
}


def load_config(config: c.MutableMapping[str, t.Any], instance_path: str) -> PowConfig:
    """Set the ``POW_*`` defaults in ``config``, validate, warn of unknown keys."""
    for key in config:
        if key.startswith("POW_") and key not in KNOWN_SETTINGS:
            close = difflib.get_close_matches(key, sorted(KNOWN_SETTINGS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            warnings.warn(
                f"{key!r} is not a flask_pow setting, and is ignored.{hint}",
                UnknownSettingWarning,
                stacklevel=caller_stacklevel(),
            )

    _read_flask_login_settings(config)

    # A copy: a default dict changed in one app's config would change others'.
    for key, (default, _) in SETTINGS.items():
        config.setdefault(key, copy.copy(default))

    checked = {key: check(key, config[key]) for key, (_, check) in SETTINGS.items()}
    values = {field.name: checked[key] for key, field in _ROWS.items()}
    ttl = values["credentials_ttl"]

    if (renewal := values["session_ttl_renewal"]) is not None and renewal >= ttl:
        raise ValueError(
            f"POW_SESSION_TTL_RENEWAL ({renewal} s) must be shorter than"
            f" POW_CREDENTIALS_TTL ({ttl} s), or a session ends before it is"
            " renewed. Lower it, or set it to None to never rotate."
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

    if ttl > 1800 and not checked["POW_ACCEPT_LONG_IDLE"]:
        warnings.warn(
            f"POW_CREDENTIALS_TTL is {ttl} s, above OWASP's 30 minutes of idle"
            " timeout: lower it, or set POW_ACCEPT_LONG_IDLE = True if deliberate.",
            InsecureTTLWarning,
            stacklevel=caller_stacklevel(),
        )

    given, url = checked["POW_CACHE"], checked["POW_REDIS_URL"]
    testing_store = given is None and url is None and bool(config.get("TESTING"))
    cache = _testing_store() if testing_store else _cache(given, url, instance_path)

    if values["redis_local_cache"] and not isinstance(cache, BaseRedisCache):
        raise ValueError(
            "POW_REDIS_LOCAL_CACHE needs a Redis store (POW_CACHE a RedisCache or"
            f" ValkeyCache, or POW_REDIS_URL); POW_CACHE is a {type(cache).__name__}."
        )

    flags = {f: checked[f"POW_REMEMBER_COOKIE_{f.upper()}"] for f in _COOKIE_FLAGS}
    remember_cookie = {f: value for f, value in flags.items() if value is not None}
    return PowConfig(
        cache=cache,
        remember_cookie=remember_cookie,
        testing_store=testing_store,
        **values,
    )


def _read_flask_login_settings(config: c.MutableMapping[str, t.Any]) -> None:
    """Set each ``POW_*`` key that is not set from the Flask-Login key that
    stands in for it, checked under that key's name; warn of the Flask-Login
    keys that cannot be honoured.
    """
    for key, pow_key in FLASK_LOGIN_SETTINGS.items():
        # The cookie flags' unset value is None.
        if key in config and config.get(pow_key) is None:
            SETTINGS[pow_key][1](key, config[key])
            config[pow_key] = config[key]

    for key, instead in UNSUPPORTED_FLASK_LOGIN_SETTINGS.items():
        if config.get(key):
            warnings.warn(
                f"{key} is a Flask-Login setting that flask_pow does not"
                f" honour: {instead}. Remove it from the config.",
                UnsupportedSettingWarning,
                stacklevel=caller_stacklevel(),
            )


def _is_read(key: str) -> bool:
    """Whether ``init_app`` reads this config key."""
    return key.startswith("POW_") or key in FLASK_LOGIN_SETTINGS


def _is_data(value: object) -> bool:
    # Plain data is compared by equality with a copy, other objects by identity.
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]

    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_data(item) for item in value)

    return isinstance(value, (type(None), bool, int, float, str, bytes, dt.timedelta))


def read_settings(config: c.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Every key of the config ``init_app`` reads (``POW_*``, and
    Flask-Login's that stand in for them), plain data copied.
    """
    return {
        key: copy.deepcopy(value) if _is_data(value) else value
        for key, value in config.items()
        if _is_read(key)
    }


def changed_settings(
    read: c.Mapping[str, t.Any], config: c.Mapping[str, t.Any]
) -> list[str]:
    """The keys ``init_app`` reads added, removed or changed since ``read``."""
    gone = object()  # not data: the same only as itself
    keys = set(read).union(key for key in config if _is_read(key))
    pairs = {key: (read.get(key, gone), config.get(key, gone)) for key in keys}
    return sorted(
        key
        for key, (old, now) in pairs.items()
        if old is not now and not (_is_data(old) and _is_data(now) and old == now)
    )


def _testing_store() -> BaseCache:
    """The store of an application under test: its own, in memory, so that a
    test writes no file and sees no other test's sessions.
    """
    from cachelib import SimpleCache

    # cachelib reads threshold=0 as its default of 500 items, and evicts
    # items past the threshold, live sessions with them: this one is never
    # reached.
    return SimpleCache(threshold=sys.maxsize)


def _cache(value: object, url: object, instance_path: str) -> BaseCache:
    if url is not None:
        if value is not None:
            raise ValueError(
                "POW_CACHE and POW_REDIS_URL are both set; set only one (POW_CACHE ="
                " cachelib.RedisCache(host=client) for a client you configure)."
            )

        if not isinstance(url, str) or not re.match(r"(rediss?|unix)://", url):
            raise ValueError(
                "POW_REDIS_URL must be a redis://, rediss:// or unix:// URL, such"
                f" as 'redis://localhost:6379/0', got {url!r}."
            )

        import redis.backoff
        import redis.retry
        from cachelib import RedisCache

        # Unless the URL sets its own, a request waits at most 2 s on a server
        # gone away; one immediate retry reconnects a dropped connection.
        client = redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1),
        )
        return RedisCache(host=client)

    if value is None:
        from cachelib import FileSystemCache

        # threshold=0: cachelib's pruning would evict live sessions.
        folder = os.path.join(instance_path, "flask_pow")
        return FileSystemCache(folder, threshold=0, mode=0o600)

    if not isinstance(value, BaseCache):
        raise TypeError(
            "POW_CACHE must be a cachelib cache such as"
            " cachelib.FileSystemCache('/var/cache/myapp') or"
            f" cachelib.RedisCache(...), got {value!r}."
        )

    return value
