"""Tamper-evident, append-only audit log: one hash chain per organization.

Every entry carries `seq` (1, 2, 3... per chain), the previous entry's hash and its own
hash: HMAC-SHA256 over a canonical JSON of all its other fields, keyed by a key derived
from KLIKKFLOW_SECRET_KEY, so someone who can write to MongoDB but does not hold the
secret cannot rewrite an entry and recompute the chain after it. Events that belong to
no organization (a failed log-in for an unknown e-mail) go to the global chain `""`.

Appends are safe across processes without transactions: the unique (organization_id,
seq) index lets exactly one writer take each seq, the others re-read the head and retry.

Callers get the log for their settings: `await audit_log(settings).append(...)`. The
process must have initialised Beanie with `AuditEntryDocument` (it is one of identity's
documents; another subgraph that appends adds it to its own `init_mongo` list).

Limits: deleting the newest entries (truncating the tail) leaves a valid shorter chain;
compare `VerifyReport.head_seq` / `head_hash` with a copy kept elsewhere to catch that.
Rotating KLIKKFLOW_SECRET_KEY makes older entries fail verification.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import json
import random
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from klikkflow.kit.auth import Viewer
from klikkflow.kit.crypto import derive_key
from klikkflow.kit.permissions import allowed
from klikkflow.kit.settings import AuthSettings

ActorKind = Literal["user", "api_key", "system", "anonymous"]
ProblemKind = Literal["modified", "deleted", "reordered"]

COLLECTION = "audit_log"
GLOBAL_CHAIN = ""
KEY_PURPOSE = "audit log chain"  # HKDF info: the key hashes nothing else
ZERO_HASH = "0" * 64
MAX_PAGE_SIZE = 100
MAX_APPEND_ATTEMPTS = 64
VERIFY_BATCH_SIZE = 2000
# Every field that is hashed, in no particular order (the JSON has sorted keys).
CONTENT_FIELDS = (
    "organization_id",
    "seq",
    "at",
    "actor_id",
    "actor_kind",
    "action",
    "target_kind",
    "target_id",
    "ip",
    "data",
    "prev_hash",
)
ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# Keys refused anywhere in `data`: an audit log outlives the secrets it would leak.
SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "secret",
        "secret_key",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "private_key",
    }
)
_CURSOR_PREFIX = "audit:"


class AuditEntryDocument(Document):
    organization_id: str
    seq: int
    at: datetime
    actor_kind: ActorKind
    actor_id: str | None = None
    action: str
    target_kind: str | None = None
    target_id: str | None = None
    ip: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str

    class Settings:
        name = COLLECTION
        indexes = [
            IndexModel(
                [("organization_id", ASCENDING), ("seq", ASCENDING)],
                unique=True,
                name="organization_seq_unique",
            ),
            IndexModel([("organization_id", ASCENDING), ("at", DESCENDING)]),
            # Serves "filter by action, newest first" without a sort in memory.
            IndexModel(
                [("organization_id", ASCENDING), ("action", ASCENDING), ("seq", DESCENDING)]
            ),
        ]


class InvalidAuditEntry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuditAppendConflict(Exception):
    """Other writers kept taking the next seq of this chain; nothing was written."""

    def __init__(self, organization_id: str, attempts: int) -> None:
        super().__init__(f"could not append to chain {organization_id!r} in {attempts} attempts")
        self.organization_id = organization_id
        self.attempts = attempts


class AuditAccessDenied(Exception):
    def __init__(self, role: str) -> None:
        super().__init__(f"role {role!r} may not read the audit log")
        self.role = role


class InvalidAuditCursor(Exception):
    def __init__(self, cursor: str) -> None:
        super().__init__(f"not an audit log cursor: {cursor!r}")
        self.cursor = cursor


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    kind: ProblemKind

    @property
    def message(self) -> str:
        return f"entry {self.seq} was {self.kind}"


@dataclass(frozen=True)
class VerifyReport:
    organization_id: str
    entries_checked: int
    head_seq: int  # the last intact entry's seq (0 when none)
    head_hash: str  # the last intact entry's hash: keep it elsewhere to detect truncation
    problem: ChainProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class AuditFilter:
    actions: Sequence[str] | None = None
    actor_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now_ms() -> datetime:
    """Now, truncated to what BSON stores (milliseconds) so the hash survives a round trip."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return _utc(value).isoformat(timespec="microseconds")
    # Only a tampered document holds other BSON types; its hash will not match.
    return f"<{type(value).__name__}:{value!r}>"


def canonical_json(content: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, datetimes as UTC ISO-8601 with microseconds."""
    fields = {name: content.get(name) for name in CONTENT_FIELDS}
    return json.dumps(
        fields,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    ).encode()


class ChainHasher:
    """HMAC-SHA256 with the derived key; plain SHA-256 when constructed without a key."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def digest(self, content: Mapping[str, Any]) -> str:
        payload = canonical_json(content)
        if self._key is None:
            return hashlib.sha256(payload).hexdigest()
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def matches(self, content: Mapping[str, Any]) -> bool:
        stored = content.get("hash")
        return isinstance(stored, str) and hmac.compare_digest(self.digest(content), stored)


def _clean_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON round trip: what is stored is exactly what is hashed, and nothing else fits."""
    try:
        clean = json.loads(json.dumps(dict(data or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidAuditEntry(f"data is not JSON-safe: {exc}") from exc
    _refuse_secrets(clean)
    return clean


def _refuse_secrets(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.lower() in SECRET_KEYS:
                raise InvalidAuditEntry(f"data must not hold secrets (key {key!r})")
            _refuse_secrets(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_secrets(item)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidAuditCursor(cursor) from exc
    digits = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not digits.isdigit():
        raise InvalidAuditCursor(cursor)
    return int(digits)


def _collection() -> AsyncCollection[dict[str, Any]]:
    return AuditEntryDocument.get_pymongo_collection()


class ChainVerifier:
    """Reads raw documents, so it needs no Beanie initialisation (the CLI uses it bare)."""

    def __init__(self, hasher: ChainHasher, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._hasher = hasher
        self._collection = collection

    async def chains(self) -> list[str]:
        """Every chain's organization id (`""` is the global chain)."""
        found = await self._collection.distinct("organization_id")
        return sorted(str(org) for org in found)

    async def verify(self, organization_id: str) -> VerifyReport:
        """Walk the chain in seq order, in batches; stop at the first problem."""
        expected_seq, prev_hash, checked = 1, ZERO_HASH, 0
        cursor = (
            self._collection.find({"organization_id": organization_id}, {"_id": 0})
            .sort("seq", ASCENDING)
            .batch_size(VERIFY_BATCH_SIZE)
        )
        try:
            async for raw in cursor:
                checked += 1
                problem = await self._check(organization_id, raw, expected_seq, prev_hash)
                if problem is not None:
                    return VerifyReport(
                        organization_id, checked, expected_seq - 1, prev_hash, problem
                    )
                expected_seq, prev_hash = expected_seq + 1, raw["hash"]
        finally:
            await cursor.close()
        return VerifyReport(organization_id, checked, expected_seq - 1, prev_hash)

    async def _check(
        self, organization_id: str, raw: Mapping[str, Any], expected_seq: int, prev_hash: str
    ) -> ChainProblem | None:
        seq = raw.get("seq")
        if isinstance(seq, int) and seq > expected_seq:
            return ChainProblem(expected_seq, "deleted")  # a gap
        if seq != expected_seq:
            return ChainProblem(expected_seq, "modified")  # a duplicate or non-integer seq
        if not self._hasher.matches(raw):
            return await self._explain_mismatch(organization_id, raw, expected_seq, prev_hash)
        if raw.get("prev_hash") != prev_hash:
            # A well-formed entry chained to something else: only someone holding the key
            # (or any writer, in keyless mode) can produce one. Is its predecessor elsewhere?
            elsewhere = await self._collection.find_one(
                {"organization_id": organization_id, "hash": raw.get("prev_hash")}, {"_id": 1}
            )
            return ChainProblem(expected_seq, "reordered" if elsewhere else "deleted")
        return None

    async def _explain_mismatch(
        self, organization_id: str, raw: Mapping[str, Any], expected_seq: int, prev_hash: str
    ) -> ChainProblem:
        """An entry whose hash does not match: edited, or an intact entry moved to this seq
        (it hashes correctly under another seq). A move is a reordering when the entry that
        belongs here still exists somewhere, else entries were deleted and renumbered."""
        if not await self._hashes_under_another_seq(organization_id, raw):
            return ChainProblem(expected_seq, "modified")
        rightful = await self._collection.find_one(
            {"organization_id": organization_id, "prev_hash": prev_hash}, {"_id": 1}
        )
        return ChainProblem(expected_seq, "reordered" if rightful else "deleted")

    async def _hashes_under_another_seq(self, organization_id: str, raw: Mapping[str, Any]) -> bool:
        # Only on the failure path, once per verify: a linear scan of candidate seqs is fine.
        head = await self._collection.find_one(
            {"organization_id": organization_id}, {"seq": 1}, sort=[("seq", DESCENDING)]
        )
        last = head["seq"] if head and isinstance(head.get("seq"), int) else 0
        candidate = dict(raw)
        for seq in range(1, last + 2):
            candidate["seq"] = seq
            if seq != raw.get("seq") and self._hasher.matches(candidate):
                return True
        return False


class AuditLog:
    def __init__(self, key: bytes | None) -> None:
        self._hasher = ChainHasher(key)
        # One writer per chain in this process; other processes are handled by retries.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @classmethod
    def from_secret(cls, secret: str) -> AuditLog:
        return cls(derive_key(secret, KEY_PURPOSE))

    def _lock(self, organization_id: str) -> asyncio.Lock:
        lock = self._locks.get(organization_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[organization_id] = lock
        return lock

    async def append(
        self,
        *,
        organization_id: str,
        action: str,
        actor_kind: ActorKind,
        actor_id: str | None = None,
        target_kind: str | None = None,
        target_id: str | None = None,
        ip: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> AuditEntryDocument:
        """Add an entry at the head of the organization's chain (`""`: the global chain)."""
        if not ACTION_RE.match(action):
            raise InvalidAuditEntry(f"action must be dotted lower-case words, got {action!r}")
        fields = {
            "organization_id": organization_id,
            "actor_kind": actor_kind,
            "actor_id": actor_id,
            "action": action,
            "target_kind": target_kind,
            "target_id": target_id,
            "ip": ip,
            "data": _clean_data(data),
        }
        lock = self._lock(organization_id)
        async with lock:
            return await self._insert_at_head(fields)

    async def _insert_at_head(self, fields: dict[str, Any]) -> AuditEntryDocument:
        organization_id = fields["organization_id"]
        for attempt in range(1, MAX_APPEND_ATTEMPTS + 1):
            head = await _collection().find_one(
                {"organization_id": organization_id},
                {"seq": 1, "hash": 1, "at": 1},
                sort=[("seq", DESCENDING)],
            )
            entry = self._chained(fields, head)
            try:
                await entry.insert()
            except DuplicateKeyError:
                # Another process took this seq: back off a little, re-read the head.
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
                continue
            return entry
        raise AuditAppendConflict(organization_id, MAX_APPEND_ATTEMPTS)

    def _chained(
        self, fields: dict[str, Any], head: Mapping[str, Any] | None
    ) -> AuditEntryDocument:
        at = _now_ms()
        if head is not None:
            at = max(at, _utc(head["at"]))  # keeps time order = seq order despite clock skew
        content = {
            **fields,
            "seq": head["seq"] + 1 if head else 1,
            "at": at,
            "prev_hash": head["hash"] if head else ZERO_HASH,
        }
        return AuditEntryDocument(**content, hash=self._hasher.digest(content))

    def verifier(self, collection: AsyncCollection[dict[str, Any]] | None = None) -> ChainVerifier:
        """A verifier over `collection` (default: the one Beanie bound the document to)."""
        return ChainVerifier(self._hasher, collection if collection is not None else _collection())

    async def chains(self) -> list[str]:
        return await self.verifier().chains()

    async def verify(self, organization_id: str) -> VerifyReport:
        return await self.verifier().verify(organization_id)

    async def page(
        self,
        viewer: Viewer,
        first: int = 50,
        after: str | None = None,
        filter: AuditFilter | None = None,
    ) -> tuple[list[AuditEntryDocument], str | None]:
        """The viewer's organization's entries, newest first; owners and admins only.
        Returns the page and the cursor of the next one (None when this is the last)."""
        if not allowed(viewer, "audit.read"):
            raise AuditAccessDenied(viewer.role)
        limit = max(1, min(first, MAX_PAGE_SIZE))
        query: dict[str, Any] = {"organization_id": viewer.organization_id}
        if after is not None:
            query["seq"] = {"$lt": decode_cursor(after)}
        query.update(_filter_query(filter or AuditFilter()))
        found = await AuditEntryDocument.find(query).sort("-seq").limit(limit + 1).to_list()
        entries = found[:limit]
        next_cursor = encode_cursor(entries[-1].seq) if len(found) > limit else None
        return entries, next_cursor


def _filter_query(filter: AuditFilter) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if filter.actions:
        query["action"] = {"$in": list(filter.actions)}
    if filter.actor_id is not None:
        query["actor_id"] = filter.actor_id
    at: dict[str, datetime] = {}
    if filter.since is not None:
        at["$gte"] = _utc(filter.since)
    if filter.until is not None:
        at["$lt"] = _utc(filter.until)
    if at:
        query["at"] = at
    return query


@functools.cache
def _log_for_secret(secret: str) -> AuditLog:
    return AuditLog.from_secret(secret)


def audit_log(settings: AuthSettings) -> AuditLog:
    """The process's audit log for these settings (built once per secret key)."""
    return _log_for_secret(settings.secret_key)


async def record(
    settings: AuthSettings,
    viewer: Viewer,
    action: str,
    target_kind: str,
    target_id: str,
    data: Mapping[str, Any] | None = None,
) -> AuditEntryDocument:
    """What other subgraphs call to add their own entries to the viewer's organization's
    chain (their process must register AuditEntryDocument with Beanie)."""
    return await audit_log(settings).append(
        organization_id=viewer.organization_id,
        action=action,
        actor_kind="api_key" if "api_key" in viewer.scopes else "user",
        actor_id=viewer.user_id,
        target_kind=target_kind,
        target_id=target_id,
        data=data,
    )
