"""The extension object: registration, factories, misuse."""

from __future__ import annotations

import gc
import weakref

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_user
from tests.support.dict_users import DictUsers
from tests.support.models import Member


def make_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k"
    return app


def test_init_app_registers_extension() -> None:
    """T1: the extension is registered on the app."""
    app = make_app()
    pow = Pow(app, db=SQLAlchemy(), user_model=Member)
    assert app.extensions["pow"] is pow
    assert not hasattr(pow, "app")


def test_app_factory_pattern() -> None:
    pow = Pow(db=SQLAlchemy(), user_model=Member)
    one, two = make_app(), make_app()
    pow.init_app(one)
    pow.init_app(two, user_model=Member)

    with one.app_context():
        first = pow.credentials

    with two.app_context():
        second = pow.credentials

    assert first is not second


def test_second_init_app_raises() -> None:
    app = make_app()
    pow = Pow(app, db=SQLAlchemy(), user_model=Member)

    with pytest.raises(RuntimeError) as info:
        pow.init_app(app)

    assert str(info.value) == (
        "A 'Pow' instance has already been registered on this Flask app."
        " Import and use that instance instead."
    )


def test_use_before_init_app_raises() -> None:
    """T2: using the extension on an app it is not set up on raises."""
    pow = Pow(db=SQLAlchemy(), user_model=Member)

    with make_app().app_context(), pytest.raises(RuntimeError) as info:
        pow.credentials  # noqa: B018

    assert "Did you forget to call 'init_app'" in str(info.value)


def test_login_user_without_pow_raises() -> None:
    app = make_app()

    with app.test_request_context(), pytest.raises(RuntimeError) as info:
        login_user(Member(id=1))

    assert str(info.value).startswith("flask_pow is not set up on this application.")


def test_missing_user_source_raises() -> None:
    with pytest.raises(ValueError, match="Pow needs to know the users"):
        Pow(make_app())


def test_unmapped_user_model_raises() -> None:
    with pytest.raises(TypeError, match="must be a mapped SQLAlchemy model"):
        Pow(make_app(), db=SQLAlchemy(), user_model=dict)


def test_cached_relationships_with_an_adapter_of_ones_own_are_refused() -> None:
    app = make_app()
    app.config["POW_CACHE_RELATIONSHIPS"] = ["role"]

    with pytest.raises(ValueError, match="POW_CACHE_RELATIONSHIPS is for SQLAlchemy"):
        Pow(app, users=DictUsers())


def test_login_without_secret_key_raises_clearly() -> None:
    app = Flask(__name__)
    Pow(app, db=SQLAlchemy(), user_model=Member)

    with app.test_request_context(), pytest.raises(RuntimeError) as info:
        app.preprocess_request()
        login_user(Member(id=1, email="a@example.com"))

    assert "Set 'SECRET_KEY'" in str(info.value)


def test_an_application_is_freed_with_its_state() -> None:
    """One extension serves many applications (a test suite's factory):
    its state for each must not keep the application alive.
    """
    pow = Pow(db=SQLAlchemy(), user_model=Member)
    app = make_app()
    pow.init_app(app)
    freed = weakref.ref(app)
    del app
    gc.collect()
    assert freed() is None
