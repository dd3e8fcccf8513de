import os

from cachelib import FileSystemCache
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)

# Redis, shared by every worker on every host.
app.config["POW_REDIS_URL"] = os.environ.get(
    "POW_REDIS_URL", "redis://localhost:6379/0"
)

# Or, on a single host, a directory every worker can write.
if os.environ.get("USE_FILES"):
    app.config["POW_REDIS_URL"] = None
    app.config["POW_CACHE"] = FileSystemCache("/var/cache/myapp/pow", threshold=0)

# One key for every worker, from the environment (a secret manager), never
# from code: FLASK_SECRET_KEY, and while rotating it the old one as
# FLASK_SECRET_KEY_FALLBACKS='["<old key>"]' (JSON), so that clients signed
# with it move on.
app.config.from_prefixed_env()

# The cookie that carries the session.
app.config.update(
    SESSION_COOKIE_SECURE=True,  # HTTPS only
    SESSION_COOKIE_HTTPONLY=True,  # not readable by JavaScript (the default)
    SESSION_COOKIE_SAMESITE="Lax",  # not sent on cross-site POSTs
    SESSION_COOKIE_NAME="__Host-session",  # host-only, path /, Secure
)

# Behind one reverse proxy: the client's IP for the session metadata.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
