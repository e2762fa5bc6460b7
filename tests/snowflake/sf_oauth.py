"""External OAuth token validation for the rig's Snowflake front, done the way Snowflake does it.

Snowflake's External OAuth security integration trusts RS256 JWTs whose signature verifies
against a configured JWKS URL (or RSA key), whose `iss` is the configured issuer and whose `aud`
is one of the configured audiences. The role comes from the scope claim (`scp` or `scope`, as
EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE names it; one of them, not both) as
`session:role:NAME`; the user comes from the claim named by TOKEN_USER_MAPPING_CLAIM. The token is
checked only at login, with no clock tolerance.

Error codes, as real Snowflake answers them (strings, like the connectors compare them):
- 390303 "Invalid OAuth access token." for a bad signature, unknown key, wrong iss/aud, nbf in the
  future, a missing user claim or a malformed token;
- 390318 "OAuth access token expired." when `exp` has passed;
- 390189 when the requested role (or the only role, when none was requested) is not in the scope;
- 390309 when the request's LOGIN_NAME differs from the token's user.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

CODE_INVALID_TOKEN = "390303"
CODE_EXPIRED_TOKEN = "390318"
CODE_ROLE_NOT_ALLOWED = "390189"
CODE_USER_MISMATCH = "390309"

# Snowflake blocks these roles for External OAuth unless the integration's
# EXTERNAL_OAUTH_BLOCKED_ROLES_LIST is changed.
BLOCKED_ROLES = {"ACCOUNTADMIN", "ORGADMIN", "SECURITYADMIN"}


class OAuthError(Exception):
    def __init__(self, code: str, message: str, claims: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.claims = claims or {}


@dataclass
class Verified:
    claims: dict[str, Any]
    login_name: str
    role: str
    scopes: list[str] = field(default_factory=list)


def scopes_of(claims: dict[str, Any], attribute: str = "scp") -> list[str]:
    """The role scopes in `attribute` (EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE): only that claim."""
    raw = claims.get(attribute)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [s for s in raw.split() if s]
    if isinstance(raw, list):
        return [str(s) for s in raw]
    return []


def roles_in(scopes: list[str]) -> list[str]:
    prefix = "session:role:"
    return [s[len(prefix) :] for s in scopes if s.lower().startswith(prefix)]


def normalise_role(role: str) -> str:
    """An identifier as Snowflake resolves it: quoted keeps its case, unquoted is upper-cased."""
    role = role.strip()
    if len(role) >= 2 and role.startswith('"') and role.endswith('"'):
        return role[1:-1]
    return role.upper()


class JwksCache:
    """Public keys from the configured JWKS URLs, fetched over HTTPS trusting `ca_file`.

    Keys are fetched at first use and again whenever a token names a `kid` that is not known
    (key rotation)."""

    def __init__(self, urls: list[str], ca_file: str | None):
        self.urls = urls
        self.ca_file = ca_file
        self.keys: dict[str, Any] = {}
        self.anonymous: list[Any] = []
        self.fetched_at = 0.0
        self.fetches = 0
        self.lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
        return ctx

    def _fetch(self) -> None:
        keys: dict[str, Any] = {}
        anonymous: list[Any] = []
        errors = []
        for url in self.urls:
            try:
                ctx = self._context() if url.startswith("https:") else None
                with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
                    doc = json.loads(resp.read())
            except Exception as e:  # noqa: BLE001
                errors.append(f"{url}: {e}")
                continue
            for jwk in doc.get("keys", []):
                if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
                    continue
                key = RSAAlgorithm.from_jwk(json.dumps(jwk))
                if jwk.get("kid"):
                    keys[jwk["kid"]] = key
                else:
                    anonymous.append(key)
        if errors and not keys and not anonymous:
            raise OAuthError(CODE_INVALID_TOKEN, "Invalid OAuth access token. (JWKS unavailable)")
        self.keys, self.anonymous = keys, anonymous
        self.fetched_at = time.monotonic()
        self.fetches += 1

    def candidates(self, kid: str | None) -> list[Any]:
        with self.lock:
            if self.fetches == 0:
                self._fetch()
            if kid is not None and kid not in self.keys:
                # An unknown key id: the issuer may have rotated its keys.
                self._fetch()
            if kid is not None:
                return [self.keys[kid]] if kid in self.keys else []
            return list(self.keys.values()) + self.anonymous


class Validator:
    def __init__(
        self,
        jwks_urls: list[str],
        issuers: list[str],
        audience: str,
        user_claim: str,
        ca_file: str | None,
        scope_claim: str = "scp",
    ):
        self.jwks = JwksCache(jwks_urls, ca_file)
        self.issuers = issuers
        self.audience = audience
        self.user_claim = user_claim
        self.scope_claim = scope_claim

    def verify(self, token: str, requested_role: str | None, login_name: str | None) -> Verified:
        """Checks a token like Snowflake's External OAuth integration. Blocking (may fetch JWKS)."""
        invalid = "Invalid OAuth access token."
        if not token:
            raise OAuthError(CODE_INVALID_TOKEN, invalid)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OAuthError(CODE_INVALID_TOKEN, invalid) from None
        if header.get("alg") != "RS256":
            raise OAuthError(CODE_INVALID_TOKEN, invalid)
        if not self.jwks.urls:
            raise OAuthError(CODE_INVALID_TOKEN, invalid + " (no JWKS configured)")
        keys = self.jwks.candidates(header.get("kid"))
        if not keys:
            raise OAuthError(CODE_INVALID_TOKEN, invalid)

        claims: dict[str, Any] | None = None
        last: Exception | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256"],
                    audience=self.audience,
                    issuer=self.issuers if self.issuers else None,
                    leeway=0,
                    options={
                        "require": ["exp", "iss", "aud"],
                        "verify_iat": False,
                    },
                )
                break
            except jwt.ExpiredSignatureError:
                # The signature was good (PyJWT checks it first); only the time is up.
                raise OAuthError(CODE_EXPIRED_TOKEN, "OAuth access token expired.", _unverified(token)) from None
            except jwt.PyJWTError as e:
                last = e
        if claims is None:
            raise OAuthError(CODE_INVALID_TOKEN, invalid, _unverified(token)) from last
        if not self.issuers:
            raise OAuthError(CODE_INVALID_TOKEN, invalid + " (no issuer configured)", claims)

        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user:
            raise OAuthError(CODE_INVALID_TOKEN, invalid, claims)
        if login_name and login_name.casefold() != user.casefold():
            raise OAuthError(
                CODE_USER_MISMATCH,
                "The user you were trying to authenticate as differs from the user tied to the access token.",
                claims,
            )

        scopes = scopes_of(claims, self.scope_claim)
        granted = [normalise_role(r) for r in roles_in(scopes)]
        any_role = any(s.lower() == "session:role-any" for s in scopes)
        if requested_role:
            role = normalise_role(requested_role)
            allowed = role in granted or any_role
        else:
            role = granted[0] if len(granted) == 1 else "PUBLIC"
            allowed = len(granted) == 1
        if not allowed or role in BLOCKED_ROLES:
            raise OAuthError(
                CODE_ROLE_NOT_ALLOWED,
                "The role requested in the connection or the default role if none was requested in the "
                f"connection ('{role}') is not listed in the Access Token or was filtered. Please specify "
                "another role, or contact your OAuth Authorization server administrator.",
                claims,
            )
        return Verified(claims=claims, login_name=user, role=role, scopes=scopes)


def _unverified(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
