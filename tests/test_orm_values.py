"""What a user typed into a JSON column comes back from the cache as it
went in, on every backend.
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from flask import Flask
from flask import g
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_user

#: Each store serializes the values itself: every test on every store.
pytestmark = pytest.mark.backends

SETTINGS = {
    "theme": "dark",
    "\x00dt": "2026-01-01T00:00:00",
    "nested": [{"\x00set": [1, 2]}, {"\x00b": "not base64!"}],
}


def build(cache: BaseCache, tmp_path: t.Any) -> Flask:
    """An app whose user has a JSON column, logged in as user 1 at
    ``POST /login``; ``GET /settings`` shows it, ``POST /mutate`` changes it
    in place without saving.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test secret key",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'values.db'}",
        POW_CACHE=cache,
    )
    db = SQLAlchemy(model_class=type("B", (sa_orm.DeclarativeBase,), {}))

    class User(db.Model):  # type: ignore[name-defined,misc]
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        settings: sa_orm.Mapped[dict[str, t.Any]] = sa_orm.mapped_column(sa.JSON)

    db.init_app(app)
    Pow(app, db=db, user_model=User)

    with app.app_context():
        db.create_all()
        db.session.add(User(id=1, settings=SETTINGS))
        db.session.commit()

    @app.post("/login")
    def login() -> str:
        login_user(db.session.get(User, 1))
        return "ok"

    @app.get("/settings")
    def settings() -> t.Any:
        value = g.current_user.settings
        return jsonify(type=type(value).__name__, value=value)

    @app.post("/mutate")
    def mutate() -> str:
        g.current_user.settings["theme"] = "changed in place"
        g.current_user.settings["nested"][0]["\x00set"].append(3)
        return "ok"

    return app


def test_json_column_shaped_like_tags_round_trips(
    cache: BaseCache, tmp_path: t.Any
) -> None:
    client = build(cache, tmp_path).test_client()
    client.post("/login")
    answer = client.get("/settings")
    assert answer.status_code == 200
    assert answer.json == {"type": "dict", "value": SETTINGS}


def test_value_changed_in_place_by_a_view_is_not_seen_by_the_next_request(
    cache: BaseCache, tmp_path: t.Any
) -> None:
    """Records are parsed once per stored bytes: each request still gets
    values of its own.
    """
    client = build(cache, tmp_path).test_client()
    client.post("/login")
    assert client.post("/mutate").status_code == 200

    assert client.get("/settings").json == {"type": "dict", "value": SETTINGS}


def test_parsed_records_stay_within_their_byte_bound() -> None:
    from flask_pow.serialization import dumps
    from flask_pow.stores import CorruptLog
    from flask_pow.stores import parsed

    records = parsed.ParsedRecords(CorruptLog(), report_undecodable=True)

    for n in range(5000):
        raw = dumps({"key": f"User:{n}", "data": {"id": n, "name": "x" * 900}})
        assert records.user(f"User:{n}", raw, f"user:{n}") == {
            "id": n,
            "name": "x" * 900,
        }

    assert records._bytes <= parsed.MAX_BYTES
    assert len(records._memo) < 5000


def test_parsed_records_without_a_memo_parse_every_read() -> None:
    from flask_pow.serialization import dumps
    from flask_pow.stores import CorruptLog
    from flask_pow.stores import parsed

    records = parsed.ParsedRecords(CorruptLog(), report_undecodable=True)
    records.max_bytes = 0
    raw = dumps({"key": "User:1", "data": {"id": 1}})

    assert records.user("User:1", raw, "user:1") == {"id": 1}
    assert records.user("User:1", raw, "user:1") == {"id": 1}
    assert records._memo == {}
