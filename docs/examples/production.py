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

# One key for every worker; the old one stays valid while clients move on.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "the new key")
app.config["SECRET_KEY_FALLBACKS"] = ["the old key"]

# The cookie that carries the session.
app.config.update(
    SESSION_COOKIE_SECURE=True,  # HTTPS only
    SESSION_COOKIE_HTTPONLY=True,  # not readable by JavaScript (the default)
    SESSION_COOKIE_SAMESITE="Lax",  # not sent on cross-site POSTs
    SESSION_COOKIE_NAME="__Host-session",  # host-only, path /, Secure
)

# Behind one reverse proxy: the client's IP for the session metadata.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
