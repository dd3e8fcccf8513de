"""The example's database: users, and the roles that say what they may do."""

from __future__ import annotations

import enum

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask_sqlalchemy import SQLAlchemy

from flask_pow import UserMixin


class Base(sa_orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Permission(enum.IntFlag):
    """What a role lets its users do, stored as one integer (as in flasky)."""

    SEE_USERS = 1
    ADMINISTER = 2


class Role(db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    name: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(64), unique=True)
    permissions: sa_orm.Mapped[int] = sa_orm.mapped_column(default=0)
    users: sa_orm.Mapped[list[User]] = sa_orm.relationship(back_populates="role")

    def has_permission(self, permission: Permission) -> bool:
        return self.permissions & permission == permission


#: The roles the example starts with: (name, permissions).
ROLES = (
    ("member", Permission(0)),
    ("moderator", Permission.SEE_USERS),
    ("admin", Permission.SEE_USERS | Permission.ADMINISTER),
)


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255), unique=True)
    name: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(100))
    #: "free" or "pro": shown from the cache, checked against the database.
    plan: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(20), default="free")
    role_id: sa_orm.Mapped[int | None] = sa_orm.mapped_column(sa.ForeignKey("role.id"))
    #: Cached with the user (POW_CACHE_RELATIONSHIPS): the header reads it on
    #: every page, with no query.
    role: sa_orm.Mapped[Role | None] = sa_orm.relationship(back_populates="users")
    #: Never cached: POW_CACHE_EXCLUDE matches "*password*".
    password_hash: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255))

    def can(self, permission: Permission) -> bool:
        return self.role is not None and self.role.has_permission(permission)

    @property
    def is_admin(self) -> bool:
        return self.can(Permission.ADMINISTER)


def role_named(name: str) -> Role | None:
    """The role of that name, from the database."""
    return db.session.scalar(sa.select(Role).where(Role.name == name))
