"""An application shaped like flasky's: users with a role (a many-to-one),
whose permissions a model method and the base template read on every page,
and teams (a many-to-many collection), cached with
``POW_CACHE_RELATIONSHIPS``.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from flask import Flask
from flask import render_template_string
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import UserMixin
from flask_pow import current_user
from flask_pow import login_required
from flask_pow import login_user

FOLLOW, WRITE, MODERATE, ADMIN = 1, 2, 4, 16

BASE = (
    "{% if current_user.is_authenticated %}{{ current_user.email }}"
    " [{{ current_user.role.name }}]"
    "{% if current_user.can(MODERATE) %} moderate{% endif %}"
    "{% if current_user.is_administrator() %} admin{% endif %}"
    "{% endif %} | {% block body %}{% endblock %}"
)


class RolesApp:
    """The application, its database and its models."""

    def __init__(
        self, app: Flask, db: SQLAlchemy, Role: t.Any, Team: t.Any, User: t.Any
    ):
        self.app, self.db = app, db
        self.Role, self.Team, self.User = Role, Team, User
        self.pow = t.cast(Pow, app.extensions["pow"])

    def add_user(self, email: str, role: str, teams: t.Sequence[str] = ()) -> int:
        with self.app.app_context():
            session = self.db.session
            user = self.User(
                email=email,
                password_hash="pbkdf2:sha256$secret",
                role=session.scalar(sa.select(self.Role).filter_by(name=role)),
                teams=[
                    session.scalar(sa.select(self.Team).filter_by(name=name))
                    for name in teams
                ],
            )
            session.add(user)
            session.commit()
            return int(user.id)

    def commit(self, change: t.Callable[[t.Any], None]) -> None:
        """Run ``change(session)`` and commit, outside any request (an admin's
        script, or another worker).
        """
        with self.app.app_context():
            change(self.db.session)
            self.db.session.commit()

    def role(self, session: t.Any, name: str) -> t.Any:
        return session.scalar(sa.select(self.Role).filter_by(name=name))


def make_roles_app(cache: BaseCache, database: str, **config: t.Any) -> RolesApp:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test secret key",
        SQLALCHEMY_DATABASE_URI=database,
        POW_CACHE=cache,
        POW_CACHE_RELATIONSHIPS=["role", "teams"],
    )
    app.config.update(config)

    class Base(sa_orm.DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)
    memberships = sa.Table(
        "memberships",
        Base.metadata,
        sa.Column("user_id", sa.ForeignKey("user.id"), primary_key=True),
        sa.Column("team_id", sa.ForeignKey("team.id"), primary_key=True),
    )

    class Role(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "role"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        name: sa_orm.Mapped[str] = sa_orm.mapped_column(unique=True)
        permissions: sa_orm.Mapped[int] = sa_orm.mapped_column(default=0)
        invite_token: sa_orm.Mapped[str | None]
        users: sa_orm.Mapped[list[User]] = sa_orm.relationship(back_populates="role")

        def has_permission(self, permission: int) -> bool:
            return self.permissions & permission == permission

    class Team(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "team"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        name: sa_orm.Mapped[str] = sa_orm.mapped_column(unique=True)
        members: sa_orm.Mapped[list[User]] = sa_orm.relationship(
            secondary=memberships, back_populates="teams"
        )

    class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "user"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str] = sa_orm.mapped_column(unique=True)
        password_hash: sa_orm.Mapped[str]
        role_id: sa_orm.Mapped[int | None] = sa_orm.mapped_column(
            sa.ForeignKey("role.id")
        )
        role: sa_orm.Mapped[Role | None] = sa_orm.relationship(back_populates="users")
        teams: sa_orm.Mapped[list[Team]] = sa_orm.relationship(
            secondary=memberships, back_populates="members"
        )
        posts: sa_orm.Mapped[list[Post]] = sa_orm.relationship(back_populates="author")

        def can(self, permission: int) -> bool:
            return self.role is not None and self.role.has_permission(permission)

        def is_administrator(self) -> bool:
            return self.can(ADMIN)

    class Post(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "post"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        author_id: sa_orm.Mapped[int] = sa_orm.mapped_column(sa.ForeignKey("user.id"))
        author: sa_orm.Mapped[User] = sa_orm.relationship(back_populates="posts")

    db.init_app(app)
    Pow(app, db=db, user_model=User)

    with app.app_context():
        db.create_all()
        db.session.add_all(
            [
                Role(name="User", permissions=FOLLOW | WRITE),
                Role(name="Moderator", permissions=FOLLOW | WRITE | MODERATE),
                Role(
                    name="Administrator", permissions=FOLLOW | WRITE | MODERATE | ADMIN
                ),
                Team(name="red"),
                Team(name="blue"),
            ]
        )
        db.session.commit()

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        login_user(db.session.get(User, user_id))
        return "ok"

    @app.get("/")
    @login_required
    def index() -> str:
        return render_template_string(
            "{% extends base %}{% block body %}home{% endblock %}",
            base=app.jinja_env.from_string(BASE),
            MODERATE=MODERATE,
        )

    @app.get("/teams")
    @login_required
    def teams() -> str:
        return ",".join(sorted(team.name for team in current_user.teams))

    return RolesApp(app, db, Role, Team, User)
