"""A minimal flask_pow application: log in, see who you are, log out.

Run it with ``make demo``. It uses SQLite and the in-process cache, so there
is no server to install. Set ``POW_REDIS_URL`` (once the Redis store lands)
or ``POW_CACHE`` for a shared store.
"""

from __future__ import annotations

import os
import pathlib
import secrets

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask import Flask
from flask import flash
from flask import redirect
from flask import render_template_string
from flask import request
from flask import url_for
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response

from flask_pow import Pow
from flask_pow import current_session
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_user

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"


class Base(sa_orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
pow = Pow(db=db)


class User(db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255), unique=True)
    name: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(100))
    plan: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(20), default="free")
    password_hash: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255))


PAGE = """<!doctype html>
<title>flask_pow demo</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; }
  form { display: grid; gap: .5rem; } input, button { font: inherit; padding: .4rem; }
  .flash { background: #fff3cd; padding: .5rem; } dt { font-weight: bold; }
</style>
<h1>flask_pow demo</h1>
{% for message in get_flashed_messages() %}
  <p class="flash">{{ message }}</p>
{% endfor %}
{% if current_user %}
  <p>Logged in as <b>{{ current_user.email }}</b> on the <b>{{ current_user.plan }}</b>
  plan, read from the credentials cache with no database query.</p>
  <dl>
    <dt>Session id</dt><dd>{{ session.id }}</dd>
    <dt>Logged in at</dt><dd>{{ session.created_at }}</dd>
    <dt>Token issued at</dt><dd>{{ session.inserted_at }}</dd>
    <dt>Expires at</dt><dd>{{ session.expires_at }}</dd>
    <dt>IP, user agent</dt>
    <dd>{{ session.metadata.ip }}, {{ session.metadata.user_agent }}</dd>
  </dl>
  <form method="post" action="{{ url_for('logout') }}"><button>Log out</button></form>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="email" type="email" placeholder="Email" value="{{ email }}" required>
    <input name="password" type="password" placeholder="Password" required>
    <button>Log in</button>
  </form>
{% endif %}
"""


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    pathlib.Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_hex(32),
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{app.instance_path}/demo.sqlite",
        POW_LOGIN_VIEW="index",
        POW_SESSION_TTL_RENEWAL=60,
    )
    app.config.update(config or {})
    db.init_app(app)
    pow.init_app(app, user_model=User)

    @app.get("/")
    def index() -> str:
        return render_template_string(PAGE, session=current_session, email=DEMO_EMAIL)

    @app.post("/login")
    def login() -> Response:
        email = request.form.get("email", "")
        user = db.session.scalar(sa.select(User).where(User.email == email))

        if user is None or not check_password_hash(
            user.password_hash, request.form.get("password", "")
        ):
            flash("Wrong email or password.")
        else:
            login_user(user)

        return redirect(url_for("index"))

    @app.post("/logout")
    @login_required
    def logout() -> Response:
        logout_user()
        flash("Logged out: that session's token is dead on the server.")
        return redirect(url_for("index"))

    with app.app_context():
        db.create_all()

        if db.session.scalar(sa.select(User).where(User.email == DEMO_EMAIL)) is None:
            db.session.add(
                User(
                    email=DEMO_EMAIL,
                    name="Demo",
                    password_hash=generate_password_hash(DEMO_PASSWORD),
                )
            )
            db.session.commit()

    return app


if __name__ == "__main__":
    demo = create_app()
    print(f"Demo user: {DEMO_EMAIL} / password: {DEMO_PASSWORD}")
    print("Open http://127.0.0.1:5000")
    demo.run(host="127.0.0.1", port=5000)
