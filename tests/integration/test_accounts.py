"""``PATCH`` and ``DELETE /accounts/{uuid}`` against a running auth worker (and a real broker):
status codes and bodies, the one 401, erasure in auth.db with its event in the outbox, a deleted
email signing up again, concurrent changes, the events on ``profile-insert`` in version order,
and the ``signupflow account`` and ``signup --life`` commands. Only auth runs: what member and
batch make of these events is theirs to test.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from signupflow.client import change_account, post_signups, side_by_side
from signupflow.domain.account import basic_authorization
from signupflow.domain.fake import fake_signups
from signupflow.storage.auth import ERASED
from signupflow.topics import PROFILE_INSERT
from tests.integration.kafka_util import read_topic
from tests.integration.system import System

PERSONAL = ", ".join(ERASED)


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A broker and one auth worker."""
    system = System(tmp_path_factory.mktemp("accounts"))
    try:
        system.start_broker()
        system.start("auth")
        yield system
    finally:
        system.shutdown()


def request(method: str, url: str, body: Any = None, email: str | None = None,
            password: str | None = None, header: str | None = None
            ) -> tuple[int, bytes, dict[str, str]]:
    """status, raw body and headers of one request; ``email``/``password``: HTTP Basic."""
    headers = {"Content-Type": "application/json"}
    if email is not None:
        headers["Authorization"] = basic_authorization(email, str(password))
    if header is not None:
        headers["Authorization"] = header
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def sign_up(system: System, count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` new accounts: (uuid, the signup body with its password)."""
    bodies = fake_signups(count, 0.5, seed)
    tally = asyncio.run(post_signups(system.url("auth"), bodies))
    assert len(tally.accepted) == count, tally.summary()
    return [(o.body["uuid"], o.sent) for o in tally.accepted]


def account(system: System, member_uuid: str) -> dict[str, Any]:
    columns = f"{PERSONAL}, role, version, deleted_at"
    rows = system.query("auth", f"SELECT {columns} FROM member WHERE uuid = '{member_uuid}'")
    assert len(rows) == 1
    return dict(zip([c.strip() for c in columns.split(",")], rows[0], strict=True))


def outbox_events(system: System, member_uuid: str) -> list[dict[str, Any]]:
    rows = system.query("auth", f"SELECT payload FROM outbox WHERE key = '{member_uuid}' "
                                "ORDER BY id")
    return [orjson.loads(r[0]) for r in rows]


def test_a_change_answers_the_whole_profile_and_stores_its_event(auth: System) -> None:
    [(uid, body)] = sign_up(auth, 1, seed=11)
    url = f"{auth.url('auth')}/accounts/{uid}"
    status, raw, _ = request("PATCH", url, {"nickname": " renamed_one "}, body["email"],
                             body["password"])
    assert status == 200, raw
    assert orjson.loads(raw) == {"uuid": uid, "version": 2, "nickname": "renamed_one",
                                 "favorite_styles": body["favorite_styles"]}
    status, raw, _ = request("PATCH", url, {"favorite_styles": [4]}, body["email"].upper(),
                             body["password"])
    assert (status, orjson.loads(raw)["version"]) == (200, 3)
    stored = account(auth, uid)
    assert (stored["nickname"], orjson.loads(stored["favorite_styles"]), stored["version"]) == (
        "renamed_one", [4], 3)
    events = outbox_events(auth, uid)
    assert [(e["kind"], e["version"]) for e in events] == [
        ("created", 1), ("changed", 2), ("changed", 3)]
    assert {k: events[2][k] for k in ("role", "nickname", "favorite_styles")} == {
        "role": body["role"], "nickname": "renamed_one", "favorite_styles": [4]}


def test_a_bad_change_is_refused_as_a_bad_signup_is(auth: System) -> None:
    [(uid, body)] = sign_up(auth, 1, seed=12)
    url = f"{auth.url('auth')}/accounts/{uid}"
    creds = (body["email"], body["password"])
    cases = [({"nickname": "x"}, "nickname"), ({"favorite_styles": [999]}, "favorite_styles"),
             ({"email": "new@example.com"}, "email"), ({}, "body"), ([1], "body"),
             ({"nickname": None}, "nickname")]
    for change, field in cases:
        status, raw, _ = request("PATCH", url, change, *creds)
        got = orjson.loads(raw)
        assert status == 400, (change, got)
        assert got["error"] == "invalid profile change" and got["fields"][field], got
    status, raw, _ = request("PATCH", url, b"{not json", *creds)
    assert status == 400 and b"not valid JSON" in raw
    assert account(auth, uid)["version"] == 1
    assert len(outbox_events(auth, uid)) == 1


def test_every_credential_that_does_not_open_the_account_gets_one_identical_401(
    auth: System,
) -> None:
    [(uid, body), (other_uid, other)] = sign_up(auth, 2, seed=13)
    [(gone_uid, gone)] = sign_up(auth, 1, seed=14)
    base = auth.url("auth")
    assert request("DELETE", f"{base}/accounts/{gone_uid}", None, gone["email"],
                   gone["password"])[0] == 204
    change = {"nickname": "intruder"}
    url = f"{base}/accounts/{uid}"
    attempts = {
        "no header": request("PATCH", url, change),
        "not basic": request("PATCH", url, change, header="Bearer abc"),
        "not base64": request("PATCH", url, change, header="Basic %%%"),
        "unknown email": request("PATCH", url, change, "nobody@example.com", body["password"]),
        "wrong password": request("PATCH", url, change, body["email"], "wrong-password-1"),
        "another's uuid": request("PATCH", url, change, other["email"], other["password"]),
        "malformed uuid": request("PATCH", f"{base}/accounts/not-a-uuid", change,
                                  body["email"], body["password"]),
        "deleted account": request("PATCH", f"{base}/accounts/{gone_uid}", change,
                                   gone["email"], gone["password"]),
        "delete, wrong password": request("DELETE", url, None, body["email"], "wrong-pw-12"),
        "delete, deleted account": request("DELETE", f"{base}/accounts/{gone_uid}", None,
                                           gone["email"], gone["password"]),
    }
    answers = {name: (status, raw, headers.get("WWW-Authenticate"))
               for name, (status, raw, headers) in attempts.items()}
    first = answers["no header"]
    assert first[0] == 401 and first[2] == 'Basic realm="signupflow"', first
    assert {name: a for name, a in answers.items() if a != first} == {}
    assert account(auth, uid)["version"] == 1 and account(auth, other_uid)["version"] == 1
    log = auth.log("auth").read_text(errors="replace")
    for secret in (body["password"], other["password"], gone["password"], "wrong-password-1"):
        assert secret not in log


def test_delete_erases_the_personal_data_and_the_email_can_sign_up_again(
    auth: System,
) -> None:
    [(uid, body)] = sign_up(auth, 1, seed=15)
    url = f"{auth.url('auth')}/accounts/{uid}"
    assert request("PATCH", url, {"nickname": "before_going"}, body["email"],
                   body["password"])[0] == 200
    status, raw, _ = request("DELETE", url, None, body["email"], body["password"])
    assert (status, raw) == (204, b"")
    stored = account(auth, uid)
    assert {k: stored[k] for k in ERASED} == dict.fromkeys(ERASED)
    assert (stored["role"], stored["version"]) == (body["role"], 3)
    assert stored["deleted_at"] is not None
    last = outbox_events(auth, uid)[-1]
    assert {k: last[k] for k in ("kind", "uuid", "version", "role")} == {
        "kind": "deleted", "uuid": uid, "version": 3, "role": body["role"]}
    assert set(last) == {"kind", "uuid", "version", "role", "occurred_at"}

    status, raw, _ = request("POST", f"{auth.url('auth')}/signup", body)
    assert status == 201, raw
    again = orjson.loads(raw)["uuid"]
    assert again != uid
    assert account(auth, uid)["deleted_at"] is not None, "the deleted account came back"
    assert account(auth, again)["email"] == body["email"]


def test_an_account_from_before_stored_profiles_must_give_the_whole_profile(
    auth: System,
) -> None:
    [(uid, body)] = sign_up(auth, 1, seed=16)
    conn = sqlite3.connect(auth.data_dir / "auth.db", timeout=10)
    with conn:
        conn.execute("UPDATE member SET nickname = NULL, favorite_styles = NULL "
                     "WHERE uuid = ?", (uid,))
    conn.close()
    url = f"{auth.url('auth')}/accounts/{uid}"
    status, raw, _ = request("PATCH", url, {"nickname": "half_a_profile"}, body["email"],
                             body["password"])
    assert status == 409 and b"both nickname and favorite_styles" in raw, raw
    assert account(auth, uid)["version"] == 1
    status, raw, _ = request("PATCH", url, {"nickname": "whole", "favorite_styles": [1]},
                             body["email"], body["password"])
    assert (status, orjson.loads(raw)["version"]) == (200, 2)


def test_concurrent_changes_get_consecutive_versions_published_in_order(auth: System) -> None:
    [(uid, body)] = sign_up(auth, 1, seed=17)
    count = 12
    answers: list[int] = []

    async def change(session: Any, n: int) -> None:
        outcome = await change_account(session, auth.url("auth"), uid, body["email"],
                                       body["password"], {"nickname": f"racer_{n}"})
        assert outcome.status == 200, outcome
        answers.append(outcome.body["version"])

    asyncio.run(side_by_side(list(range(count)), count, change))
    assert sorted(answers) == list(range(2, count + 2))

    def published() -> list[int]:
        return [orjson.loads(r.value)["version"]
                for r in read_topic(auth.bootstrap, PROFILE_INSERT) if r.key == uid.encode()]

    auth.wait_until(lambda: len(published()) == count + 1, 30, "every event published")
    assert published() == list(range(1, count + 2))


def test_the_account_commands(auth: System, tmp_path: Path) -> None:
    [(uid, body)] = sign_up(auth, 1, seed=18)
    password_file = tmp_path / "password"
    password_file.write_text(body["password"] + "\n")
    base = ("--email", body["email"], "--url", auth.url("auth"))
    done = auth.cli("account", "update", uid, *base, "--password-file", str(password_file),
                    "--nickname", "from_the_cli", "--style", "3", "--style", "5")
    assert (done.returncode, done.stdout) == (0, "version 2\n"), done.stderr
    stored = account(auth, uid)
    assert (stored["nickname"], orjson.loads(stored["favorite_styles"])) == ("from_the_cli",
                                                                              [3, 5])
    wrong = auth.cli("account", "delete", uid, *base, "--password-stdin",
                     stdin="not-the-password\n")
    assert wrong.returncode == 1 and "401" in wrong.stderr, wrong.stdout + wrong.stderr
    assert "wrong credentials" in wrong.stderr
    invalid = auth.cli("account", "update", uid, *base, "--password-file", str(password_file),
                       "--nickname", "x")
    assert invalid.returncode == 1 and "nickname: must be 2 to 30" in invalid.stderr
    nothing = auth.cli("account", "update", uid, *base, "--password-file", str(password_file))
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    both = auth.cli("account", "delete", uid, *base, "--password-file", str(password_file),
                    "--password-stdin")
    assert both.returncode == 2 and "exactly one" in both.stderr
    deleted = auth.cli("account", "delete", uid, *base, "--password-file", str(password_file))
    assert (deleted.returncode, deleted.stdout) == (0, "deleted\n"), deleted.stderr
    assert account(auth, uid)["email"] is None


def test_signup_life_mixes_signups_changes_and_deletions(auth: System) -> None:
    before = auth.count("auth", "member")
    result = auth.cli("signup", "--count", "30", "--seed", "19", "--life", "--url",
                      auth.url("auth"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("accepted 30 "), result.stdout
    changed, deleted = (int(w) for w in lines[1].removeprefix("lives: ").replace(
        " profile changes,", "").replace(" deletions", "").split())
    assert changed > 0 and deleted > 0, result.stdout  # seed 19: some of each
    rows = auth.query("auth", "SELECT uuid, version, deleted_at FROM member ORDER BY created_at")
    mine = rows[before:]
    assert len(mine) == 30
    assert sum(v - 1 for _, v, _ in mine) == changed + deleted
    assert sum(1 for *_, gone in mine if gone is not None) == deleted
    auth.wait_until(lambda: not auth.query(
        "auth", "SELECT id FROM outbox WHERE published_at IS NULL"), 30, "the outbox published")
    versions: dict[str, list[int]] = defaultdict(list)
    for record in read_topic(auth.bootstrap, PROFILE_INSERT):
        versions[record.key.decode()].append(orjson.loads(record.value)["version"])
    for uid, version, _ in mine:
        assert versions[uid] == list(range(1, version + 1)), uid
