from flask import Flask
from flask import g
from flask import request
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash

from flask_pow import Pow
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_user

app = Flask(__name__)
# The secret key comes from the environment (FLASK_SECRET_KEY), never from
# code that others can read.
app.config.from_prefixed_env()
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
db = SQLAlchemy(app)


class User(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String, unique=True, nullable=False)
    password_hash = db.Column(db.String, nullable=False)


auth = Pow(app, db=db, user_model=User)


@app.post("/login")
def login():
    user = db.session.scalar(db.select(User).filter_by(email=request.form["email"]))

    if user is None or not check_password_hash(
        user.password_hash, request.form["password"]
    ):
        return "wrong email or password", 401

    login_user(user)  # a new session, a new token
    return "logged in"


@app.get("/me")
@login_required
def me():
    return g.current_user.email  # from the cache: no SQL query


@app.post("/logout")
def logout():
    logout_user()  # the token is dead on the server
    return "logged out"
