"""The example's database: one user model."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask_sqlalchemy import SQLAlchemy

from flask_pow import UserMixin


class Base(sa_orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255), unique=True)
    name: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(100))
    #: "free" or "pro": shown from the cache, checked against the database.
    plan: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(20), default="free")
    is_admin: sa_orm.Mapped[bool] = sa_orm.mapped_column(default=False)
    #: Never cached: POW_CACHE_EXCLUDE matches "*password*".
    password_hash: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255))
