"""The Flask-SQLAlchemy user adapter, and the defaults of the adapter protocol."""

from __future__ import annotations

import enum
import typing as t

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm.exc import DetachedInstanceError

from flask_pow import NotCachedError
from flask_pow import SQLAlchemyUsers
from flask_pow import UserAdapter
from flask_pow.config import DEFAULT_CACHE_EXCLUDE
from flask_pow.users import as_adapter
from flask_pow.users import reloads_by_key
from tests.support.dict_users import DictUsers


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


class Profile(Base):
    """Names that look like secrets and are not, beside ones that are."""

    __tablename__ = "profile"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    avatar_hash: sa_orm.Mapped[str | None]
    content_hash: sa_orm.Mapped[str | None]
    footprint: sa_orm.Mapped[str | None]
    pw_hash: sa_orm.Mapped[str | None]
    hashed_password: sa_orm.Mapped[str | None]
    otp_seed: sa_orm.Mapped[str | None]
    fs_uniquifier: sa_orm.Mapped[str | None]
    badges: sa_orm.Mapped[list[Badge]] = sa_orm.relationship()


class Badge(Base):
    __tablename__ = "badge"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    profile_id: sa_orm.Mapped[int] = sa_orm.mapped_column(sa.ForeignKey("profile.id"))


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


def test_hash_named_columns_that_are_not_secrets_are_cached() -> None:
    assert adapter(Profile).cached_columns == [
        "id",
        "avatar_hash",
        "content_hash",
        "footprint",
    ]


def cached_profile() -> Profile:
    users = adapter(Profile)
    user = users.load(users.dump(Profile(id=1, avatar_hash="a", pw_hash="p")))
    assert isinstance(user, Profile)
    return user


def test_reading_an_excluded_column_names_the_setting() -> None:
    with pytest.raises(NotCachedError) as info:
        cached_profile().pw_hash  # noqa: B018

    assert str(info.value) == (
        "Profile.pw_hash is not in flask_pow's cache: a pattern of"
        " POW_CACHE_EXCLUDE matches it. If it is not a secret, narrow"
        " POW_CACHE_EXCLUDE to cache it; otherwise read it from the row:"
        " flask_pow.database_user(), or @reload_user on the view."
    )


def test_reading_a_relationship_says_how_to_load_it() -> None:
    with pytest.raises(NotCachedError, match="Profile.badges is a relationship"):
        cached_profile().badges  # noqa: B018


def test_not_cached_error_is_a_detached_instance_error() -> None:
    with pytest.raises(DetachedInstanceError):
        cached_profile().otp_seed  # noqa: B018


def test_any_sqlalchemy_session_refuses_a_cached_user() -> None:
    """Not only Flask-SQLAlchemy's: a cached user is never a row."""
    engine = sa.create_engine("sqlite://")

    with sa_orm.Session(engine) as session:
        with pytest.raises(InvalidRequestError, match=r"database_user\(\)"):
            session.add(cached_profile())


def test_a_row_of_the_same_model_is_not_refused() -> None:
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)

    with sa_orm.Session(engine) as session:
        session.add(Profile(id=1, pw_hash="p"))
        session.commit()


def test_column_missing_from_an_older_record_says_when_it_comes() -> None:
    users = adapter(Profile)
    data = users.dump(Profile(id=1, avatar_hash="a"))
    del data["avatar_hash"]

    user = users.load(data)
    assert isinstance(user, Profile)

    with pytest.raises(NotCachedError, match="Profile.avatar_hash is not in this"):
        user.avatar_hash  # noqa: B018


class Structural:
    """An adapter that does not subclass UserAdapter, with ids."""

    def key(self, user: dict[str, t.Any]) -> str:
        return f"User:{user['id']}"

    def dump(self, user: dict[str, t.Any]) -> dict[str, t.Any]:
        return dict(user)

    def load(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        return dict(data)

    def reload(self, user: dict[str, t.Any]) -> dict[str, t.Any] | None:
        return {**user, "reloaded": True}

    def label(self, user: dict[str, t.Any]) -> str | None:
        return None

    def key_for_id(self, ident: str) -> str:
        return f"User:{int(ident)}"


def test_an_adapter_that_does_not_subclass_gets_the_defaults() -> None:
    users = as_adapter(Structural())
    assert isinstance(users, UserAdapter)
    assert users.key({"id": 1}) == "User:1"
    assert users.key_for_id("2") == "User:2"
    assert users.is_stale({"id": 1}) is False
    assert users.row({"id": 1}) == {"id": 1, "reloaded": True}
    assert not reloads_by_key(users)


def test_a_subclass_is_its_own_adapter() -> None:
    users = DictUsers()
    assert as_adapter(users) is users
    assert users.key_for_id("1") is None
    assert not reloads_by_key(users)
    assert reloads_by_key(adapter(Profile))


def test_an_adapter_without_a_required_method_is_refused() -> None:
    class NoLabel:
        def key(self, user: t.Any) -> str:
            return "User:1"

    with pytest.raises(TypeError) as info:
        as_adapter(NoLabel())

    assert str(info.value).endswith(
        " has no dump, load, reload, label method. An adapter implements key,"
        " dump, load, reload and label: see flask_pow.UserAdapter."
    )
