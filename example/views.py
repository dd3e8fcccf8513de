"""The example's pages: account (register, log in, log out, plan, change
the password), the pro page, the devices page, and an admin area.
"""

from __future__ import annotations

import re
import typing as t
import urllib.parse

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response

from flask_pow import confirm_login
from flask_pow import current_session
from flask_pow import database_user
from flask_pow import fresh_login_required
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_other_sessions
from flask_pow import logout_user
from flask_pow import reload_user
from flask_pow import sync_user

from .extensions import auth
from .models import Permission
from .models import Role
from .models import User
from .models import db
from .models import role_named

PLANS = ("free", "pro")

account = Blueprint("account", __name__)


@account.get("/")
def index() -> str:
    return render_template("index.html", plans=PLANS)


@account.route("/register", methods=["GET", "POST"])
def register() -> str | Response:
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        name = request.form.get("name", "").strip()
        password = request.form.get("password", "")

        if not email or not name or len(password) < 8:
            flash("Give an email, a name and a password of 8 characters or more.")
        elif db.session.scalar(sa.select(User).where(User.email == email)):
            flash("That email is taken.")
        else:
            user = User(
                email=email,
                name=name,
                role=role_named("member"),
                password_hash=generate_password_hash(password),
            )
            db.session.add(user)
            db.session.commit()
            login_user(user)
            flash(f"Welcome, {name}.")
            return redirect(url_for("account.index"))

    return render_template("register.html")


@account.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        user = db.session.scalar(sa.select(User).where(User.email == email))

        if user is None or not check_password_hash(
            user.password_hash, request.form.get("password", "")
        ):
            flash("Wrong email or password.")
        else:
            login_user(user, remember=request.form.get("remember") == "yes")
            return redirect(_safe_next(request.args) or url_for("account.index"))

    return render_template("login.html")


def _safe_next(values: t.Mapping[str, str]) -> str | None:
    """The ``next`` target, if it is a path on this site: never an open
    redirect. Checked as a browser will read it: a browser drops tabs and
    newlines anywhere in a URL, spaces and control characters at its ends,
    and reads a backslash as a slash, so a tab after the first slash, or
    ``/\\evil.example``, make ``//evil.example``: another site.
    """
    target = _BROWSER_DROPS.sub("", values.get("next", ""))
    target = target.strip(_ENDS).replace("\\", "/")

    if (
        not target.startswith("/")
        or target.startswith("//")
        or _CONTROL.search(target)
        or urllib.parse.urlsplit(target).netloc
    ):
        return None

    return target


_BROWSER_DROPS = re.compile(r"[\t\n\r]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENDS = "".join(map(chr, range(0x21)))


def logged_out_elsewhere() -> None:
    """A ``before_request`` function, registered after flask_pow's: a
    request that still carries a flask_pow session but has nobody logged in
    comes from a device that was logged out somewhere else (revoked from
    another device, or timed out). Say so, once: the dead value is dropped.
    """
    key = current_app.config["POW_SESSION_KEY"]

    if key in session and g.current_user is None:
        session.pop(key)
        flash("This device was logged out.")


@account.post("/logout")
@login_required
def logout() -> Response:
    logout_user()
    flash("Logged out. That session's token is dead on the server.")
    return redirect(url_for("account.index"))


@account.post("/plan")
@login_required
def change_plan() -> Response:
    plan = request.form.get("plan")

    if plan not in PLANS:
        abort(400)

    user = database_user()
    user.plan = plan
    # The commit updates the cache: every device of this user sees the new
    # plan on its next request, with no query.
    db.session.commit()
    # A privilege change: this device also gets a new token.
    sync_user(user)
    flash(f"You are on the {plan} plan now.")
    return redirect(_safe_next(request.form) or url_for("account.index"))


@account.get("/pro")
@login_required
@reload_user
def pro() -> str | tuple[str, int]:
    # The plan grants access, so it is read from the database.
    if g.current_user.plan != "pro":
        # Not a bare "Forbidden": what the plan gives and a button to switch.
        # Still a 403, since the pro content was refused: scripts, link
        # checkers and tests see that, while a person sees the page.
        return render_template("pro_upsell.html"), 403

    return render_template("pro.html")


@account.get("/devices")
@login_required
def devices() -> str:
    sessions = auth.credentials.sessions(g.current_user)
    this = current_session.id if current_session else None
    return render_template("devices.html", sessions=sessions, this=this)


@account.post("/devices/<session_id>/revoke")
@login_required
def revoke_device(session_id: str) -> Response:
    info = auth.credentials.get(session_id)

    # Only one's own sessions: an id of somebody else's is "not found".
    if (
        info is None
        or current_session is None
        or (info.user_key != current_session.user_key)
    ):
        abort(404)

    if info.id == current_session.id:
        logout_user()
        flash("Logged out.")
        return redirect(url_for("account.index"))

    auth.credentials.delete(session_id)
    flash("That device is logged out.")
    return redirect(url_for("account.devices"))


@account.route("/password", methods=["GET", "POST"])
@fresh_login_required
def change_password() -> str | Response:
    """Only with a fresh login (``POW_FRESHNESS``): a cookie left on a
    shared computer is not enough to take the account over. Afterwards this
    device is the only one logged in, with a new token.
    """
    if request.method == "POST":
        password = request.form.get("password", "")

        if len(password) < 8:
            flash("Choose a password of 8 characters or more.")
        else:
            row = database_user()
            row.password_hash = generate_password_hash(password)
            db.session.commit()
            count = logout_other_sessions()
            flash(
                f"Password changed. {count} other device{'s' * (count != 1)}"
                " logged out."
            )
            return redirect(url_for("account.index"))

    return render_template("password.html")


@account.route("/reauthenticate", methods=["GET", "POST"])
@login_required
def reauthenticate() -> str | Response:
    """The refresh view (``POW_REFRESH_VIEW``): the password again, for a
    session that is no longer fresh.
    """
    if request.method == "POST":
        row = database_user()

        if row is not None and check_password_hash(
            row.password_hash, request.form.get("password", "")
        ):
            confirm_login()
            return redirect(_safe_next(request.args) or url_for("account.index"))

        flash("Wrong password.")

    return render_template("reauthenticate.html")


@account.post("/devices/others")
@login_required
def logout_others() -> Response:
    count = logout_other_sessions()
    flash(f"Logged out {count} other device{'s' * (count != 1)}.")
    return redirect(url_for("account.devices"))


admin = auth.reload_blueprint(Blueprint("admin", __name__, url_prefix="/admin"))


@admin.before_request
@login_required
def require_admin() -> None:
    # Runs after the user was reloaded: a role taken away counts at once.
    if not g.current_user.can(Permission.SEE_USERS):
        abort(403, "Administrators only.")


@admin.get("/")
def admin_index() -> str:
    credentials = auth.credentials
    users = [
        (user, len(credentials.sessions_by_key(key)))
        for key, user in credentials.users_by_key().items()
    ]
    roles = db.session.scalars(sa.select(Role).order_by(Role.id)).all()
    return render_template(
        "admin.html", users=users, roles=roles, permissions=list(Permission)
    )


@admin.post("/roles/<int:role_id>")
def change_role(role_id: int) -> Response:
    if not g.current_user.can(Permission.ADMINISTER):
        abort(403, "Only administrators change roles.")

    role = db.session.get(Role, role_id) or abort(404)
    chosen = [p for p in Permission if request.form.get(str(p.name)) == "on"]
    # An administrator cannot lock everyone out of this page.
    role.permissions = sum(chosen) | (role.permissions & Permission.ADMINISTER)
    # Sync on commit rewrites every cached user with this role: their next
    # page shows the change, still with no query.
    db.session.commit()
    flash(f"The {role.name} role now has: {_names(role.permissions) or 'nothing'}.")
    return redirect(url_for("admin.admin_index"))


def _names(permissions: int) -> str:
    return ", ".join(
        str(p.name).lower().replace("_", " ") for p in Permission if permissions & p
    )
