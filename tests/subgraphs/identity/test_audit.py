"""The audit log against the suite's real MongoDB, in a database of its own."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from beanie import init_beanie
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from klikkflow.audit_cli import verify_command
from klikkflow.kit.auth import Viewer
from klikkflow.kit.crypto import derive_key
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import init_mongo
from klikkflow.platform import Platform
from subgraphs.identity.audit import (
    ZERO_HASH,
    AuditAccessDenied,
    AuditEntryDocument,
    AuditFilter,
    AuditLog,
    ChainHasher,
    ChainProblem,
    InvalidAuditCursor,
    InvalidAuditEntry,
)

SECRET = "audit-test-secret"
LOG = AuditLog.from_secret(SECRET)


@pytest.fixture(scope="module")
async def database(platform: Platform) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    name = f"audit_test_{secrets.token_hex(4)}"
    client = await init_mongo(platform.mongo_uri, name, [AuditEntryDocument])
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture(autouse=True)
async def _bound(database: AsyncDatabase[dict[str, Any]]) -> None:
    # Beanie binds the document class to one database for the whole process; verify_command
    # (in its own event loop) and other modules may have re-bound it since the last test.
    await init_beanie(database=database, document_models=[AuditEntryDocument])


@pytest.fixture
def raw(database: AsyncDatabase[dict[str, Any]]) -> AsyncCollection[dict[str, Any]]:
    return database["audit_log"]


def new_org() -> str:
    return secrets.token_hex(12)


async def make_chain(
    org: str, count: int, actions: tuple[str, ...] = ("workflow.created",), pause: float = 0
) -> list[AuditEntryDocument]:
    entries = []
    for i in range(count):
        entries.append(
            await LOG.append(
                organization_id=org,
                action=actions[i % len(actions)],
                actor_kind="user",
                actor_id=f"user-{i % 3}",
                target_kind="workflow",
                target_id=f"wf-{i}",
                ip="203.0.113.7",
                data={"n": i, "name": f"Flow {i} ✓", "tags": ["a", "b"], "ratio": i / 4},
            )
        )
        await asyncio.sleep(pause)
    return entries


async def test_a_chain_of_50_entries_verifies() -> None:
    org = new_org()
    entries = await make_chain(org, 50)

    report = await LOG.verify(org)

    assert report.ok
    assert (report.entries_checked, report.head_seq, report.head_hash) == (50, 50, entries[-1].hash)
    assert [e.seq for e in entries] == list(range(1, 51))
    assert entries[0].prev_hash == ZERO_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))


@pytest.mark.parametrize(
    "change",
    [
        {"$set": {"data.n": 999}},
        {"$set": {"actor_id": "someone-else"}},
        {"$set": {"action": "workflow.deleted"}},
        {"$set": {"ip": "198.51.100.1"}},
        {"$set": {"prev_hash": "f" * 64}},
        {"$unset": {"target_id": ""}},
    ],
)
async def test_an_edited_entry_is_named_as_modified(
    raw: AsyncCollection[dict[str, Any]], change: dict[str, Any]
) -> None:
    org = new_org()
    await make_chain(org, 30)
    await raw.update_one({"organization_id": org, "seq": 17}, change)

    report = await LOG.verify(org)

    assert report.problem == ChainProblem(17, "modified")
    assert (report.ok, report.head_seq, report.entries_checked) == (False, 16, 17)


async def test_a_moved_timestamp_is_a_modification(raw: AsyncCollection[dict[str, Any]]) -> None:
    org = new_org()
    entries = await make_chain(org, 5)
    await raw.update_one(
        {"organization_id": org, "seq": 3}, {"$set": {"at": entries[2].at - timedelta(hours=1)}}
    )

    assert (await LOG.verify(org)).problem == ChainProblem(3, "modified")


async def test_an_edit_resealed_without_the_secret_is_still_caught(
    raw: AsyncCollection[dict[str, Any]],
) -> None:
    org = new_org()
    await make_chain(org, 10)
    edited = await raw.find_one({"organization_id": org, "seq": 4})
    assert edited is not None
    edited["data"]["n"] = 12345
    for forged in (ChainHasher(None), ChainHasher(derive_key("a guess", "audit log chain"))):
        await raw.update_one(
            {"_id": edited["_id"]},
            {"$set": {"data": edited["data"], "hash": forged.digest(edited)}},
        )

        assert (await LOG.verify(org)).problem == ChainProblem(4, "modified")


@pytest.mark.parametrize("seq", [1, 25, 39])
async def test_a_deleted_entry_is_reported(raw: AsyncCollection[dict[str, Any]], seq: int) -> None:
    org = new_org()
    await make_chain(org, 40)
    await raw.delete_one({"organization_id": org, "seq": seq})

    report = await LOG.verify(org)

    assert report.problem == ChainProblem(seq, "deleted")
    assert report.head_seq == seq - 1


async def test_a_deletion_hidden_by_renumbering_is_reported(
    raw: AsyncCollection[dict[str, Any]],
) -> None:
    org = new_org()
    await make_chain(org, 30)
    await raw.delete_one({"organization_id": org, "seq": 20})
    for seq in range(21, 31):
        await raw.update_one({"organization_id": org, "seq": seq}, {"$inc": {"seq": -1}})

    assert (await LOG.verify(org)).problem == ChainProblem(20, "deleted")


@pytest.mark.parametrize(("a", "b"), [(10, 30), (1, 2), (29, 30)])
async def test_two_swapped_entries_are_reported_as_reordered(
    raw: AsyncCollection[dict[str, Any]], a: int, b: int
) -> None:
    org = new_org()
    await make_chain(org, 30)
    await raw.update_one({"organization_id": org, "seq": a}, {"$set": {"seq": -1}})
    await raw.update_one({"organization_id": org, "seq": b}, {"$set": {"seq": a}})
    await raw.update_one({"organization_id": org, "seq": -1}, {"$set": {"seq": b}})

    assert (await LOG.verify(org)).problem == ChainProblem(a, "reordered")


async def test_concurrent_writers_share_one_gapless_chain() -> None:
    org = new_org()
    # Separate AuditLog objects stand for separate processes: no shared in-process lock,
    # so they race on the unique (organization_id, seq) index and retry.
    writers = [AuditLog.from_secret(SECRET) for _ in range(10)]

    entries = await asyncio.gather(
        *(
            writers[i % len(writers)].append(
                organization_id=org, action="api_key.created", actor_kind="system", data={"i": i}
            )
            for i in range(20)
        )
    )

    assert sorted(e.seq for e in entries) == list(range(1, 21))
    assert sorted(e.data["i"] for e in entries) == list(range(20))
    report = await LOG.verify(org)
    assert report.ok
    assert report.entries_checked == 20


def admin_of(org: str, role: str = "admin") -> Viewer:
    return Viewer(user_id="u-admin", organization_id=org, role=role)


async def test_pages_run_newest_first_with_a_cursor() -> None:
    org = new_org()
    await make_chain(org, 7)

    first, cursor = await LOG.page(admin_of(org), first=3)
    second, cursor2 = await LOG.page(admin_of(org), first=3, after=cursor)
    last, end = await LOG.page(admin_of(org), first=3, after=cursor2)

    assert [e.seq for e in first] == [7, 6, 5]
    assert [e.seq for e in second] == [4, 3, 2]
    assert [e.seq for e in last] == [1]
    assert end is None


async def test_pages_filter_by_action_actor_and_time() -> None:
    org = new_org()
    actions = ("auth.login.succeeded", "member.role_changed")
    entries = await make_chain(org, 9, actions, pause=0.003)  # a distinct `at` for each
    owner = admin_of(org, role="owner")

    changes, cursor = await LOG.page(owner, first=2, filter=AuditFilter(["member.role_changed"]))
    rest, end = await LOG.page(
        owner, first=2, after=cursor, filter=AuditFilter(["member.role_changed"])
    )
    by_actor, _ = await LOG.page(owner, first=50, filter=AuditFilter(actor_id="user-1"))
    window = AuditFilter(since=entries[2].at, until=entries[5].at)
    timed, _ = await LOG.page(owner, first=50, filter=window)

    assert [e.seq for e in changes + rest] == [8, 6, 4, 2]
    assert end is None
    assert [e.seq for e in by_actor] == [8, 5, 2]
    assert [e.seq for e in timed] == [5, 4, 3]  # since is inclusive, until exclusive


async def test_pages_show_only_the_viewers_organization_to_owners_and_admins() -> None:
    mine, theirs = new_org(), new_org()
    await make_chain(mine, 2)
    await make_chain(theirs, 3)

    visible, _ = await LOG.page(admin_of(mine), first=50)

    assert {e.organization_id for e in visible} == {mine}
    assert len(visible) == 2
    for role in ("editor", "viewer"):
        with pytest.raises(AuditAccessDenied):
            await LOG.page(admin_of(mine, role=role))


@pytest.mark.parametrize("cursor", ["not-base64!", "Zm9v", "YXVkaXQ6LTE="])
async def test_a_forged_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidAuditCursor):
        await LOG.page(admin_of(new_org()), after=cursor)


async def test_events_without_an_organization_form_the_global_chain() -> None:
    before = await LOG.verify("")
    await LOG.append(
        organization_id="",
        action="auth.login.failed",
        actor_kind="anonymous",
        ip="192.0.2.1",
        data={"email": "nobody@example.com", "reason": "unknown e-mail"},
    )
    entry = await LOG.append(organization_id="", action="auth.login.failed", actor_kind="anonymous")

    report = await LOG.verify("")

    assert entry.seq == before.head_seq + 2
    assert report.ok
    assert report.head_hash == entry.hash
    assert "" in await LOG.chains()


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("auth.login.failed", {"password": "hunter2hunter2"}),
        ("api_key.created", {"key": {"Secret": "sk_live"}}),
        ("sso.config_changed", {"changes": [{"client_secret": "x"}]}),
        ("workflow.created", {"when": object()}),
        ("workflow.created", {"ratio": float("nan")}),
        ("Workflow Created", {}),
        ("workflow", {}),
    ],
)
async def test_secrets_and_non_json_data_are_refused(action: str, data: dict[str, Any]) -> None:
    org = new_org()

    with pytest.raises(InvalidAuditEntry):
        await LOG.append(organization_id=org, action=action, actor_kind="system", data=data)

    assert (await LOG.verify(org)).entries_checked == 0


def cli_settings(platform: Platform, database: AsyncDatabase[dict[str, Any]]) -> SubgraphSettings:
    return SubgraphSettings(mongo_uri=platform.mongo_uri, mongo_db=database.name, secret_key=SECRET)


async def test_verify_command_reports_each_chain_and_fails_on_a_broken_one(
    platform: Platform,
    database: AsyncDatabase[dict[str, Any]],
    raw: AsyncCollection[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    intact, broken = new_org(), new_org()
    await make_chain(intact, 12)
    await make_chain(broken, 5)
    await raw.update_one({"organization_id": broken, "seq": 3}, {"$set": {"data.n": -1}})
    settings = cli_settings(platform, database)

    ok_code = await asyncio.to_thread(verify_command, settings, intact)
    ok_out = capsys.readouterr().out
    bad_code = await asyncio.to_thread(verify_command, settings, broken)
    bad_out = capsys.readouterr().out
    all_code = await asyncio.to_thread(verify_command, settings, None)
    all_out = capsys.readouterr().out.splitlines()

    assert (ok_code, ok_out) == (0, f"organization {intact}: 12 entries, chain intact\n")
    assert (bad_code, bad_out) == (1, f"organization {broken}: entry 3 was modified\n")
    assert all_code == 1
    assert f"organization {intact}: 12 entries, chain intact" in all_out
    assert f"organization {broken}: entry 3 was modified" in all_out


async def test_verify_command_passes_when_every_chain_is_intact(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"audit_test_{secrets.token_hex(4)}"
    client = await init_mongo(platform.mongo_uri, name, [AuditEntryDocument])
    settings = SubgraphSettings(mongo_uri=platform.mongo_uri, mongo_db=name, secret_key=SECRET)
    try:
        empty_code = await asyncio.to_thread(verify_command, settings, None)
        empty_out = capsys.readouterr().out
        only = await asyncio.to_thread(verify_command, settings, "no-such-org")
        only_out = capsys.readouterr().out
        org = new_org()
        await make_chain(org, 4)
        await LOG.append(organization_id="", action="auth.login.failed", actor_kind="anonymous")

        code = await asyncio.to_thread(verify_command, settings, None)
        lines = capsys.readouterr().out.splitlines()
    finally:
        await client.drop_database(name)
        await client.close()

    assert (empty_code, empty_out) == (0, "no audit log entries\n")
    assert (only, only_out) == (0, "organization no-such-org: no entries\n")
    assert code == 0
    assert sorted(lines) == sorted(
        [
            "organization (none): 1 entry, chain intact",
            f"organization {org}: 4 entries, chain intact",
        ]
    )


async def test_verify_command_under_another_secret_fails(
    platform: Platform,
    database: AsyncDatabase[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    org = new_org()
    await make_chain(org, 2)
    settings = cli_settings(platform, database).model_copy(update={"secret_key": "rotated"})

    code = await asyncio.to_thread(verify_command, settings, org)

    assert (code, capsys.readouterr().out) == (1, f"organization {org}: entry 1 was modified\n")


def test_verify_command_without_mongodb_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command(SubgraphSettings(mongo_uri=""), None)

    assert code == 2
    assert "KLIKKFLOW_MONGO_URI" in capsys.readouterr().err
