"""The people who may use the console: a users file (`CONCORD_USERS_FILE`), each with a name, a role and the
hash of a token. Pure but for reading and writing that file.

A role is `viewer` (reads: the board, `/events`, `/api/*` reads) or `operator` (reads and acts). The file is
JSON (`{"users": [{"name": ..., "role": ..., "token_hash": ...}]}`) or, named `*.toml`, TOML (`[[users]]`
tables with the same keys). `concord users add NAME --role operator` creates an entry and prints its token
once (docs/console.md "Users and roles").

A token is `<name>.<secret>`: the name says which entry to check, so a request costs at most one hash, never
one per user; the secret is 32 random bytes. Only `scrypt$<n>$<r>$<p>$<salt>$<hash>` is stored (scrypt from
the standard library, a per-user salt, base64url): a copy of the file does not give anyone a token, and
guessing one offline costs a memory-hard hash per guess. Verifying takes tens of milliseconds, so the
access middleware keeps the tokens it has verified (`TokenCache`) instead of hashing on every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

import msgspec
from msgspec import Struct

VIEWER: Final = "viewer"
OPERATOR: Final = "operator"
ROLES: Final = (VIEWER, OPERATOR)
#: A user name: what audit checkpoints and the board show, and the first part of the user's token.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_@+-]{1,64}")
#: scrypt's cost: 2**14 x 8 x 128 bytes = 16 MiB of memory and some tens of milliseconds per hash.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
_SECRET_BYTES: Final = 32

E_USERS_FILE: Final = ("users file {path}: {problem}. Fix the file (docs/console.md \"Users and roles\"), or add "
                       "users with `concord users add NAME --role viewer|operator`")


class UsersFileError(ValueError):
    """The users file cannot be read or says something that is not a list of users."""


class User(Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of the users file."""

    name: str
    role: Literal["viewer", "operator"]
    token_hash: str


class UsersFile(Struct, frozen=True, forbid_unknown_fields=True):
    users: list[User] = []


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_token(token: str, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
               p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$hash` of `token`, with a new random salt unless one is given."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(token.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES,
                            maxmem=2 * 128 * n * r * p + 2**20)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """The parameters of a stored hash; ValueError naming what is wrong (never the hash itself)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("a token_hash is `scrypt$n$r$p$salt$hash`")
    n, r, p = (int(part) for part in parts[1:4])
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("scrypt parameters out of range (n a power of two up to 2**20, r 1-32, p 1-16)")
    salt, digest = _unb64(parts[4]), _unb64(parts[5])
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return n, r, p, salt, digest


def verify_token(token: str, stored: str) -> bool:
    """Whether `token` hashes to `stored` (compared in constant time; a malformed hash verifies nothing)."""
    try:
        n, r, p, salt, digest = _parse_hash(stored)
    except ValueError:
        return False
    given = hashlib.scrypt(token.encode("utf-8", "surrogateescape"), salt=salt, n=n, r=r, p=p, dklen=len(digest),
                           maxmem=2 * 128 * n * r * p + 2**20)
    return hmac.compare_digest(given, digest)


def new_token(name: str) -> str:
    """A new token for user `name`: `<name>.<secret>`."""
    return f"{name}.{secrets.token_urlsafe(_SECRET_BYTES)}"


def name_of_token(token: str) -> str | None:
    """The user name a token claims (its part before the first dot); None when it claims none."""
    name, dot, secret = token.partition(".")
    return name if dot and secret and NAME_PATTERN.fullmatch(name) else None


def parse(text: str, toml: bool, path: str = "") -> dict[str, User]:
    """The users of a file's text, by name; `UsersFileError` saying what is wrong."""
    try:
        raw = tomllib.loads(text) if toml else json.loads(text) if text.strip() else {}
        found = msgspec.convert(raw, UsersFile)
    except (tomllib.TOMLDecodeError, ValueError, msgspec.ValidationError) as exc:
        raise UsersFileError(E_USERS_FILE.format(path=path, problem=str(exc))) from None
    users: dict[str, User] = {}
    for user in found.users:
        if not NAME_PATTERN.fullmatch(user.name):
            raise UsersFileError(E_USERS_FILE.format(
                path=path, problem=f"user name {user.name!r} is not 1-64 of letters, digits and _@+-"))
        if user.name in users:
            raise UsersFileError(E_USERS_FILE.format(path=path, problem=f"user {user.name!r} is listed twice"))
        try:
            _parse_hash(user.token_hash)
        except ValueError as exc:
            raise UsersFileError(E_USERS_FILE.format(path=path, problem=f"user {user.name!r}: {exc}")) from None
        users[user.name] = user
    return users


def _is_toml(path: Path) -> bool:
    return path.suffix.lower() == ".toml"


def load(path: str | Path) -> dict[str, User]:
    """The users of the file at `path` (a missing file: `UsersFileError`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsersFileError(E_USERS_FILE.format(path=path, problem=f"cannot read it ({exc.strerror})")) from None
    return parse(text, _is_toml(path), str(path))


def _toml_entry(user: User) -> str:
    # Names and hashes are plain ASCII without quotes or backslashes: a JSON string is a TOML basic string.
    return (f"\n[[users]]\nname = {json.dumps(user.name)}\nrole = {json.dumps(user.role)}\n"
            f"token_hash = {json.dumps(user.token_hash)}\n")


def add(path: str | Path, name: str, role: str) -> str:
    """Add user `name` with `role` to the file at `path` (created when missing, readable by its owner only) and
    return the new token, which is stored nowhere: the caller shows it once."""
    path = Path(path)
    if not NAME_PATTERN.fullmatch(name):
        raise UsersFileError(f"user name {name!r}: use 1-64 of letters, digits and _@+- (no dot, no space)")
    if role not in ROLES:
        raise UsersFileError(f"role {role!r}: choose {' or '.join(ROLES)}")
    existing = load(path) if path.exists() else {}
    if name in existing:
        raise UsersFileError(f"user {name!r} is already in {path}: remove its entry first to give it a new token")
    token = new_token(name)
    user = User(name=name, role=role, token_hash=hash_token(token))  # type: ignore[arg-type]
    if _is_toml(path):
        text = (path.read_text(encoding="utf-8") if path.exists() else "") + _toml_entry(user)
    else:
        entries = [msgspec.structs.asdict(u) for u in [*existing.values(), user]]
        text = json.dumps({"users": entries}, indent=2) + "\n"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)  # readers see the old file or the new one, never half of it
    return token


class Directory:
    """The users of `CONCORD_USERS_FILE`, read again when the file changes (adding a user needs no restart).

    A file that becomes unreadable or invalid while running keeps the users read last (and says why in
    `error`); at start it is an error (`UsersFileError`), as a bad setting is.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.error = ""
        self._stamp: tuple[int, int] | None = None
        self._users: Mapping[str, User] = {}
        if path:
            self._users = load(path)
            self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def users(self) -> Mapping[str, User]:
        """The users now (the file is stat-ed on each call, read again only when it changed)."""
        if not self.path:
            return self._users
        stamp = self._stat()
        if stamp != self._stamp:
            try:
                self._users, self.error = load(self.path), ""
            except UsersFileError as exc:
                self.error = str(exc)
            self._stamp = stamp
        return self._users

    def get(self, name: str) -> User | None:
        return self.users().get(name)


class TokenCache:
    """Tokens already verified, by their SHA-256, with the stored hash they matched (bounded).

    A hit is valid only while the user's entry still has that hash: a user removed or given a new token is
    refused at once. The SHA-256 of a 32-byte random secret is no help to anyone who reads this memory.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._verified: dict[bytes, str] = {}

    def check(self, token: str, user: User) -> bool:
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        if self._verified.get(key) == user.token_hash:
            return True
        if not verify_token(token, user.token_hash):
            return False
        if len(self._verified) >= self.size:
            self._verified.clear()
        self._verified[key] = user.token_hash
        return True
