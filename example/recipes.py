"""The three ways of keeping a cached user fresh, as the documentation
shows them (docs/freshness.rst includes this file). tests/test_recipes.py
runs every one.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask import Blueprint
from flask import Flask
from flask import abort
from flask import g
from flask import request
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import UserMixin
from flask_pow import database_user
from flask_pow import login_required
from flask_pow import reload_user
from flask_pow import sync_user


class Base(sa_orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
auth = Pow(db=db)


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(255), unique=True)
    plan: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(20), default="free")


# -- Recipe 1: reload the user in the views that need the truth -------------

pro = Blueprint("pro", __name__)


@pro.get("/pro/report")
@login_required
@reload_user
def pro_report() -> str:
    # The plan decides access, so it is read from the database, not the
    # cache: a downgrade takes effect on the next request.
    if g.current_user.plan != "pro":
        abort(403)

    return "the pro report"


# -- Recipe 2: reload for a whole part of the application --------------------

admin = auth.reload_blueprint(Blueprint("admin", __name__))


@admin.get("/admin/whoami")
@login_required
def admin_whoami() -> str:
    return f"{g.current_user.email} ({g.current_user.plan})"


# -- Recipe 3: update the cache after the row changes ------------------------

account = Blueprint("account", __name__)


@account.post("/plan")
@login_required
def change_plan() -> str:
    user = database_user()
    user.plan = request.form["plan"]
    # The commit updates the cached user of every session of this user
    # (POW_SYNC_ON_COMMIT): each sees the new plan on its next request, with
    # no query.
    db.session.commit()
    # A plan is a privilege: sync_user also gives this session a new token.
    sync_user(user)
    return f"plan changed to {user.plan}"


def downgrade_expired_trials(emails: list[str]) -> None:
    """A background job: run it inside ``app.app_context()``. A bulk UPDATE
    is plain SQL, which no commit can tell the cache about: sync the users.
    """
    expired = User.email.in_(emails)
    db.session.execute(sa.update(User).where(expired).values(plan="free"))
    db.session.commit()

    for user in db.session.scalars(sa.select(User).where(expired)):
        sync_user(user)  # no request here: the cache only, no rotation


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://")
    # FLASK_SECRET_KEY from the environment, never from code.
    app.config.from_prefixed_env()
    app.config.update(config or {})
    db.init_app(app)
    auth.init_app(app, user_model=User)
    app.register_blueprint(pro)
    app.register_blueprint(admin)
    app.register_blueprint(account)
    return app
