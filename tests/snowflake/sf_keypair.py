"""Key-pair authentication for the rig's Snowflake front, as Snowflake documents it.

A user registered with a public key (the front's --key-pair-user USER=PEM, as
`ALTER USER ... SET RSA_PUBLIC_KEY = '...'` does) logs in with AUTHENTICATOR = SNOWFLAKE_JWT and
TOKEN = a JWT it signed with the private half:

- signed RS256 with the user's private key, checked here against the registered public key;
- `iss` = `<ACCOUNT>.<USER>.SHA256:<fingerprint>`, where the fingerprint is the base64 of the
  SHA-256 of the public key's DER SubjectPublicKeyInfo (what DESCRIBE USER shows as
  RSA_PUBLIC_KEY_FP), account and user upper-case;
- `sub` = `<ACCOUNT>.<USER>`;
- `iat` and `exp`, with `exp` in the future and at most an hour after `iat`.

Sources: https://docs.snowflake.com/en/user-guide/key-pair-auth ("Key-pair authentication and
key-pair rotation") and https://docs.snowflake.com/en/developer-guide/sql-api/authenticating
("Using key-pair authentication": the claims and the fingerprint).

A refusal is Snowflake's 390144 "JWT token is invalid." with the reason the front logs (the
drivers show the message). The token itself is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization

CODE_JWT_INVALID = "390144"
MAX_LIFETIME = 3600


class KeyPairError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.code = CODE_JWT_INVALID
        self.message = message


@dataclass
class KeyPairUser:
    name: str
    public_key: object
    fingerprint: str


def fingerprint(public_key: object) -> str:
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def load_user(spec: str) -> KeyPairUser:
    """`USER=PATH` (a PEM public key) -> the registered user."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"--key-pair-user wants USER=PUBLIC_KEY_PEM_FILE, got {spec!r}")
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    return KeyPairUser(name=name.upper(), public_key=key, fingerprint=fingerprint(key))


class KeyPairUsers:
    def __init__(self, account: str, specs: list[str]):
        self.account = account.upper()
        self.users = {u.name: u for u in (load_user(s) for s in specs)}

    def verify(self, token: str, login_name: str | None) -> str:
        """The user the JWT logs in, or KeyPairError."""
        if not login_name:
            raise KeyPairError("JWT token is invalid. (LOGIN_NAME is missing)")
        user = self.users.get(login_name.upper())
        if user is None:
            raise KeyPairError(f"JWT token is invalid. (user {login_name} has no RSA public key)")
        try:
            claims = jwt.decode(
                token,
                key=user.public_key,
                algorithms=["RS256"],
                options={"require": ["iss", "sub", "iat", "exp"], "verify_aud": False},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise KeyPairError("JWT token is invalid. (expired)") from None
        except jwt.PyJWTError as e:
            raise KeyPairError(f"JWT token is invalid. ({type(e).__name__})") from None
        want_sub = f"{self.account}.{user.name}"
        want_iss = f"{want_sub}.{user.fingerprint}"
        if claims.get("sub") != want_sub:
            raise KeyPairError("JWT token is invalid. (sub is not ACCOUNT.USER)")
        if claims.get("iss") != want_iss:
            raise KeyPairError("JWT token is invalid. (iss does not name the user's public key fingerprint)")
        iat, exp = int(claims["iat"]), int(claims["exp"])
        if iat > time.time() + 60:
            raise KeyPairError("JWT token is invalid. (issued in the future)")
        if exp - iat > MAX_LIFETIME:
            raise KeyPairError("JWT token is invalid. (lifetime over one hour)")
        return user.name
