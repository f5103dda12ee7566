"""The Faust app factory: one place that turns Settings into a configured `faust.App` and a worker context."""

from __future__ import annotations

from collections.abc import Iterable

import faust

from concord.agents.context import ROLES, Concord
from concord.agents.faust_internals import check_versions, commits, delivery, fetching, table_store
from concord.app.access import Access
from concord.app.contract import mark_deprecated
from concord.core.kafka_security import faust_credentials
from concord.core.settings import Settings


def create_concord(settings: Settings, roles: Iterable[str] = ROLES, gate: Access | None = None) -> Concord:
    """A worker's context for `settings` on a new Faust app; agents and views are registered by the caller."""
    return Concord(settings, create_faust_app(settings, gate), roles)


def create_faust_app(settings: Settings, gate: Access | None = None) -> faust.App:
    """A `faust.App` configured from settings; agents and views are registered by the caller.

    `gate`: the worker's access policy, when a caller shares it with views that check tokens themselves (one
    users directory and one verified-token cache per worker); else one of its own.
    """
    check_versions()  # the internals relied on are those of known versions only
    commits.apply()  # never commit past an unprocessed offset (see agents/faust_internals/commits.py)
    table_store.apply()  # tables recover their changelog in bulk (see agents/faust_internals/table_store.py)
    delivery.apply()  # no task pair per message delivered while flow is not suspended (delivery.py)
    fetching.apply(settings.consumer_fetch_wait_ms)  # no 1.5 s fetch stall behind idle partitions (fetching.py)
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        broker_credentials=faust_credentials(settings),  # TLS and SASL (core/kafka_security.py)
        # Faust's memory store, recovering the changelog in bulk (Faust reads a table's `store=` URL only
        # when it has a host: the scheme alone falls back to this one).
        store=table_store.store_url(),
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # acks=all: a webhook is answered 200 only after every in-sync replica has the event.
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        # Faust's own routes (/table, /router, its statistics) would show customer data and the cluster
        # layout to anyone who can reach the port; every route answers through Concord's access policy.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        # Outermost first: a refusal on a deprecated path says it is deprecated too.
        web_application_options={"middlewares": [mark_deprecated, (gate or Access(settings)).middleware()]},
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 3),
        # The changelog is the truth; a worker restarted on another host rebuilds from it.
        table_standby_replicas=0,
    )
    commits.redeliver_skipped(app)  # a message a rebalance made the stream skip is sought back to
    return app
