"""Signing the session id and token kept in :data:`flask.session`.

The value is ``<session id>.<token>.<signature>``: an itsdangerous HMAC-SHA256
signature under the application's ``SECRET_KEY`` with flask_pow's own salt,
so a signature made for the Flask session is never valid here. Keys in
``SECRET_KEY_FALLBACKS`` still verify, and a value signed with one is signed
again with the current key on the way out. The signature is checked before
the store is asked anything, so guessed ids cannot probe the store.
"""

from __future__ import annotations

import hashlib
import re
import typing as t

from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import Signer

#: The salt of the signature; distinct from the Flask session's.
SIGNER_SALT = "flask_pow.session"
#: The salt of the remember-me cookie's signature: a session value is never
#: a valid remember value, nor the other way round.
REMEMBER_SALT = "flask_pow.remember"
#: A longer value in the session key is not ours and is not verified.
MAX_VALUE_LENGTH = 256
#: Verified values remembered at most (per process), before starting over.
MAX_VERIFIED = 4096

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

# A session id is 22 characters, or 30 on Redis (a user's hash tag first).
_PAYLOAD = re.compile(r"\A([A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{30})\.([A-Za-z0-9_-]{43})\Z")


def require_secret_key(
    app: Flask, error: type[Exception] = RuntimeError
) -> str | bytes:
    """The application's secret key.

    :raise RuntimeError: (or ``error``) if none is set, saying to set one.
    """
    secret: str | bytes | None = app.secret_key

    if not secret:
        raise error(
            "flask_pow signs its token with the application's secret key, and"
            " none is set. Set 'SECRET_KEY' in the application's config."
        )

    return secret


class _Signer(Signer):
    """A signer of one key, derived once, not on every request."""

    default_digest_method = staticmethod(hashlib.sha256)
    default_key_derivation = "hmac"

    def __init__(self, secret_key: str | bytes, salt: str) -> None:
        super().__init__(secret_key, salt=salt)
        self._derived = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._derived


class _KeySet(t.NamedTuple):
    keys: tuple[t.Any, ...]
    #: One signer per key, the current key's first.
    signers: list[_Signer]
    #: Values already verified under these keys: an HMAC of the same bytes
    #: under the same keys gives the same answer, and a logged-in client
    #: sends the same value on every request.
    verified: dict[str, tuple[str, str, bool]]


class TokenSigner:
    """Signs and verifies the value flask_pow keeps in the Flask session,
    with the current application's keys, read at each use since an
    application may set its key after setup.
    """

    def __init__(self, salt: str = SIGNER_SALT) -> None:
        self.salt = salt
        self._keys: _KeySet | None = None

    def _signers(self) -> _KeySet:
        app = current_app
        keys = (
            require_secret_key(app),
            *(app.config.get("SECRET_KEY_FALLBACKS") or ()),
        )

        if self._keys is None or self._keys.keys != keys:
            signers = [_Signer(key, salt=self.salt) for key in keys]
            self._keys = _KeySet(keys, signers, {})

        return self._keys

    def check(self) -> None:
        """Raise :exc:`RuntimeError` now if no secret key is set."""
        self._signers()

    def sign(self, session_id: str, token: str) -> str:
        """The value to keep in the Flask session."""
        signer = self._signers().signers[0]
        return signer.sign(f"{session_id}.{token}").decode("ascii")

    def read(self, value: object) -> tuple[str, str, bool] | None:
        """The session id and token of a value from the Flask session, and
        whether it was signed with a fallback key; ``None`` for anything that
        is not a value :meth:`sign` made with a current or fallback key.
        """
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            return None

        keys = self._signers()
        verified = keys.verified.get(value)

        if verified is not None:
            return verified

        for i, signer in enumerate(keys.signers):
            try:
                payload = signer.unsign(value)
            except BadSignature:
                continue

            match = _PAYLOAD.match(payload.decode("ascii", "replace"))

            if match is None:
                return None

            verified = match[1], match[2], i > 0

            # Kept with the keys it was verified under, so that a change of
            # keys forgets it.
            if len(keys.verified) >= MAX_VERIFIED:
                keys.verified.clear()

            keys.verified[value] = verified
            return verified

        return None
