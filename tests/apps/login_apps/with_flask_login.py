"""A small application written the Flask-Login way, as found in the wild:
an anonymous-user class, ``UserMixin``, ``current_user.is_authenticated`` in
Python and in templates, ``login_user(user, True)``, an inactive user, an
ownership check with ``==``, and a profile edit committed without any cache
call.

``with_flask_pow.py`` is this file moved to flask_pow: it differs only in
the import of the login names and the line that makes the extension
(``tests/system/test_login_apps.py`` checks that, and runs the same tests on both).
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask import Flask
from flask import abort
from flask import get_flashed_messages
from flask import jsonify
from flask import redirect
from flask import render_template_string
from flask import request
from flask_sqlalchemy import SQLAlchemy

# isort: split
# -- login imports --
from flask_login import AnonymousUserMixin
from flask_login import LoginManager
from flask_login import UserMixin
from flask_login import current_user
from flask_login import login_required
from flask_login import login_user
from flask_login import logout_user

# -- end of login imports --


class Base(sa_orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str] = sa_orm.mapped_column(unique=True)
    name: sa_orm.Mapped[str]
    password_hash: sa_orm.Mapped[str]
    avatar_hash: sa_orm.Mapped[str]
    active: sa_orm.Mapped[bool] = sa_orm.mapped_column(default=True)

    @property
    def is_active(self) -> bool:
        return self.active


class Post(db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    title: sa_orm.Mapped[str]
    author_id: sa_orm.Mapped[int] = sa_orm.mapped_column(sa.ForeignKey("user.id"))
    author: sa_orm.Mapped[User] = sa_orm.relationship()


class Guest(AnonymousUserMixin):
    name = "Guest"

    def can_edit(self, post: Post) -> bool:
        return False


# -- the extension --
login_manager = LoginManager()
# -- end of the extension --
login_manager.anonymous_user = Guest
login_manager.login_view = "login"
login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


NAV = """\
{% if current_user.is_authenticated %}Hello {{ current_user.name }}\
 ({{ current_user.avatar_hash }}){% else %}Hello {{ current_user.name }},\
 log in{% endif %}"""


def create_app(config: dict[str, t.Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    db.init_app(app)
    login_manager.init_app(app)

    with app.app_context():
        db.create_all()

    @app.get("/")
    def index() -> str:
        return render_template_string(NAV)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> t.Any:
        if request.method == "GET":
            return str(get_flashed_messages(with_categories=True))

        user = db.session.execute(
            sa.select(User).filter_by(email=request.form["email"])
        ).scalar_one()

        if not login_user(user, True):
            return "inactive", 403

        return redirect(request.args.get("next") or "/")

    @app.post("/logout")
    def logout() -> t.Any:
        logout_user()
        return redirect("/")

    @app.get("/whoami")
    def whoami() -> t.Any:
        return jsonify(
            authenticated=current_user.is_authenticated,
            anonymous=current_user.is_anonymous,
            id=current_user.get_id(),
        )

    @app.route("/profile", methods=["GET", "POST"])
    @login_required
    def profile() -> str:
        if request.method == "POST":
            user = db.session.get(User, current_user.id)
            assert user is not None
            user.name = request.form["name"]
            db.session.commit()

        return f"{current_user.name} <{current_user.email}>"

    @app.post("/posts/<int:post_id>/edit")
    @login_required
    def edit_post(post_id: int) -> str:
        post = db.get_or_404(Post, post_id)

        if post.author != current_user:
            abort(403)

        post.title = request.form["title"]
        db.session.commit()
        return post.title

    return app
