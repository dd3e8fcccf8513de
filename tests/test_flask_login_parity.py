"""Flask-Login's names, with Flask-Login's behaviour: the anonymous user,
``UserMixin``, ``login_user``'s arguments, what ``login_required`` answers,
``request_loader``, and the signals. These do not depend on the store, so
they run on the in-process one (the store-dependent paths are covered by the
contract suite).
"""

from __future__ import annotations

import collections.abc as c
import typing as t

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import SimpleCache
from flask import Blueprint
from flask import Flask
from flask import Request
from flask import g
from flask import get_flashed_messages
from flask import render_template_string
from flask_sqlalchemy import SQLAlchemy

from flask_pow import AnonymousUser
from flask_pow import Pow
from flask_pow import UserMixin
from flask_pow import current_user
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import session_protected
from flask_pow import user_accessed
from flask_pow import user_loaded_from_request
from flask_pow import user_unauthorized


class Site:
    """An application with a ``UserMixin`` user who writes posts."""

    def __init__(self, **config: t.Any) -> None:
        self.app = app = Flask(__name__)
        app.config.update(
            TESTING=True,
            SECRET_KEY="test secret key",
            SQLALCHEMY_DATABASE_URI="sqlite://",
            POW_CACHE=SimpleCache(threshold=100_000),
            **config,
        )

        class Base(sa_orm.DeclarativeBase):
            pass

        self.db = db = SQLAlchemy(model_class=Base)

        class Member(UserMixin, db.Model):  # type: ignore[name-defined,misc]
            __tablename__ = "member"
            id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
            email: sa_orm.Mapped[str]
            active: sa_orm.Mapped[bool] = sa_orm.mapped_column(default=True)
            posts: sa_orm.Mapped[list[Post]] = sa_orm.relationship(
                back_populates="author"
            )

            @property
            def is_active(self) -> bool:
                return self.active

        class Post(db.Model):  # type: ignore[name-defined,misc]
            __tablename__ = "post"
            id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
            author_id: sa_orm.Mapped[int] = sa_orm.mapped_column(
                sa.ForeignKey("member.id")
            )
            author: sa_orm.Mapped[Member] = sa_orm.relationship(back_populates="posts")

        self.Member, self.Post = Member, Post
        db.init_app(app)
        self.login_manager = Pow(app, db=db, user_model=Member)

        with app.app_context():
            db.create_all()
            db.session.add_all(
                [
                    Member(id=1, email="ada@example.com"),
                    Member(id=2, email="bob@example.com", active=False),
                    Post(id=1, author_id=1),
                ]
            )
            db.session.commit()

        @app.post("/login/<int:member_id>")
        def login(member_id: int) -> str:
            force = "force" in app.config
            return str(login_user(db.session.get(Member, member_id), force=force))

        @app.get("/private")
        @login_required
        def private() -> str:
            return f"private {current_user.email}"

    def logged_in(self, member_id: int = 1) -> t.Any:
        client = self.app.test_client()
        assert client.post(f"/login/{member_id}").get_data(as_text=True) == "True"
        return client


@pytest.fixture
def site() -> Site:
    return Site()


def text(client: t.Any, path: str, **kwargs: t.Any) -> str:
    return str(client.get(path, **kwargs).get_data(as_text=True))


# -- the anonymous user ------------------------------------------------------


def test_anonymous_user_has_flask_logins_attributes(site: Site) -> None:
    @site.app.get("/who")
    def who() -> str:
        return (
            f"{current_user.is_authenticated} {current_user.is_anonymous}"
            f" {current_user.is_active} {current_user.get_id()}"
        )

    assert text(site.app.test_client(), "/who") == "False True False None"


def test_anonymous_user_is_falsy(site: Site) -> None:
    @site.app.get("/who")
    def who() -> str:
        return "in" if current_user else "out"

    assert text(site.app.test_client(), "/who") == "out"


def test_g_current_user_is_none_when_anonymous(site: Site) -> None:
    @site.app.get("/who")
    def who() -> str:
        return repr(g.current_user) + " " + repr(current_user)

    assert text(site.app.test_client(), "/who") == "None <AnonymousUser>"


def test_anonymous_user_class_is_configurable(site: Site) -> None:
    class Visitor(AnonymousUser):
        def can(self, action: str) -> bool:
            return action == "read"

    site.login_manager.anonymous_user = Visitor

    @site.app.get("/who")
    def who() -> str:
        return render_template_string("{{ current_user.can('read') }}")

    assert text(site.app.test_client(), "/who") == "True"


def test_current_user_outside_a_request_is_anonymous(site: Site) -> None:
    with site.app.app_context():
        assert not current_user
        assert current_user.is_anonymous


def test_template_checks_is_authenticated(site: Site) -> None:
    @site.app.get("/nav")
    def nav() -> str:
        return render_template_string(
            "{% if current_user.is_authenticated %}{{ current_user.email }}"
            "{% else %}Log in{% endif %}"
        )

    assert text(site.app.test_client(), "/nav") == "Log in"
    assert text(site.logged_in(), "/nav") == "ada@example.com"


# -- UserMixin ---------------------------------------------------------------


def test_user_mixin_attributes_of_the_cached_user(site: Site) -> None:
    @site.app.get("/who")
    def who() -> str:
        return (
            f"{current_user.is_authenticated} {current_user.is_anonymous}"
            f" {current_user.is_active} {current_user.get_id()!r}"
        )

    assert text(site.logged_in(), "/who") == "True False True '1'"


def test_cached_user_equals_the_row_from_a_query(site: Site) -> None:
    @site.app.get("/mine")
    def mine() -> str:
        post = site.db.session.get(site.Post, 1)
        assert post is not None
        return f"{post.author == current_user} {current_user == post.author}"

    assert text(site.logged_in(), "/mine") == "True True"


def test_cached_user_differs_from_another_user(site: Site) -> None:
    @site.app.get("/other")
    def other() -> str:
        return str(site.db.session.get(site.Member, 2) == current_user)

    assert text(site.logged_in(), "/other") == "False"


def test_unsaved_users_are_equal_only_to_themselves(site: Site) -> None:
    one, two = site.Member(email="x"), site.Member(email="x")
    assert one == one
    assert one != two


def test_user_mixin_keeps_identity_hash(site: Site) -> None:
    one = site.Member(email="x")
    assert hash(one) == object.__hash__(one)


# -- login_user ----------------------------------------------------------------


def test_inactive_user_is_refused(site: Site) -> None:
    client = site.app.test_client()
    assert client.post("/login/2").get_data(as_text=True) == "False"
    assert client.get("/private").status_code == 401


def test_inactive_user_refused_stores_nothing(site: Site) -> None:
    site.app.test_client().post("/login/2")

    with site.app.app_context():
        assert site.login_manager.credentials.sessions_by_key("Member:2") == []


def test_inactive_user_logs_in_with_force(site: Site) -> None:
    site.app.config["force"] = True
    client = site.app.test_client()
    assert client.post("/login/2").get_data(as_text=True) == "True"
    assert text(client, "/private") == "private bob@example.com"


def test_login_user_takes_flask_logins_positional_arguments(site: Site) -> None:
    @site.app.post("/remember/<int:member_id>")
    def remember(member_id: int) -> str:
        member = site.db.session.get(site.Member, member_id)
        return str(login_user(member, True, None, False, True))

    client = site.app.test_client()
    assert client.post("/remember/1").get_data(as_text=True) == "True"
    assert text(client, "/private") == "private ada@example.com"


def test_remember_me_sets_a_remember_cookie(site: Site) -> None:
    """Flask-Login's ``login_user(user, remember=True)``: a second cookie
    that logs the user in again once the session has ended.
    """

    @site.app.post("/remember")
    def remember() -> str:
        return str(login_user(site.db.session.get(site.Member, 1), remember=True))

    client = site.app.test_client()
    assert client.post("/remember").text == "True"
    cookie = client.get_cookie("remember_token")
    assert cookie is not None and cookie.http_only


# -- login_required and unauthorized ----------------------------------------


@pytest.fixture
def with_login_view() -> Site:
    site = Site(POW_LOGIN_VIEW="login_page")

    @site.app.get("/login")
    def login_page() -> str:
        flashed = t.cast(
            list[tuple[str, str]], get_flashed_messages(with_categories=True)
        )
        return " | ".join(f"{category}: {message}" for category, message in flashed)

    return site


def test_redirect_flashes_login_message(with_login_view: Site) -> None:
    client = with_login_view.app.test_client()
    response = client.get("/private", follow_redirects=True)
    assert response.get_data(as_text=True) == (
        "message: Please log in to access this page."
    )


def test_login_message_and_category_are_configurable() -> None:
    site = Site(
        POW_LOGIN_VIEW="login_page",
        POW_LOGIN_MESSAGE="Sign in first.",
        POW_LOGIN_MESSAGE_CATEGORY="info",
    )

    @site.app.get("/login")
    def login_page() -> str:
        return str(get_flashed_messages(with_categories=True))

    response = site.app.test_client().get("/private", follow_redirects=True)
    assert response.get_data(as_text=True) == "[('info', 'Sign in first.')]"


def test_lazy_login_message_is_flashed_as_text() -> None:
    class Lazy:
        """What Flask-Babel's ``lazy_gettext`` returns: text when asked."""

        def __str__(self) -> str:
            return "Bitte melden Sie sich an."

    site = Site(POW_LOGIN_VIEW="login_page", POW_LOGIN_MESSAGE=Lazy())

    @site.app.get("/login")
    def login_page() -> str:
        return str(get_flashed_messages())

    response = site.app.test_client().get("/private", follow_redirects=True)
    assert response.get_data(as_text=True) == "['Bitte melden Sie sich an.']"


def test_login_message_none_flashes_nothing() -> None:
    site = Site(POW_LOGIN_VIEW="login_page", POW_LOGIN_MESSAGE=None)

    @site.app.get("/login")
    def login_page() -> str:
        return str(get_flashed_messages())

    response = site.app.test_client().get("/private", follow_redirects=True)
    assert response.get_data(as_text=True) == "[]"


def test_login_view_set_on_the_extension_wins(site: Site) -> None:
    @site.app.get("/sign-in")
    def sign_in() -> str:
        return "sign in"

    site.login_manager.login_view = "sign_in"
    response = site.app.test_client().get("/private")
    assert response.location == "/sign-in?next=%2Fprivate"


def test_login_message_none_on_the_extension_flashes_nothing(
    with_login_view: Site,
) -> None:
    with_login_view.login_manager.login_message = None
    response = with_login_view.app.test_client().get("/private", follow_redirects=True)
    assert response.get_data(as_text=True) == ""


def test_user_loader_is_accepted_and_never_called(site: Site) -> None:
    calls: list[str] = []

    @site.login_manager.user_loader
    def load_user(user_id: str) -> t.Any:
        calls.append(user_id)
        return None

    assert text(site.logged_in(), "/private") == "private ada@example.com"
    assert calls == []


def test_json_request_gets_json_401(with_login_view: Site) -> None:
    response = with_login_view.app.test_client().get(
        "/private", headers={"Accept": "application/json"}
    )
    assert response.status_code == 401
    assert response.json == {
        "error": "unauthorized",
        "message": "Please log in to access this page.",
    }


def test_json_body_gets_json_401(with_login_view: Site) -> None:
    @with_login_view.app.post("/api")
    @login_required
    def api() -> str:
        return "ok"

    response = with_login_view.app.test_client().post("/api", json={"a": 1})
    assert response.status_code == 401
    assert response.is_json


def test_browser_request_is_redirected(with_login_view: Site) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = with_login_view.app.test_client().get(
        "/private", headers={"Accept": accept}
    )
    assert response.status_code == 302
    assert response.location == "/login?next=%2Fprivate"


def make_blueprints(site: Site) -> None:
    admin = Blueprint("admin", __name__, url_prefix="/admin")
    reports = Blueprint("reports", __name__, url_prefix="/reports")
    api = Blueprint("api", __name__, url_prefix="/api")

    @admin.get("/login")
    def login() -> str:
        return "admin login"

    @admin.get("/")
    @login_required
    def index() -> str:
        return "admin"

    @reports.get("/")
    @login_required
    def report() -> str:
        return "report"

    @api.get("/")
    @login_required
    def api_index() -> str:
        return "api"

    admin.register_blueprint(reports)
    site.app.register_blueprint(admin)
    site.app.register_blueprint(api)

    @site.app.get("/login")
    def login_page() -> str:
        return "site login"


@pytest.fixture
def with_blueprints() -> Site:
    site = Site(
        POW_LOGIN_VIEW="login_page",
        POW_BLUEPRINT_LOGIN_VIEWS={"admin": "admin.login", "api": None},
    )
    make_blueprints(site)
    return site


def test_blueprint_login_view_is_used(with_blueprints: Site) -> None:
    response = with_blueprints.app.test_client().get("/admin/")
    assert response.location == "/admin/login?next=%2Fadmin%2F"


def test_nested_blueprint_uses_its_parents_login_view(with_blueprints: Site) -> None:
    response = with_blueprints.app.test_client().get("/admin/reports/")
    assert response.location == "/admin/login?next=%2Fadmin%2Freports%2F"


def test_blueprint_mapped_to_none_answers_401(with_blueprints: Site) -> None:
    assert with_blueprints.app.test_client().get("/api/").status_code == 401


def test_other_views_use_the_apps_login_view(with_blueprints: Site) -> None:
    response = with_blueprints.app.test_client().get("/private")
    assert response.location == "/login?next=%2Fprivate"


def test_unauthorized_handler_answers(site: Site) -> None:
    @site.login_manager.unauthorized_handler
    def handler() -> tuple[str, int]:
        return "go away", 403

    response = site.app.test_client().get("/private")
    assert (response.status_code, response.get_data(as_text=True)) == (403, "go away")


def test_unauthorized_can_be_called_from_a_view(site: Site) -> None:
    @site.app.get("/manual")
    def manual() -> t.Any:
        return site.login_manager.unauthorized()

    assert site.app.test_client().get("/manual").status_code == 401


# -- request_loader ------------------------------------------------------------


@pytest.fixture
def with_api_keys(site: Site) -> Site:
    @site.login_manager.request_loader
    def from_api_key(request: Request) -> t.Any:
        if request.headers.get("X-Api-Key") == "ada-key":
            return site.db.session.get(site.Member, 1)

        return None

    return site


def test_request_loader_authenticates_the_request(with_api_keys: Site) -> None:
    client = with_api_keys.app.test_client()
    headers = {"X-Api-Key": "ada-key"}
    assert text(client, "/private", headers=headers) == "private ada@example.com"


def test_request_loader_stores_nothing(with_api_keys: Site) -> None:
    client = with_api_keys.app.test_client()
    response = client.get("/private", headers={"X-Api-Key": "ada-key"})
    assert "Set-Cookie" not in response.headers

    with with_api_keys.app.app_context():
        assert with_api_keys.login_manager.credentials.sessions_by_key("Member:1") == []


def test_request_loader_user_is_for_that_request_only(with_api_keys: Site) -> None:
    client = with_api_keys.app.test_client()
    client.get("/private", headers={"X-Api-Key": "ada-key"})
    assert client.get("/private").status_code == 401


def test_request_loader_returning_none_is_anonymous(with_api_keys: Site) -> None:
    client = with_api_keys.app.test_client()
    assert client.get("/private", headers={"X-Api-Key": "wrong"}).status_code == 401


def test_session_user_wins_over_request_loader(with_api_keys: Site) -> None:
    client = with_api_keys.logged_in(1)
    calls: list[str] = []
    with_api_keys.login_manager.request_loader(lambda request: calls.append("x"))
    assert text(client, "/private") == "private ada@example.com"
    assert calls == []


# -- signals -------------------------------------------------------------------


@pytest.fixture
def heard() -> c.Iterator[list[str]]:
    seen: list[str] = []

    def on(name: str) -> t.Callable[..., None]:
        return lambda sender, **kwargs: seen.append(
            " ".join([name, *(str(getattr(v, "email", v)) for v in kwargs.values())])
        )

    receivers = [
        (user_unauthorized, on("unauthorized")),
        (user_accessed, on("accessed")),
        (user_loaded_from_request, on("from-request")),
        (session_protected, on("protected")),
    ]

    for signal, receiver in receivers:
        signal.connect(receiver)

    try:
        yield seen
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)


def test_user_unauthorized_is_sent(site: Site, heard: list[str]) -> None:
    site.app.test_client().get("/private")
    assert heard == ["accessed", "unauthorized"]


def test_user_accessed_is_sent_once_per_request(site: Site, heard: list[str]) -> None:
    client = site.logged_in()
    heard.clear()
    client.get("/private")
    assert heard == ["accessed"]


def test_user_loaded_from_request_is_sent(
    with_api_keys: Site, heard: list[str]
) -> None:
    with_api_keys.app.test_client().get("/private", headers={"X-Api-Key": "ada-key"})
    assert heard == ["accessed", "from-request ada@example.com"]


# -- LOGIN_DISABLED ------------------------------------------------------------


def guarded(site: Site) -> Site:
    @site.app.get("/guarded")
    @login_required
    def view() -> str:
        return "through"

    return site


def test_login_disabled_lets_anonymous_requests_through_login_required() -> None:
    site = guarded(Site(LOGIN_DISABLED=True))
    assert text(site.app.test_client(), "/guarded") == "through"


def test_login_disabled_is_read_at_each_request(site: Site) -> None:
    client = guarded(site).app.test_client()
    assert client.get("/guarded").status_code == 401
    site.app.config["LOGIN_DISABLED"] = True
    assert text(client, "/guarded") == "through"
    site.app.config["LOGIN_DISABLED"] = False
    assert client.get("/guarded").status_code == 401


def test_session_protected_is_never_sent_when_the_client_changes(
    site: Site, heard: list[str]
) -> None:
    client = site.logged_in()
    heard.clear()

    client.get("/private", headers={"User-Agent": "another browser"})
    client.get("/private", environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert heard == ["accessed", "accessed"]
