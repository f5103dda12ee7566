"""The sandbox's seeded traffic: customer lifecycles across the four platforms, with drift injected.

Three layers, from pure to timed:

* `build_scripts(config)` (pure): every customer's script, decided up front from the seed: who the
  customer is (`Profile`), the plan bought, and the dated steps of its lifecycle: onboarding,
  monthly invoices and payments (some failing, some never paid), refunds, support tickets, plan
  upgrades, renames, duplicate accounts merged away, cancellation. A customer is broken with
  probability `1 - (1 - drift_rate) ** steps`; the rule comes from a rotation over `--rules`, so a
  short run covers every rule, and its script is cut short after the broken step (the drift stays,
  nothing later muddies what Concord must find). Of the others, a `deal_rate` share is a *deal*
  (sandbox/deals.py): only a Salesforce account and a won opportunity, which Concord's quote-to-cash
  saga must provision; its variant comes from a rotation too. A D10-broken customer is a deal as
  well, whose account the saga's validation refuses. `timeline(scripts)` orders all steps by time.
* `Traffic` runs one step at a time on a `World` through the platform operations
  (`sandbox/stripe.py`, `salesforce.py`, `zendesk.py`, `netsuite.py`). A healthy step leaves every
  system agreeing (the company's other integrations do their job); a broken one leaves the drift
  described in `sandbox/injection.py` and appends its ground truth (`Injection`). The only thing it
  reacts to is D14's: when something other than the generator (Concord's connector) suspends a
  stubborn customer's entitlement, it is re-activated right after (`defer`), so the correction never
  sticks and Concord has to escalate.
* `build_history(config)` (pure) and `Traffic.play_history()`: the `--history` customers, who were
  there before the traffic started. Their scripts come from a seed stream of their own
  (`concord-sandbox-history:<seed>:<n>`) and are numbered from `HISTORY_FIRST_INDEX`, so they change
  nothing of the traffic's scripts; a `drift_rate` share of them is broken by a rule whose drift holds
  at rest (`injection.AT_REST_RULES`), the others live a full healthy lifecycle. They are played at
  once, before the emitter starts, inside `World.at_rest`: every write is dated its simulated time
  before now (the last step 1-90 days ago) and heard by no listener, so no event about them ever
  reaches Concord. Their injections carry `at_rest=True`. Their record ids come from the world's one
  counter like every other, so they cannot collide with the traffic's (which follow them).
* `Runner` paces the timeline in real time: simulated seconds / `time_scale`, for `duration`
  real seconds (0: until stopped). Record timestamps stay wall-clock (the world's clock); only the
  pacing is scaled.

Onboarding writes in an order that keeps transient disagreements short: the ERP customer and the
support organization exist before billing starts paying, and the opportunity is marked won once
billing is provisioned.

Deals run on Concord's clock, not the simulation's: their steps are `DEAL_STEP_REAL` real seconds
apart whatever the time scale, since the saga they test runs in real time. The win, then 1 step
later a person fixing a D10 account (after the saga paused on it, before D10's grace ends), and 2
steps later the reopening or the amendment of a provisioned deal (once the saga completed). A deal
enters the ground truth (`Traffic.deals`) when its script has played to its end, so a run cut short
never claims an outcome it did not set up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import msgspec
from msgspec import Struct

from concord.sandbox import deals, injection
from concord.sandbox import netsuite as ns
from concord.sandbox import salesforce as sf
from concord.sandbox import stripe as stripe_sandbox
from concord.sandbox import zendesk as zd
from concord.sandbox.catalog import PLAN_TIERS as PLAN_TIERS
from concord.sandbox.catalog import PLANS
from concord.sandbox.deals import Deal
from concord.sandbox.injection import Injection
from concord.sandbox.world import Change, Record, World

log = logging.getLogger("concord.sandbox.traffic")

HOUR: Final = 3600.0
DAY: Final = 24 * HOUR
MONTH: Final = 30 * DAY
# Without --duration, customers arrive about this far apart (simulated time).
ARRIVAL_GAP: Final = 6 * HOUR
# With --duration, a broken customer's steps are brought forward to happen within this share of the
# run (the rest lets Concord correct them), at least this many real seconds apart.
FIT_SHARE: Final = 0.7
MIN_GAP_REAL: Final = 1.5
# Payment terms every system agrees on (NetSuite owns the field).
TERMS: Final = "Net 30"
# History customers are numbered from here: apart from the traffic's 0..customers-1.
HISTORY_FIRST_INDEX: Final = 1_000_000
# A history customer's last step happened between these many days before the traffic starts.
HISTORY_ENDED_DAYS: Final = (1.0, 90.0)
# Real seconds between a deal's steps, whatever the time scale: long enough for Concord to read the win
# and run its saga up to a pause (or to its end, two steps), shorter than D10's grace as `concord demo`
# scales it (10 s), so a D10 account fixed one step after the win is fixed before the finding is due.
DEAL_STEP_REAL: Final = 5.0
# What NetSuite says when it refuses an erp_refuses deal's sales order (an approval rule of the account).
SALES_ORDER_REFUSAL: Final = ("Sales order approval failed: the customer's credit limit does not cover this "
                              "order (approval routing requires a credit review).")
# The seats an amended deal gains (or loses) 2 steps after its win.
AMENDMENTS: Final = (-1, 1, 2, 5)


class Profile(Struct, frozen=True, kw_only=True):
    """Who a customer is: the master data every system holds."""

    name: str
    email: str
    country: str  # ISO 3166 alpha-2
    currency: str  # ISO 4217, upper case
    street: str
    city: str
    postal_code: str
    tax_id: str | None
    tax_percent: int  # VAT charged on invoices


class Step(Struct, frozen=True, kw_only=True):
    """One dated step of a customer's lifecycle."""

    at: float  # simulated seconds after the start of the run
    customer: int
    seq: int  # position in the customer's script: orders steps at the same time
    kind: str
    n: int = 0  # the month of an invoice, payment or refund; the number of a ticket
    value: int = 0  # kind-specific: refund percent, D05 difference, D11 seat difference, rename choice,
    # an amended deal's new seats
    inject: str = ""  # the rule whose drift this step injects ("" healthy)


class CustomerScript(Struct, frozen=True, kw_only=True):
    index: int
    arrival: float
    profile: Profile
    plan: int  # index in PLANS
    quantity: int
    rule: str  # the rule injected into this customer's lifecycle, "" when healthy
    steps: tuple[Step, ...]
    deal: str = ""  # the deal variant (sandbox/deals.py) when the customer is a deal, else ""
    # A D10 deal's missing account field at the win (deals.DEFECTS), else "".
    defect: str = ""


class TrafficConfig(Struct, frozen=True, kw_only=True):
    seed: int = 1
    customers: int = 50
    drift_rate: float = 0.05  # probability that a lifecycle step is broken
    time_scale: float = 3600.0  # simulated seconds per real second
    duration: float = 0.0  # real seconds of traffic; 0 plays every script, then idles until stopped
    rules: tuple[str, ...] = injection.RULES  # rules to inject (rotation order)
    entitlement: zd.EntitlementKeys = zd.EntitlementKeys()
    plan_field: str = sf.PLAN_FIELD
    history: int = 0  # customers already in the world, at rest, before the traffic starts (`--history`)
    deal_rate: float = 0.2  # share of the customers not broken whose onboarding is a deal for the saga


class TrafficStatus(Struct, kw_only=True):
    customers: int
    arrived: int  # customers whose onboarding ran
    history: int  # history customers laid down in the world (at rest, before the traffic)
    injected_at_rest: int  # of `injected`, the drift of history customers
    steps_done: int
    steps_total: int
    step_errors: int
    injected: int
    injections: dict[str, int]  # rule -> count
    rebreaks: int  # D14: corrections undone
    deals: dict[str, int]  # deals played to their end, per expected outcome (completed, paused, compensated)
    running: bool = False
    finished: bool = False
    simulated_seconds: float = 0.0
    last_error: str | None = None


# --- scripts (pure) -----------------------------------------------------------------------------------

_NAME_FIRST: Final = ("North", "Blue", "Bright", "Silver", "Cedar", "Harbor", "Summit", "Granite", "Maple",
                      "Aurora", "Falcon", "Lumen", "Orbit", "Pioneer", "Quartz", "Redwood", "Sierra", "Tidal",
                      "Vertex", "Willow")
_NAME_SECOND: Final = ("Analytics", "Logistics", "Robotics", "Health", "Foods", "Systems", "Labs", "Media",
                       "Energy", "Capital", "Works", "Networks", "Studios", "Supply", "Dynamics", "Software",
                       "Ventures", "Motors", "Textiles", "Partners")
_STREETS: Final = ("Market Street", "High Street", "Hauptstrasse", "Rue de la Paix", "King Street", "Main Street",
                   "Harbour Road", "Station Road", "Parkway", "Mill Lane")
# Country, currency, legal suffix, VAT percent, tax ids, cities. No state or region: Salesforce and
# Stripe write "state postal code" differently on one line, and Concord compares addresses as text.
_PLACES: Final = (
    ("US", "USD", "Inc.", 0, False, ("Springfield", "Portland", "Austin", "Denver", "Madison")),
    ("GB", "GBP", "Ltd", 20, True, ("London", "Leeds", "Bristol")),
    ("DE", "EUR", "GmbH", 19, True, ("Berlin", "Hamburg", "Munich")),
    ("FR", "EUR", "SAS", 20, True, ("Paris", "Lyon", "Lille")),
    ("CA", "CAD", "Corp.", 0, False, ("Toronto", "Ottawa", "Calgary")),
)
_TICKET_SUBJECTS: Final = ("Cannot log in", "Invoice question", "Export is slow", "API returns 500",
                           "How do I add seats?", "SSO setup", "Data import failed", "Feature request")


def _profile(rng: random.Random, index: int, taken: set[str]) -> Profile:
    country, currency, suffix, vat, has_tax_id, cities = rng.choice(_PLACES)
    base = f"{rng.choice(_NAME_FIRST)} {rng.choice(_NAME_SECOND)}"
    if base in taken:
        base = f"{base} {index}"
    taken.add(base)
    slug = base.lower().replace(" ", "-")
    return Profile(
        name=f"{base} {suffix}",
        email=f"billing@{slug}.example",
        country=country,
        currency=currency,
        street=f"{rng.randint(1, 400)} {rng.choice(_STREETS)}",
        city=rng.choice(cities),
        postal_code=f"{rng.randint(10000, 99999)}",
        tax_id=f"{country}{rng.randint(100_000_000, 999_999_999)}" if has_tax_id else None,
        tax_percent=vat,
    )


class _Script:
    """Collects one customer's steps in order."""

    def __init__(self, index: int, arrival: float) -> None:
        self.index = index
        self.arrival = arrival
        self.steps: list[Step] = []

    def add(self, offset: float, kind: str, n: int = 0, value: int = 0, inject: str = "") -> None:
        self.steps.append(Step(at=self.arrival + offset, customer=self.index, seq=len(self.steps), kind=kind, n=n,
                               value=value, inject=inject))

    def sorted(self) -> tuple[Step, ...]:
        ordered = sorted(self.steps, key=lambda s: (s.at, s.seq))
        return tuple(Step(at=s.at, customer=s.customer, seq=i, kind=s.kind, n=s.n, value=s.value, inject=s.inject)
                     for i, s in enumerate(ordered))


def _healthy(script: _Script, rng: random.Random, plan: int) -> None:
    """A full lifecycle in which every system agrees after each step.

    Windows within each 30-day cycle keep steps from overlapping: payments in days 0-7, refunds
    before day 10, tickets in days 10-21 (solved before the next cycle), upgrades and renames after.
    """
    script.add(0, "onboard")
    months = rng.randint(2, 6)
    if rng.random() < 0.05:
        script.add(rng.uniform(2, 4) * DAY, "merge_prepare")
        script.add(rng.uniform(5, 8) * DAY, "merge")
    upgrade_month = rng.randrange(months) if plan < len(PLANS) - 1 and rng.random() < 0.2 else -1
    rename_month = rng.randrange(months) if rng.random() < 0.15 else -1
    for cycle in range(months):
        start = cycle * MONTH
        if rng.random() < 0.4:
            opened = start + rng.uniform(10, 18) * DAY
            script.add(opened, "ticket_open", n=cycle)
            script.add(opened + rng.uniform(1, 3) * DAY, "ticket_solve", n=cycle)
        if cycle == upgrade_month:
            script.add(start + rng.uniform(22, 24) * DAY, "upgrade")
        if cycle == rename_month:
            script.add(start + rng.uniform(25, 27) * DAY, "rename", value=rng.randrange(len(_NAME_SECOND)))
    for month in range(1, months + 1):
        start = month * MONTH
        script.add(start, "invoice", n=month)
        paid_at = start + rng.uniform(0.5, 2) * DAY
        if rng.random() < 0.1:
            script.add(paid_at, "payment_failed", n=month)
            if rng.random() < 0.25:
                ended = paid_at + 4 * DAY
                script.add(ended, "nonpayment", n=month)
                # Dunning exhausted: the subscription ends, and so does the script, with the tickets, upgrades
                # and renames drawn for the cycles after it (a churned customer's ticket is D15's drift).
                script.steps = [step for step in script.steps if step.at <= script.arrival + ended]
                return
            paid_at += 4 * DAY
        script.add(paid_at, "payment", n=month)
        if rng.random() < 0.1:
            script.add(paid_at + rng.uniform(1, 3) * DAY, "refund", n=month, value=rng.choice((100, 50, 30)))
    if rng.random() < 0.35:
        script.add(months * MONTH + 10 * DAY, "cancel")


def _broken(script: _Script, rng: random.Random, rule: str) -> None:
    """The shortest lifecycle that reaches `rule`'s step, broken there; nothing after it (D10's is a deal: `_deal`)."""
    step = injection.STEP_OF[rule]
    if step == "deal":
        raise ValueError(f"{rule} breaks a deal: its script is built by _deal")
    if step == "onboard":
        value = rng.choice((-1, 2, 5)) if rule == "D11" else 0
        script.add(0, "onboard", value=value, inject=rule)
        return
    script.add(0, "onboard")
    if step == "upgrade":
        script.add(rng.uniform(10, 20) * DAY, "upgrade", inject=rule)
    elif step == "merge":
        script.add(rng.uniform(2, 4) * DAY, "merge_prepare", inject=rule)
        script.add(rng.uniform(5, 8) * DAY, "merge", inject=rule)
        # After the merge has reached Concord: the loser's Stripe customer changes, still naming it.
        script.add(10 * DAY, "merge_touch", inject=rule)
    elif step in ("cancel", "late_ticket"):
        cancel_at = rng.uniform(10, 20) * DAY
        script.add(cancel_at, "cancel", inject="" if rule == "D15" else rule)
        if rule == "D15":
            script.add(cancel_at + rng.uniform(1, 5) * DAY, "late_ticket", inject=rule)
    else:
        script.add(MONTH, "invoice", n=1, value=rng.randint(1, 50) * 100, inject=rule if step == "invoice" else "")
        if step in ("payment", "refund"):
            paid_at = MONTH + rng.uniform(0.5, 2) * DAY
            script.add(paid_at, "payment", n=1, inject=rule if step == "payment" else "")
            if step == "refund":
                script.add(paid_at + rng.uniform(1, 3) * DAY, "refund", n=1, value=rng.choice((100, 50)), inject=rule)


def _deal(script: _Script, rng: random.Random, variant: str, quantity: int, step_gap: float, inject: str = "") -> None:
    """A deal's script: the win, then the variant's one later step, if any (see the module docstring)."""
    script.add(0, "deal", inject=inject)
    if variant == "fixed":
        script.add(step_gap, "deal_fix")
    elif variant == "reopened":
        script.add(2 * step_gap, "deal_reopen")
    elif variant == "amended":
        seats = quantity + rng.choice(AMENDMENTS)
        script.add(2 * step_gap, "deal_amend", value=seats if seats >= 1 else quantity + 1)


def _taxed_in_the_eu(rng: random.Random, profile: Profile) -> Profile:
    """`profile` moved to an EU VAT country (with a tax id) unless it is in one: a deal that misses its tax id
    must be one whose account needs it."""
    if profile.country in deals.EU_VAT_COUNTRIES and profile.tax_id:
        return profile
    country, currency, suffix, vat, _, cities = rng.choice([p for p in _PLACES if p[0] in deals.EU_VAT_COUNTRIES])
    return msgspec.structs.replace(profile, name=f"{profile.name.rsplit(' ', 1)[0]} {suffix}", country=country,
                                   currency=currency, city=rng.choice(cities), tax_percent=vat,
                                   tax_id=f"{country}{rng.randint(100_000_000, 999_999_999)}")


def _fit(script: _Script, end: float, gap: float) -> None:
    """Bring a broken script's steps forward so the broken one happens before `end` (simulated).

    A short run (`--duration`) would otherwise end before a month passes, and the rules whose drift
    needs an invoice, a payment or a cancellation would never be injected. Steps keep their order
    and stay `gap` apart, so each one reaches Concord before the next.
    """
    last = max(step.at for step in script.steps) - script.arrival
    room = end - script.arrival
    if last <= room or room <= 0:
        return
    factor = room / last
    previous = -gap
    fitted = []
    for step in sorted(script.steps, key=lambda s: (s.at, s.seq)):
        offset = max((step.at - script.arrival) * factor, previous + gap)
        fitted.append(msgspec.structs.replace(step, at=script.arrival + offset))
        previous = offset
    script.steps = fitted


def build_scripts(config: TrafficConfig) -> tuple[CustomerScript, ...]:
    """Every customer's script for `config` (pure: the same config gives the same scripts)."""
    rotation = injection.Rotation(config.rules)
    variants = itertools.cycle(deals.VARIANTS)
    # D10's deals rotate over both variants and both missing fields: two D10s cover the variants, four every pair.
    unfinished = itertools.cycle((("incomplete", "missing_tax_id"), ("fixed", "missing_billing_country"),
                                  ("incomplete", "missing_billing_country"), ("fixed", "missing_tax_id")))
    count = max(config.customers, 0)
    span = config.duration * config.time_scale / 2 if config.duration > 0 else count * ARRIVAL_GAP
    step_gap = DEAL_STEP_REAL * config.time_scale
    taken: set[str] = set()
    scripts: list[CustomerScript] = []
    for index in range(count):
        # One RNG per customer (string seeds hash deterministically): a customer's script does not
        # depend on how many draws the customers before it made.
        rng = random.Random(f"concord-sandbox:{config.seed}:{index}")
        arrival = span * (index + rng.random()) / count
        profile = _profile(rng, index, taken)
        plan = rng.choices(range(len(PLANS)), weights=(5, 3, 1))[0]
        quantity = rng.randint(1, 25)
        script = _Script(index, arrival)
        _healthy(script, rng, plan)
        broken_odds = 1 - (1 - config.drift_rate) ** len(script.steps)
        rule = deal = defect = ""
        if config.drift_rate > 0 and rng.random() < broken_odds:
            rule = rotation.next()
            script = _Script(index, arrival)
            if injection.STEP_OF[rule] == "upgrade":
                plan = min(plan, len(PLANS) - 2)  # an upgrade needs a plan above
            if rule == "D10":
                deal, defect = next(unfinished)
                if defect == "missing_tax_id":
                    profile = _taxed_in_the_eu(rng, profile)
                _deal(script, rng, deal, quantity, step_gap, inject=rule)
            else:
                _broken(script, rng, rule)
            # A deal's steps are seconds of real time apart already; bringing them closer would race its saga.
            if config.duration > 0 and not deal:
                _fit(script, config.duration * config.time_scale * FIT_SHARE, MIN_GAP_REAL * config.time_scale)
        elif config.deal_rate > 0 and rng.random() < config.deal_rate:
            deal = next(variants)
            script = _Script(index, arrival)
            _deal(script, rng, deal, quantity, step_gap)
        scripts.append(CustomerScript(index=index, arrival=arrival, profile=profile, plan=plan, quantity=quantity,
                                      rule=rule, steps=script.sorted(), deal=deal, defect=defect))
    return tuple(scripts)


def build_history(config: TrafficConfig, taken: set[str] | None = None) -> tuple[CustomerScript, ...]:
    """The scripts of the `config.history` customers who were there before the traffic (pure).

    One RNG per customer on a stream apart from the traffic's, and indices from HISTORY_FIRST_INDEX,
    so the traffic's scripts are the same with or without history. A customer is broken with
    probability `drift_rate` (once per customer: at rest its drift is a state, not a step), by the
    next rule of a rotation over the `rules` that hold at rest (`injection.AT_REST_RULES`), with the
    shortest lifecycle that reaches it; the others live a full healthy one. Step times are negative:
    simulated seconds before the traffic starts, the last step 1-90 days before it. `taken` holds the
    company names already used (the traffic's), so no two customers share one.
    """
    names = set(taken or ())
    rules = tuple(rule for rule in config.rules if rule in injection.AT_REST_RULES)
    rotation = injection.Rotation(rules) if rules else None
    defects = itertools.cycle(deals.DEFECTS)
    scripts: list[CustomerScript] = []
    for n in range(max(config.history, 0)):
        index = HISTORY_FIRST_INDEX + n
        rng = random.Random(f"concord-sandbox-history:{config.seed}:{n}")
        profile = _profile(rng, index, names)
        plan = rng.choices(range(len(PLANS)), weights=(5, 3, 1))[0]
        quantity = rng.randint(1, 25)
        # Drawn whatever the rate, so a healthy customer is the same at every drift rate.
        broken = rng.random() < config.drift_rate
        script = _Script(index, 0.0)
        rule = deal = defect = ""
        if broken and rotation is not None:
            rule = rotation.next()
            if injection.STEP_OF[rule] == "upgrade":
                plan = min(plan, len(PLANS) - 2)  # an upgrade needs a plan above
            if rule == "D10":
                # At rest only the deal nobody fixes: whether a fix came before the saga paused is a race of
                # the live traffic's.
                deal, defect = "incomplete", next(defects)
                if defect == "missing_tax_id":
                    profile = _taxed_in_the_eu(rng, profile)
                _deal(script, rng, deal, quantity, 0.0, inject=rule)
            else:
                _broken(script, rng, rule)
        else:
            _healthy(script, rng, plan)
        ordered = script.sorted()
        arrival = -rng.uniform(*HISTORY_ENDED_DAYS) * DAY - ordered[-1].at
        steps = tuple(msgspec.structs.replace(step, at=step.at + arrival) for step in ordered)
        scripts.append(CustomerScript(index=index, arrival=arrival, profile=profile, plan=plan, quantity=quantity,
                                      rule=rule, steps=steps, deal=deal, defect=defect))
    return tuple(scripts)


def timeline(scripts: tuple[CustomerScript, ...]) -> tuple[Step, ...]:
    """Every step of every script, in the order they happen."""
    return tuple(sorted((s for script in scripts for s in script.steps), key=lambda s: (s.at, s.customer, s.seq)))


# --- running steps on the world -----------------------------------------------------------------------


def _billed_seats(sold: int, difference: int) -> int:
    """D11's subscription seats: `difference` off the seats sold, one more when that would leave none (one
    seat sold, one fewer billed would be no subscription, and a drift with no difference is none)."""
    return sold + difference if sold + difference >= 1 else sold + 1


class _Live:
    """What the generator knows of one customer while its script runs (platform ids)."""

    def __init__(self, script: CustomerScript) -> None:
        self.script = script
        self.name = script.profile.name
        self.plan = script.plan
        self.account = ""
        self.opportunity = ""
        self.stripe = ""
        self.subscription = ""
        self.organization = ""
        self.netsuite = ""
        self.invoices: dict[int, tuple[str, str]] = {}  # month -> (Stripe invoice id, NetSuite invoice id)
        self.charges: dict[int, str] = {}  # month -> Stripe charge id
        self.tickets: dict[int, str] = {}  # ticket number -> Zendesk ticket id
        self.duplicate = ""  # a duplicate account waiting to be merged into this one
        self.duplicate_stripe = ""
        self.duplicate_netsuite = ""
        self.quantity = script.quantity  # the seats sold (an amended deal's new seats once amended)
        self.reason = ""  # the validation reason code a deal's saga stops on ("" when the deal is valid)
        self.stopped = False


def _call_soon(fn: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_soon(fn)


def _date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


class Traffic:
    """Runs the scripts' steps on a world and keeps the ground truth of what it broke.

    `defer(fn)` runs `fn` soon after the current world write (D14's re-break must not nest inside the
    write's listeners); by default on the running event loop.
    """

    def __init__(self, world: World, config: TrafficConfig,
                 defer: Callable[[Callable[[], None]], None] = _call_soon) -> None:
        self.world = world
        self.config = config
        self.scripts = build_scripts(config)
        self.steps = timeline(self.scripts)
        self.history = build_history(config, taken={s.profile.name.rsplit(" ", 1)[0] for s in self.scripts})
        self.history_steps = timeline(self.history)
        self.injections: list[Injection] = []
        self.deals: list[Deal] = []
        self.steps_done = 0
        self.step_errors = 0
        self.rebreaks = 0
        self.last_error: str | None = None
        self._live = {script.index: _Live(script) for script in (*self.scripts, *self.history)}
        self._defer = defer
        self._writing = False
        # While the history is laid down: the simulated time of its step (epoch seconds), and that
        # its injections are at rest.
        self._history_played = False
        self._at_rest = False
        self._rest_time = 0.0
        # D14: organizations whose entitlement must stay active, whoever suspends it.
        self._stubborn: set[str] = set()
        self._rebreak_due: set[str] = set()
        self._steps: dict[str, Callable[[_Live, Step], None]] = {
            "onboard": self._onboard, "invoice": self._invoice, "payment": self._payment,
            "payment_failed": self._payment_failed, "nonpayment": self._nonpayment, "refund": self._refund,
            "ticket_open": self._ticket_open, "ticket_solve": self._ticket_solve, "late_ticket": self._late_ticket,
            "upgrade": self._upgrade, "rename": self._rename, "merge_prepare": self._merge_prepare,
            "merge": self._merge, "merge_touch": self._merge_touch, "cancel": self._cancel,
            "deal": self._deal, "deal_fix": self._deal_fix, "deal_reopen": self._deal_reopen,
            "deal_amend": self._deal_amend,
        }
        world.listen(self._observe)

    # --- status -------------------------------------------------------------------------------------

    def status(self) -> TrafficStatus:
        per_rule: dict[str, int] = {}
        for found in self.injections:
            per_rule[found.rule] = per_rule.get(found.rule, 0) + 1
        return TrafficStatus(
            customers=len(self.scripts), arrived=sum(1 for s in self.scripts if self._live[s.index].account),
            history=sum(1 for s in self.history if self._live[s.index].account),
            steps_done=self.steps_done, steps_total=len(self.steps), step_errors=self.step_errors,
            injected=len(self.injections), injected_at_rest=sum(1 for found in self.injections if found.at_rest),
            injections=per_rule, rebreaks=self.rebreaks, deals=deals.counts(self.deals), last_error=self.last_error,
        )

    # --- steps --------------------------------------------------------------------------------------

    def run_step(self, step: Step) -> list[Injection]:
        """Play one step; returns the injections it made. A failing step stops its customer's script.

        `steps_done` counts the steps of stopped customers too: it says how far the timeline went.
        """
        self.steps_done += 1
        return self._play(step)

    def play_history(self) -> int:
        """Lay the history customers down in the world, at rest; returns the steps played (0 the second time).

        Call it before anyone listens for events to send (the sandbox does, before the emitter
        starts); `World.at_rest` keeps its writes from every listener in any case. Each step is dated
        its simulated time before now, so records, invoices and injections carry past dates.
        """
        if self._history_played:
            return 0
        self._history_played = True
        origin = self.world.clock()
        self._at_rest = True
        try:
            with self.world.at_rest(lambda: self._rest_time):
                for step in self.history_steps:
                    self._rest_time = origin + step.at
                    self._play(step)
        finally:
            self._at_rest = False
        return len(self.history_steps)

    def _play(self, step: Step) -> list[Injection]:
        live = self._live[step.customer]
        if live.stopped:
            return []
        before = len(self.injections)
        self._writing = True
        try:
            self._steps[step.kind](live, step)
        except Exception as exc:
            # A record changed under the script (Concord corrected it, a person deleted it): the
            # customer stops here rather than writing half a step more; the others go on.
            live.stopped = True
            self.step_errors += 1
            self.last_error = f"customer {step.customer} {step.kind}: {type(exc).__name__}: {exc}"
            expected = isinstance(exc, (LookupError, ValueError))
            log.log(logging.WARNING if expected else logging.ERROR, "sandbox traffic: %s", self.last_error,
                    exc_info=not expected)
        finally:
            self._writing = False
        return self.injections[before:]

    def _inject(self, rule: str, live: _Live, detail: str, system: str | None = None, after: str = "",
                **ids: str) -> Injection:
        made = injection.make(rule, live.account, self.world.now_ms(), detail, system, after, self._at_rest, **ids)
        self.injections.append(made)
        return made

    def _onboard(self, live: _Live, step: Step) -> None:
        p, plan, rule, world = live.script.profile, PLANS[live.plan], step.inject, self.world
        account = sf.create_account(world, name=p.name, country=p.country, street=p.street, city=p.city,
                                    postal_code=p.postal_code, currency=p.currency, tax_id=p.tax_id,
                                    payment_terms=TERMS)
        live.account = key = account["Id"]
        quantity = live.script.quantity
        opportunity = sf.create_opportunity(world, key, name=f"{p.name} - {plan.name}",
                                            amount=plan.unit_amount * quantity, currency=p.currency,
                                            stage="Negotiation/Review", plan=plan.price_id,
                                            plan_field=self.config.plan_field, quantity=quantity)
        live.opportunity = opportunity["Id"]
        # D09: the ERP was keyed in by hand under another name.
        erp_name = f"{p.name.rsplit(' ', 1)[0]} Holdings" if rule == "D09" else p.name
        if rule != "D08":
            live.netsuite = ns.upsert_customer(world, key, company_name=erp_name, email=p.email, currency=p.currency,
                                               terms=TERMS)["id"]
        keys = self.config.entitlement
        fields = {} if rule == "D02" else {keys.status: "active", keys.tier: plan.tier}
        live.organization = str(zd.create_organization(world, name=p.name, external_id=key, fields=fields)["id"])
        live.stripe = self._stripe_customer(p, key)["id"]
        if rule == "D12":
            second = self._stripe_customer(p, key)["id"]
            self._inject(rule, live, f"a second Stripe customer {second} names account {key} "
                         f"(first: {live.stripe})", "stripe")
        seats = _billed_seats(quantity, step.value) if rule == "D11" else quantity
        live.subscription = stripe_sandbox.create_subscription(world, live.stripe, price_id=plan.price_id,
                                                               unit_amount=plan.unit_amount, currency=p.currency,
                                                               quantity=seats)["id"]
        sf.close_won(world, live.opportunity)
        if rule == "D02":
            self._inject(rule, live, f"subscription {live.subscription} pays, organization {live.organization} "
                         "was never given a support entitlement")
        elif rule == "D08":
            self._inject(rule, live, f"account {key} is won and billed, NetSuite has no customer for it")
        elif rule == "D09":
            self._inject(rule, live, f"NetSuite customer {live.netsuite} is named {erp_name!r}, "
                         f"Salesforce says {p.name!r}", "netsuite", field="name", record_id=live.netsuite)
        elif rule == "D11":
            self._inject(rule, live, f"opportunity {live.opportunity} sold {quantity} seats of {plan.name}, "
                         f"subscription {live.subscription} bills {_billed_seats(quantity, step.value)}",
                         opportunity_id=live.opportunity, subscription_id=live.subscription)

    def _stripe_customer(self, p: Profile, account_id: str) -> Record:
        return stripe_sandbox.create_customer(self.world, name=p.name, email=p.email, country=p.country,
                                  address={"line1": p.street, "city": p.city, "postal_code": p.postal_code},
                                  currency=p.currency, salesforce_account_id=account_id, tax_id=p.tax_id)

    def _invoice(self, live: _Live, step: Step) -> None:
        world, p = self.world, live.script.profile
        sub = stripe_sandbox.advance_period(world, live.subscription)
        item = sub["items"]["data"][0]
        tax = item["price"]["unit_amount"] * item["quantity"] * p.tax_percent // 100
        invoice = stripe_sandbox.create_invoice(world, live.stripe, subscription_id=live.subscription, tax=tax)
        if step.inject == "D04":
            live.invoices[step.n] = (invoice["id"], "")
            self._inject("D04", live, f"invoice {invoice['number']} ({invoice['id']}) finalized in Stripe, "
                         "never booked in NetSuite", invoice_id=invoice["id"])
            return
        booked = invoice["total"] + (step.value if step.inject == "D05" else 0)
        erp = ns.upsert_invoice(world, invoice["id"], customer_id=live.netsuite, number=invoice["number"],
                                total=booked, tax=tax, currency=p.currency, due_date=_date(invoice["due_date"]))
        live.invoices[step.n] = (invoice["id"], erp["id"])
        if step.inject == "D05":
            self._inject("D05", live, f"invoice {invoice['number']}: Stripe total {invoice['total']}, NetSuite "
                         f"invoice {erp['id']} books {booked}", invoice_id=invoice["id"], erp_invoice_id=erp["id"])

    def _payment(self, live: _Live, step: Step) -> None:
        billing_id, erp_id = live.invoices[step.n]
        _, charge = stripe_sandbox.pay_invoice(self.world, billing_id)
        live.charges[step.n] = charge["id"]
        if step.inject == "D06":
            self._inject("D06", live, f"invoice {billing_id} paid in Stripe (charge {charge['id']}), NetSuite "
                         f"invoice {erp_id} still shows it all outstanding", invoice_id=billing_id,
                         erp_invoice_id=erp_id)
            return
        if erp_id:
            ns.apply_payment(self.world, erp_id)

    def _payment_failed(self, live: _Live, step: Step) -> None:
        stripe_sandbox.fail_invoice_payment(self.world, live.invoices[step.n][0])

    def _nonpayment(self, live: _Live, step: Step) -> None:
        """Dunning exhausted: the invoice is voided in both books, the subscription and support end."""
        billing_id, erp_id = live.invoices[step.n]
        stripe_sandbox.fail_invoice_payment(self.world, billing_id)
        stripe_sandbox.void_invoice(self.world, billing_id)
        if erp_id:
            ns.void_invoice(self.world, erp_id)
        self._end_subscription(live, support=True)

    def _refund(self, live: _Live, step: Step) -> None:
        world, p = self.world, live.script.profile
        charge = world.get(stripe_sandbox.PLATFORM, "charge", live.charges[step.n])
        if charge is None:
            raise LookupError(f"charge {live.charges[step.n]} is gone")
        amount = charge["amount"] * step.value // 100
        refund, _ = stripe_sandbox.refund_charge(world, charge["id"], amount=amount, reason="requested_by_customer")
        if step.inject == "D07":
            self._inject("D07", live, f"refund {refund['id']} of {amount} on charge {charge['id']} has no "
                         "NetSuite credit memo", refund_id=refund["id"])
            return
        ns.create_credit_memo(world, refund["id"], customer_id=live.netsuite, amount=amount, currency=p.currency,
                              invoice_id=live.invoices[step.n][1] or None)

    def _ticket_open(self, live: _Live, step: Step) -> None:
        subject = _TICKET_SUBJECTS[(live.script.index + step.n) % len(_TICKET_SUBJECTS)]
        ticket = zd.create_ticket(self.world, organization_id=live.organization, subject=subject, status="open")
        live.tickets[step.n] = str(ticket["id"])

    def _ticket_solve(self, live: _Live, step: Step) -> None:
        zd.update_ticket(self.world, live.tickets[step.n], status="solved")

    def _late_ticket(self, live: _Live, step: Step) -> None:
        ticket = zd.create_ticket(self.world, organization_id=live.organization,
                                  subject="We cancelled but still need help", status="open")
        ticket_id = str(ticket["id"])
        self._inject("D15", live, f"ticket {ticket_id} opened after the subscription {live.subscription} was "
                     "canceled and the entitlement ended", ticket_id=ticket_id)

    def _upgrade(self, live: _Live, step: Step) -> None:
        world, p = self.world, live.script.profile
        old, new = PLANS[live.plan], PLANS[live.plan + 1]
        quantity = live.script.quantity
        opportunity = sf.create_opportunity(world, live.account, name=f"{p.name} - upgrade to {new.name}",
                                            amount=new.unit_amount * quantity, currency=p.currency,
                                            stage="Negotiation/Review", plan=new.price_id,
                                            plan_field=self.config.plan_field, quantity=quantity)
        stripe_sandbox.update_subscription(world, live.subscription, price_id=new.price_id, unit_amount=new.unit_amount)
        if step.inject == "D03":
            self._inject("D03", live, f"subscription {live.subscription} moved from {old.name} to {new.name}, "
                         f"organization {live.organization} kept tier {old.tier!r}",
                         organization_id=live.organization)
        else:
            zd.set_entitlement(world, live.organization, tier=new.tier, keys=self.config.entitlement)
        sf.close_won(world, opportunity["Id"])
        live.plan += 1

    def _rename(self, live: _Live, step: Step) -> None:
        """The company renames itself: every system follows the CRM."""
        world, p = self.world, live.script.profile
        first, suffix = live.name.split(" ")[0], live.name.rsplit(" ", 1)[-1]
        name = f"{first} {_NAME_SECOND[step.value]} {suffix}"
        if name == live.name:
            return
        live.name = name
        sf.update_account(world, live.account, {"Name": name})
        stripe_sandbox.update_customer(world, live.stripe, {"name": name})
        zd.update_organization(world, live.organization, name=name)
        ns.upsert_customer(world, live.account, company_name=name, email=p.email, currency=p.currency, terms=TERMS)

    def _merge_prepare(self, live: _Live, step: Step) -> None:
        """A duplicate of the account appears (a lead converted twice); with D13 it even got billed."""
        world, p = self.world, live.script.profile
        duplicate = sf.create_account(world, name=p.name, country=p.country, street=p.street, city=p.city,
                                      postal_code=p.postal_code, currency=p.currency, tax_id=p.tax_id,
                                      payment_terms=TERMS)
        live.duplicate = duplicate["Id"]
        if step.inject == "D13":
            live.duplicate_netsuite = ns.upsert_customer(world, live.duplicate, company_name=p.name, email=p.email,
                                                         currency=p.currency, terms=TERMS)["id"]
            live.duplicate_stripe = self._stripe_customer(p, live.duplicate)["id"]

    def _merge(self, live: _Live, step: Step) -> None:
        sf.merge_accounts(self.world, live.account, live.duplicate)
        if step.inject == "D13":
            merged = self._inject("D13", live, f"account {live.duplicate} was merged into {live.account}; Stripe "
                                  f"customer {live.duplicate_stripe} still names {live.duplicate}", "stripe",
                                  record_id=live.duplicate_stripe)
            # The duplicate's ERP customer names the merged-away account too (its CRM link field, and its
            # externalId). Concord's erp.update_customer re-points the link field to the winner (the externalId,
            # unique in NetSuite, stays), which corrects it.
            erp = self._inject("D13", live, f"account {live.duplicate} was merged into {live.account}; NetSuite "
                               f"customer {live.duplicate_netsuite} still names {live.duplicate} in "
                               f"{ns.CRM_LINK_FIELD}", "netsuite", record_id=live.duplicate_netsuite)
            # Each correction then leaves the winner two customers naming it in that system: for a person to merge.
            self._inject("D12", live, f"once Stripe customer {live.duplicate_stripe} names {live.account}, the "
                         f"account has two Stripe customers ({live.stripe} and {live.duplicate_stripe})", "stripe",
                         after=merged.fingerprint)
            self._inject("D12", live, f"once NetSuite customer {live.duplicate_netsuite} names {live.account}, the "
                         f"account has two NetSuite customers ({live.netsuite} and {live.duplicate_netsuite})",
                         "netsuite", after=erp.fingerprint)

    def _merge_touch(self, live: _Live, step: Step) -> None:
        """The merged-away account's Stripe customer changes (still naming the loser), so Concord sees it."""
        email = f"accounts@{live.duplicate.lower()}.example"
        stripe_sandbox.update_customer(self.world, live.duplicate_stripe, {"email": email})

    def _cancel(self, live: _Live, step: Step) -> None:
        rule = step.inject
        self._end_subscription(live, support=rule not in ("D01", "D14"))
        if rule not in ("D01", "D14"):
            return
        detail = (f"subscription {live.subscription} canceled, organization {live.organization} keeps its active "
                  "support entitlement")
        unpaid = self._inject("D01", live, detail, organization_id=live.organization)
        if rule == "D14":
            self._stubborn.add(live.organization)
            self._inject("D14", live, f"{detail}; every suspension is undone at once, so Concord's correction "
                         "cannot stick and must be escalated", after=unpaid.fingerprint, stuck=unpaid.fingerprint)

    def _end_subscription(self, live: _Live, support: bool) -> None:
        stripe_sandbox.cancel_subscription(self.world, live.subscription)
        if support:
            today = _date(self.world.now_ms() // 1000)
            zd.set_entitlement(self.world, live.organization, status="inactive", end_date=today,
                               keys=self.config.entitlement)

    # --- deals: what Concord's quote-to-cash saga provisions ------------------------------------------

    def _deal(self, live: _Live, step: Step) -> None:
        """A deal is won: only the account and the opportunity exist; the saga must do the rest.

        An erp_refuses deal's sales order is refused before the win (nothing the saga does can get it
        through). A D10 deal's account misses the field its defect names, so the saga's validation
        stops it: its D10 finding is injected, and its escalation when nobody will fix the account.
        """
        world, script = self.world, live.script
        p, plan, quantity = script.profile, PLANS[live.plan], live.quantity
        account = sf.create_account(world, name=p.name,
                                    country=None if script.defect == "missing_billing_country" else p.country,
                                    street=p.street, city=p.city, postal_code=p.postal_code, currency=p.currency,
                                    tax_id=None if script.defect == "missing_tax_id" else p.tax_id,
                                    payment_terms=TERMS)
        live.account = account["Id"]
        opportunity = sf.create_opportunity(world, live.account, name=f"{p.name} - {plan.name}",
                                            amount=plan.unit_amount * quantity, currency=p.currency,
                                            stage="Negotiation/Review", plan=plan.price_id,
                                            plan_field=self.config.plan_field, quantity=quantity)
        live.opportunity = opportunity["Id"]
        if script.deal == "erp_refuses":
            ns.refuse_sales_orders(world, live.opportunity, SALES_ORDER_REFUSAL)
        won = sf.close_won(world, live.opportunity)
        live.reason = deals.validate(account, won, self.config.plan_field)
        if step.inject == "D10":
            self._unfinished(live)
        self._deal_played(live, step)

    def _unfinished(self, live: _Live) -> None:
        """D10: the saga stops at validation, so the won opportunity stays unprovisioned.

        No D08 although NetSuite has no customer for the won account: the ERP customer is the saga's own step
        (docs/rules.md D08), and the stopped saga is D10's to report.
        """
        fixed = live.script.deal == "fixed"
        what = (f"opportunity {live.opportunity} is closed-won while account {live.account} fails the saga's "
                f"validation ({live.reason}): no subscription is created")
        won = self._inject("D10", live, f"{what}; a person fixes the account {DEAL_STEP_REAL:g} s later, nobody "
                           "resumes the saga, so Concord's saga.resume completes it" if fixed else what,
                           opportunity_id=live.opportunity)
        if not fixed:
            self._inject("D14", live, f"account {live.account} stays incomplete ({live.reason}): saga.resume cannot "
                         "pass validation, so Concord escalates the unprovisioned deal", after=won.fingerprint,
                         stuck=won.fingerprint)

    def _deal_fix(self, live: _Live, step: Step) -> None:
        """A person completes the D10 account (nobody resumes the saga: that is D10's correction)."""
        p = live.script.profile
        field = {"missing_tax_id": (sf.TAX_ID_FIELD, p.tax_id),
                 "missing_billing_country": ("BillingCountry", p.country)}[live.script.defect]
        sf.update_account(self.world, live.account, dict([field]))
        self._deal_played(live, step)

    def _deal_reopen(self, live: _Live, step: Step) -> None:
        """The won deal is reopened after the saga provisioned it: the saga must compensate."""
        sf.reopen(self.world, live.opportunity)
        self._deal_played(live, step)

    def _deal_amend(self, live: _Live, step: Step) -> None:
        """The still-won deal's seats change, and its amount with them: the saga amends the subscription."""
        p, plan = live.script.profile, PLANS[live.plan]
        live.quantity = step.value
        sf.update_opportunity(self.world, live.opportunity, {
            "TotalOpportunityQuantity": float(step.value),
            "Amount": sf.to_major(plan.unit_amount * step.value, p.currency)})
        self._deal_played(live, step)

    def _deal_played(self, live: _Live, step: Step) -> None:
        """The deal enters the ground truth once its script's last step has played."""
        if step.seq != live.script.steps[-1].seq:
            return
        expected = deals.EXPECTED[live.script.deal]
        self.deals.append(Deal(opportunity_id=live.opportunity, customer_key=live.account, variant=live.script.deal,
                               expected=expected, reason=live.reason if expected == "paused" else "",
                               plan=PLANS[live.plan].price_id, quantity=live.quantity))

    # --- D14: corrections that do not stick -----------------------------------------------------------

    def _observe(self, change: Change) -> None:
        """World listener: a stubborn entitlement changed by someone else is re-activated soon after."""
        if self._writing or change.platform != zd.PLATFORM or change.type != "organization":
            return
        if change.id not in self._stubborn or change.op == "delete":
            return
        status = (change.record.get("organization_fields") or {}).get(self.config.entitlement.status)
        if str(status or "").lower() == "active" or change.id in self._rebreak_due:
            return
        self._rebreak_due.add(change.id)
        self._defer(self.rebreak)

    def rebreak(self) -> None:
        """Re-activate the stubborn entitlements someone suspended since the last call."""
        due, self._rebreak_due = sorted(self._rebreak_due), set()
        self._writing = True
        try:
            for organization_id in due:
                try:
                    zd.set_entitlement(self.world, organization_id, status="active", keys=self.config.entitlement)
                except zd.NotFound:
                    self._stubborn.discard(organization_id)  # deleted: nothing left to re-break
                    continue
                self.rebreaks += 1
        finally:
            self._writing = False


# --- pacing -------------------------------------------------------------------------------------------


class Runner:
    """Plays a `Traffic` timeline in real time: a step at simulated time t runs t / time_scale seconds in.

    `start()` and `stop()` may alternate: a stopped run resumes where it stopped, its clock shifted
    by the pause. The run is `finished` when every step was played or `duration` real seconds of
    traffic have passed.
    """

    def __init__(self, traffic: Traffic, clock: Callable[[], float] = time.monotonic) -> None:
        self.traffic = traffic
        self._clock = clock
        self._scale = traffic.config.time_scale
        self._end = traffic.config.duration * self._scale if traffic.config.duration > 0 else math.inf
        self._cursor = 0
        self._origin: float | None = None  # real time of simulated time 0
        self._paused_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.finished = False
        self.done = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def simulated_seconds(self) -> float:
        if self._origin is None:
            return 0.0
        now = self._paused_at if self._paused_at is not None else self._clock()
        return min((now - self._origin) * self._scale, self._end)

    def status(self) -> TrafficStatus:
        status = self.traffic.status()
        status.running = self.running
        status.finished = self.finished
        status.simulated_seconds = round(self.simulated_seconds(), 1)
        return status

    def start(self) -> bool:
        """Start or resume playing; False when already running or finished."""
        if self.running or self.finished:
            return False
        now = self._clock()
        if self._origin is None:
            self._origin = now
        elif self._paused_at is not None:
            self._origin += now - self._paused_at
        self._paused_at = None
        self._task = asyncio.create_task(self._play(), name="sandbox-traffic")
        return True

    async def stop(self) -> bool:
        """Pause playing; False when it was not running."""
        task = self._task
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._paused_at = self._clock()
        return True

    async def _play(self) -> None:
        steps = self.traffic.steps
        assert self._origin is not None
        while self._cursor < len(steps) and steps[self._cursor].at <= self._end:
            step = steps[self._cursor]
            delay = self._origin + step.at / self._scale - self._clock()
            # Always yield: the API and the emitter run between steps even when the traffic is behind.
            await asyncio.sleep(max(delay, 0))
            self.traffic.run_step(step)
            self._cursor += 1
        if math.isfinite(self._end):
            await asyncio.sleep(max(self._origin + self._end / self._scale - self._clock(), 0))
        self.finished = True
        self.done.set()
