import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis
from cachelib import FileSystemCache
from cachelib import RedisCache
from myapp import create_app
from myapp.extensions import db
from myapp.extensions import login_manager
from myapp.models import User
from werkzeug.security import generate_password_hash

from flask_pow.testing import PowClient


def make_app(**config):
    app = create_app({"TESTING": True, **config})
    app.test_client_class = PowClient

    with app.app_context():
        db.create_all()
        db.session.add(
            User(
                id=1,
                email="ada@example.com",
                name="Ada",
                password_hash=generate_password_hash("pw"),
            )
        )
        db.session.commit()

    return app


@pytest.fixture
def app():
    # TESTING, and no POW_CACHE: a store of the test's own, in memory.
    # Nothing is written to the instance folder, and no test sees another's
    # sessions.
    app = make_app()

    # One application context around the whole test, client calls included:
    # each request still authenticates itself from its own cookie.
    with app.app_context():
        yield app


@pytest.fixture
def ada(app):
    return db.session.get(User, 1)


# -- logged in without the login form


def test_starts_logged_in(app, ada):
    client = app.test_client(user=ada)
    assert client.get("/").text == "Ada"


def test_logs_in_later_with_metadata(app, ada):
    client = app.test_client()
    assert client.get("/").text == "anonymous"
    session = client.login(ada, metadata={"ip": "192.0.2.1"})
    assert client.get("/").text == "Ada"
    assert login_manager.credentials.get(session.id).metadata == {"ip": "192.0.2.1"}


def test_clients_do_not_share_a_login(app, ada):
    laptop = app.test_client(user=ada)
    stranger = app.test_client()
    assert laptop.get("/").text == "Ada"
    assert stranger.get("/").text == "anonymous"


def test_stale_session_is_refused_where_a_fresh_one_is_needed(app, ada):
    # As a session a remember-me cookie restored: logged in, not fresh.
    client = app.test_client(user=ada, fresh=False)
    response = client.post("/account/email", data={"email": "ada@example.org"})
    assert response.status_code == 401
    assert client.get("/").text == "Ada"


def test_remembered_login_outlives_the_browser_session(app, ada):
    client = app.test_client(user=ada, remember=True)
    client.delete_cookie("session")  # the browser was closed
    assert client.get("/").text == "Ada"


# -- through the application's own login view


def test_login_form(app):
    client = app.test_client()
    form = {"email": "ada@example.com", "password": "pw"}
    assert client.post("/login", data=form).status_code == 302
    assert client.get("/").text == "Ada"
    client.post("/logout")
    assert client.get("/").text == "anonymous"


def test_wrong_password(app):
    form = {"email": "ada@example.com", "password": "nope"}
    assert app.test_client().post("/login", data=form).status_code == 401


# -- a file store, for what must see the store from outside the app


def test_operator_ends_a_session(tmp_path):
    app = make_app(POW_CACHE=FileSystemCache(str(tmp_path / "pow"), threshold=0))

    with app.app_context():
        client = app.test_client(user=db.session.get(User, 1))

    result = app.test_cli_runner().invoke(
        args=["pow", "sessions", "revoke", "--user", "ada@example.com", "--yes"]
    )
    assert result.output == "Ended 1 session of ada@example.com.\n"
    assert client.get("/").text == "anonymous"


# -- a Redis server of the suite's own


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory):
    program = shutil.which("redis-server")

    if program is None:
        pytest.skip("redis-server is not installed")

    port = free_port()
    # Loopback only, no snapshots, files in a temporary folder.
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server on port {port} did not start")

        yield port
    finally:
        client.close()
        process.terminate()
        process.wait()


@pytest.fixture
def redis_app(redis_port):
    client = redis.Redis(host="127.0.0.1", port=redis_port)
    # A key prefix of the test's own: tests share the server, never its keys.
    cache = RedisCache(host=client, key_prefix=f"test-{uuid.uuid4().hex}:")
    yield make_app(POW_CACHE=cache)
    client.close()


def test_logged_in_on_redis(redis_app):
    with redis_app.app_context():
        client = redis_app.test_client(user=db.session.get(User, 1))

    assert client.get("/").text == "Ada"
