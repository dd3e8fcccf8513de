import click
from flask import Flask
from flask import flash
from flask import redirect
from flask import render_template_string
from flask import request
from flask import url_for
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_pow import Pow
from flask_pow import UserMixin
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_user

app = Flask(__name__)
# The secret key comes from the environment (FLASK_SECRET_KEY), never from
# code that others can read.
app.config.from_prefixed_env()
# A file in the instance folder (instance/quickstart.db): the users that
# `flask create-user` adds are still there when `flask run` starts.
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///quickstart.db"
# Where login_required sends a visitor who is not logged in.
app.config["POW_LOGIN_VIEW"] = "login"
db = SQLAlchemy(app)


class User(UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String, unique=True, nullable=False)
    password_hash = db.Column(db.String, nullable=False)  # never cached


auth = Pow(app, db=db, user_model=User)

with app.app_context():
    db.create_all()  # the user table, unless it is there already


@app.cli.command("create-user")
@click.argument("email")
@click.password_option()
def create_user(email, password):
    """Add a user who logs in with EMAIL and the password asked for."""
    db.session.add(User(email=email, password_hash=generate_password_hash(password)))
    db.session.commit()
    click.echo(f"Added {email}.")


LOGIN_PAGE = """<!doctype html>
<title>Log in</title>
{% for message in get_flashed_messages() %}<p>{{ message }}</p>{% endfor %}
<form method="post">
  <input name="email" type="email" placeholder="Email" required autofocus>
  <input name="password" type="password" placeholder="Password" required>
  <button>Log in</button>
</form>
"""

HOME_PAGE = """<!doctype html>
<title>Home</title>
<p>Logged in as {{ current_user.email }}.</p>
<form method="post" action="{{ url_for('logout') }}">
  <button>Log out</button>
</form>
"""


@app.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template_string(LOGIN_PAGE)

    user = db.session.scalar(db.select(User).filter_by(email=request.form["email"]))

    if user is None or not check_password_hash(
        user.password_hash, request.form["password"]
    ):
        flash("Wrong email or password.")
        return render_template_string(LOGIN_PAGE), 401

    login_user(user)  # a new session, a new token
    return redirect(url_for("home"))


@app.get("/")
@login_required
def home():
    # current_user comes from the cache: no SQL query.
    return render_template_string(HOME_PAGE)


@app.post("/logout")
def logout():
    logout_user()  # the token is dead on the server
    return redirect(url_for("login"))
