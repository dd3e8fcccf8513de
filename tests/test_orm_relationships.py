"""Relationships cached with the user (``POW_CACHE_RELATIONSHIPS``): roles
and permissions read by model methods and templates at zero SQL, and a
commit that changes a held row, or which rows a user holds, rewrites every
cached user holding it.
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from cachelib import BaseCache
from cachelib import SimpleCache
from flask import g
from flask.testing import FlaskClient
from sqlalchemy.exc import InvalidRequestError

from flask_pow import NotCachedError
from flask_pow import current_user
from flask_pow import database_user
from flask_pow import reload_user
from flask_pow import sync_user
from tests.support.env import QueryCounter
from tests.support.roles import MODERATE
from tests.support.roles import RolesApp
from tests.support.roles import make_roles_app


@pytest.fixture
def roles(cache: BaseCache, tmp_path: t.Any) -> RolesApp:
    return make_roles_app(cache, f"sqlite:///{tmp_path / 'roles.db'}")


@pytest.fixture
def queries(roles: RolesApp) -> t.Iterator[QueryCounter]:
    counter = QueryCounter()

    with roles.app.app_context():
        engine = roles.db.engine

    sa.event.listen(engine, "before_cursor_execute", counter)
    yield counter
    sa.event.remove(engine, "before_cursor_execute", counter)


def logged_in(
    roles: RolesApp, email: str, role: str, teams: t.Sequence[str] = ()
) -> FlaskClient:
    client = roles.app.test_client()
    user_id = roles.add_user(email, role, teams)
    assert client.post(f"/login/{user_id}").status_code == 200
    return client


def page(client: FlaskClient, path: str = "/") -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_base_template_calling_can_costs_zero_sql(
    roles: RolesApp, queries: QueryCounter
) -> None:
    client = logged_in(roles, "mod@example.com", "Moderator")
    queries.statements.clear()

    assert page(client) == "mod@example.com [Moderator] moderate | home"
    assert page(client) == "mod@example.com [Moderator] moderate | home"
    assert queries.statements == []


def test_a_collection_relationship_is_read_from_the_cache(
    roles: RolesApp, queries: QueryCounter
) -> None:
    client = logged_in(roles, "ada@example.com", "User", ["red", "blue"])
    queries.statements.clear()

    assert page(client, "/teams") == "blue,red"
    assert queries.statements == []


@pytest.mark.backends
def test_a_committed_change_to_a_role_is_seen_on_the_next_request_at_zero_sql(
    roles: RolesApp, queries: QueryCounter
) -> None:
    client = logged_in(roles, "ada@example.com", "User")
    other = logged_in(roles, "bob@example.com", "User")
    assert "moderate" not in page(client)

    roles.commit(lambda s: setattr(roles.role(s, "User"), "permissions", MODERATE))
    queries.statements.clear()

    assert page(client) == "ada@example.com [User] moderate | home"
    assert page(other) == "bob@example.com [User] moderate | home"
    assert queries.statements == []


def test_a_role_renamed_in_a_view_is_seen_by_that_request_and_the_next(
    roles: RolesApp, queries: QueryCounter
) -> None:

    @roles.app.post("/rename")
    def rename() -> str:
        roles.role(roles.db.session, "User").name = "Member"
        roles.db.session.commit()
        return str(current_user.role.name)

    client = logged_in(roles, "ada@example.com", "User")

    assert client.post("/rename").get_data(as_text=True) == "Member"
    queries.statements.clear()
    assert page(client) == "ada@example.com [Member] | home"
    assert queries.statements == []


def test_a_user_given_another_role_sees_it_on_the_next_request(
    roles: RolesApp, queries: QueryCounter
) -> None:
    client = logged_in(roles, "ada@example.com", "User")

    def promote(session: t.Any) -> None:
        user = session.scalar(sa.select(roles.User).filter_by(email="ada@example.com"))
        user.role = roles.role(session, "Administrator")

    roles.commit(promote)
    queries.statements.clear()

    assert page(client) == "ada@example.com [Administrator] moderate admin | home"
    assert queries.statements == []


def test_a_user_added_to_a_team_from_the_team_side_sees_it(roles: RolesApp) -> None:
    client = logged_in(roles, "ada@example.com", "User", ["red"])

    def join(session: t.Any) -> None:
        user = session.scalar(sa.select(roles.User).filter_by(email="ada@example.com"))
        blue = session.scalar(sa.select(roles.Team).filter_by(name="blue"))
        blue.members.append(user)

    roles.commit(join)

    assert page(client, "/teams") == "blue,red"


def test_a_team_renamed_rewrites_its_members(roles: RolesApp) -> None:
    client = logged_in(roles, "ada@example.com", "User", ["red"])

    def rename(session: t.Any) -> None:
        session.scalar(sa.select(roles.Team).filter_by(name="red")).name = "crimson"

    roles.commit(rename)

    assert page(client, "/teams") == "crimson"


def test_a_deleted_team_leaves_its_members(roles: RolesApp) -> None:
    client = logged_in(roles, "ada@example.com", "User", ["red", "blue"])

    def delete(session: t.Any) -> None:
        session.delete(session.scalar(sa.select(roles.Team).filter_by(name="red")))

    roles.commit(delete)

    assert page(client, "/teams") == "blue"


def test_a_rolled_back_change_to_a_role_changes_nothing(roles: RolesApp) -> None:
    client = logged_in(roles, "ada@example.com", "User")

    with roles.app.app_context():
        roles.role(roles.db.session, "User").permissions = MODERATE
        roles.db.session.flush()
        roles.db.session.rollback()

    assert "moderate" not in page(client)


def test_a_relationship_not_listed_raises_naming_the_setting(roles: RolesApp) -> None:

    @roles.app.get("/posts")
    def posts() -> str:
        try:
            return str(len(g.current_user.posts))
        except NotCachedError as e:
            return str(e)

    client = logged_in(roles, "ada@example.com", "User")

    assert page(client, "/posts") == (
        "User.posts is a relationship that flask_pow does not cache: name it in"
        " POW_CACHE_RELATIONSHIPS to cache it with the user (a relationship of the"
        " user model, one level deep), or read it from the row:"
        " flask_pow.database_user(), or @reload_user on the view."
    )


def test_a_cached_rows_own_relationships_are_not_cached(roles: RolesApp) -> None:

    @roles.app.get("/role-users")
    def role_users() -> str:
        try:
            return str(len(g.current_user.role.users))
        except NotCachedError as e:
            return str(e)

    client = logged_in(roles, "ada@example.com", "User")

    assert page(client, "/role-users").startswith("Role.users is a relationship")


def test_an_excluded_column_of_a_cached_row_is_not_cached(roles: RolesApp) -> None:
    @roles.app.get("/invite")
    def invite() -> str:
        try:
            return str(g.current_user.role.invite_token)
        except NotCachedError as e:
            return str(e)

    client = logged_in(roles, "ada@example.com", "User")

    assert page(client, "/invite").startswith(
        "Role.invite_token is not in flask_pow's cache: a pattern of POW_CACHE_EXCLUDE"
    )


def test_a_cached_related_row_cannot_be_added_to_a_session(roles: RolesApp) -> None:

    @roles.app.get("/add-role")
    def add_role() -> str:
        try:
            roles.db.session.add(g.current_user.role)
        except InvalidRequestError as e:
            return str(e)

        return "added"

    client = logged_in(roles, "ada@example.com", "User")

    assert page(client, "/add-role").startswith(
        "This Role is a row cached with flask_pow's current_user, built from the cache"
    )


def test_reload_user_reads_the_relationship_from_the_database(
    roles: RolesApp,
) -> None:

    @roles.app.get("/role-users-fresh")
    @reload_user
    def fresh() -> str:
        return str(len(current_user.role.users))

    client = logged_in(roles, "ada@example.com", "User")

    assert page(client, "/role-users-fresh") == "1"


def test_a_record_cached_before_the_relationship_is_healed_once(
    tmp_path: t.Any,
) -> None:
    cache = SimpleCache(threshold=100_000)
    database = f"sqlite:///{tmp_path / 'roles.db'}"
    before = make_roles_app(cache, database, POW_CACHE_RELATIONSHIPS=[])
    client = logged_in(before, "ada@example.com", "User")
    after = make_roles_app(cache, database.replace("roles.db", "roles2.db"))
    after.add_user("ada@example.com", "Moderator")
    client = t.cast(t.Any, client)
    client.application = after.app

    assert page(client) == "ada@example.com [Moderator] moderate | home"
    counter = QueryCounter()

    with after.app.app_context():
        sa.event.listen(after.db.engine, "before_cursor_execute", counter)

    assert page(client) == "ada@example.com [Moderator] moderate | home"
    assert counter.statements == []


def test_an_unknown_relationship_is_refused_at_init_app(tmp_path: t.Any) -> None:
    with pytest.raises(ValueError, match="names 'roles', which is not a relationship"):
        make_roles_app(
            SimpleCache(),
            f"sqlite:///{tmp_path / 'r.db'}",
            POW_CACHE_RELATIONSHIPS=["roles"],
        )


def test_database_user_twice_loads_the_row_once(
    roles: RolesApp, queries: QueryCounter
) -> None:
    @roles.app.get("/rows")
    def rows() -> str:
        # No reference kept between the calls, as in a template.
        first = database_user().role.users[0].email
        return f"{first} {database_user().role.users[0].email}"

    client = logged_in(roles, "ada@example.com", "User")
    queries.statements.clear()

    assert page(client, "/rows") == "ada@example.com ada@example.com"
    assert len(queries.statements) == 3  # the user, its role, the role's users


def test_database_user_after_a_commit_is_the_row_again(roles: RolesApp) -> None:
    @roles.app.post("/rename-twice")
    def rename_twice() -> str:
        database_user().email = "ada@new.example.com"
        roles.db.session.commit()
        roles.db.session.close()  # as db.session.remove() between units of work
        return str(database_user().email)

    client = logged_in(roles, "ada@example.com", "User")

    assert client.post("/rename-twice").get_data(as_text=True) == "ada@new.example.com"


def test_a_suite_keeping_one_app_context_pushed_sees_role_changes(
    roles: RolesApp, queries: QueryCounter
) -> None:
    with roles.app.app_context():
        ada = logged_in(roles, "ada@example.com", "User")
        bob = logged_in(roles, "bob@example.com", "Moderator")
        assert "moderate" not in page(ada)

        roles.role(roles.db.session, "User").permissions = MODERATE
        roles.db.session.commit()
        queries.statements.clear()

        assert page(ada) == "ada@example.com [User] moderate | home"
        assert page(bob) == "bob@example.com [Moderator] moderate | home"
        assert queries.statements == []


def test_sync_user_of_the_proxy_keeps_the_cached_role(roles: RolesApp) -> None:
    @roles.app.post("/sync")
    def sync() -> str:
        sync_user(current_user)
        return "synced"

    client = logged_in(roles, "mod@example.com", "Moderator")

    assert client.post("/sync").text == "synced"
    assert page(client) == "mod@example.com [Moderator] moderate | home"
