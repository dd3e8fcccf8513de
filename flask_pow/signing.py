"""Signing the session id and token kept in :data:`flask.session`:
``<session id>.<token>.<signature>``, HMAC-SHA256 under ``SECRET_KEY`` (or a
``SECRET_KEY_FALLBACKS`` key, then signed again) with flask_pow's own salt,
checked before the store is asked anything (no probing with guessed ids).
"""

from __future__ import annotations

import hashlib
import re
import typing as t

from flask import Flask
from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import Signer

#: The salt of the signature; distinct from the Flask session's.
SIGNER_SALT = "flask_pow.session"
#: The remember-me cookie's salt: neither value is ever valid as the other.
REMEMBER_SALT = "flask_pow.remember"
#: A longer value in the session key is not ours and is not verified.
MAX_VALUE_LENGTH = 256
#: Verified values remembered at most (per process), before starting over.
MAX_VERIFIED = 4096

# A session id is 22 characters, or 30 on Redis (a user's hash tag first).
_PAYLOAD = re.compile(r"\A([A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{30})\.([A-Za-z0-9_-]{43})\Z")


def require_secret_key(app: Flask, error: type[Exception] = RuntimeError) -> None:
    """Raise ``error``, saying to set one, if the application has no secret key."""
    if not app.secret_key:
        raise error(
            "flask_pow signs its token with the application's secret key, and"
            " none is set. Set 'SECRET_KEY' in the application's config."
        )


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
    #: Values verified under these keys (a client sends the same one each time).
    verified: dict[str, tuple[str, str, bool]]


class TokenSigner:
    """Signs and verifies flask_pow's value in the Flask session with the
    current application's keys, read at each use: a key may be set late.
    """

    #: Verified values held at most; 0 holds none (each read verifies).
    max_verified = MAX_VERIFIED

    def __init__(self, salt: str = SIGNER_SALT) -> None:
        self.salt = salt
        self._keys: _KeySet | None = None

    def _signers(self, config: t.Mapping[str, t.Any] | None = None) -> _KeySet:
        if config is None:
            config = current_app.config

        keys = (config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ()))
        known = self._keys

        # The key is checked once per key set, not on every read.
        if known is None or known.keys != keys:
            require_secret_key(current_app)
            signers = [_Signer(key, salt=self.salt) for key in keys]
            known = self._keys = _KeySet(keys, signers, {})

        return known

    def check(self) -> None:
        """Raise :exc:`RuntimeError` now if no secret key is set."""
        self._signers()

    def sign(self, session_id: str, token: str) -> str:
        """The value to keep in the Flask session."""
        signer = self._signers().signers[0]
        return signer.sign(f"{session_id}.{token}").decode("ascii")

    def read(
        self, value: object, config: t.Mapping[str, t.Any] | None = None
    ) -> tuple[str, str, bool] | None:
        """The session id and token of a value :meth:`sign` made, and whether
        a fallback key signed it; ``None`` for anything else. ``config``:
        the current application's, if the caller has it at hand.
        """
        if value is None or not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            return None

        keys = self._signers(config)

        if (verified := keys.verified.get(value)) is not None:
            return verified

        for i, signer in enumerate(keys.signers):
            try:
                payload = signer.unsign(value)
            except BadSignature:
                continue

            if (match := _PAYLOAD.match(payload.decode("ascii", "replace"))) is None:
                return None

            verified = match[1], match[2], i > 0

            # Kept with its keys, so that a change of keys forgets it.
            if self.max_verified:
                if len(keys.verified) >= self.max_verified:
                    keys.verified.clear()

                keys.verified[value] = verified

            return verified

        return None
