"""A user model with no Flask-SQLAlchemy base, for tests that only need
flask_pow to accept one (configuration, the extension object). It has a
UserMixin, as the documentation asks, so that setting it up warns of nothing.
"""

from __future__ import annotations

import sqlalchemy.orm as sa_orm

from flask_pow import UserMixin


class Base(sa_orm.DeclarativeBase):
    pass


class Member(UserMixin, Base):
    __tablename__ = "member"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str]
    password: sa_orm.Mapped[str]
