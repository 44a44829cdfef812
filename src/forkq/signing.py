"""forkq's one HMAC scheme: what a signed message looks like, for task messages
(`forkq.envelope`) and control messages (`forkq.engines.contract.control`) alike.

    unsigned:  <body>
    signed:    b"fq1." + <64 hex chars: HMAC-SHA256(secret, body)> + b"." + <body>

With a secret, only bytes signed with it are believed; without one, signed bytes are refused
too (a sender with a secret expects it checked, and a reader without it cannot check it).
The signature is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNED_PREFIX = b"fq1."
_SIG_LEN = 64  # hex digits of a SHA-256 HMAC


class SignatureRefused(ValueError):
    """Bytes whose signature is missing, wrong, or unexpected; the message says which."""


class Signer:
    """Signs and checks bytes with the app's secret (`Settings.secret`), or with none."""

    def __init__(self, secret: str | None) -> None:
        self._key = secret.encode() if secret else None

    @property
    def signs(self) -> bool:
        return self._key is not None

    def sign(self, body: bytes) -> bytes:
        """`body` as it is sent: signed when there is a secret."""
        if self._key is None:
            return body
        return SIGNED_PREFIX + self._digest(body) + b"." + body

    def verified(self, data: bytes) -> bytes:
        """The body of `data`, once its signature checks (or, without a secret, once it is
        known to be unsigned); SignatureRefused otherwise."""
        signed = data.startswith(SIGNED_PREFIX)
        if self._key is None:
            if signed:
                raise SignatureRefused(
                    "signed message but this worker has no secret (set FORKQ_SECRET)"
                )
            return data
        if not signed:
            raise SignatureRefused("unsigned message rejected: a secret is set")
        head = len(SIGNED_PREFIX)
        signature, dot, body = (
            data[head : head + _SIG_LEN],
            data[head + _SIG_LEN : head + _SIG_LEN + 1],
            data[head + _SIG_LEN + 1 :],
        )
        if dot != b"." or not hmac.compare_digest(signature, self._digest(body)):
            raise SignatureRefused("bad signature: message tampered with or wrong secret")
        return body

    def _digest(self, body: bytes) -> bytes:
        assert self._key is not None
        return hmac.new(self._key, body, hashlib.sha256).hexdigest().encode()
