"""The Flask-SQLAlchemy user adapter."""

from __future__ import annotations

import enum

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask_sqlalchemy import SQLAlchemy

from flask_pow import SQLAlchemyUsers
from flask_pow.config import DEFAULT_CACHE_EXCLUDE


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Base(sa_orm.DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str]
    plan: sa_orm.Mapped[Plan] = sa_orm.mapped_column(sa.Enum(Plan))
    password_hash: sa_orm.Mapped[str | None]
    totp_secret: sa_orm.Mapped[str | None]
    reset_token: sa_orm.Mapped[str | None]
    settings: sa_orm.Mapped[dict[str, object] | None] = sa_orm.mapped_column(sa.JSON)


class Membership(Base):
    __tablename__ = "membership"
    some_id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    another_id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)


class Blob(Base):
    __tablename__ = "blob"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    shape: sa_orm.Mapped[object] = sa_orm.mapped_column(sa.PickleType)


def adapter(model: type[object]) -> SQLAlchemyUsers[object]:
    return SQLAlchemyUsers(SQLAlchemy(), model, exclude=DEFAULT_CACHE_EXCLUDE)


def account() -> Account:
    return Account(
        id=7,
        email="ada@example.com",
        plan=Plan.PRO,
        password_hash="pbkdf2$x",
        totp_secret="base32",
        reset_token="t",
        settings={"theme": "dark"},
    )


def test_key_is_model_and_primary_key() -> None:
    assert adapter(Account).key(account()) == "Account:7"


def test_composite_primary_key_is_sorted() -> None:
    """T26: composite primary keys are sorted by name."""
    users = adapter(Membership)
    assert users.key(Membership(some_id=1, another_id=2)) == (
        "Membership:another_id=2,some_id=1"
    )


def test_key_of_unsaved_user_raises() -> None:
    with pytest.raises(ValueError, match="The primary key 'id' of this Account"):
        adapter(Account).key(Account(email="x"))


def test_dump_leaves_out_secret_columns() -> None:
    assert adapter(Account).dump(account()) == {
        "id": 7,
        "email": "ada@example.com",
        "plan": "PRO",
        "settings": {"theme": "dark"},
    }


def test_load_restores_values_and_enum() -> None:
    users = adapter(Account)
    user = users.load(users.dump(account()))
    assert isinstance(user, Account)
    assert (user.id, user.email, user.plan) == (7, "ada@example.com", Plan.PRO)


def test_loaded_user_is_detached_and_clean() -> None:
    users = adapter(Account)
    state = sa.inspect(users.load(users.dump(account())))
    assert state.detached
    assert not state.modified


def test_load_of_foreign_data_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a cached Account"):
        adapter(Account).load({"email": "no id"})


def test_load_of_unknown_enum_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a cached Account"):
        adapter(Account).load({"id": 1, "plan": "GOLD"})


def test_unstorable_column_names_the_fix() -> None:
    with pytest.raises(TypeError) as info:
        adapter(Blob).dump(Blob(id=1, shape=object()))

    assert str(info.value) == (
        "The column Blob.shape holds a object, which flask_pow cannot cache."
        " Add it to POW_CACHE_EXCLUDE."
    )


def test_label_prefers_email() -> None:
    assert adapter(Account).label(account()) == "ada@example.com"


def test_label_is_none_without_readable_column() -> None:
    assert adapter(Membership).label(Membership(some_id=1, another_id=2)) is None


def test_cached_columns_lists_what_is_stored() -> None:
    assert adapter(Account).cached_columns == ["id", "email", "plan", "settings"]
