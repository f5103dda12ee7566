"""A customer's request answered by the worker that owns the customer, whichever worker it reached.

A worker holds only the customers of its partitions (the `customers` table is partitioned like the
canonical topic), so `/api/customers/{key}` and its view are answered by the owner. A worker that does
not own the key forwards the request there and relays the answer (a proxy), rather than answering 307
with the owner's address:

* a redirect sends the caller to another worker's internal address (`CONCORD_WEB_HOST`:`CONCORD_WEB_PORT`),
  which a person behind a load balancer, or a page served by one worker, often cannot reach;
* clients drop the `Authorization` header when a redirect leads to another host or port (browsers,
  aiohttp, curl without `--location-trusted`): the owner would answer 401;
* forwarded, the request keeps the caller's own credential (its bearer token, or the session cookie of a
  browser opening the customer page) and the owner checks it with the same access policy as any request
  (app/access.py): nothing is trusted because it came from a worker.

Faust's `table_route` forwards too, but finds the owner from the key as the table's changelog
serializes it (JSON, `"001A"` with its quotes) while the state agent writes a customer to the partition
of its raw key (the canonical topic's, `b"001A"`): with more than one worker it forwarded most requests
to a worker that does not hold the customer, which answered 404. The owner is found here from the raw
key's partition and the assignment Faust shares in the consumer group (`app.router.table_metadata`).

A forwarded request carries `X-Concord-Forwarded`; a worker that gets one for a key it does not own
either (the assignment moved meanwhile) answers 503 instead of forwarding it again.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import faust
import msgspec
from faust.web import Request, Response, View
from yarl import URL

from concord.core.partitioning import partition_for

FORWARDED: Final = "X-Concord-Forwarded"
#: How long the owner may take to answer a forwarded request.
FORWARD_TIMEOUT_SECONDS: Final = 10.0

E_NO_OWNER: Final = (
    "no worker owns customer {key} now (partition {partition} of the customers table is not assigned: the "
    "workers are rebalancing, or none runs the state role); try again in a few seconds"
)
E_MOVED: Final = "customer {key} moved to another worker while the request was forwarded (a rebalance); try again"
E_OWNER_DOWN: Final = (
    "the worker that owns customer {key} ({url}) did not answer ({error}); try again, and check that worker "
    "(its CONCORD_WEB_HOST must be an address the other workers reach)"
)

_encode = msgspec.json.Encoder().encode


def _ident(url: URL | str) -> tuple[str, int]:
    parsed = URL(str(url))
    return parsed.host or "", parsed.port or 80


class Owners:
    """Which worker owns a customer of `table`, and the forwarding of a request to it."""

    def __init__(self, app: faust.App, table: Any, partitions: int) -> None:
        self._app = app
        self._table = table
        self._partitions = partitions

    def owner(self, key: str) -> tuple[int, str | None]:
        """The customer's partition, and the URL of the worker that owns it (None: nobody now)."""
        partition = partition_for(key.encode(), self._partitions)
        changelog = self._table.changelog_topic.get_topic_name()
        for url, topics in self._app.router.table_metadata(self._table.name).items():
            if partition in topics.get(changelog, ()):
                return partition, str(url)
        return partition, None

    def is_me(self, url: str) -> bool:
        return _ident(url) == _ident(self._app.conf.canonical_url)

    async def route(self, view: View, request: Request, key: str) -> Response | None:
        """None when this worker owns `key` (answer it here); otherwise the owner's answer, or a refusal."""
        partition, url = self.owner(key)
        if url is not None and self.is_me(url):
            return None
        if url is None:
            return _error(view, 503, "no_owner", E_NO_OWNER.format(key=key, partition=partition))
        if request.headers.get(FORWARDED):
            return _error(view, 503, "moved", E_MOVED.format(key=key))
        headers = {FORWARDED: "1", "Accept": "application/json"}
        for credential in ("Authorization", "Cookie"):  # the caller's bearer token, or a page's session
            value = request.headers.get(credential)
            if value is not None:
                headers[credential] = value
        target = URL(url).join(request.rel_url)
        try:
            async with self._app.http_client.get(
                target, headers=headers, timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS),
            ) as response:
                body = await response.read()
                return view.bytes(body, content_type=response.content_type, status=response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _error(view, 502, "owner_unreachable",
                          E_OWNER_DOWN.format(key=key, url=url, error=f"{type(exc).__name__}: {exc}"))


def _error(view: View, status: int, error: str, detail: str) -> Response:
    return view.bytes(_encode({"error": error, "detail": detail}), content_type="application/json", status=status)
