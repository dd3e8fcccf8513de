from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from flask_pow import AnonymousUser
from flask_pow import UserMixin

from .extensions import db


class User(UserMixin, db.Model):
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(255), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(100))
    # Never cached: POW_CACHE_EXCLUDE matches "*password*".
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(255))
    is_admin: so.Mapped[bool] = so.mapped_column(default=False)
    last_seen: so.Mapped[datetime | None]
    posts: so.Mapped[list["Post"]] = so.relationship(back_populates="author")

    def can(self, permission):
        return self.is_admin


class Post(db.Model):
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    body: so.Mapped[str] = so.mapped_column(sa.String(140))
    author_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey(User.id))
    author: so.Mapped[User] = so.relationship(back_populates="posts")


class Anonymous(AnonymousUser):
    def can(self, permission):
        return False
