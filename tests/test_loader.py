"""Users that are not SQLAlchemy models, loaded by ``@user_loader``
(:class:`~flask_pow.LoaderUsers`): their attributes are cached, and the
loader runs only when a user must be read from the source of truth.
"""

from __future__ import annotations

import dataclasses
import typing as t

import pytest
from cachelib import SimpleCache
from flask import Flask
from flask import g

from flask_pow import LoaderUsers
from flask_pow import Pow
from flask_pow import SetupError
from flask_pow import UserMixin
from flask_pow import current_user
from flask_pow import login_user
from flask_pow import reload_user


class Person(UserMixin):
    """A user from a directory (LDAP, an API): a plain class."""

    def __init__(self, id: str, email: str, password_hash: str) -> None:
        self.id = id
        self.email = email
        self.password_hash = password_hash


@dataclasses.dataclass(frozen=True)
class Account(UserMixin):
    id: str
    email: str


class Directory:
    """The source of truth, counting its lookups."""

    def __init__(self, *users: t.Any) -> None:
        self.users = {user.id: user for user in users}
        self.lookups: list[str] = []

    def load(self, ident: str) -> t.Any:
        self.lookups.append(ident)
        return self.users.get(ident)


def make_app(model: type[t.Any], directory: Directory | None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True, SECRET_KEY="test", POW_CACHE=SimpleCache(threshold=100_000)
    )
    login_manager = Pow(app, user_model=model)

    if directory is not None:
        login_manager.user_loader(directory.load)

    @app.post("/login/<ident>")
    def login(ident: str) -> str:
        assert directory is not None
        login_user(directory.users[ident])
        return "ok"

    @app.get("/me")
    def me() -> str:
        return current_user.email if current_user else "anonymous"

    @app.get("/fresh")
    @reload_user
    def fresh() -> str:
        return str(current_user.email) if current_user else "gone"

    return app


@pytest.fixture
def directory() -> Directory:
    return Directory(Person("u1", "ada@example.com", "pbkdf2:secret"))


def test_a_plain_user_is_served_from_the_cache_without_the_loader(
    directory: Directory,
) -> None:
    client = make_app(Person, directory).test_client()
    client.post("/login/u1")

    assert [client.get("/me").text for _ in range(3)] == ["ada@example.com"] * 3
    assert directory.lookups == []


def test_the_cached_user_is_an_instance_of_the_class(directory: Directory) -> None:
    app = make_app(Person, directory)

    @app.get("/kind")
    def kind() -> str:
        return f"{type(g.current_user).__name__} {g.current_user.get_id()}"

    client = app.test_client()
    client.post("/login/u1")

    assert client.get("/kind").text == "Person u1"


def test_reload_user_calls_the_loader(directory: Directory) -> None:
    client = make_app(Person, directory).test_client()
    client.post("/login/u1")
    directory.users["u1"].email = "ada@new.example.com"

    assert client.get("/fresh").text == "ada@new.example.com"
    assert directory.lookups == ["u1"]


def test_a_user_the_loader_no_longer_finds_is_logged_out_at_reload(
    directory: Directory,
) -> None:
    client = make_app(Person, directory).test_client()
    client.post("/login/u1")
    del directory.users["u1"]

    assert client.get("/fresh").text == "gone"
    assert client.get("/me").text == "anonymous"


def test_an_excluded_attribute_is_not_cached(directory: Directory) -> None:
    app = make_app(Person, directory)

    @app.get("/hash")
    def password_hash() -> str:
        return str(hasattr(g.current_user, "password_hash"))

    client = app.test_client()
    client.post("/login/u1")

    assert client.get("/hash").text == "False"


def test_a_frozen_dataclass_user_is_rebuilt() -> None:
    directory = Directory(Account("a1", "bo@example.com"))
    client = make_app(Account, directory).test_client()
    client.post("/login/a1")

    assert client.get("/me").text == "bo@example.com"
    assert directory.lookups == []


def test_a_value_that_cannot_be_cached_names_its_attribute() -> None:
    users = LoaderUsers(Person, lambda ident: None)
    person = Person("u1", "ada@example.com", "x")
    person.email = object()  # type: ignore[assignment]

    with pytest.raises(TypeError, match="The attribute Person.email holds a object"):
        users.dump(person)


def test_data_that_is_not_a_cached_user_is_refused() -> None:
    users = LoaderUsers(Person, lambda ident: None)

    with pytest.raises(ValueError, match="not a cached Person"):
        users.load(["not", "a", "dict"])  # type: ignore[arg-type]


def test_a_user_without_an_id_cannot_be_keyed() -> None:
    users = LoaderUsers(Person, lambda ident: None)

    with pytest.raises(ValueError, match="has no id"):
        users.key(Person("", "ada@example.com", "x"))


def test_a_lost_record_is_healed_by_the_loader(directory: Directory) -> None:
    users = LoaderUsers(Person, directory.load)

    healed = users.reload_key(users.key(directory.users["u1"]))

    assert healed is directory.users["u1"]
    assert users.reload_key("Other:u1") is None


def test_no_user_loader_is_a_setup_error_at_the_first_request() -> None:
    client = make_app(Person, None).test_client()

    with pytest.raises(SetupError, match="register one"):
        client.get("/me")
