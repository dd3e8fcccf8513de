"""The extension object: registration, factories, misuse."""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import sqlalchemy.orm as sa_orm
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_pow import MissingUserMixinWarning
from flask_pow import Pow
from flask_pow import SQLAlchemyUsers
from flask_pow import UserMixin
from flask_pow import login_user
from tests.support.dict_users import DictUsers
from tests.support.models import Base
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


class Bare(Base):
    __tablename__ = "bare"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)


class Mixed(UserMixin, Base):
    __tablename__ = "mixed"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)


class SelfAuthenticated(Base):
    __tablename__ = "self_authenticated"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)

    @property
    def is_authenticated(self) -> bool:
        return True


def test_model_without_is_authenticated_warns_naming_user_mixin() -> None:
    with pytest.warns(MissingUserMixinWarning) as record:
        Pow(make_app(), db=SQLAlchemy(), user_model=Bare)

    assert [str(w.message) for w in record] == [
        "The user model Bare has no 'is_authenticated': for a logged-in user,"
        " current_user.is_authenticated raises AttributeError, and a template"
        " that tests it shows everyone as anonymous. Add flask_pow.UserMixin to"
        " the model (class Bare(UserMixin, db.Model)), or give it an"
        " is_authenticated property."
    ]


def test_missing_user_mixin_warning_points_at_the_callers_line() -> None:
    with pytest.warns(MissingUserMixinWarning) as record:
        Pow().init_app(make_app(), db=SQLAlchemy(), user_model=Bare)

    assert [w.filename for w in record] == [__file__]


def test_sqlalchemy_adapter_given_as_users_warns_for_its_model() -> None:
    with pytest.warns(MissingUserMixinWarning):
        Pow(make_app(), users=SQLAlchemyUsers(SQLAlchemy(), Bare))


@pytest.mark.parametrize("model", [Mixed, SelfAuthenticated], ids=["mixin", "own"])
def test_model_with_is_authenticated_does_not_warn(model: type[Base]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pow(make_app(), db=SQLAlchemy(), user_model=model)


def test_adapter_without_a_model_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pow(make_app(), users=DictUsers())
