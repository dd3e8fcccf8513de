"""A test application on a FileSystemCache, served in its own process:
``python -m tests.apps.fs_server CACHE_DIR DATABASE PORT_FILE``. It writes the
port it listens on to PORT_FILE, and serves until it is terminated.
"""

from __future__ import annotations

import sys

from cachelib import FileSystemCache
from werkzeug.serving import make_server

from flask_pow import Pow
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_app


def main() -> None:
    cache_dir, database, port_file = sys.argv[1:4]
    app, db, User = make_app(
        FileSystemCache(cache_dir, threshold=0),
        f"sqlite:///{database}",
        POW_SESSION_TTL_RENEWAL=1,
    )
    env = Env(app, db, User, Pow(app, db=db, user_model=User))

    # Real time in this process: the clock the tests move by hand is not used.
    with app.app_context():
        env.pow.credentials.clock = __import__("time").time

    add_routes(env)
    server = make_server("127.0.0.1", 0, app, threaded=True)

    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))

    __import__("os").replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
