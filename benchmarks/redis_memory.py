"""Redis memory per stored session and per cached user, measured on a
redis-server this script starts on a free loopback port and stops.

    python -m benchmarks.redis_memory [--sessions N] [--users U]

Logs N sessions in for U users through the credentials cache (no HTTP),
then reports ``INFO memory`` used_memory deltas and ``MEMORY USAGE`` of one
record of each kind.
"""

from __future__ import annotations

import argparse
import tempfile
import typing as t

import sqlalchemy.orm as sa_orm
from cachelib import RedisCache
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import UserMixin
from tests.support.servers import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    args = parser.parse_args()
    server = RedisServer()

    try:
        measure(server, args.sessions, args.users)
    finally:
        server.close()


def measure(server: RedisServer, sessions: int, users: int) -> None:
    client = server.client()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tempfile.mkdtemp()}/m.db",
        POW_CACHE=RedisCache(host=client),
    )
    db = SQLAlchemy(model_class=type("B", (sa_orm.DeclarativeBase,), {}))

    class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str]
        name: sa_orm.Mapped[str]
        plan: sa_orm.Mapped[str]
        password_hash: sa_orm.Mapped[str]

    db.init_app(app)
    pow = Pow(app, db=db, user_model=User)
    metadata = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux) Firefox"}

    with app.app_context():
        people = [
            User(
                id=n,
                email=f"user{n}@example.com",
                name=f"User {n}",
                plan="pro",
                password_hash="x",
            )
            for n in range(1, users + 1)
        ]
        baseline = used(client)

        for person in people:
            pow.credentials.put(person, metadata)

        after_users = used(client)

        for n in range(sessions - users):
            pow.credentials.put(people[n % users], metadata)

        after_sessions = used(client)
        keys = sample_keys(client)

    per_first = (after_users - baseline) / users
    per_extra = (after_sessions - after_users) / max(1, sessions - users)
    version = client.info("server")["redis_version"]
    total = after_sessions - baseline
    print(f"redis-server {version}, {sessions} sessions, {users} users")
    print(f"  a user's first session, with their user records: {per_first:6.0f} B")
    print(f"  each further session of a user:                  {per_extra:6.0f} B")
    print(f"  in all: {total / 1e6:.1f} MB, {total / sessions:.0f} B per session")

    for kind, key in keys.items():
        print(f"  MEMORY USAGE of one {kind:<9} record: {client.memory_usage(key)} B")

    client.close()


def used(client: t.Any) -> int:
    return int(client.info("memory")["used_memory"])


def sample_keys(client: t.Any) -> dict[str, bytes]:
    # SCAN here only to find one key of each kind to weigh.
    found: dict[str, bytes] = {}

    for key in client.scan_iter(count=1000):
        kind = key.decode().split(":")[1].split("{")[0]
        found.setdefault(kind, key)

        if len(found) == 5:
            break

    return found


if __name__ == "__main__":
    main()
