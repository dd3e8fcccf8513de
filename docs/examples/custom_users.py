import dataclasses

from flask import Flask

from flask_pow import Pow


@dataclasses.dataclass
class Account:
    id: int
    email: str


ACCOUNTS = {1: Account(id=1, email="ada@example.com")}


class AccountUsers:
    def key(self, user):
        return f"Account:{user.id}"

    def dump(self, user):
        return {"id": user.id, "email": user.email}

    def load(self, data):
        try:
            return Account(id=data["id"], email=data["email"])
        except (KeyError, TypeError):
            raise ValueError("not a cached Account") from None

    def reload(self, user):
        return ACCOUNTS.get(user.id)

    def label(self, user):
        return user.email

    def key_for_id(self, ident):
        return f"Account:{ident}"


app = Flask(__name__)
# The secret key comes from the environment (FLASK_SECRET_KEY), never from
# code that others can read.
app.config.from_prefixed_env()
auth = Pow(app, users=AccountUsers())
