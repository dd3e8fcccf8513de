from flask import Flask

from .extensions import db
from .extensions import login_manager
from .models import Anonymous
from .models import User
from .views import bp


def create_app(config=None):
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite://",
        POW_LOGIN_VIEW="main.login",
    )
    # FLASK_SECRET_KEY from the environment, never from code.
    app.config.from_prefixed_env()
    app.config.update(config or {})
    db.init_app(app)
    # The model is known here, once every module is imported.
    login_manager.init_app(app, db=db, user_model=User)
    login_manager.anonymous_user = Anonymous
    app.register_blueprint(bp)
    return app
