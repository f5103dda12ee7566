"""`concord doctor`'s judgments: what was read from the platforms and Kafka -> the checklist (no I/O)."""

from __future__ import annotations

import io

import msgspec
import pytest

from concord.app import doctor
from concord.app.cli import build_parser
from concord.app.cli import main as cli_main
from concord.app.doctor import Coverage, Status
from concord.codecs import stripe, zendesk
from concord.codecs.errors import DecodeError
from concord.connectors.platform_setup import StripeWebhookEndpoint, ZendeskWebhook
from concord.core.settings import Settings

SECRET = "s" * 40


def endpoint(**fields: object) -> StripeWebhookEndpoint:
    base: dict[str, object] = {"id": "we_1", "url": "https://concord.example.com/webhooks/stripe",
                               "enabled_events": ["*"], "api_version": "2025-03-31.basil"}
    return StripeWebhookEndpoint(**{**base, **fields})  # type: ignore[arg-type]


def webhook(**fields: object) -> ZendeskWebhook:
    base: dict[str, object] = {"id": "01H", "endpoint": "https://concord.example.com/webhooks/zendesk",
                               "subscriptions": list(zendesk.WEBHOOK_EVENT_TYPES)}
    return ZendeskWebhook(**{**base, **fields})  # type: ignore[arg-type]


def statuses(checks: list[doctor.Check]) -> list[Status]:
    return [c.status for c in checks]


def stripe_checks(*endpoints: StripeWebhookEndpoint, public_url: str = "") -> list[doctor.Check]:
    return doctor.judge_stripe_endpoints(list(endpoints), public_url, stripe.EVENT_TYPES, stripe.OLDEST_API_VERSION)


def test_every_stripe_event_type_concord_asks_for_is_one_its_codec_reads() -> None:
    for event_type in stripe.EVENT_TYPES:
        body = msgspec.json.encode({"id": "evt_1", "object": "event", "type": event_type, "created": 1700000000,
                                    "data": {"object": {"id": "x_1", "object": "payment_intent"}}})
        # A type the codec ignores decodes to []; one it reads refuses the wrong object instead.
        with pytest.raises(DecodeError):
            stripe.decode(body)
    ignored = '{"id":"evt_2","object":"event","type":"payment_intent.created","created":1700000000,"data":{"object":'
    assert stripe.decode((ignored + '{"id":"pi_1","object":"payment_intent"}}}').encode()) == []


def test_a_stripe_endpoint_on_all_events_and_a_recent_version_passes() -> None:
    assert statuses(stripe_checks(endpoint())) == [Status.OK]


def test_a_stripe_endpoint_missing_event_types_names_them() -> None:
    checks = stripe_checks(endpoint(enabled_events=["customer.created", "invoice.paid"]))
    assert statuses(checks) == [Status.FAIL]
    assert "invoice.voided" in checks[0].detail and "customer.created," not in checks[0].detail


def test_a_disabled_endpoint_blocks_and_an_old_or_unpinned_version_is_said() -> None:
    assert statuses(stripe_checks(endpoint(status="disabled"))) == [Status.FAIL]
    old = stripe_checks(endpoint(api_version="2019-12-03"))
    assert statuses(old) == [Status.FAIL] and "2019-12-03" in old[0].detail
    assert statuses(stripe_checks(endpoint(api_version=None))) == [Status.WARN]
    assert statuses(stripe_checks(endpoint(api_version="2020-08-27"))) == [Status.OK]


def test_no_endpoint_posting_to_concord_blocks_and_two_are_a_warning() -> None:
    other = endpoint(id="we_2", url="https://elsewhere.example.com/hooks")
    assert statuses(stripe_checks(other)) == [Status.FAIL]
    assert statuses(stripe_checks(endpoint(), endpoint(id="we_3"))) == [Status.WARN, Status.OK, Status.OK]
    # With a public URL, only that URL counts.
    assert statuses(stripe_checks(endpoint(), public_url="https://other.example.com")) == [Status.FAIL]
    assert statuses(stripe_checks(endpoint(), public_url="https://concord.example.com/")) == [Status.OK]


def test_zendesk_webhook_problems_are_each_named() -> None:
    def judge(hook: ZendeskWebhook, matches: bool = True) -> list[doctor.Check]:
        return doctor.judge_zendesk_webhooks([hook], {hook.id: matches}, "", zendesk.WEBHOOK_EVENT_TYPES)

    assert statuses(judge(webhook())) == [Status.OK]
    assert "inactive" in judge(webhook(status="inactive"))[0].detail
    assert "another secret" in judge(webhook(), matches=False)[0].detail
    missing = judge(webhook(subscriptions=["zen:event-type:organization.created"]))
    assert statuses(missing) == [Status.FAIL] and "ticket.status_changed" in missing[0].detail
    assert "GET" in judge(webhook(http_method="GET"))[0].detail
    both = judge(webhook(status="inactive"), matches=False)
    assert statuses(both) == [Status.FAIL, Status.FAIL]
    assert statuses(doctor.judge_zendesk_webhooks([], {}, "", ())) == [Status.FAIL]


def test_topics_with_another_partition_count_block_and_missing_ones_are_a_warning() -> None:
    assert statuses(doctor.judge_topics({"a": (8, 1), "b": (8, 1)}, 8, 1)) == [Status.OK]
    wrong = doctor.judge_topics({"a": (8, 1), "b": (4, 1)}, 8, 1)
    assert statuses(wrong) == [Status.FAIL] and "b (4)" in wrong[0].detail
    missing = doctor.judge_topics({"a": (8, 1), "b": None}, 8, 1)
    assert statuses(missing) == [Status.WARN] and "b" in missing[0].fix
    thin = doctor.judge_topics({"a": (8, 1)}, 8, 3)
    assert statuses(thin) == [Status.WARN, Status.OK]


def test_identity_coverage_below_the_share_is_a_warning_with_the_count() -> None:
    low = doctor.judge_coverage(Coverage(platform="stripe", listed=200, linked=150, complete=True), 0.95, "metadata.x")
    assert low.status is Status.WARN and "75.0% of 200" in low.detail and "50 do not" in low.detail
    sampled = doctor.judge_coverage(Coverage(platform="zendesk", listed=100, linked=99, complete=False), 0.95, "f")
    assert sampled.status is Status.OK and "the first 100 listed" in sampled.detail
    empty = doctor.judge_coverage(Coverage(platform="netsuite", listed=0, linked=0, complete=True), 0.95, "f")
    assert empty.status is Status.OK and "no NetSuite customers yet" in empty.detail


def test_webhook_secrets_unset_block_and_short_ones_are_a_warning() -> None:
    settings = Settings(stripe_webhook_secret=SECRET, zendesk_webhook_secret="x" * 20, read_token=SECRET)
    checks = {c.name: c for c in doctor.judge_settings(settings, ["stripe", "salesforce", "zendesk", "netsuite"])}
    assert checks["stripe webhook secret"].status is Status.OK
    assert checks["zendesk webhook secret"].status is Status.WARN
    assert checks["netsuite webhook secret"].status is Status.FAIL
    assert "salesforce webhook secret" not in checks
    assert checks["API access"].status is Status.OK
    closed = {c.name: c for c in doctor.judge_settings(Settings(), ["stripe"])}
    assert closed["API access"].status is Status.WARN


def test_the_checklist_says_what_blocks_and_the_exit_status_follows() -> None:
    failing = doctor.report([doctor.fail("stripe", "credentials", "refused", "set the key"),
                             doctor.warn("kafka", "topics", "missing", "run a worker")], [])
    lines = doctor.render(failing)
    assert lines[0] == "Kafka" and "[FAIL] credentials: refused" in "\n".join(lines)
    assert "fix: set the key" in "\n".join(lines) and lines[-1].startswith("1 problem(s) block")
    passing = doctor.report([doctor.ok("redis", "reachable", "redis://h")], [])
    assert doctor.render(passing)[-1].startswith("Nothing blocks")


def test_usage_errors_exit_2() -> None:
    args = build_parser().parse_args(["doctor", "--sample", "0"])
    err = io.StringIO()
    assert doctor.run(Settings(), args, out=io.StringIO(), err=err) == 2
    assert "--sample" in err.getvalue()


def test_the_events_to_subscribe_are_printed_for_the_webhook_setup(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["doctor", "--events", "stripe"]) == 0
    assert capsys.readouterr().out.split() == list(stripe.EVENT_TYPES)
    assert cli_main(["doctor", "--events", "zendesk"]) == 0
    assert capsys.readouterr().out.split() == list(zendesk.WEBHOOK_EVENT_TYPES)

