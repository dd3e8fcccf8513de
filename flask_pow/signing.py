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
    """The application's secret key, which every signature of flask_pow's
    is made with.

    :param error: the exception to raise if none is set: a setup check
        raises :exc:`~flask_pow.SetupError`.
    :raise RuntimeError: if no secret key is set, saying to set one.
    """
    secret: str | bytes | None = app.secret_key

    if not secret:
        raise error(
            "flask_pow signs its token with the application's secret key, and"
            " none is set. Set 'SECRET_KEY' in the application's config."
        )

    return secret


class _Signer(Signer):
    """An itsdangerous signer that derives each key once, not on every
    request: the derivation is a deterministic HMAC of the key and salt.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        derived = self._derived.get(key)

        if derived is None:
            derived = self._derived[key] = super().derive_key(secret_key)

        return derived


def _make(keys: list[t.Any], salt: str) -> Signer:
    # itsdangerous signs with the last key and verifies with all.
    return _Signer(
        keys,
        salt=salt,
        key_derivation="hmac",
        digest_method=hashlib.sha256,
    )


class _KeySet(t.NamedTuple):
    current: Signer
    with_fallbacks: Signer | None
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
        self._cache: dict[tuple[t.Any, ...], _KeySet] = {}

    def _signers(self) -> _KeySet:
        """Signers for the current key, and for the current and fallback
        keys (``None`` if there are no fallbacks), with the values verified
        under them. Built once per set of keys.
        """
        app = current_app
        secret = require_secret_key(app)
        fallbacks = tuple(app.config.get("SECRET_KEY_FALLBACKS") or ())
        cache_key = (secret, fallbacks)
        signers = self._cache.get(cache_key)

        if signers is None:
            signers = _KeySet(
                _make([secret], self.salt),
                _make([*fallbacks, secret], self.salt) if fallbacks else None,
                {},
            )
            self._cache.clear()
            self._cache[cache_key] = signers

        return signers

    def check(self) -> None:
        """Raise :exc:`RuntimeError` now if no secret key is set."""
        self._signers()

    def sign(self, session_id: str, token: str) -> str:
        """The value to keep in the Flask session."""
        return self._signers().current.sign(f"{session_id}.{token}").decode("ascii")

    def read(self, value: object) -> tuple[str, str, bool] | None:
        """The session id and token of a value from the Flask session, and
        whether it was signed with a fallback key; ``None`` for anything that
        is not a value :meth:`sign` made with a current or fallback key.
        """
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            return None

        keys = self._signers()
        current, with_fallbacks = keys.current, keys.with_fallbacks
        verified = keys.verified.get(value)

        if verified is not None:
            return verified

        old_key = False

        try:
            payload = current.unsign(value)
        except BadSignature:
            if with_fallbacks is None:
                return None

            try:
                payload = with_fallbacks.unsign(value)
            except BadSignature:
                return None

            old_key = True

        match = _PAYLOAD.match(payload.decode("ascii", "replace"))

        if match is None:
            return None

        verified = match[1], match[2], old_key

        # Kept with the keys it was verified under: a value verified under
        # keys that were replaced meanwhile never reaches the new set.
        if len(keys.verified) >= MAX_VERIFIED:
            keys.verified.clear()

        keys.verified[value] = verified
        return verified
