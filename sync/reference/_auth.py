"""OAuth2 client credentials, SMART v2 scopes and the device registry.

Every tablet is a client (its client id is the device id). Secrets are stored as scrypt
hashes; access tokens live in memory only, so a restart logs every client out (a client must
cope with a 401 at any time, which it must anyway). Revocation keeps a device's unexpired
tokens valid on purpose: the next FHIR call then answers 403 with the `device-revoked` signal
(see the package docstring), which is how a tablet learns it must wipe itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any
from urllib.parse import unquote_plus

from ._model import COHORT_TYPES, DEVICE_REVOKED, FIELD_RECORD_TYPES, FhirError
from ._storage import ClientRow, Store

TABLET, ADMIN = "tablet", "admin"
DEFAULT_POLICY: dict[str, int] = {
    "cache-ttl-hours": 72,
    "purge-after-hours": 168,
    "idle-lock-minutes": 5,
}
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def scopes_for(role: str) -> tuple[str, ...]:
    if role == ADMIN:
        return ("system/*.cruds",)
    letters: dict[str, str] = {}
    for rtype in COHORT_TYPES:
        letters[rtype] = "rs"
    for rtype in FIELD_RECORD_TYPES:
        letters[rtype] = "c" + letters.get(rtype, "")
    return tuple(f"system/{t}.{v}" for t, v in sorted(letters.items()))


def parse_scopes(scopes: tuple[str, ...]) -> dict[str, set[str]]:
    """`system/Type.cruds` (SMART v2; v1 `.read`/`.write`/`.*` accepted) -> type -> letters."""
    out: dict[str, set[str]] = {}
    for scope in scopes:
        if not scope.startswith("system/") or "." not in scope:
            continue
        rtype, _, perm = scope[len("system/") :].partition(".")
        letters = {"read": "rs", "write": "cud", "*": "cruds"}.get(perm, perm)
        out.setdefault(rtype, set()).update(letters)
    return out


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Principal:
    client_id: str
    role: str
    scopes: tuple[str, ...]
    expires_at: float

    @cached_property
    def granted(self) -> dict[str, set[str]]:
        return parse_scopes(self.scopes)

    def may(self, rtype: str, letter: str) -> bool:
        return letter in self.granted.get(rtype, set()) | self.granted.get("*", set())


class Auth:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._tokens: dict[bytes, Principal] = {}
        self._dummy_salt = secrets.token_bytes(16)

    # -- registry --------------------------------------------------------------------------

    def register(
        self,
        client_id: str,
        secret: str | None,
        role: str,
        policy: dict[str, Any] | None = None,
    ) -> ClientRow:
        """Create or update a client; revocation state and unspecified fields are kept."""
        if role not in (TABLET, ADMIN):
            raise FhirError(400, "invalid", "role must be tablet or admin")
        if not client_id or len(client_id) > 128 or any(c in client_id for c in ":\r\n "):
            raise FhirError(400, "invalid", "client id must be 1-128 characters, no ':' or spaces")
        old = self.store.client(client_id)
        if old is None and not secret:
            raise FhirError(400, "invalid", "a new client needs a secret")
        if old is None:
            salt = secrets.token_bytes(16)
            row = ClientRow(
                client_id,
                role,
                salt,
                hash_secret(secret or "", salt),
                None,
                {},
                int(time.time() * 1000),
            )
        else:
            row = replace(old, role=role)
            if secret:
                salt = secrets.token_bytes(16)
                row = replace(row, salt=salt, secret_hash=hash_secret(secret, salt))
        if policy is not None:
            unknown = set(policy) - set(DEFAULT_POLICY)
            if unknown or not all(isinstance(v, int) and v >= 0 for v in policy.values()):
                raise FhirError(
                    400,
                    "invalid",
                    f"policy keys are {sorted(DEFAULT_POLICY)}, values non-negative integers",
                )
            row = replace(row, policy={**row.policy, **policy})
        with self.store.transaction():
            self.store.put_client(row)
        return row

    def set_revoked(self, client_id: str, revoked: bool) -> ClientRow:
        row = self.store.client(client_id)
        if row is None:
            raise FhirError(404, "not-found", "no such client")
        row = replace(row, revoked_at=int(time.time() * 1000) if revoked else None)
        with self.store.transaction():
            self.store.put_client(row)
        return row

    def remove(self, client_id: str) -> None:
        """Forget a client and its tokens (its next call is a 401: it no longer exists).

        Revoke rather than remove a device that must wipe itself: only a known, revoked
        client is told `device-revoked`.
        """
        with self.store.transaction():
            if not self.store.delete_client(client_id):
                raise FhirError(404, "not-found", "no such client")
        self.expire_tokens(client_id)

    def policy(self, client_id: str) -> dict[str, int]:
        row = self.store.client(client_id)
        return {**DEFAULT_POLICY, **(row.policy if row else {})}

    def expire_tokens(self, client_id: str | None = None) -> int:
        doomed = [k for k, p in self._tokens.items() if client_id in (None, p.client_id)]
        for key in doomed:
            del self._tokens[key]
        return len(doomed)

    # -- token endpoint --------------------------------------------------------------------

    def issue(
        self, form: dict[str, str], authorization: str | None, lifetime_s: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """RFC 6749 4.4 client credentials: (status, JSON body, extra headers)."""
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        if "client_assertion" in form:
            return (
                400,
                {
                    "error": "invalid_client",
                    "error_description": "this server accepts client secrets only",
                },
                {},
            )
        basic = _basic_credentials(authorization)
        if basic and ("client_secret" in form):
            return (
                400,
                {
                    "error": "invalid_request",
                    "error_description": "use one client authentication method",
                },
                {},
            )
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        row = self.store.client(client_id) if client_id else None
        salt, expected = (row.salt, row.secret_hash) if row else (self._dummy_salt, b"")
        good = hmac.compare_digest(hash_secret(secret, salt), expected) and row is not None
        if not good or row is None:
            headers = {"WWW-Authenticate": 'Basic realm="kerbside-reference"'} if basic else {}
            return 401, {"error": "invalid_client"}, headers
        if row.revoked_at is not None:
            # The secret was right, so telling this client it is revoked is safe and useful:
            # `unauthorized_client` (authenticated, not allowed) differs from a wrong secret.
            return (
                400,
                {
                    "error": "unauthorized_client",
                    "error_description": DEVICE_REVOKED,
                    "error_uri": "https://kerbside.example/CodeSystem/server-signal#device-revoked",
                },
                {},
            )
        allowed = scopes_for(row.role)
        requested = form.get("scope", "").split()
        granted = tuple(s for s in allowed if not requested or s in requested)
        if requested and not granted:
            return 400, {"error": "invalid_scope"}, {}
        token = secrets.token_urlsafe(32)
        self._tokens[_key(token)] = Principal(
            row.client_id, row.role, granted, self.clock() + lifetime_s
        )
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(lifetime_s) if lifetime_s >= 1 else lifetime_s,
            "scope": " ".join(granted),
        }
        return 200, body, {}

    # -- resource server -------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind a bearer token, or a 401 (login) / 403 (device-revoked)."""
        challenge = 'Bearer realm="kerbside-reference"'
        if not authorization or not authorization.lower().startswith("bearer "):
            raise FhirError(
                401, "login", "a bearer token is required", headers={"WWW-Authenticate": challenge}
            )
        principal = self._tokens.get(_key(authorization[7:].strip()))
        if principal is None or principal.expires_at <= self.clock():
            raise FhirError(
                401,
                "login",
                "the access token is unknown or expired",
                headers={"WWW-Authenticate": challenge + ', error="invalid_token"'},
            )
        row = self.store.client(principal.client_id)
        if row is None or row.revoked_at is not None:
            raise FhirError(403, "security", "this device has been revoked", signal=DEVICE_REVOKED)
        return principal


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """client id and secret from HTTP Basic, form-decoded as RFC 6749 2.3.1 requires."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, sep, secret = raw.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if sep else None
