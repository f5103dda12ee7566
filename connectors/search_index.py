"""The customer search index in Redis: any id a person has at hand -> the customer, for `/api/search`.

A person looking for a customer holds whatever the system in front of them shows: a Salesforce account
or opportunity id, a Stripe `cus_`/`sub_`/`in_` id, a Zendesk organization or ticket id, a NetSuite
internal id (customer, invoice, sales order) or external id, an email, a name. Workers own customers
by partition and the search box needs all of them, so each worker mirrors the customers it owns into
Redis as the drift index does (connectors/mirror.py): a customer's `SearchCard` (its ids, emails and
names, `card_of` its state) replaces what Redis had for it. The state agent submits a card only when a
change touched what the card is made of (`terms_changed`: an id came or went, a record was deleted, a
name or an email changed), not per event; after recovery, a rebalance, or a Redis that lost the index
(its `epoch`), the owned customers are mirrored again from the table.

Keys (prefix `<topic_prefix>:search:`): three sorted sets whose scores are all 0, read by lexicographic
range (ZRANGEBYLEX), with `\\0`-separated members:

* `ids`: `<id>\\0<customer key>\\0<system>\\0<kind>`: an exact id, whatever its system (ids of two
  systems may be equal: a NetSuite invoice's external id is its Stripe invoice's id, and then both hits
  are shown);
* `emails`: `<lower-cased email>\\0<customer key>`: an email, or the beginning of one;
* `names`: `<folded name>\\0<customer key>`, and the same from each of its next words (`fold`: case and
  accents folded, whitespace collapsed), so that "muller" finds "Bäckerei Müller GmbH";

and the hash `cards` (customer key -> its card as JSON: what a result shows, and what to remove when the
customer's ids change), the string `epoch`.

Bounds: a card holds only ids the customer's state holds (the state is bounded: tables/state.py
`Limits`), live records only, at most `MAX_PER_KIND` ids of one kind (the newest), `MAX_EMAILS` emails,
`MAX_NAMES` names and `NAME_WORDS` name terms each. An id that leaves the state (an invoice evicted, a
record deleted, an account merged away) leaves the index with the customer's next card. A typical
customer (bench/workload.py: an account and an opportunity, a Stripe customer, its subscription and 3
invoices, the 3 invoices (and their external ids) and the customer in NetSuite, a Zendesk organization
and a ticket) has 16 id members, 3 name members and its card (1.1 KB of JSON): 4.3 KB of Redis memory
(measured over 2,000 of them; docs/console.md).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import msgspec
import redis.asyncio as aioredis
from msgspec import Struct

from concord.connectors.mirror import RedisMirror
from concord.tables.state import CustomerState, PartyRecord, Stamp

#: Longest query accepted (characters, once stripped).
MAX_QUERY: Final = 200
#: Ids of one kind a card holds at most (the newest by their last change).
MAX_PER_KIND: Final = 100
MAX_EMAILS: Final = 10
MAX_NAMES: Final = 8
#: Name terms per name: from its first word and from each of the next ones, up to this many.
NAME_WORDS: Final = 4
#: Longest name term or email indexed (characters): a prefix up to this long still finds it.
MAX_TERM: Final = 200
_SEP: Final = "\x00"

E_EMPTY_QUERY: Final = "empty query: send ?q=<an id, an email or the beginning of a name>"
E_LONG_QUERY: Final = "query of {length} characters: at most {limit}; an id, an email or a name is shorter"
E_CONTROL_QUERY: Final = "the query holds control characters: send the id, email or name as text"


class QueryError(ValueError):
    """A query that cannot be searched for (the message says why, for a 400)."""


class SearchId(Struct, frozen=True, kw_only=True):
    """One id of a customer: its value, the system that holds it and the kind of record it names."""

    id: str
    system: str  # salesforce, stripe, zendesk, netsuite
    kind: str  # account, merged_account, opportunity, customer, subscription, invoice, organization, ticket, ...


class SearchCard(Struct, frozen=True, kw_only=True):
    """What the search index knows of one customer: what it is found by, and what a result shows."""

    key: str
    name: str | None = None  # the CRM account's name, else the first other system's
    names: tuple[str, ...] = ()  # every system's name for it, one per folded form
    emails: tuple[str, ...] = ()
    ids: tuple[SearchId, ...] = ()


def fold(text: str) -> str:
    """`text` as names are compared: accents dropped, case folded, whitespace runs as one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c) and (c.isprintable() or c.isspace()))
    return " ".join(kept.casefold().split())


def query_text(raw: str | None) -> str:
    """The query as searched for (stripped), or `QueryError` saying what is wrong with it."""
    text = (raw or "").strip()
    if not text:
        raise QueryError(E_EMPTY_QUERY)
    if len(text) > MAX_QUERY:
        raise QueryError(E_LONG_QUERY.format(length=len(text), limit=MAX_QUERY))
    if not text.isprintable():
        raise QueryError(E_CONTROL_QUERY)
    return text


# ---------------------------------------------------------------- what a state is found by


class _Record(Protocol):
    @property
    def deleted(self) -> bool: ...

    @property
    def stamp(self) -> Stamp: ...


def _live_ids(records: Mapping[str, _Record]) -> list[str]:
    """Ids of the live records, sorted; the newest `MAX_PER_KIND` when there are more (which ones, then, is
    settled again when an id comes or goes: `terms_changed` does not look at the order of changes)."""
    live = [rid for rid, record in records.items() if not record.deleted]
    if len(live) > MAX_PER_KIND:
        live = sorted(live, key=lambda rid: records[rid].stamp, reverse=True)[:MAX_PER_KIND]
    return sorted(live)


def _kind(system: str, kind: str, ids: Iterable[str]) -> list[SearchId]:
    return [SearchId(id=rid, system=system, kind=kind) for rid in ids]


def _parties(state: CustomerState) -> list[PartyRecord]:
    """Live customer records outside the CRM: billing's, then the ERP's, then support's."""
    return [r for records in (state.billing.customers, state.erp.customers, state.support.organizations)
            for r in records.values() if not r.deleted]


def display_name(state: CustomerState) -> str | None:
    """What a person calls the customer: the CRM account's name, else billing's, the ERP's, support's."""
    account = state.crm.account
    if account is not None and not account.deleted and account.name:
        return account.name.strip()
    return next((p.name.strip() for p in _parties(state) if p.name and p.name.strip()), None)


def card_of(state: CustomerState) -> SearchCard | None:
    """What the customer is found by; None for an account merged away (the winner is found instead)."""
    if state.merged_into is not None:
        return None
    crm, billing, support, erp = state.crm, state.billing, state.support, state.erp
    erp_invoices = _live_ids(erp.invoices)
    external = sorted({ref for rid in erp_invoices if (ref := erp.invoices[rid].billing_invoice_id)})
    customer_external = sorted({c.crm_account_id for c in erp.customers.values()
                                if not c.deleted and c.crm_account_id and c.crm_account_id != state.key})
    ids = [
        SearchId(id=state.key, system="salesforce", kind="account"),
        *_kind("salesforce", "merged_account", sorted(loser for loser, _ in state.absorbed)),
        *_kind("salesforce", "opportunity", _live_ids(crm.opportunities)),
        *_kind("stripe", "customer", _live_ids(billing.customers)),
        *_kind("stripe", "subscription", _live_ids(billing.subscriptions)),
        *_kind("stripe", "invoice", _live_ids(billing.invoices)),
        *_kind("zendesk", "organization", _live_ids(support.organizations)),
        *_kind("zendesk", "ticket", _live_ids(support.cases)),
        *_kind("netsuite", "customer", _live_ids(erp.customers)),
        *_kind("netsuite", "customer_external_id", customer_external[:MAX_PER_KIND]),
        *_kind("netsuite", "invoice", erp_invoices),
        *_kind("netsuite", "invoice_external_id", external[:MAX_PER_KIND]),
        *_kind("netsuite", "sales_order", _live_ids(erp.sales_orders)),
    ]
    parties = _parties(state)
    account = crm.account if crm.account is not None and not crm.account.deleted else None
    names: dict[str, str] = {}  # folded -> as first seen
    for name in ([account.name] if account is not None else []) + [p.name for p in parties]:
        if name and fold(name) and len(names) < MAX_NAMES:
            names.setdefault(fold(name), name.strip())
    emails: dict[str, None] = {}
    for party in parties:
        email = (party.email or "").strip().lower()
        if email and email.isprintable() and len(emails) < MAX_EMAILS:
            emails[email[:MAX_TERM]] = None
    return SearchCard(key=state.key, name=display_name(state), names=tuple(names.values()),
                      emails=tuple(emails), ids=tuple(ids))


# What of a record its card is made of, per collection: a record whose terms are unchanged changes no card.
def _alive(record: Any) -> tuple[Any, ...]:
    return (record.deleted,)


def _party_terms(record: PartyRecord) -> tuple[Any, ...]:
    return (record.deleted, record.name, record.email, record.crm_account_id)


def _erp_invoice_terms(record: Any) -> tuple[Any, ...]:
    return (record.deleted, record.billing_invoice_id)


_COLLECTIONS: Final = (
    (lambda s: s.crm.opportunities, _alive),
    (lambda s: s.billing.customers, _party_terms),
    (lambda s: s.billing.subscriptions, _alive),
    (lambda s: s.billing.invoices, _alive),
    (lambda s: s.support.organizations, _party_terms),
    (lambda s: s.support.cases, _alive),
    (lambda s: s.erp.customers, _party_terms),
    (lambda s: s.erp.invoices, _erp_invoice_terms),
    (lambda s: s.erp.sales_orders, _alive),
)


def terms_changed(before: CustomerState, after: CustomerState) -> bool:
    """Whether `after` may be found by other ids, emails or names than `before` (cheap: per event).

    Collections the change did not replace are skipped by identity (the state is immutable); in the
    others only records that differ are looked at, and only what a card takes from them.
    """
    if before is after:
        return False
    if before.merged_into != after.merged_into or before.absorbed != after.absorbed:
        return True
    old, new = before.crm.account, after.crm.account
    if old is not new and ((old.deleted, old.name) if old else None) != ((new.deleted, new.name) if new else None):
        return True
    for collection, terms in _COLLECTIONS:
        was, now = collection(before), collection(after)
        if was is now:
            continue
        if was.keys() != now.keys():
            return True
        if any(record is not was[rid] and terms(record) != terms(was[rid]) for rid, record in now.items()):
            return True
    return False


def name_terms(name: str) -> list[str]:
    """The folded name from its first word and from each next one (up to `NAME_WORDS` terms)."""
    words = fold(name).split(" ")
    return [" ".join(words[i:])[:MAX_TERM] for i in range(min(len(words), NAME_WORDS)) if words[i]]


class Members(Struct, frozen=True):
    """The members a card puts in each sorted set."""

    ids: frozenset[bytes]
    emails: frozenset[bytes]
    names: frozenset[bytes]


_NO_MEMBERS: Final = Members(frozenset(), frozenset(), frozenset())


def members(card: SearchCard | None) -> Members:
    if card is None:
        return _NO_MEMBERS
    key = card.key
    return Members(
        ids=frozenset(_SEP.join((i.id, key, i.system, i.kind)).encode() for i in card.ids),
        emails=frozenset(f"{email}{_SEP}{key}".encode() for email in card.emails),
        names=frozenset(f"{term}{_SEP}{key}".encode() for name in card.names for term in name_terms(name)),
    )


# ---------------------------------------------------------------- results


class SearchHit(Struct, frozen=True, kw_only=True):
    """One customer found: how it matched, and what a person needs to pick it."""

    key: str
    name: str | None
    match: str  # id, email or name
    matched: str  # the id, the email or the name that matched
    records: tuple[SearchId, ...] = ()  # for an id: the records bearing it (which system, what kind)
    ids: tuple[SearchId, ...] = ()
    emails: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    open_findings: int = 0
    view: str = ""  # where its customer view is (`/api/customers/{key}/view`)


class SearchResults(Struct, frozen=True, kw_only=True):
    """`/api/search`: exact id matches first, then emails, then names by prefix; at most `limit`."""

    query: str
    limit: int
    hits: list[SearchHit]


class _Candidate(Struct):
    key: str
    match: str
    matched: str
    records: list[SearchId]


def _split(member: bytes, parts: int) -> list[str]:
    """A member's fields; the first (the id or term) may hold anything, the rest are ours."""
    return member.decode(errors="replace").rsplit(_SEP, parts - 1)


def _confirmed(candidate: _Candidate, card: SearchCard) -> str | None:
    """What matched, as the result shows it (a name term becomes the name it is a term of); None when
    the card no longer holds it (a member written by a worker that no longer owns the customer, in a
    rebalance, may outlive the card it came from)."""
    if candidate.match == "id":
        return candidate.matched if any(r in card.ids for r in candidate.records) else None
    if candidate.match == "email":
        return candidate.matched if candidate.matched in card.emails else None
    return next((name for name in card.names if candidate.matched in name_terms(name)), None)


#: How many unresolved findings each customer has (`DriftIndex.open_counts`).
OpenCounts = Callable[[list[str]], Awaitable[dict[str, int]]]

_encode = msgspec.json.Encoder().encode
_decode_card = msgspec.json.Decoder(SearchCard).decode


def _stored_card(raw: bytes | None) -> SearchCard | None:
    """A card as Redis holds it; None when there is none, or one this version cannot read (replaced)."""
    if not raw:
        return None
    try:
        return _decode_card(raw)
    except msgspec.DecodeError:
        return None


class SearchIndex(RedisMirror[SearchCard | None]):
    """Mirror of every owned customer's card in Redis (written in the background) and the search behind the API."""

    name = "search index"

    def __init__(self, client: aioredis.Redis, prefix: str, flush_interval: float = 0.2, chunk: int = 500) -> None:
        super().__init__(client, f"{prefix}:search:", flush_interval, chunk)

    async def _write(self, batch: dict[str, SearchCard | None]) -> None:
        p = self._p
        keys = list(batch)
        stored = await self._redis.hmget(f"{p}cards", keys)
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, raw in zip(keys, stored, strict=True):
                old = _stored_card(raw)
                new = batch[key]
                if old == new:
                    continue
                was, now = members(old), members(new)
                for name in ("ids", "emails", "names"):
                    gone, added = getattr(was, name) - getattr(now, name), getattr(now, name) - getattr(was, name)
                    if gone:
                        pipe.zrem(f"{p}{name}", *gone)
                    if added:
                        pipe.zadd(f"{p}{name}", dict.fromkeys(added, 0))
                if new is None:
                    pipe.hdel(f"{p}cards", key)
                else:
                    pipe.hset(f"{p}cards", key, _encode(new))
            await pipe.execute()

    async def card(self, customer_key: str) -> SearchCard | None:
        return _stored_card(await self._redis.hget(f"{self._p}cards", customer_key))

    async def search(self, query: str, limit: int, open_counts: OpenCounts | None = None) -> SearchResults:
        """Customers matching `query` (from `query_text`): exact ids, then emails, then names by prefix.

        `open_counts(keys)` (the drift index's) gives each hit its number of unresolved findings.
        """
        p = self._p
        email, name = query.lower().encode(), fold(query).encode()
        wanted = limit * 3  # members of one customer may repeat, and some may not be confirmed
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebylex(f"{p}ids", b"[" + query.encode() + b"\x00", b"(" + query.encode() + b"\x01", 0, wanted)
            pipe.zrangebylex(f"{p}emails", b"[" + email, b"[" + email + b"\xff", 0, wanted)
            if name:
                pipe.zrangebylex(f"{p}names", b"[" + name, b"[" + name + b"\xff", 0, wanted)
            found = await pipe.execute()
        candidates: dict[str, _Candidate] = {}
        for member in found[0]:
            rid, key, system, kind = _split(member, 4)
            hit = candidates.setdefault(key, _Candidate(key, "id", rid, []))
            if hit.match == "id":
                hit.records.append(SearchId(id=rid, system=system, kind=kind))
        for match, members_found in zip(("email", "name"), found[1:], strict=False):
            for member in members_found:
                term, key = _split(member, 2)
                if key not in candidates:
                    candidates[key] = _Candidate(key, match, term, [])
        cards = await self._redis.hmget(f"{p}cards", list(candidates)) if candidates else []
        hits: list[tuple[_Candidate, str, SearchCard]] = []
        for candidate, raw in zip(candidates.values(), cards, strict=True):
            card = _stored_card(raw)
            matched = _confirmed(candidate, card) if card is not None else None
            if card is not None and matched is not None:
                hits.append((candidate, matched, card))
            if len(hits) == limit:
                break
        counts = await open_counts([c.key for c, _, _ in hits]) if open_counts is not None and hits else {}
        return SearchResults(query=query, limit=limit, hits=[
            SearchHit(key=c.key, name=card.name, match=c.match, matched=matched, records=tuple(c.records),
                      ids=card.ids, emails=card.emails, names=card.names, open_findings=counts.get(c.key, 0),
                      view=f"/api/customers/{c.key}/view")
            for c, matched, card in hits
        ])


async def known_ids(client: aioredis.Redis, prefix: str, system: str,
                    batch: int = 5_000) -> list[tuple[str, str, str]]:
    """(id, kind, customer key) of every live record of `system` the index holds (a complete listing compares
    them with what the platform returned: connectors/reconcile.py). Scans the whole `ids` set: for a
    reconciliation, not a request."""
    found: list[tuple[str, str, str]] = []
    cursor = 0
    while True:
        cursor, members = await client.zscan(f"{prefix}:search:ids", cursor, count=batch)
        for member, _ in members:
            record_id, key, member_system, kind = _split(member, 4)
            if member_system == system:
                found.append((record_id, kind, key))
        if cursor == 0:
            return found
