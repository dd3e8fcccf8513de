"""The freshness recipes of docs/freshness.rst (example/recipes.py), run."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from cachelib import BaseCache
from flask import Flask
from flask.testing import FlaskClient

from example import recipes
from flask_pow import login_user


@pytest.fixture
def app(cache: BaseCache, tmp_path: t.Any) -> Flask:
    app = recipes.create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test secret key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'recipes.db'}",
            "POW_CACHE": cache,
        }
    )

    @app.post("/test-login/<email>")
    def test_login(email: str) -> str:
        user = recipes.db.session.scalar(
            sa.select(recipes.User).where(recipes.User.email == email)
        )
        login_user(user)
        return "ok"

    with app.app_context():
        recipes.db.create_all()
        recipes.db.session.add(recipes.User(email="ada@example.com", plan="pro"))
        recipes.db.session.commit()

    return app


@pytest.fixture
def ada(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.post("/test-login/ada@example.com")
    return client


def set_plan(app: Flask, plan: str) -> None:
    with app.app_context():
        recipes.db.session.execute(sa.update(recipes.User).values(plan=plan))
        recipes.db.session.commit()


def test_reload_in_view_sees_downgrade_at_once(app: Flask, ada: FlaskClient) -> None:
    assert ada.get("/pro/report").status_code == 200
    set_plan(app, "free")
    assert ada.get("/pro/report").status_code == 403


def test_reload_blueprint_sees_database(app: Flask, ada: FlaskClient) -> None:
    set_plan(app, "team")
    assert ada.get("/admin/whoami").get_data(as_text=True) == ("ada@example.com (team)")


def cached_plan(app: Flask) -> str:
    with app.app_context():
        [user] = app.extensions["pow"].credentials.users()

    return str(user.plan)


def test_plan_change_reaches_cache(app: Flask, ada: FlaskClient) -> None:
    response = ada.post("/plan", data={"plan": "team"})
    assert response.get_data(as_text=True) == "plan changed to team"
    assert cached_plan(app) == "team"


def test_background_job_updates_cache(app: Flask, ada: FlaskClient) -> None:
    with app.app_context():
        recipes.downgrade_expired_trials(["ada@example.com"])

    assert cached_plan(app) == "free"
