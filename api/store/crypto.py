"""Encryption of tenant secrets, API key material and the canonical digests the store compares.

Owns: `SecretBox` (Fernet with key rotation), the server key file (`load_or_create_secret_key`,
`server_keys`), API keys (`new_api_key`, `key_id_of`, `hash_api_key`, `verify_api_key`) and
`canonical_json` / `json_digest` (the one definition of "the same JSON value").

API keys are stored as an HMAC keyed by the server secret, not a bare hash: a copy of the database
alone does not allow testing guesses offline. Keys are long random strings, so a slow password hash
would buy nothing and cost every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from secrets import token_bytes, token_urlsafe
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from api.settings import ApiSettings

SECRET_KEY_FILE = "secret.key"
API_KEY_PREFIX = "altlas_"
_API_KEY = re.compile(r"^altlas_(k[a-z2-7]{15})_([A-Za-z0-9_-]{43,})$")
_HASH_KEY_LABEL = b"altlas api key hash v1"


class SecretKeyError(ValueError):
    """A configured server key is not a valid Fernet key."""


class SecretDecryptionError(Exception):
    """No configured key decrypts a stored secret."""


# --- canonical JSON -------------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 JSON of a value: keys sorted, no spaces, no NaN. Equal JSON values
    (key order ignored) give equal bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def json_digest(value: Any) -> str:
    """sha256 (hex) of `canonical_json(value)`: workflow version digests, idempotency requests."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


# --- secrets at rest ------------------------------------------------------------------------------


def generate_secret_key() -> str:
    """A new random server key (a Fernet key: 32 url-safe base64 bytes)."""
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str, what: str) -> Fernet:
    try:
        return Fernet(key.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        raise SecretKeyError(
            f"{what} is not a Fernet key (32 url-safe base64-encoded bytes; "
            "make one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)"
        ) from error


class SecretBox:
    """Encrypts with the current key; decrypts with the current key or any previous one.

    Rotation: make a new key current and list the old one in `ALTLAS_SECRET_KEY_PREVIOUS`;
    stored secrets keep decrypting, and `rotate` re-encrypts one under the current key.
    """

    def __init__(self, current: str, previous: Sequence[str] = ()) -> None:
        fernets = [_fernet(current, "ALTLAS_SECRET_KEY")]
        fernets += [_fernet(key, "an entry of ALTLAS_SECRET_KEY_PREVIOUS") for key in previous]
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> SecretBox:
        """The box of a process: `server_keys(settings)`, creating `secret.key` if needed."""
        current, *previous = server_keys(settings)
        return cls(current, previous)

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode("utf-8")
        except InvalidToken:
            raise SecretDecryptionError(
                "no configured key decrypts this secret: if ALTLAS_SECRET_KEY was rotated, list "
                "the key it replaced in ALTLAS_SECRET_KEY_PREVIOUS"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same secret encrypted under the current key."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise SecretDecryptionError(
                "no configured key decrypts this secret, so it cannot be rotated: list the key "
                "it was encrypted with in ALTLAS_SECRET_KEY_PREVIOUS"
            ) from None


def load_or_create_secret_key(home: Path) -> str:
    """The server key stored in `<home>/secret.key`, created (mode 0600) when absent.

    The new file is written in full under a temporary name opened with `O_CREAT | O_EXCL` and mode
    0600, then hard-linked into place: it is never readable by others, never seen half-written,
    and of two processes starting at once exactly one key wins (the other reads it).
    """
    home = home.expanduser()
    path = home / SECRET_KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_secret_key()
    temporary = home / f".{SECRET_KEY_FILE}.{os.getpid()}.{token_urlsafe(6)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(key + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key


def _read_key_file(path: Path) -> str:
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise SecretKeyError(f"{path} is empty; delete it to create a new key")
    _fernet(key, str(path))
    return key


def server_keys(settings: ApiSettings) -> list[str]:
    """The server keys, current first: `ALTLAS_SECRET_KEY` (or the key file in `ALTLAS_HOME`),
    then `ALTLAS_SECRET_KEY_PREVIOUS`."""
    current = settings.secret_key or load_or_create_secret_key(settings.home)
    return [current, *settings.secret_key_previous]


# --- API keys -------------------------------------------------------------------------------------


def new_api_key() -> tuple[str, str]:
    """A new API key: `(key_id, full_key)`. `key_id` (`k` + 15 base32 characters) is not secret;
    the full key `altlas_<key_id>_<43+ random characters>` is shown to its owner once."""
    key_id = "k" + base64.b32encode(token_bytes(10)).decode("ascii").lower()[:15]
    return key_id, f"{API_KEY_PREFIX}{key_id}_{token_urlsafe(32)}"


def key_id_of(full_key: str) -> str | None:
    """The key id inside an API key, or None when the text is not shaped like one."""
    match = _API_KEY.match(full_key)
    return match.group(1) if match else None


def _hash_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _HASH_KEY_LABEL, hashlib.sha256).digest()


def hash_api_key(full_key: str, secret: str) -> str:
    """HMAC-SHA256 (hex) of the whole key, keyed by a key derived from the server secret."""
    return hmac.new(_hash_key(secret), full_key.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_api_key(full_key: str, stored_hash: str, secrets: Iterable[str]) -> bool:
    """Whether `full_key` hashes to `stored_hash` under one of the server keys (current and
    previous). Every key is tried, so the time taken does not tell which one matched."""
    matched = False
    for secret in secrets:
        candidate = hash_api_key(full_key, secret)
        matched |= hmac.compare_digest(candidate.encode("ascii"), stored_hash.encode("ascii"))
    return matched


__all__ = [
    "API_KEY_PREFIX",
    "SECRET_KEY_FILE",
    "SecretBox",
    "SecretDecryptionError",
    "SecretKeyError",
    "canonical_json",
    "generate_secret_key",
    "hash_api_key",
    "json_digest",
    "key_id_of",
    "load_or_create_secret_key",
    "new_api_key",
    "server_keys",
    "verify_api_key",
]
