import pytest
from myapp import create_app
from myapp.extensions import db
from myapp.models import Post
from myapp.models import User
from werkzeug.security import generate_password_hash

from flask_pow.testing import PowClient


@pytest.fixture
def app():
    app = create_app({"TESTING": True})
    app.test_client_class = PowClient

    # One application context around the whole test, client calls included:
    # each request still authenticates itself.
    with app.app_context():
        db.create_all()
        db.session.add_all(
            [
                User(
                    id=1,
                    email="ada@example.com",
                    name="Ada",
                    password_hash=generate_password_hash("pw"),
                ),
                User(id=2, email="bob@example.com", name="Bob", password_hash="-"),
                Post(id=1, body="Hello", author_id=1),
            ]
        )
        db.session.commit()
        yield app


@pytest.fixture
def ada(app):
    return db.session.get(User, 1)


def test_login_form(app):
    client = app.test_client()
    form = {"email": "ada@example.com", "password": "pw"}
    assert client.post("/login", data=form).status_code == 302
    assert client.get("/").text == "Ada"


def test_login_required_redirects(app):
    response = app.test_client().get("/posts")
    assert response.location == "/login?next=%2Fposts"


def test_strangers_stay_anonymous(app, ada):
    app.test_client(user=ada).get("/")  # logged in, no login form
    assert app.test_client().get("/").text == "anonymous"


def test_profile_edit_reaches_every_session(app, ada):
    laptop = app.test_client(user=ada)
    phone = app.test_client(user=ada)
    assert laptop.post("/profile", data={"name": "Ada L."}).text == "Ada L."
    assert phone.get("/").text == "Ada L."


def test_relationships_through_the_row(app, ada):
    client = app.test_client(user=ada)
    assert client.post("/posts", data={"body": "Again"}).status_code == 201
    assert client.get("/posts").json == ["Hello", "Again"]
    assert client.get("/dashboard").json == {"name": "Ada", "posts": 2}


def test_only_the_author_edits_a_post(app, ada):
    bob = app.test_client(user=db.session.get(User, 2))
    assert bob.post("/posts/1", data={"body": "Hi"}).status_code == 403
    ada_client = app.test_client(user=ada)
    assert ada_client.post("/posts/1", data={"body": "Hi"}).text == "Hi"


def test_last_seen_is_recorded(app, ada):
    app.test_client(user=ada).get("/")
    db.session.expire_all()
    assert db.session.get(User, 1).last_seen is not None
