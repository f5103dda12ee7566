"""The users file (app/users.py): scrypt hashes, JSON and TOML, `concord users add`, re-reading on change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from concord.app import users
from concord.app.cli import main
from concord.app.users import Directory, TokenCache, UsersFileError

FAST = {"n": 16, "r": 1, "p": 1}  # the file says its cost: tests hash cheaply, `add` with the real one


def test_a_token_verifies_against_its_hash_and_nothing_else() -> None:
    stored = users.hash_token("alice.secret", **FAST)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "1", "1") and salt and digest
    assert users.verify_token("alice.secret", stored)
    assert not users.verify_token("alice.secreT", stored)
    assert users.hash_token("alice.secret", **FAST) != stored  # a new salt each time
    salt_bytes = users._unb64(salt)
    assert users.hash_token("alice.secret", salt=salt_bytes, **FAST) == stored


@pytest.mark.parametrize("stored", ["", "scrypt$16$1$1$c2FsdHNhbHQ", "bcrypt$16$1$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                                    "scrypt$15$1$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                                    "scrypt$16$1$1$c2Fs$aGFzaGhhc2hoYXNoaGFzaA", "scrypt$x$1$1$a$b"])
def test_a_malformed_hash_verifies_nothing(stored: str) -> None:
    assert not users.verify_token("alice.secret", stored)


def test_a_token_names_its_user() -> None:
    token = users.new_token("alice")
    assert users.name_of_token(token) == "alice" and len(token) > 40
    assert users.name_of_token("no-dot") is None
    assert users.name_of_token("alice.") is None
    assert users.name_of_token("al ice.x") is None


def test_json_and_toml_files_list_the_same_users() -> None:
    h = users.hash_token("t", **FAST)
    from_json = users.parse(json.dumps({"users": [{"name": "alice", "role": "operator", "token_hash": h},
                                                  {"name": "bob", "role": "viewer", "token_hash": h}]}), toml=False)
    from_toml = users.parse(f'[[users]]\nname = "alice"\nrole = "operator"\ntoken_hash = "{h}"\n\n'
                            f'[[users]]\nname = "bob"\nrole = "viewer"\ntoken_hash = "{h}"\n', toml=True)
    assert from_json == from_toml and [u.role for u in from_json.values()] == ["operator", "viewer"]
    assert users.parse("", toml=False) == {} and users.parse("", toml=True) == {}


@pytest.mark.parametrize(("entries", "says"), [
    ([{"name": "alice", "role": "admin", "token_hash": "H"}], "role"),
    ([{"name": "al ice", "role": "viewer", "token_hash": "H"}], "user name"),
    ([{"name": "alice", "role": "viewer", "token_hash": "H"}] * 2, "listed twice"),
    ([{"name": "alice", "role": "viewer", "token_hash": "plain-text-token"}], "scrypt$n$r$p$salt$hash"),
    ([{"name": "alice", "role": "viewer", "token_hash": "H", "token": "x"}], "token"),
])
def test_a_bad_file_says_what_is_wrong(entries: list[dict[str, str]], says: str) -> None:
    h = users.hash_token("t", **FAST)
    text = json.dumps({"users": [{k: (h if v == "H" else v) for k, v in e.items()} for e in entries]})
    with pytest.raises(UsersFileError, match="users file f.json: ") as caught:
        users.parse(text, toml=False, path="f.json")
    assert says in str(caught.value) and "concord users add" in str(caught.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match="cannot read it"):
        Directory(str(tmp_path / "none.json"))


@pytest.mark.parametrize("name", ["users.json", "users.toml"])
def test_users_add_writes_a_hash_and_prints_the_token_once(tmp_path: Path, name: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    assert main(["users", "add", "alice", "--role", "operator", "--file", str(path)]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["users", "add", "bob", "--role", "viewer", "--file", str(path)]) == 0
    assert token not in path.read_text() and os.stat(path).st_mode & 0o777 == 0o600
    found = users.load(path)
    assert [(u.name, u.role) for u in found.values()] == [("alice", "operator"), ("bob", "viewer")]
    assert users.verify_token(token, found["alice"].token_hash)
    with pytest.raises(SystemExit, match="already in"):
        main(["users", "add", "alice", "--role", "viewer", "--file", str(path)])
    with pytest.raises(SystemExit, match="user name"):
        main(["users", "add", "a.b", "--role", "viewer", "--file", str(path)])


def test_the_directory_reads_the_file_again_when_it_changes_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    h = users.hash_token("t", **FAST)
    path.write_text(json.dumps({"users": [{"name": "alice", "role": "operator", "token_hash": h}]}))
    directory = Directory(str(path))
    assert directory.get("alice") is not None and directory.get("bob") is None
    path.write_text(json.dumps({"users": [{"name": "bob", "role": "viewer", "token_hash": h}, {"x": 1}]}))
    assert directory.get("alice") is not None and "users file" in directory.error  # broken: the last good one
    path.write_text(json.dumps({"users": [{"name": "bob", "role": "viewer", "token_hash": h}]}))
    assert directory.get("alice") is None and directory.get("bob") is not None and directory.error == ""


def test_a_verified_token_is_remembered_only_while_its_hash_is_the_users() -> None:
    cache = TokenCache(size=2)
    user = users.User(name="alice", role="operator", token_hash=users.hash_token("alice.s", **FAST))
    assert cache.check("alice.s", user) and cache.check("alice.s", user)
    assert not cache.check("alice.x", user)
    rotated = users.User(name="alice", role="operator", token_hash=users.hash_token("alice.new", **FAST))
    assert not cache.check("alice.s", rotated) and cache.check("alice.new", rotated)
