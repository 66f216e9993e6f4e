"""Bearer tokens stored only as SM3 hashes: ``<name> <role> <sm3 hex>`` per line in the tokens file.

Tokens are 256-bit random strings (:func:`new_token`), so one hash is enough (no password stretching is
needed for them); the file holds no secret. A presented token is hashed and compared in constant time.
Roles: ``client`` (the API) and ``admin`` (the API and ``/admin/*``: reload).
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..package.sm3 import sm3

ROLES = ("client", "admin")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class TokenFileError(ValueError):
    """The tokens file is missing or malformed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str


def hash_token(token: str) -> str:
    return sm3(token.encode("utf-8")).hex()


def new_token() -> str:
    return "pmm_" + secrets.token_urlsafe(32)


class TokenStore:
    """Looks presented tokens up by their SM3 hash."""

    def __init__(self, entries: dict[str, Identity]):
        self._by_hash = entries

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TokenStore:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise TokenFileError(
                f"cannot read tokens file {str(path)!r}: {err.strerror or err}; "
                "create it with: python tools/serve.py token --tokens FILE --name NAME"
            ) from None
        entries: dict[str, Identity] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if (
                len(parts) != 3
                or not _NAME.match(parts[0])
                or parts[1] not in ROLES
                or not re.fullmatch(r"[0-9a-f]{64}", parts[2])
            ):
                raise TokenFileError(
                    f"{path}:{number}: expected '<name> <{'|'.join(ROLES)}> <64 hex sm3>', got "
                    f"{len(parts)} fields; tokens themselves never go in this file"
                )
            entries[parts[2]] = Identity(parts[0], parts[1])
        if not entries:
            raise TokenFileError(f"tokens file {str(path)!r} lists no token; add one with tools/serve.py token")
        return cls(entries)

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity for an ``Authorization: Bearer <token>`` header value, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[len("Bearer ") :].strip()
        if not token or len(token) > 256:
            return None
        digest = hash_token(token)
        for known, identity in self._by_hash.items():  # constant time per entry; a handful of entries
            if hmac.compare_digest(known, digest):
                return identity
        return None

    def __len__(self) -> int:
        return len(self._by_hash)


def add_token(path: str | os.PathLike, name: str, role: str = "client") -> str:
    """Draw a token, append its hash to ``path`` (created 0600) and return the token (shown once)."""
    if not _NAME.match(name):
        raise TokenFileError(f"token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")
    if role not in ROLES:
        raise TokenFileError(f"role {role!r}: choose one of {ROLES}")
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{name} {role} {hash_token(token)}\n")
    return token
