from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow

db = SQLAlchemy()
login_manager = Pow()  # no db, no model here: models.py imports this module
