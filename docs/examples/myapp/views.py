from datetime import datetime
from datetime import timezone

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import render_template_string
from flask import request
from flask import url_for
from werkzeug.security import check_password_hash

from flask_pow import current_user
from flask_pow import database_user
from flask_pow import fresh_login_required
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_user
from flask_pow import reload_user

from .extensions import db
from .models import Post
from .models import User

bp = Blueprint("main", __name__)


@bp.before_app_request
def record_last_seen():
    if current_user.is_authenticated:
        # Change the row, not the cached user; the commit updates the cache.
        database_user().last_seen = datetime.now(timezone.utc)
        db.session.commit()


@bp.get("/")
def index():
    # The anonymous user has can() too: see models.Anonymous.
    return render_template_string(
        "{% if current_user.is_authenticated %}{{ current_user.name }}"
        "{% else %}anonymous{% endif %}"
        "{% if current_user.can('edit') %} (editor){% endif %}"
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return "the login form"

    user = db.session.scalar(db.select(User).filter_by(email=request.form["email"]))

    if user is None or not check_password_hash(
        user.password_hash, request.form["password"]
    ):
        return "wrong email or password", 401

    # Flask-Login's arguments, remember-me included.
    login_user(user, remember="remember" in request.form)
    return redirect(request.args.get("next") or url_for("main.index"))


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("main.index"))


@bp.post("/profile")
@login_required
def edit_profile():
    user = database_user()  # the row, attached to db.session
    user.name = request.form["name"]
    db.session.commit()  # POW_SYNC_ON_COMMIT updates every session's cache
    return current_user.name  # the rest of the request sees the new name


@bp.post("/account/email")
@fresh_login_required
def change_email():
    # Only with a recent password: not a session a remember-me cookie restored.
    user = database_user()
    user.email = request.form["email"]
    db.session.commit()
    return current_user.email


@bp.get("/posts")
@login_required
def my_posts():
    user = database_user()  # relationships load from the row
    return [post.body for post in user.posts]


@bp.post("/posts")
@login_required
def new_post():
    post = Post(body=request.form["body"], author=database_user())
    db.session.add(post)
    db.session.commit()
    return str(post.id), 201


@bp.post("/posts/<int:post_id>")
@login_required
def edit_post(post_id):
    post = db.get_or_404(Post, post_id)

    # UserMixin compares users by primary key: the cached user equals the
    # row that post.author loaded.
    if post.author != current_user:
        abort(403)

    post.body = request.form["body"]
    db.session.commit()
    return post.body


@bp.get("/dashboard")
@login_required
@reload_user
def dashboard():
    # With @reload_user, current_user is the row: relationships load.
    return {"name": current_user.name, "posts": len(current_user.posts)}
