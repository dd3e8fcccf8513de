"""Where a refused browser request is sent: the login and refresh views
given as endpoints or URLs, :func:`~flask_pow.login_url`, and Flask-Login's
``USE_SESSION_FOR_NEXT`` and ``FORCE_HOST_FOR_REDIRECTS``, each compared
with what Flask-Login itself builds where it can be.
"""

from __future__ import annotations

import typing as t

import pytest
from flask import Blueprint
from flask import request
from flask.testing import FlaskClient
from flask_login.utils import expand_login_view as flask_expand_login_view
from flask_login.utils import login_url as flask_login_url
from flask_login.utils import make_next_param as flask_make_next_param

from flask_pow import expand_login_view
from flask_pow import fresh_login_required
from flask_pow import login_required
from flask_pow import login_url
from flask_pow import login_user
from flask_pow import make_next_param
from tests.support.env import Env
from tests.support.env import MakeEnv

SSO = "https://sso.example.com/login"


def make_site(make_env: MakeEnv, **config: t.Any) -> Env:
    """An application whose login view is ``login_page`` (``/login``),
    whose refresh view is ``reauthenticate``, with a fresh-only view
    (``/settings``) and a login that is not fresh (``/login-stale/<id>``).
    """
    config.setdefault("POW_LOGIN_VIEW", "login_page")
    config.setdefault("POW_REFRESH_VIEW", "reauthenticate")
    env = make_env(**config)
    app, db, User = env.app, env.db, env.User

    @app.get("/login")
    def login_page() -> str:
        return "login"

    @app.get("/reauthenticate")
    def reauthenticate() -> str:
        return "reauthenticate"

    @app.post("/login-stale/<int:user_id>")
    def login_stale(user_id: int) -> str:
        login_user(db.session.get(User, user_id), fresh=False)
        return "ok"

    @app.get("/settings")
    @fresh_login_required
    def settings() -> str:
        return "settings"

    return env


@pytest.fixture
def site(make_env: MakeEnv) -> Env:
    return make_site(make_env)


def stale_client(env: Env) -> FlaskClient:
    """A client logged in with a session that is not fresh."""
    client = env.app.test_client()
    user_id = env.add_user()
    assert client.post(f"/login-stale/{user_id}").text == "ok"
    return client


def location(client: FlaskClient, path: str, **kwargs: t.Any) -> str | None:
    response = client.get(path, **kwargs)
    assert response.status_code == 302
    return response.location


def session_next(client: FlaskClient) -> t.Any:
    with client.session_transaction() as session:
        return session.get("next")


# -- next, as Flask-Login gives it ---------------------------------------------


def test_next_is_percent_encoded_as_flask_login_does(site: Env) -> None:
    client = site.app.test_client()
    assert location(client, "/private") == "/login?next=%2Fprivate"


def test_next_keeps_the_query_string(site: Env) -> None:
    client = site.app.test_client()
    assert location(client, "/private?tab=2") == "/login?next=%2Fprivate%3Ftab%3D2"


def test_redirect_is_the_one_flask_login_builds(site: Env) -> None:
    path = "/private?q=caf%C3%A9&x=a%20b"

    with site.app.test_request_context(path):
        expected = flask_login_url("login_page", next_url=request.url)

    assert location(site.app.test_client(), path) == expected


def test_next_includes_the_script_root_of_a_mounted_application(site: Env) -> None:
    client = site.app.test_client()
    response = client.get("/private", base_url="http://localhost/shop")
    assert response.location == "/shop/login?next=%2Fshop%2Fprivate"


def test_next_stays_a_path_whatever_the_host_header(site: Env) -> None:
    client = site.app.test_client()
    forged = {"Host": "evil.example"}
    assert location(client, "/private", headers=forged) == "/login?next=%2Fprivate"


def test_refresh_next_stays_a_path_whatever_the_host_header(site: Env) -> None:
    client = stale_client(site)
    # The client sends a cookie to the host it was set for: to this one too.
    cookie = client.get_cookie("session")
    assert cookie is not None
    client.set_cookie("session", cookie.value, domain="evil.example")
    forged = {"Host": "evil.example"}
    assert location(client, "/settings", headers=forged) == (
        "/reauthenticate?next=%2Fsettings"
    )


def test_refresh_redirect_encodes_next_as_flask_login_does(site: Env) -> None:
    client = stale_client(site)
    assert location(client, "/settings?tab=password") == (
        "/reauthenticate?next=%2Fsettings%3Ftab%3Dpassword"
    )


# -- login and refresh views given as URLs -----------------------------------


def test_a_login_view_given_as_a_path_is_redirected_to(make_env: MakeEnv) -> None:
    site = make_site(make_env, POW_LOGIN_VIEW="/accounts/login")
    client = site.app.test_client()
    assert location(client, "/private") == "/accounts/login?next=%2Fprivate"


def test_a_login_view_given_as_a_url_is_redirected_to(make_env: MakeEnv) -> None:
    site = make_site(make_env, POW_LOGIN_VIEW=SSO)
    assert location(site.app.test_client(), "/private") == (
        f"{SSO}?next=http%3A%2F%2Flocalhost%2Fprivate"
    )


def test_a_login_url_on_the_same_host_gets_a_path(make_env: MakeEnv) -> None:
    site = make_site(make_env, POW_LOGIN_VIEW="http://localhost/accounts/login")
    assert location(site.app.test_client(), "/private") == (
        "http://localhost/accounts/login?next=%2Fprivate"
    )


def test_a_login_url_keeps_its_query_string(make_env: MakeEnv) -> None:
    site = make_site(make_env, POW_LOGIN_VIEW=f"{SSO}?client=shop")
    assert location(site.app.test_client(), "/private") == (
        f"{SSO}?client=shop&next=http%3A%2F%2Flocalhost%2Fprivate"
    )


def test_the_login_view_attribute_given_as_a_url_is_redirected_to(
    site: Env,
) -> None:
    site.pow.login_view = "/accounts/login"
    client = site.app.test_client()
    assert location(client, "/private") == "/accounts/login?next=%2Fprivate"


def test_a_blueprint_login_view_given_as_a_url_is_redirected_to(
    make_env: MakeEnv,
) -> None:
    site = make_site(make_env, POW_BLUEPRINT_LOGIN_VIEWS={"admin": "/admin/sign-in"})
    admin = Blueprint("admin", __name__, url_prefix="/admin")

    @admin.get("/")
    @login_required
    def index() -> str:
        return "admin"

    site.app.register_blueprint(admin)
    client = site.app.test_client()
    assert location(client, "/admin/") == "/admin/sign-in?next=%2Fadmin%2F"


def test_a_refresh_view_given_as_a_url_is_redirected_to(make_env: MakeEnv) -> None:
    site = make_site(make_env, POW_REFRESH_VIEW=f"{SSO}?prompt=login")
    assert location(stale_client(site), "/settings") == (
        f"{SSO}?prompt=login&next=http%3A%2F%2Flocalhost%2Fsettings"
    )


# -- login_url -----------------------------------------------------------------


def test_login_url_encodes_next_as_flask_login_does(site: Env) -> None:
    with site.app.test_request_context():
        assert login_url("login_page", next_url="/secret") == "/login?next=%2Fsecret"


def test_login_url_without_next_is_the_login_page(site: Env) -> None:
    with site.app.test_request_context():
        assert login_url("login_page") == "/login"


def test_login_url_gives_a_path_to_a_login_page_on_the_same_site(site: Env) -> None:
    with site.app.test_request_context():
        url = login_url("login_page", next_url="http://localhost/secret?a=1")

    assert url == "/login?next=%2Fsecret%3Fa%3D1"


def test_login_url_gives_the_whole_url_to_a_login_page_elsewhere(site: Env) -> None:
    with site.app.test_request_context():
        url = login_url(SSO, next_url="http://localhost/secret")

    assert url == f"{SSO}?next=http%3A%2F%2Flocalhost%2Fsecret"


def test_login_url_puts_next_in_the_field_it_is_given(site: Env) -> None:
    with site.app.test_request_context():
        url = login_url(SSO, next_url="/secret", next_field="return_to")

    assert url == f"{SSO}?return_to=%2Fsecret"


@pytest.mark.parametrize("force_host", [None, "app.example.com"])
@pytest.mark.parametrize(
    ("login_view", "next_url", "next_field"),
    [
        ("login_page", None, "next"),
        ("login_page", "http://localhost/secret", "next"),
        ("login_page", "/caf%C3%A9?a=1&b=%20", "next"),
        ("/accounts/login", "http://localhost/a/b", "next"),
        ("http://localhost/login", "http://localhost/secret", "next"),
        (f"{SSO}?client=shop&scope=a+b", "http://localhost/secret", "return_to"),
        (f"{SSO}?next=old", "/secret", "next"),
        ("/login#form", "/secret", "next"),
    ],
)
def test_login_url_is_flask_logins(
    site: Env,
    login_view: str,
    next_url: str | None,
    next_field: str,
    force_host: str | None,
) -> None:
    site.app.config["FORCE_HOST_FOR_REDIRECTS"] = force_host

    with site.app.test_request_context():
        expected = flask_login_url(login_view, next_url, next_field)
        assert login_url(login_view, next_url, next_field) == expected


# -- USE_SESSION_FOR_NEXT --------------------------------------------------------


def test_use_session_for_next_keeps_next_out_of_the_query_string(
    make_env: MakeEnv,
) -> None:
    site = make_site(make_env, USE_SESSION_FOR_NEXT=True)
    assert location(site.app.test_client(), "/private?tab=2") == "/login"


def test_use_session_for_next_puts_next_in_the_session(make_env: MakeEnv) -> None:
    site = make_site(make_env, USE_SESSION_FOR_NEXT=True)
    client = site.app.test_client()
    client.get("/private?tab=2")
    assert session_next(client) == "/private?tab=2"


def test_use_session_for_next_keeps_next_out_of_the_refresh_redirect(
    make_env: MakeEnv,
) -> None:
    site = make_site(make_env, USE_SESSION_FOR_NEXT=True)
    assert location(stale_client(site), "/settings") == "/reauthenticate"


def test_use_session_for_next_puts_the_refresh_next_in_the_session(
    make_env: MakeEnv,
) -> None:
    site = make_site(make_env, USE_SESSION_FOR_NEXT=True)
    client = stale_client(site)
    client.get("/settings?tab=password")
    assert session_next(client) == "/settings?tab=password"


def test_use_session_for_next_gives_a_login_page_elsewhere_the_whole_url(
    make_env: MakeEnv,
) -> None:
    site = make_site(make_env, USE_SESSION_FOR_NEXT=True, POW_LOGIN_VIEW=SSO)
    client = site.app.test_client()
    client.get("/private")
    assert session_next(client) == "http://localhost/private"


def test_use_session_for_next_is_read_at_each_request(site: Env) -> None:
    client = site.app.test_client()
    site.app.config["USE_SESSION_FOR_NEXT"] = True
    assert location(client, "/private") == "/login"
    site.app.config["USE_SESSION_FOR_NEXT"] = False
    assert location(client, "/private") == "/login?next=%2Fprivate"


# -- FORCE_HOST_FOR_REDIRECTS ----------------------------------------------------


def test_force_host_for_redirects_sets_the_redirect_host(make_env: MakeEnv) -> None:
    site = make_site(make_env, FORCE_HOST_FOR_REDIRECTS="app.example.com")
    forged = {"Host": "evil.example"}
    assert location(site.app.test_client(), "/private", headers=forged) == (
        "//app.example.com/login?next=%2Fprivate"
    )


def test_force_host_for_redirects_sets_the_refresh_redirect_host(
    make_env: MakeEnv,
) -> None:
    site = make_site(make_env, FORCE_HOST_FOR_REDIRECTS="app.example.com")
    assert location(stale_client(site), "/settings") == (
        "//app.example.com/reauthenticate?next=%2Fsettings"
    )


def test_force_host_for_redirects_replaces_the_host_of_a_login_url(
    make_env: MakeEnv,
) -> None:
    site = make_site(
        make_env, FORCE_HOST_FOR_REDIRECTS="app.example.com", POW_LOGIN_VIEW=SSO
    )
    assert location(site.app.test_client(), "/private") == (
        "https://app.example.com/login?next=http%3A%2F%2Flocalhost%2Fprivate"
    )


def test_force_host_for_redirects_leaves_a_redirect_without_next_alone(
    make_env: MakeEnv,
) -> None:
    site = make_site(
        make_env, FORCE_HOST_FOR_REDIRECTS="app.example.com", USE_SESSION_FOR_NEXT=True
    )
    assert location(site.app.test_client(), "/private") == "/login"


def test_force_host_for_redirects_is_read_at_each_request(site: Env) -> None:
    client = site.app.test_client()
    site.app.config["FORCE_HOST_FOR_REDIRECTS"] = "app.example.com"
    assert location(client, "/private") == "//app.example.com/login?next=%2Fprivate"
    site.app.config["FORCE_HOST_FOR_REDIRECTS"] = None
    assert location(client, "/private") == "/login?next=%2Fprivate"


@pytest.mark.parametrize(
    ("login_page", "next_url"),
    [
        ("/login", "http://localhost/secret?tab=2"),
        ("http://localhost/login", "http://localhost/secret"),
        ("https://localhost/login", "http://localhost/secret"),
        (SSO, "http://localhost/secret"),
    ],
)
def test_make_next_param_is_flask_logins(login_page: str, next_url: str) -> None:
    assert make_next_param(login_page, next_url) == flask_make_next_param(
        login_page, next_url
    )


@pytest.mark.parametrize("login_view", ["login_page", "/accounts/login", SSO])
def test_expand_login_view_is_flask_logins(make_env: MakeEnv, login_view: str) -> None:
    env = make_site(make_env)

    with env.app.test_request_context():
        assert expand_login_view(login_view) == flask_expand_login_view(login_view)
