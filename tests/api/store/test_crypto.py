"""Secrets at rest (rotation), the server key file, API keys and canonical digests."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from api.settings import ApiSettings
from api.store.crypto import (
    SecretBox,
    SecretDecryptionError,
    SecretKeyError,
    canonical_json,
    generate_secret_key,
    hash_api_key,
    json_digest,
    key_id_of,
    load_or_create_secret_key,
    new_api_key,
    server_keys,
    verify_api_key,
)


def test_a_secret_round_trips_and_the_ciphertext_does_not_contain_it() -> None:
    box = SecretBox(generate_secret_key())
    token = box.encrypt("s3cr3t-välue")
    assert b"s3cr3t" not in token
    assert box.decrypt(token) == "s3cr3t-välue"
    assert box.encrypt("same") != box.encrypt("same")  # random IV per encryption


def test_rotation_old_keys_decrypt_the_new_key_encrypts() -> None:
    old, new = generate_secret_key(), generate_secret_key()
    stored = SecretBox(old).encrypt("value")
    rotated_box = SecretBox(new, previous=[old])
    assert rotated_box.decrypt(stored) == "value"

    fresh = rotated_box.encrypt("value")
    assert SecretBox(new).decrypt(fresh) == "value"  # encrypted under the new key only
    with pytest.raises(SecretDecryptionError):
        SecretBox(old).decrypt(fresh)

    re_encrypted = rotated_box.rotate(stored)
    assert SecretBox(new).decrypt(re_encrypted) == "value"


def test_a_secret_no_key_fits_names_the_rotation_setting() -> None:
    stored = SecretBox(generate_secret_key()).encrypt("value")
    with pytest.raises(SecretDecryptionError, match="ALTLAS_SECRET_KEY_PREVIOUS"):
        SecretBox(generate_secret_key()).decrypt(stored)
    with pytest.raises(SecretDecryptionError, match="ALTLAS_SECRET_KEY_PREVIOUS"):
        SecretBox(generate_secret_key()).rotate(stored)


@pytest.mark.parametrize("bad", ["", "short", "é" * 44, "A" * 43])
def test_a_malformed_key_is_refused_with_the_setting_named(bad: str) -> None:
    with pytest.raises(SecretKeyError, match="ALTLAS_SECRET_KEY is not a Fernet key"):
        SecretBox(bad)
    with pytest.raises(SecretKeyError, match="ALTLAS_SECRET_KEY_PREVIOUS"):
        SecretBox(generate_secret_key(), previous=[bad])


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    home = tmp_path / "home"  # missing: created
    old_umask = os.umask(0)  # even with a permissive umask, the file is private
    try:
        key = load_or_create_secret_key(home)
    finally:
        os.umask(old_umask)
    path = home / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key
    SecretBox(key)  # a valid Fernet key
    assert load_or_create_secret_key(home) == key  # read back, not replaced
    assert sorted(p.name for p in home.iterdir()) == ["secret.key"]  # no temporary file left


def test_processes_creating_the_key_at_once_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        keys.append(load_or_create_secret_key(tmp_path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1
    assert (tmp_path / "secret.key").read_text().strip() == keys[0]


def test_an_empty_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("\n")
    with pytest.raises(SecretKeyError, match="is empty"):
        load_or_create_secret_key(tmp_path)


def test_server_keys_prefer_the_setting_and_append_previous_keys(tmp_path: Path) -> None:
    current, old = generate_secret_key(), generate_secret_key()
    configured = ApiSettings(home=tmp_path, secret_key=current, secret_key_previous=[old])
    assert server_keys(configured) == [current, old]
    assert not (tmp_path / "secret.key").exists()
    from_file = server_keys(ApiSettings(home=tmp_path))
    assert from_file == [(tmp_path / "secret.key").read_text().strip()]
    box = SecretBox.from_settings(ApiSettings(home=tmp_path))
    assert box.decrypt(SecretBox(from_file[0]).encrypt("x")) == "x"


def test_new_api_keys_are_unique_and_carry_their_id() -> None:
    pairs = [new_api_key() for _ in range(50)]
    assert len({key for _, key in pairs}) == 50
    for key_id, key in pairs:
        assert len(key_id) == 16
        assert key_id[0] == "k"
        assert key_id == key_id.lower()
        assert key.startswith(f"altlas_{key_id}_")
        assert len(key) >= len("altlas_") + 16 + 1 + 43
        assert key_id_of(key) == key_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "altlas_",
        "Bearer altlas_kabcdefghijklmno_" + "x" * 43,
        "altlas_kabcdefghijklmno_" + "x" * 42,  # secret part too short
        "altlas_KABCDEFGHIJKLMNO_" + "x" * 43,  # upper-case id
        "altlas_kabcdefghijklmn_" + "x" * 43,  # id too short
        "altlas_kabcdefghijklmno_" + "x" * 43 + "!",
        "other_kabcdefghijklmno_" + "x" * 43,
    ],
)
def test_malformed_keys_have_no_id(text: str) -> None:
    assert key_id_of(text) is None


def test_key_id_of_a_well_formed_key() -> None:
    assert key_id_of("altlas_kabcdefghijklmno_" + "x-_" * 15) == "kabcdefghijklmno"


def test_api_key_hashes_are_keyed_and_verify_with_previous_server_keys() -> None:
    _, key = new_api_key()
    old, new = "old server secret", "new server secret"
    stored = hash_api_key(key, old)
    assert len(stored) == 64
    assert stored == hash_api_key(key, old)
    assert stored != hash_api_key(key, new)  # keyed: another server secret, another hash
    assert verify_api_key(key, stored, [old])
    assert verify_api_key(key, stored, [new, old])  # after rotation, the old key still verifies
    assert not verify_api_key(key, stored, [new])
    assert not verify_api_key(key + "x", stored, [new, old])
    assert not verify_api_key(new_api_key()[1], stored, [new, old])
    assert not verify_api_key(key, stored, [])


def test_canonical_json_ignores_key_order_and_spacing() -> None:
    first = {"b": [1, {"y": 2, "x": "ü"}], "a": None}
    second = {"a": None, "b": [1, {"x": "ü", "y": 2}]}
    assert (
        canonical_json(first)
        == canonical_json(second)
        == ('{"a":null,"b":[1,{"x":"ü","y":2}]}'.encode())
    )
    assert json_digest(first) == json_digest(second)
    assert len(json_digest(first)) == 64
    assert json_digest(first) != json_digest({"a": None, "b": [{"x": "ü", "y": 2}, 1]})
    with pytest.raises(ValueError, match="Out of range"):
        canonical_json({"x": float("inf")})
