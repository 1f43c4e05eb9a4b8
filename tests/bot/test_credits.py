"""The credit ledger, as members and moderators notice it: allowances that refill, holds, prices, refusals."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.credits import CreditStore, LedgerKind, next_refill, period_start
from bot.engine.types import GenerationRequest, JobKind, ModelProfile
from bot.errors import (
    Blocked,
    InsufficientCredits,
    InvalidAmount,
    InvalidCreditInput,
    NotAllowed,
    UnknownAccount,
)
from bot.settings import CreditSettings
from bot.store import Database

GUILD = 1001
OTHER_GUILD = 2002
ALICE = 11
BOB = 12
MOD = 99
REPO = Path(__file__).resolve().parents[2]
TURBO = ModelProfile(
    name="tiny-turbo",
    family="sd2",
    native_size=512,
    default_steps=4,
    min_steps=1,
    max_steps=50,
    default_guidance=0.0,
    few_step=True,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def request(
    kind: JobKind = JobKind.IMAGINE, width=512, height=512, steps=4, images=4, **more
) -> GenerationRequest:
    return GenerationRequest(
        kind=kind, prompt="a lighthouse", width=width, height=height, steps=steps, guidance=0.0, seed=1,
        images=images, **more,
    )  # fmt: skip


async def everything(db: Database) -> list[tuple]:
    """Every credit row, to show that a refused operation wrote nothing."""
    rows = []
    for table in ("credit_policies", "credit_prices", "credit_accounts", "credit_holds", "credit_ledger"):
        rows += [(table, *row) for row in await db.fetchall(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return rows


async def spend(credits: CreditStore, user: int, cost: int, scope: int = GUILD) -> None:
    await credits.settle((await credits.reserve(scope, user, cost, None)).id)


# -- periods -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "moment", "start", "refill"),
    [
        ("day", "2025-01-15 23:59:59.999999", "2025-01-15 00:00", "2025-01-16 00:00"),
        ("day", "2025-01-16 00:00", "2025-01-16 00:00", "2025-01-17 00:00"),
        ("week", "2025-01-19 23:59:59", "2025-01-13 00:00", "2025-01-20 00:00"),  # Sunday night
        ("week", "2025-01-20 00:00", "2025-01-20 00:00", "2025-01-27 00:00"),  # Monday 00:00 exactly
        ("week", "2024-12-31 10:00", "2024-12-30 00:00", "2025-01-06 00:00"),  # across New Year
        ("month", "2025-01-31 23:59:59", "2025-01-01 00:00", "2025-02-01 00:00"),
        ("month", "2024-02-29 12:00", "2024-02-01 00:00", "2024-03-01 00:00"),  # leap day
        ("month", "2024-12-15 00:00", "2024-12-01 00:00", "2025-01-01 00:00"),
    ],
)
def test_periods_reset_at_utc_midnight_monday_and_first_of_month(period, moment, start, refill):
    """Free credits refill at 00:00 UTC, on Monday 00:00 UTC or on the 1st at 00:00 UTC."""
    assert period_start(period, at(moment)) == at(start)
    assert next_refill(period, at(moment)) == at(refill)


# -- refill --------------------------------------------------------------------------------------------


async def test_a_new_member_starts_with_the_full_allowance(credits, clock):
    """Someone who never generated here sees 40 free credits and next Monday's refill."""
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.free_left, balance.bonus, balance.held, balance.available) == (40, 0, 0, 40)
    assert balance.allowance == 40 and balance.period == "week"
    assert balance.refills_at == at("2025-01-20 00:00")


async def test_unused_free_credits_do_not_carry_over(credits, clock):
    """Spending 10 leaves 30 until Monday 00:00 UTC, then exactly 40 again, not 70."""
    await spend(credits, ALICE, 10)
    clock.set(at("2025-01-19 23:59:59.999"))
    assert (await credits.balance(GUILD, ALICE)).free_left == 30
    clock.set(at("2025-01-20 00:00"))
    assert (await credits.balance(GUILD, ALICE)).free_left == 40
    await spend(credits, ALICE, 1)
    assert (await credits.balance(GUILD, ALICE)).free_left == 39
    assert await credits.verify() == []


async def test_a_bot_down_across_two_resets_refills_once(credits, clock):
    """After two weeks offline a member has one allowance, and the ledger shows one refill."""
    await spend(credits, ALICE, 25)
    clock.advance(days=15)
    await spend(credits, ALICE, 5)
    balance = await credits.balance(GUILD, ALICE)
    assert balance.free_left == 35
    assert balance.refills_at == at("2025-02-03 00:00")
    refills = [e for e in await credits.ledger(GUILD, ALICE) if e.kind is LedgerKind.REFILL]
    assert [e.reason for e in refills] == ["new period", "first use"]
    assert await credits.verify() == []


@pytest.mark.parametrize(
    ("period", "before", "after"),
    [
        ("day", "2025-01-15 23:59:59", "2025-01-16 00:00"),
        ("week", "2025-01-19 23:59:59", "2025-01-20 00:00"),
        ("month", "2025-01-31 23:59:59", "2025-02-01 00:00"),
    ],
)
async def test_each_period_refills_exactly_at_its_edge(credits, clock, period, before, after):
    """One second before the reset the member still waits; at the reset they have their allowance."""
    await credits.set_policy(GUILD, period=period, actor=MOD)
    await spend(credits, ALICE, 40)
    clock.set(at(before))
    with pytest.raises(InsufficientCredits) as refused:
        await credits.reserve(GUILD, ALICE, 1, None)
    assert refused.value.refills_at == at(after)
    clock.set(at(after))
    await spend(credits, ALICE, 1)
    assert (await credits.balance(GUILD, ALICE)).free_left == 39


async def test_a_job_queued_before_the_reset_is_paid_from_the_old_period(credits, clock):
    """A job reserved on Sunday night and finished on Monday does not eat into the new week."""
    clock.set(at("2025-01-19 23:58"))
    hold = await credits.reserve(GUILD, ALICE, 10, 1)
    clock.set(at("2025-01-20 00:05"))
    assert await credits.settle(hold.id)
    assert (await credits.balance(GUILD, ALICE)).free_left == 40
    assert await credits.verify() == []


# -- prices --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "rate", "expected"),
    [
        (request(), 1.0, 4),  # four native-size images at default steps
        (request(images=1), 1.0, 1),
        (request(width=768, height=512), 1.0, 6),  # 1.5× the pixels
        (request(width=640, height=640), 1.0, 7),  # 6.25 rounds up
        (request(steps=8), 1.0, 8),  # twice the steps
        (request(steps=1, images=1), 1.0, 1),  # 0.25 rounds up to a whole credit
        (request(JobKind.UPSCALE, width=1024, height=1024, images=1, scale=2), 1.0, 4),
        (request(JobKind.UPSCALE, width=2048, height=2048, images=1, scale=4), 1.0, 16),
        (request(JobKind.VARY), 1.5, 6),
        (request(images=1, steps=12), 0.1, 1),  # 0.3 rounds up to 1
        (request(images=3, steps=40), 0.1, 3),  # 3.0000000000000004 is 3, float noise is not a credit
        (request(JobKind.SELECT, images=1), 1.0, 0),  # picking one image of a grid is free
        (request(relax=True), 1.0, 4),  # the price is the same; reserve(relax=True) makes it free
    ],
)
async def test_price_follows_the_work_rounded_up(credits, req, rate, expected):
    """Bigger images, more steps and 4× upscales cost proportionally more, in whole credits."""
    if req.kind is not JobKind.SELECT:
        await credits.set_price(GUILD, req.kind, rate, actor=MOD)
    assert await credits.quote(GUILD, req, TURBO) == expected


async def test_prices_are_per_server(credits):
    """A moderator making upscales dearer here changes nothing in another server."""
    upscale = request(JobKind.UPSCALE, width=1024, height=1024, images=1, scale=2)
    policy = await credits.set_price(GUILD, JobKind.UPSCALE, 2.5, actor=MOD)
    assert policy.price(JobKind.UPSCALE) == 2.5
    assert await credits.quote(GUILD, upscale, TURBO) == 10
    assert await credits.quote(OTHER_GUILD, upscale, TURBO) == 4
    assert (await credits.policy(GUILD)).price(JobKind.IMAGINE) == 1.0


@pytest.mark.parametrize(
    ("kind", "rate", "error"),
    [
        (JobKind.SELECT, 1.0, InvalidCreditInput),
        ("sketch", 1.0, InvalidCreditInput),
        (JobKind.IMAGINE, -1.0, InvalidAmount),
        (JobKind.IMAGINE, 1001.0, InvalidAmount),
        (JobKind.IMAGINE, float("nan"), InvalidAmount),
        (JobKind.IMAGINE, True, InvalidAmount),
    ],
)
async def test_a_bad_price_is_refused_and_nothing_changes(credits, db, kind, rate, error):
    """Selecting stays free, and a negative or absurd price is refused with the allowed range."""
    before = await everything(db)
    with pytest.raises(error):
        await credits.set_price(GUILD, kind, rate, actor=MOD)
    assert await everything(db) == before


# -- holds ---------------------------------------------------------------------------------------------


async def test_open_holds_count_against_the_balance(credits):
    """With 30 of 40 credits held by a queued job, a 20-credit job is refused with the figures."""
    await credits.reserve(GUILD, ALICE, 30, 1)
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.free_left, balance.held, balance.available) == (40, 30, 10)
    with pytest.raises(InsufficientCredits) as refused:
        await credits.reserve(GUILD, ALICE, 20, 2)
    assert (refused.value.needed, refused.value.available) == (20, 10)
    assert refused.value.refills_at == at("2025-01-20 00:00")
    assert "20 credits" in str(refused.value) and "you have 10" in str(refused.value)


async def test_settle_charges_once_and_release_returns_the_credits(credits):
    """A finished job is charged exactly once; a failed one costs nothing."""
    done = await credits.reserve(GUILD, ALICE, 4, 1)
    failed = await credits.reserve(GUILD, ALICE, 4, 2)
    assert await credits.settle(done.id) is True
    assert await credits.release(failed.id, "failed: out of memory") is True
    assert await credits.settle(done.id) is False
    assert await credits.release(done.id, "cancelled") is False
    assert await credits.settle(failed.id) is False
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.free_left, balance.held, balance.available) == (36, 0, 36)
    entries = await credits.ledger(GUILD, ALICE)
    assert [(e.kind, e.job_id) for e in entries[:2]] == [(LedgerKind.RELEASE, 2), (LedgerKind.CHARGE, 1)]
    assert entries[0].reason == "failed: out of memory"
    assert await credits.verify() == []


async def test_an_unknown_hold_is_an_error(credits):
    """Settling a hold that never existed is refused rather than silently ignored."""
    with pytest.raises(UnknownAccount, match="no credit hold #404"):
        await credits.settle(404)
    with pytest.raises(UnknownAccount):
        await credits.release(0, "cancelled")
    with pytest.raises(UnknownAccount):
        await credits.attach_job(404, 1)


async def test_a_hold_made_before_its_job_gets_the_job_attached(credits):
    """The ledger names the job even when the credits were held before the job row existed."""
    hold = await credits.reserve(GUILD, ALICE, 4, None)
    await credits.attach_job(hold.id, 77)
    assert [h.job_id for h in await credits.open_holds()] == [77]
    await credits.settle(hold.id)
    assert (await credits.ledger(GUILD, ALICE, limit=1))[0].job_id == 77


async def test_bonus_credits_are_spent_after_the_free_allowance(credits, clock):
    """With 40 free and 10 bonus, a 45-credit job leaves 0 free and 5 bonus, and bonus survives Monday."""
    await credits.grant(GUILD, ALICE, 10, "contest winner", actor=MOD)
    await spend(credits, ALICE, 45)
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.free_left, balance.bonus, balance.available) == (0, 5, 5)
    clock.set(at("2025-01-20 00:00"))
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.free_left, balance.bonus, balance.available) == (40, 5, 45)
    assert await credits.verify() == []


async def test_abandoned_holds_are_released_at_start_up(tmp_path, clock):
    """Credits held by jobs of a bot that died come back after hold_timeout_s, at the next start."""
    path = tmp_path / "atelier.sqlite3"
    settings = CreditSettings(hold_timeout_s=600)
    async with await Database.open(path) as db:
        credits = CreditStore(db, settings, clock=clock)
        old = await credits.reserve(GUILD, ALICE, 10, 1)
        clock.advance(minutes=9)
        recent = await credits.reserve(GUILD, ALICE, 5, 2)
    clock.advance(minutes=2)
    async with await Database.open(path) as db:
        credits = CreditStore(db, settings, clock=clock)
        assert await credits.release_abandoned() == 1
        assert [h.id for h in await credits.open_holds()] == [recent.id]
        assert (await credits.balance(GUILD, ALICE)).available == 35
        assert await credits.settle(old.id) is False
        assert (await credits.ledger(GUILD, ALICE, limit=1))[0].reason.startswith("abandoned")
        assert await credits.release_abandoned(0) == 1
        assert await credits.verify() == []


# -- overrides -----------------------------------------------------------------------------------------


async def test_an_allowance_override_keeps_what_was_used(credits, clock):
    """Raising a member to 100 after they used 10 leaves 90; at the reset they get 100."""
    await spend(credits, ALICE, 10)
    balance = await credits.set_allowance(GUILD, ALICE, 100, actor=MOD)
    assert (balance.free_left, balance.allowance) == (90, 100)
    assert (await credits.set_allowance(GUILD, ALICE, 5, actor=MOD)).free_left == 0
    clock.set(at("2025-01-20 00:00"))
    assert (await credits.balance(GUILD, ALICE)).free_left == 5
    assert (await credits.set_allowance(GUILD, ALICE, None, actor=MOD)).allowance == 40
    assert await credits.verify() == []


async def test_unlimited_members_are_never_refused_nor_charged(credits):
    """An unlimited member can queue a job of any price and their balance does not move."""
    await credits.set_allowance(GUILD, ALICE, None, unlimited=True, actor=MOD)
    hold = await credits.reserve(GUILD, ALICE, 1_000_000_000, 1)
    assert hold.amount == 0
    await credits.settle(hold.id)
    balance = await credits.balance(GUILD, ALICE)
    assert balance.unlimited and balance.free_left == 40
    with pytest.raises(InvalidCreditInput, match="not both"):
        await credits.set_allowance(GUILD, ALICE, 10, unlimited=True, actor=MOD)


async def test_blocked_members_cannot_reserve_until_unblocked(credits):
    """A blocked member is refused even in relax mode; unblocking lets them generate again."""
    await credits.set_policy(GUILD, relax_allowed=True, actor=MOD)
    balance = await credits.block(GUILD, ALICE, actor=MOD, reason="spam")
    assert balance.blocked
    with pytest.raises(Blocked):
        await credits.reserve(GUILD, ALICE, 1, None)
    with pytest.raises(Blocked):
        await credits.reserve(GUILD, ALICE, 1, None, relax=True)
    await credits.unblock(GUILD, ALICE, actor=MOD)
    await credits.reserve(GUILD, ALICE, 1, None)
    kinds = [e.kind for e in await credits.ledger(GUILD, ALICE)]
    assert kinds[:2] == [LedgerKind.UNBLOCK, LedgerKind.BLOCK]


# -- relax ---------------------------------------------------------------------------------------------


async def test_relax_mode_is_off_by_default(credits):
    """Without a moderator turning it on, --relax is refused with how to turn it on."""
    with pytest.raises(NotAllowed, match="Relax mode is off"):
        await credits.reserve(GUILD, ALICE, 4, None, relax=True)


async def test_relax_jobs_are_free_where_allowed(credits):
    """With relax on, an out-of-credits member can still queue a relax job, and it costs nothing."""
    await credits.set_policy(GUILD, relax_allowed=True, actor=MOD)
    await spend(credits, ALICE, 40)
    with pytest.raises(InsufficientCredits) as refused:
        await credits.reserve(GUILD, ALICE, 4, None)
    assert refused.value.relax_allowed and "--relax" in str(refused.value)
    hold = await credits.reserve(GUILD, ALICE, 4, None, relax=True)
    assert (hold.amount, hold.relax) == (0, True)
    await credits.settle(hold.id)
    assert (await credits.balance(GUILD, ALICE)).available == 0
    assert "free" in (await credits.ledger(GUILD, ALICE, limit=1))[0].describe()


# -- moderators ----------------------------------------------------------------------------------------


async def test_moderators_change_balances_only_in_their_own_server(credits, db):
    """A grant here is invisible elsewhere, and acting from another server is refused, writing nothing."""
    await credits.grant(GUILD, ALICE, 10, "welcome", actor=MOD, actor_scope=GUILD)
    assert (await credits.balance(GUILD, ALICE)).bonus == 10
    assert (await credits.balance(OTHER_GUILD, ALICE)).bonus == 0
    before = await everything(db)
    with pytest.raises(NotAllowed, match="another"):
        await credits.grant(OTHER_GUILD, ALICE, 10, "sneaky", actor=MOD, actor_scope=GUILD)
    with pytest.raises(NotAllowed):
        await credits.set_policy(OTHER_GUILD, allowance=0, actor=MOD, actor_scope=GUILD)
    with pytest.raises(NotAllowed):
        await credits.ledger(OTHER_GUILD, ALICE, actor_scope=GUILD)
    assert await everything(db) == before


async def test_grant_and_revoke_are_in_the_ledger_with_actor_and_reason(credits):
    """A member's ledger shows who gave or took credits, how many and why, newest first."""
    await credits.grant(GUILD, ALICE, 10, "contest winner", actor=MOD)
    balance = await credits.revoke(GUILD, ALICE, 3, "typo", actor=MOD)
    assert balance.bonus == 7
    newest, older = (await credits.ledger(GUILD, ALICE))[:2]
    assert (newest.kind, newest.bonus_delta, newest.reason) == (LedgerKind.REVOKE, -3, "typo")
    assert newest.actor == MOD
    assert (older.kind, older.bonus_delta) == (LedgerKind.GRANT, 10)
    assert f"<@{MOD}>" in newest.describe() and "typo" in newest.describe()


async def test_reset_period_refills_now_and_keeps_the_schedule(credits):
    """A moderator can give a member their allowance back before Monday."""
    await spend(credits, ALICE, 30)
    balance = await credits.reset_period(GUILD, ALICE, actor=MOD)
    assert (balance.free_left, balance.refills_at) == (40, at("2025-01-20 00:00"))


async def test_a_server_keeps_following_the_bot_defaults_it_did_not_change(db, clock):
    """A server that only turned relax on still gets the operator's new default allowance after a restart."""
    await CreditStore(db, CreditSettings(), clock=clock).set_policy(GUILD, relax_allowed=True, actor=MOD)
    policy = await CreditStore(db, CreditSettings(default_allowance=60, period="day"), clock=clock).policy(
        GUILD
    )
    assert (policy.allowance, policy.period, policy.relax_allowed) == (60, "day", True)


async def test_a_new_server_default_reaches_members_at_once(credits, clock):
    """Raising the default to 100 gives followers 100 minus what they used; overrides are untouched."""
    await spend(credits, ALICE, 10)
    await credits.set_allowance(GUILD, BOB, 20, actor=MOD)
    policy = await credits.set_policy(GUILD, allowance=100, period="day", actor=MOD)
    assert (policy.allowance, policy.period, policy.relax_allowed) == (100, "day", False)
    alice, bob = await credits.balance(GUILD, ALICE), await credits.balance(GUILD, BOB)
    assert (alice.free_left, alice.allowance, alice.refills_at) == (90, 100, at("2025-01-16 00:00"))
    assert (bob.free_left, bob.allowance) == (20, 20)
    assert (await credits.balance(OTHER_GUILD, ALICE)).allowance == 40
    assert await credits.verify() == []


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        (lambda c: c.grant(GUILD, ALICE, 0, "", actor=MOD), InvalidAmount),
        (lambda c: c.grant(GUILD, ALICE, -5, "", actor=MOD), InvalidAmount),
        (lambda c: c.grant(GUILD, ALICE, 1_000_000_001, "", actor=MOD), InvalidAmount),
        (lambda c: c.grant(GUILD, ALICE, 2.5, "", actor=MOD), InvalidAmount),
        (lambda c: c.grant(GUILD, ALICE, 5, "x" * 1000, actor=MOD), InvalidCreditInput),
        (lambda c: c.revoke(GUILD, ALICE, 50, "", actor=MOD), InvalidAmount),  # only 10 bonus
        (lambda c: c.revoke(GUILD, BOB, 1, "", actor=MOD), UnknownAccount),
        (lambda c: c.unblock(GUILD, BOB, actor=MOD), UnknownAccount),
        (lambda c: c.reset_period(GUILD, BOB, actor=MOD), UnknownAccount),
        (lambda c: c.ledger(GUILD, BOB), UnknownAccount),
        (lambda c: c.grant(-1, ALICE, 5, "", actor=MOD), UnknownAccount),
        (lambda c: c.grant(GUILD, 0, 5, "", actor=MOD), UnknownAccount),
        (lambda c: c.grant(GUILD, ALICE, 5, "", actor=-3), UnknownAccount),
        (lambda c: c.set_allowance(GUILD, ALICE, -1, actor=MOD), InvalidAmount),
        (lambda c: c.set_policy(GUILD, period="fortnight", actor=MOD), InvalidCreditInput),
        (lambda c: c.set_policy(GUILD, allowance=10**10, actor=MOD), InvalidAmount),
        (lambda c: c.set_policy(GUILD, actor=MOD), InvalidCreditInput),
        (lambda c: c.reserve(GUILD, ALICE, -1, None), InvalidAmount),
        (lambda c: c.reserve(GUILD, ALICE, 10**9 + 1, None), InvalidAmount),
        (lambda c: c.reserve(GUILD, ALICE, 51, None), InsufficientCredits),  # 40 free + 10 bonus
    ],
)
async def test_bad_input_is_refused_with_a_typed_error_and_writes_nothing(credits, db, operation, error):
    """Negative, absurd or malformed input gets a precise error, and the database is unchanged."""
    await credits.grant(GUILD, ALICE, 10, "setup", actor=MOD)
    before = await everything(db)
    with pytest.raises(error) as refused:
        await operation(credits)
    assert str(refused.value)
    assert await everything(db) == before


async def test_bad_period_names_the_allowed_values(credits):
    """A moderator who types a period that does not exist is told which ones do."""
    with pytest.raises(InvalidCreditInput, match="use day, week or month"):
        await credits.set_policy(GUILD, period="fortnight", actor=MOD)


# -- integrity -----------------------------------------------------------------------------------------


async def test_the_ledger_is_append_only(credits, db):
    """Nobody can quietly edit or delete history, even with SQL."""
    await credits.grant(GUILD, ALICE, 10, "gift", actor=MOD)
    with pytest.raises(Exception, match="append-only"):
        await db.execute("UPDATE credit_ledger SET bonus_delta = 1000")
    with pytest.raises(Exception, match="append-only"):
        await db.execute("DELETE FROM credit_ledger")


async def test_a_hold_can_be_closed_only_once_even_with_sql(credits, db):
    """The database itself refuses a second charge for the same job."""
    hold = await credits.reserve(GUILD, ALICE, 10, 1)
    await credits.settle(hold.id)
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute(
            "INSERT INTO credit_ledger (scope, user_id, kind, amount, free_delta, hold_id, created_at)"
            " VALUES (?, ?, 'charge', 10, -10, ?, 0)",
            (GUILD, ALICE, hold.id),
        )
    assert (await credits.balance(GUILD, ALICE)).free_left == 30


async def test_verify_reports_a_balance_that_does_not_match_the_ledger(credits, db):
    """A balance edited behind the ledger's back is reported with both figures."""
    await credits.grant(GUILD, ALICE, 10, "gift", actor=MOD)
    assert await credits.verify() == []
    await db.execute("UPDATE credit_accounts SET bonus = bonus + 5")
    problems = await credits.verify()
    assert len(problems) == 1 and f"{GUILD}/{ALICE}" in problems[0] and "bonus 15" in problems[0]


async def test_a_reserve_in_a_rolled_back_transaction_holds_nothing(credits, db):
    """When the queue's job insert fails, the credits reserved in the same transaction are not held."""
    with pytest.raises(RuntimeError, match="job insert failed"):
        async with db.transaction() as conn:
            await credits.reserve(GUILD, ALICE, 10, None, conn=conn)
            raise RuntimeError("job insert failed")
    assert await credits.open_holds() == []
    assert (await credits.balance(GUILD, ALICE)).available == 40


async def test_settle_joins_the_callers_transaction(credits, db):
    """Settling inside the queue's transaction commits together with the queue's own write."""
    hold = await credits.reserve(GUILD, ALICE, 10, 1)
    async with db.transaction() as conn:
        assert await credits.settle(hold.id, conn=conn)
        await conn.execute("CREATE TABLE marker (x)")
        assert (await credits.balance(GUILD, ALICE, conn=conn)).free_left == 30
    assert (await credits.balance(GUILD, ALICE)).free_left == 30


# -- concurrency and crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [1, 3])
async def test_hundreds_of_concurrent_reserves_never_overspend(credits, cost):
    """300 fast clicks from 6 tasks against 40 credits: exactly the affordable number get through."""

    async def clicker() -> tuple[list, int]:
        holds, refused = [], 0
        for _ in range(50):
            try:
                holds.append(await credits.reserve(GUILD, ALICE, cost, None))
            except InsufficientCredits:
                refused += 1
        return holds, refused

    results = await asyncio.gather(*(clicker() for _ in range(6)))
    holds = [hold for got, _ in results for hold in got]
    assert len(holds) == 40 // cost
    assert sum(refused for _, refused in results) == 300 - 40 // cost
    await asyncio.gather(*(credits.settle(hold.id) for hold in holds))
    assert (await credits.balance(GUILD, ALICE)).free_left == 40 % cost
    assert await credits.verify() == []


CHARGED = (
    "SELECT -sum(free_delta + bonus_delta) AS charged"
    " FROM credit_ledger WHERE kind = 'charge' AND user_id = ?"
)
CHILD = """
import asyncio, sys
from bot.credits import CreditStore
from bot.settings import CreditSettings
from bot.store import Database

async def main(path):
    db = await Database.open(path)
    credits = CreditStore(db, CreditSettings(default_allowance=1_000_000))

    async def worker(user):
        n = 0
        while True:
            n += 1
            hold = await credits.reserve(1, user, 3, n)
            if n % 5 == 0:
                await credits.release(hold.id, "cancelled")
                continue
            await credits.settle(hold.id)
            print(f"settled {hold.id} {user} {hold.amount}", flush=True)

    await asyncio.gather(*(worker(user) for user in (1, 2, 3, 4)))

asyncio.run(main(sys.argv[1]))
"""


def run_child_until_killed(script: Path, path: Path, settles: int) -> list[tuple[int, int, int]]:
    """Run the child until it reported `settles` committed settles, then SIGKILL it: (hold, user, amount)."""
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported = []
    try:
        for line in child.stdout:
            _, hold, user, amount = line.split()
            reported.append((int(hold), int(user), int(amount)))
            if len(reported) >= settles:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait()
    assert len(reported) >= settles, child.stderr.read()
    return reported


@pytest.mark.slow
async def test_a_killed_bot_leaves_a_consistent_ledger_that_lost_no_charge(tmp_path):
    """SIGKILL amid reserve/settle traffic, three times: the file opens, verifies and keeps every charge."""
    path = tmp_path / "atelier.sqlite3"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    reported: list[tuple[int, int, int]] = []
    for _ in range(3):
        reported += run_child_until_killed(script, path, settles=150)
        async with await Database.open(path) as db:
            credits = CreditStore(db, CreditSettings(default_allowance=1_000_000))
            assert await credits.verify() == []
            rows = await db.fetchall("SELECT id FROM credit_holds WHERE outcome = 'settled'")
            assert {hold for hold, _, _ in reported} <= {row["id"] for row in rows}
            for user in (1, 2, 3, 4):
                charged = (await db.fetchone(CHARGED, (user,)))["charged"]
                assert charged >= sum(amount for _, owner, amount in reported if owner == user)
            await credits.release_abandoned(0)  # what start-up does for the jobs that were in flight
            assert await credits.open_holds() == []
            assert await credits.verify() == []
