"""The extension objects, made here and set up by the factory."""

from __future__ import annotations

from flask_pow import Pow

from .models import User
from .models import db

auth = Pow(db=db, user_model=User)
