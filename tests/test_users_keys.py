"""User keys name a user's records in the store: no two users may share
one, whatever their primary keys hold.
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from flask import Flask
from flask import g
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import identity_key
from flask_pow import login_user
from tests.support.dict_users import DictUsers


def composite_app(cache: BaseCache, tmp_path: t.Any) -> tuple[Flask, SQLAlchemy, t.Any]:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test secret key",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'keys.db'}",
        POW_CACHE=cache,
    )
    db = SQLAlchemy(model_class=type("B", (sa_orm.DeclarativeBase,), {}))

    class Member(db.Model):  # type: ignore[name-defined,misc]
        org: sa_orm.Mapped[str] = sa_orm.mapped_column(primary_key=True)
        name: sa_orm.Mapped[str] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str]

    db.init_app(app)
    Pow(app, db=db, user_model=Member)

    with app.app_context():
        db.create_all()

    @app.post("/login/<org>/<name>")
    def login(org: str, name: str) -> str:
        login_user(db.session.get(Member, (org, name)))
        return "ok"

    @app.get("/me")
    def me() -> str:
        return g.current_user.email if g.current_user else "anonymous"

    return app, db, Member


@pytest.mark.backends
def test_composite_keys_whose_parts_hold_separators_do_not_collide(
    cache: BaseCache, tmp_path: t.Any
) -> None:
    """Without escaping, both rows below had the key
    ``Member:name=x,org=y,org=z``, and the second login overwrote what the
    first user's session loads.
    """
    app, db, Member = composite_app(cache, tmp_path)

    with app.app_context():
        db.session.add(Member(org="z", name="x,org=y", email="one@example.com"))
        db.session.add(Member(org="y,org=z", name="x", email="two@example.com"))
        db.session.commit()

    one, two = app.test_client(), app.test_client()
    one.post("/login/z/x,org=y")
    two.post("/login/y,org=z/x")
    assert one.get("/me").text == "one@example.com"
    assert two.get("/me").text == "two@example.com"


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ((("org", "a"), ("name", "x,org=b")), (("org", "a,name=x"), ("name", "b"))),
        ((("a", "1%2C2"),), (("a", "1,2"),)),
        ((("a", "x y"),), (("a", "x%20y"),)),
    ],
)
def test_identity_key_is_unambiguous(
    one: tuple[tuple[str, str], ...], two: tuple[tuple[str, str], ...]
) -> None:
    assert identity_key("Member", *one) != identity_key("Member", *two)


def test_identity_key_of_one_integer_reads_as_it_is() -> None:
    assert identity_key("User", ("id", 42)) == "User:42"


@pytest.mark.parametrize("key", ["42", "", ":42", "User:", "User:4 2", 42, None])
def test_login_with_a_key_that_has_no_kind_is_refused(
    cache: BaseCache, key: t.Any
) -> None:
    """A custom adapter returning ``str(user.id)`` would give users of two
    kinds one key: refused at login, with what a key must look like.
    """

    class BareKeys(DictUsers):
        def key(self, user: dict[str, t.Any]) -> str:
            return t.cast(str, key)

    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret key", POW_CACHE=cache)
    Pow(app, users=BareKeys())

    @app.post("/login")
    def login() -> str:
        login_user({"id": 1})
        return "ok"

    app.config["PROPAGATE_EXCEPTIONS"] = True

    with pytest.raises(ValueError, match="flask_pow.identity_key"):
        app.test_client().post("/login")
