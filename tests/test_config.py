"""Configuration: defaults, validation at init_app, errors naming the key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import sys
import typing as t
import warnings

import pytest
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import RedisCache
from cachelib import SimpleCache
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_pow import InsecureTTLWarning
from flask_pow import LateSettingWarning
from flask_pow import Pow
from flask_pow import PowConfig
from flask_pow import UnsupportedSettingWarning
from flask_pow.config import KNOWN_SETTINGS
from flask_pow.config import UnknownSettingWarning
from tests.support.env import MakeEnv
from tests.support.models import Member


def setup(**config: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", **config)
    Pow(app, db=SQLAlchemy(), user_model=Member)
    return app


def test_defaults_are_set_in_app_config() -> None:
    app = setup()
    assert app.config["POW_NAMESPACE"] == "credentials"
    assert app.config["POW_SESSION_KEY"] == "pow_auth"
    assert app.config["POW_CREDENTIALS_TTL"] == dt.timedelta(minutes=30)
    assert app.config["POW_SESSION_TTL_RENEWAL"] == dt.timedelta(minutes=15)
    assert app.config["POW_ROTATION_GRACE"] == dt.timedelta(seconds=30)
    assert app.config["POW_ABSOLUTE_TTL"] is None
    assert app.config["POW_LOGIN_VIEW"] is None
    assert app.config["POW_LOGIN_MESSAGE"] == "Please log in to access this page."
    assert app.config["POW_LOGIN_MESSAGE_CATEGORY"] == "message"
    assert app.config["POW_BLUEPRINT_LOGIN_VIEWS"] == {}
    assert app.config["POW_SYNC_ON_COMMIT"] is True


def test_durations_accept_seconds_and_timedelta() -> None:
    app = setup(
        POW_CREDENTIALS_TTL=600, POW_SESSION_TTL_RENEWAL=dt.timedelta(minutes=5)
    )

    with app.app_context():
        config = app.extensions["pow"].config

    assert (config.credentials_ttl, config.session_ttl_renewal) == (600, 300)


@pytest.mark.parametrize(
    ("key", "value", "error", "message"),
    [
        (
            "POW_CREDENTIALS_TTL",
            "30m",
            TypeError,
            "POW_CREDENTIALS_TTL must be a timedelta or a number of seconds,"
            " got '30m'.",
        ),
        (
            "POW_CREDENTIALS_TTL",
            0,
            ValueError,
            "POW_CREDENTIALS_TTL must be at least 1 seconds, got 0.",
        ),
        (
            "POW_CREDENTIALS_TTL",
            True,
            TypeError,
            "POW_CREDENTIALS_TTL must be a timedelta or a number of seconds, got True.",
        ),
        (
            "POW_SESSION_TTL_RENEWAL",
            -1,
            ValueError,
            "POW_SESSION_TTL_RENEWAL must be at least 0 seconds, got -1.",
        ),
        (
            "POW_ROTATION_GRACE",
            1.5,
            ValueError,
            "POW_ROTATION_GRACE must be a whole number of seconds (the cache counts"
            " in seconds), got 1.5.",
        ),
        (
            "POW_ABSOLUTE_TTL",
            0,
            ValueError,
            "POW_ABSOLUTE_TTL must be at least 1 seconds, got 0.",
        ),
        (
            "POW_NAMESPACE",
            "",
            ValueError,
            "POW_NAMESPACE must be a non-empty string, got ''.",
        ),
        (
            "POW_NAMESPACE",
            "app{1}",
            ValueError,
            "POW_NAMESPACE must not contain '{' or '}' (Redis Cluster hash tags),"
            " got 'app{1}'.",
        ),
        (
            "POW_SESSION_KEY",
            "my key",
            ValueError,
            "POW_SESSION_KEY must not contain white space, got 'my key'.",
        ),
        (
            "POW_LOGIN_VIEW",
            42,
            ValueError,
            "POW_LOGIN_VIEW must be a non-empty string, got 42.",
        ),
        (
            "POW_CACHE_EXCLUDE",
            "password",
            TypeError,
            "POW_CACHE_EXCLUDE must be a list of column name patterns, got"
            " 'password'. Write ['password'] for a single one.",
        ),
        (
            "POW_RELOAD",
            "yes",
            TypeError,
            "POW_RELOAD must be True or False, got 'yes'.",
        ),
        (
            "POW_RELOAD_BLUEPRINTS",
            "admin",
            TypeError,
            "POW_RELOAD_BLUEPRINTS must be a list of names, got 'admin'."
            " Write ['admin'] for a single one.",
        ),
        (
            "POW_RELOAD_BLUEPRINTS",
            ["admin", 3],
            ValueError,
            "POW_RELOAD_BLUEPRINTS must contain only non-empty strings, got 3.",
        ),
        (
            "POW_SYNC_ON_COMMIT",
            1,
            TypeError,
            "POW_SYNC_ON_COMMIT must be True or False, got 1.",
        ),
        (
            "POW_LOGIN_MESSAGE",
            ["Log in"],
            TypeError,
            "POW_LOGIN_MESSAGE must be a string, or None to flash nothing, got"
            " ['Log in'].",
        ),
        (
            "POW_LOGIN_MESSAGE_CATEGORY",
            "",
            ValueError,
            "POW_LOGIN_MESSAGE_CATEGORY must be a non-empty string, got ''.",
        ),
        (
            "POW_BLUEPRINT_LOGIN_VIEWS",
            ["admin.login"],
            TypeError,
            "POW_BLUEPRINT_LOGIN_VIEWS must map blueprint names to login"
            " endpoints or URLs, such as {'admin': 'admin.login'}, got"
            " ['admin.login'].",
        ),
        (
            "POW_BLUEPRINT_LOGIN_VIEWS",
            {"admin": ""},
            ValueError,
            "POW_BLUEPRINT_LOGIN_VIEWS['admin'] must be a non-empty string, got ''.",
        ),
        (
            "POW_CACHE",
            {"type": "redis"},
            TypeError,
            "POW_CACHE must be a cachelib cache such as"
            " cachelib.FileSystemCache('/var/cache/myapp') or"
            " cachelib.RedisCache(...), got {'type': 'redis'}.",
        ),
    ],
)
def test_bad_value_raises_naming_key(
    key: str, value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        setup(**{key: value})

    assert str(info.value) == message


def test_renewal_not_below_ttl_raises() -> None:
    with pytest.raises(ValueError, match=r"^POW_SESSION_TTL_RENEWAL \(1800 s\) must"):
        setup(POW_SESSION_TTL_RENEWAL=1800)


def test_grace_not_below_ttl_raises() -> None:
    with pytest.raises(ValueError, match=r"^POW_ROTATION_GRACE \(1800 s\) must"):
        setup(POW_ROTATION_GRACE=1800)


def test_excluding_primary_key_raises() -> None:
    with pytest.raises(ValueError, match="excludes 'id', a primary key column"):
        setup(POW_CACHE_EXCLUDE=["i*"])


def test_ttl_above_30_minutes_warns_once() -> None:
    """T21: an idle timeout above OWASP's 30 minutes warns."""
    with pytest.warns(InsecureTTLWarning, match="OWASP") as record:
        setup(POW_CREDENTIALS_TTL=dt.timedelta(minutes=30, seconds=1))

    assert len(record) == 1


def test_ttl_of_30_minutes_does_not_warn() -> None:
    setup(POW_CREDENTIALS_TTL=dt.timedelta(minutes=30))


def test_given_cache_is_used() -> None:
    cache = SimpleCache(threshold=100_000)
    app = setup(POW_CACHE=cache)

    with app.app_context():
        assert app.extensions["pow"].config.cache is cache


def test_long_idle_timeout_can_be_accepted() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setup(POW_CREDENTIALS_TTL=dt.timedelta(days=2), POW_ACCEPT_LONG_IDLE=True)


def test_long_idle_warning_says_how_to_accept_it() -> None:
    with pytest.warns(InsecureTTLWarning, match="POW_ACCEPT_LONG_IDLE = True"):
        setup(POW_CREDENTIALS_TTL=3600)


def test_unknown_setting_warns_with_the_closest_key() -> None:
    with pytest.warns(UnknownSettingWarning) as record:
        setup(POW_CREDENTIAL_TTL=600)

    assert [str(w.message) for w in record] == [
        "'POW_CREDENTIAL_TTL' is not a flask_pow setting, and is ignored. Did you"
        " mean 'POW_CREDENTIALS_TTL'?"
    ]


def test_unknown_setting_without_a_close_key_warns() -> None:
    with pytest.warns(UnknownSettingWarning) as record:
        setup(POW_ZZZ=1)

    assert [str(w.message) for w in record] == [
        "'POW_ZZZ' is not a flask_pow setting, and is ignored."
    ]


def test_every_default_is_a_known_setting() -> None:
    app = setup()
    assert {k for k in app.config if k.startswith("POW_")} == KNOWN_SETTINGS


def test_a_default_changed_in_place_changes_no_other_app() -> None:
    first, second = setup(), setup()
    first.config["POW_BLUEPRINT_LOGIN_VIEWS"]["admin"] = "admin.login"

    assert second.config["POW_BLUEPRINT_LOGIN_VIEWS"] == {}
    assert setup().config["POW_BLUEPRINT_LOGIN_VIEWS"] == {}


def read_config(**config: t.Any) -> PowConfig:
    """The settings ``init_app`` read from this config."""
    app = setup(**config)

    with app.app_context():
        return t.cast(PowConfig, app.extensions["pow"].config)


def test_the_defaults_read_into_pow_config() -> None:
    app = setup()

    with app.app_context():
        config = dataclasses.asdict(app.extensions["pow"].config)

    del config["cache"]
    assert config == {
        "namespace": "credentials",
        "session_key": "pow_auth",
        "credentials_ttl": 1800,
        "session_ttl_renewal": 900,
        "rotation_grace": 30,
        "absolute_ttl": None,
        "max_sessions": 100,
        "cache_exclude": app.config["POW_CACHE_EXCLUDE"],
        "cache_relationships": (),
        "login_view": None,
        "reload": False,
        "reload_blueprints": frozenset(),
        "blueprint_login_views": {},
        "login_message": "Please log in to access this page.",
        "login_message_category": "message",
        "freshness": None,
        "refresh_view": None,
        "needs_refresh_message": "Please reauthenticate to access this page.",
        "needs_refresh_message_category": "message",
        "remember_cookie_name": "remember_token",
        "remember_ttl": 30 * 24 * 3600,
        "remember_cookie": {},
        "testing_store": False,
        "sync_on_commit": True,
        "redis_local_cache": False,
        "redis_local_cache_ttl": 10,
        "redis_local_cache_staleness": 0.25,
        "redis_local_cache_max_entries": 10_000,
        "redis_local_cache_max_bytes": 32 * 1024 * 1024,
    }


def store_of(app: Flask) -> BaseCache:
    with app.app_context():
        return t.cast(BaseCache, app.extensions["pow"].config.cache)


def test_testing_without_a_store_keeps_sessions_in_memory() -> None:
    assert type(store_of(setup(TESTING=True))) is SimpleCache


def test_testing_store_is_each_applications_own() -> None:
    assert store_of(setup(TESTING=True)) is not store_of(setup(TESTING=True))


def test_testing_store_never_evicts_live_sessions() -> None:
    """cachelib reads ``threshold=0`` as 500 items, and evicts past it."""
    store = store_of(setup(TESTING=True))
    assert store._threshold == sys.maxsize  # type: ignore[attr-defined]


def test_testing_store_writes_nothing_in_the_instance_folder(
    make_env: MakeEnv,
) -> None:
    env = make_env(POW_CACHE=None)
    client = env.app.test_client()
    env.login(client, env.add_user())

    assert env.me(client) == "ada@example.com free"
    assert not os.path.exists(env.app.instance_path)


def test_testing_with_pow_cache_uses_that_cache(tmp_path: pathlib.Path) -> None:
    cache = FileSystemCache(str(tmp_path / "pow"), threshold=0)
    assert store_of(setup(TESTING=True, POW_CACHE=cache)) is cache


def test_testing_with_a_redis_url_uses_redis() -> None:
    # The client connects at its first command: no server is needed here.
    app = setup(TESTING=True, POW_REDIS_URL="redis://127.0.0.1:1/0")
    assert isinstance(store_of(app), RedisCache)


def set_up_by(path: str, **config: t.Any) -> None:
    """Set flask_pow up on a new application, one of the two ways."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", **config)

    if path == "Pow(app)":
        Pow(app, db=SQLAlchemy(), user_model=Member)
    else:
        Pow().init_app(app, db=SQLAlchemy(), user_model=Member)


@pytest.mark.parametrize("path", ["Pow(app)", "init_app(app)"])
def test_unknown_setting_warning_points_at_the_callers_line(path: str) -> None:
    with pytest.warns(UnknownSettingWarning) as record:
        set_up_by(path, POW_ZZZ=1)

    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("path", ["Pow(app)", "init_app(app)"])
def test_long_idle_warning_points_at_the_callers_line(path: str) -> None:
    with pytest.warns(InsecureTTLWarning) as record:
        set_up_by(path, POW_CREDENTIALS_TTL=3600)

    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("path", ["Pow(app)", "init_app(app)"])
def test_small_threshold_warning_points_at_the_callers_line(path: str) -> None:
    with pytest.warns(UserWarning, match="threshold=500") as record:
        set_up_by(path, POW_CACHE=SimpleCache())

    assert [w.filename for w in record] == [__file__]


def late_warnings(app: Flask, requests: int = 1) -> list[str]:
    """The late-setting warnings the application's first requests give."""
    client = app.test_client()

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")

        for _ in range(requests):
            client.get("/")

    return [str(w.message) for w in record if w.category is LateSettingWarning]


def test_setting_changed_after_init_app_warns_at_the_first_request() -> None:
    app = setup()
    app.config["POW_CACHE"] = SimpleCache(threshold=100_000)

    assert late_warnings(app) == [
        "POW_CACHE changed in the application's config after flask_pow read its"
        " settings in init_app, and flask_pow ignores the change: it goes on with"
        " what init_app read. Set these keys before Pow(app) or init_app(app), or"
        " call init_app after setting them (an application factory does both in"
        " order)."
    ]


def test_flask_login_key_changed_after_init_app_is_named_in_the_warning() -> None:
    app = setup()
    app.config["REMEMBER_COOKIE_NAME"] = "keep_me"

    (message,) = late_warnings(app)
    assert message.startswith("REMEMBER_COOKIE_NAME changed")
    assert "POW_" not in message


def test_late_setting_warning_is_given_once() -> None:
    app = setup()
    app.config["POW_NAMESPACE"] = "other"

    assert len(late_warnings(app, requests=3)) == 1


def test_late_setting_warning_names_every_changed_key() -> None:
    app = setup()
    app.config["POW_RELOAD"] = True
    app.config["POW_CREDENTIAL_TTL"] = 600  # added after init_app
    del app.config["POW_LOGIN_VIEW"]

    (message,) = late_warnings(app)
    assert message.startswith("POW_CREDENTIAL_TTL, POW_LOGIN_VIEW, POW_RELOAD changed")


def test_list_changed_in_place_after_init_app_warns() -> None:
    app = setup(POW_RELOAD_BLUEPRINTS=["admin"])
    app.config["POW_RELOAD_BLUEPRINTS"].append("api")

    (message,) = late_warnings(app)
    assert message.startswith("POW_RELOAD_BLUEPRINTS changed")


def test_an_equal_new_cache_object_counts_as_a_change() -> None:
    """Objects are compared by identity: flask_pow uses the one init_app
    read, whatever the new one's ``==`` says.
    """

    class EqualCache(SimpleCache):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, EqualCache)

        __hash__ = SimpleCache.__hash__

    app = setup(POW_CACHE=EqualCache(threshold=100_000))
    app.config["POW_CACHE"] = EqualCache(threshold=100_000)

    (message,) = late_warnings(app)
    assert message.startswith("POW_CACHE changed")


def test_settings_set_again_to_what_init_app_read_do_not_warn() -> None:
    cache = SimpleCache(threshold=100_000)
    app = setup(POW_CACHE=cache, POW_RELOAD_BLUEPRINTS=["admin"])
    app.config.update(POW_CACHE=cache, POW_RELOAD_BLUEPRINTS=["admin"])
    app.config["POW_CREDENTIALS_TTL"] = dt.timedelta(minutes=30)  # the default
    cache.set("the application's own", 1)  # the same object, used

    assert late_warnings(app) == []


# -- Flask-Login's REMEMBER_COOKIE_* keys -----------------------------------------


def test_flask_logins_remember_cookie_name_is_read() -> None:
    assert read_config(REMEMBER_COOKIE_NAME="keep_me").remember_cookie_name == "keep_me"


def test_flask_logins_remember_cookie_name_is_set_as_the_pow_key() -> None:
    app = setup(REMEMBER_COOKIE_NAME="keep_me")
    assert app.config["POW_REMEMBER_COOKIE_NAME"] == "keep_me"


def test_flask_logins_remember_cookie_duration_is_read() -> None:
    config = read_config(REMEMBER_COOKIE_DURATION=dt.timedelta(days=14))
    assert config.remember_ttl == 14 * 24 * 3600


def test_flask_logins_remember_cookie_duration_takes_seconds() -> None:
    assert read_config(REMEMBER_COOKIE_DURATION=3600).remember_ttl == 3600


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("domain", "example.com"),
        ("path", "/app"),
        ("secure", True),
        ("httponly", False),
        ("samesite", "Strict"),
    ],
)
def test_flask_logins_remember_cookie_flags_are_read(flag: str, value: object) -> None:
    config = read_config(**{f"REMEMBER_COOKIE_{flag.upper()}": value})
    assert config.remember_cookie == {flag: value}


@pytest.mark.parametrize(
    ("both", "field", "ours"),
    [
        (
            {"POW_REMEMBER_COOKIE_NAME": "ours", "REMEMBER_COOKIE_NAME": "theirs"},
            "remember_cookie_name",
            "ours",
        ),
        (
            {"POW_REMEMBER_TTL": 600, "REMEMBER_COOKIE_DURATION": 900},
            "remember_ttl",
            600,
        ),
    ],
)
def test_pow_key_wins_over_flask_logins(
    both: dict[str, t.Any], field: str, ours: object
) -> None:
    assert getattr(read_config(**both), field) == ours


def test_pow_cookie_flag_wins_over_flask_logins() -> None:
    config = read_config(
        POW_REMEMBER_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_SAMESITE="Strict"
    )
    assert config.remember_cookie == {"samesite": "Lax"}


def test_bad_flask_login_value_raises_naming_its_key() -> None:
    with pytest.raises(TypeError) as info:
        setup(REMEMBER_COOKIE_DURATION="1y")

    assert str(info.value) == (
        "REMEMBER_COOKIE_DURATION must be a timedelta or a number of seconds, got '1y'."
    )


def test_refresh_each_request_warns_naming_what_flask_pow_does() -> None:
    with pytest.warns(UnsupportedSettingWarning) as record:
        setup(REMEMBER_COOKIE_REFRESH_EACH_REQUEST=True)

    assert [str(w.message) for w in record] == [
        "REMEMBER_COOKIE_REFRESH_EACH_REQUEST is a Flask-Login setting that"
        " flask_pow does not honour: a remember-me credential, and its cookie,"
        " last POW_REMEMBER_TTL (or login_user()'s duration) from the login"
        " however often they are used; a used cookie is replaced, with the same"
        " expiry. To keep users logged in longer, raise POW_REMEMBER_TTL. Remove"
        " it from the config."
    ]


def test_refresh_each_request_off_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setup(REMEMBER_COOKIE_REFRESH_EACH_REQUEST=False)


@pytest.mark.parametrize("path", ["Pow(app)", "init_app(app)"])
def test_refresh_each_request_warning_points_at_the_callers_line(path: str) -> None:
    with pytest.warns(UnsupportedSettingWarning) as record:
        set_up_by(path, REMEMBER_COOKIE_REFRESH_EACH_REQUEST=True)

    assert [w.filename for w in record] == [__file__]


def test_flask_login_key_changed_after_init_app_warns() -> None:
    app = setup(REMEMBER_COOKIE_NAME="keep_me")
    app.config["REMEMBER_COOKIE_NAME"] = "other"

    (message,) = late_warnings(app)
    assert message.startswith("REMEMBER_COOKIE_NAME changed")
