"""The credit ledger: a free allowance that refills every period, bonus credits, and holds for jobs.

An account is a member within a scope (a guild id, or 0 for direct messages); nothing here ever reads
or writes across scopes. Its balance is what is left of this period's free allowance plus bonus
credits that moderators granted; a job spends the free part first. The refill is lazy: the first time
an account is touched after its `refills_at` instant, `free_left` is set back to the allowance (not
added to it), so a bot that was down across one reset or across five refills exactly once.

A job's credits are *held* when it is queued (`reserve`), *charged* when it succeeds (`settle`) and
*returned* when it fails or is cancelled (`release`). Open holds count against the balance, so two fast
clicks can never both spend the last credit; a hold left open by a killed bot is released at start-up
(`release_abandoned`). The ledger is append-only and is the truth: a balance only ever changes by
appending one ledger row carrying the difference, whose trigger (migration 0001) applies it to the
account in the same statement, so `verify()` can recompute every balance from the ledger.

Speed: each aiosqlite call is a thread hop (~40 µs), so the hot path is one statement per operation,
atomic on its own without BEGIN/COMMIT. `reserve` for an account already in its current period is one
guarded INSERT…SELECT (the affordability check and the hold in one statement); `settle` is one INSERT
of the charge row, guarded on the hold being open, whose triggers close the hold and debit the account.
Everything else (first use, refill, relax, refusals, moderators) reads the account in a transaction.

Moderators act in the scope they are in. Cogs pass the interaction's scope as `scope`; moderator methods
also accept `actor_scope=` (the scope the moderator's permission was checked in) and refuse with
`NotAllowed` when it differs, so a moderator of one server can never touch another server's balances.
Every method takes `conn=`: inside the caller's `async with db.transaction() as conn` it runs in that
transaction instead of its own (the queue inserts a job and reserves its credits atomically).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import aiosqlite

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

MAX_AMOUNT = 1_000_000_000  #: no amount, allowance or balance goes beyond this
MAX_RATE = 1000.0  #: credits per unit of work
MAX_ID = 2**63 - 1  #: Discord ids are 64-bit snowflakes
MAX_REASON = 300
PERIODS = ("day", "week", "month")
PRICED_KINDS = (JobKind.IMAGINE, JobKind.VARY, JobKind.UPSCALE)  #: SELECT is always free
DEFAULT_PRICES: Mapping[JobKind, float] = {kind: 1.0 for kind in PRICED_KINDS}


def utc_now() -> datetime:
    return datetime.now(UTC)


def period_start(period: str, moment: datetime) -> datetime:
    """The reset instant that began the period containing `moment` (UTC)."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())  # Monday
    return day.replace(day=1)


def next_refill(period: str, moment: datetime) -> datetime:
    """The first reset instant strictly after `moment`: 00:00 UTC, Monday 00:00 UTC or the 1st 00:00 UTC."""
    start = period_start(period, moment)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


class LedgerKind(StrEnum):
    """What a ledger entry records."""

    REFILL = "refill"  #: the free allowance was set back to full (new period, or first use)
    CHARGE = "charge"  #: a finished job paid its hold (free credits first, then bonus)
    RELEASE = "release"  #: a hold was returned unpaid (failed, cancelled, abandoned)
    GRANT = "grant"  #: a moderator added bonus credits
    REVOKE = "revoke"  #: a moderator took bonus credits away
    ALLOWANCE = "allowance"  #: the member's allowance changed (override, unlimited, scope default)
    RESET = "reset"  #: a moderator refilled the member's free allowance now
    BLOCK = "block"  #: a moderator blocked the member from generating
    UNBLOCK = "unblock"  #: a moderator lifted the block
    POLICY = "policy"  #: the scope's allowance, period or relax mode changed (no member)
    PRICE = "price"  #: the scope's price of a kind of job changed (no member)


@dataclass(frozen=True)
class Policy:
    """A scope's credit rules, with the bot's defaults filled in."""

    scope: int
    allowance: int  #: free credits per period
    period: str  #: "day", "week" or "month"
    relax_allowed: bool
    prices: Mapping[JobKind, float]  #: credits per unit of work

    def price(self, kind: JobKind) -> float:
        return self.prices.get(kind, 0.0)


@dataclass(frozen=True)
class Balance:
    """What a member has in one scope right now."""

    scope: int
    user: int
    free_left: int  #: unspent free credits of this period
    allowance: int  #: free credits per period (the override, or the scope's default)
    bonus: int  #: moderator-granted credits, kept until spent
    held: int  #: set aside for queued and running jobs
    available: int  #: what the next job may spend: free_left + bonus - held, never below 0
    period: str
    refills_at: datetime
    unlimited: bool
    blocked: bool
    relax_allowed: bool


@dataclass(frozen=True)
class Hold:
    """Credits set aside for one job until it is settled or released."""

    id: int
    scope: int
    user: int
    amount: int  #: 0 for relax jobs and unlimited members
    job_id: int | None
    relax: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Hold:
        return cls(
            id=row["id"],
            scope=row["scope"],
            user=row["user_id"],
            amount=row["amount"],
            job_id=row["job_id"],
            relax=bool(row["relax"]),
            created_at=_from_ts(row["created_at"]),
        )


@dataclass(frozen=True)
class LedgerEntry:
    """One append-only row of a member's (or a scope's) credit history."""

    id: int
    scope: int
    user: int | None
    kind: LedgerKind
    amount: int | None
    free_delta: int
    bonus_delta: int
    reason: str
    job_id: int | None
    hold_id: int | None
    actor: int | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> LedgerEntry:
        return cls(
            id=row["id"],
            scope=row["scope"],
            user=row["user_id"],
            kind=LedgerKind(row["kind"]),
            amount=row["amount"],
            free_delta=row["free_delta"],
            bonus_delta=row["bonus_delta"],
            reason=row["reason"],
            job_id=row["job_id"],
            hold_id=row["hold_id"],
            actor=row["actor"],
            created_at=_from_ts(row["created_at"]),
        )

    def describe(self) -> str:
        """One line for a member or moderator, e.g. "job 12: charged 4 credits by <@99> — reason"."""
        what = f"job {self.job_id}" if self.job_id is not None else f"hold {self.hold_id}"
        charged = -(self.free_delta + self.bonus_delta)
        match self.kind:
            case LedgerKind.CHARGE if charged:
                text = f"{what}: charged {charged} credits"
            case LedgerKind.CHARGE:
                text = f"{what}: free"
            case LedgerKind.RELEASE:
                text = f"{what}: not charged, {self.amount} held credits returned"
            case LedgerKind.REFILL:
                text = f"free credits refilled to {self.amount}"
            case LedgerKind.GRANT:
                text = f"+{self.bonus_delta} bonus credits"
            case LedgerKind.REVOKE:
                text = f"{self.bonus_delta} bonus credits"
            case LedgerKind.RESET:
                text = f"free credits reset to {self.amount}"
            case LedgerKind.ALLOWANCE:
                text = "allowance changed"
            case LedgerKind.BLOCK | LedgerKind.UNBLOCK:
                text = f"{self.kind.value}ed"
            case _:
                text = "server credit settings changed"
        if self.actor is not None:
            text += f" by <@{self.actor}>"
        return f"{text} — {self.reason}" if self.reason else text


@dataclass(frozen=True)
class _Account:
    """An account's stored row joined with its scope's policy; `exists` is False for a member never seen."""

    scope: int
    user: int
    exists: bool
    free_left: int
    bonus: int
    held: int
    refills_at: float
    override: int | None
    unlimited: bool
    blocked: bool
    policy_allowance: int
    period: str
    relax_allowed: bool

    @property
    def allowance(self) -> int:
        return self.policy_allowance if self.override is None else self.override

    @property
    def available(self) -> int:
        return self.free_left + self.bonus - self.held

    def refilled(self, now: datetime) -> _Account:
        return dataclasses.replace(
            self, free_left=self.allowance, refills_at=next_refill(self.period, now).timestamp()
        )

    def settings(self) -> dict[str, Any]:
        """The stored columns that are not balances (those change only through the ledger)."""
        return {
            "refills_at": self.refills_at,
            "override": self.override,
            "unlimited": self.unlimited,
            "blocked": self.blocked,
        }

    def balance(self) -> Balance:
        return Balance(
            scope=self.scope,
            user=self.user,
            free_left=self.free_left,
            allowance=self.allowance,
            bonus=self.bonus,
            held=self.held,
            available=max(0, self.available),
            period=self.period,
            refills_at=_from_ts(self.refills_at),
            unlimited=self.unlimited,
            blocked=self.blocked,
            relax_allowed=self.relax_allowed,
        )


# -- SQL ---------------------------------------------------------------------------------------------

GET_ACCOUNT = """
SELECT a.scope IS NOT NULL AS found, a.free_left, a.bonus, a.refills_at, a.allowance, a.unlimited, a.blocked,
       p.allowance AS policy_allowance, p.period, p.relax_allowed,
       (SELECT coalesce(sum(h.amount), 0) FROM credit_holds AS h
        WHERE h.scope = :scope AND h.user_id = :user AND h.closed_at IS NULL) AS held
FROM (SELECT :scope AS scope) AS s
LEFT JOIN credit_policies AS p ON p.scope = s.scope
LEFT JOIN credit_accounts AS a ON a.scope = s.scope AND a.user_id = :user
"""
CREATE_ACCOUNT = """
INSERT INTO credit_accounts (scope, user_id, free_left, bonus, refills_at, created_at)
VALUES (:scope, :user, 0, 0, 0, :now)
"""
# Balances are not here: only a ledger entry changes them (its trigger adds the deltas to the account).
SAVE_SETTINGS = """
UPDATE credit_accounts
SET refills_at = :refills_at, allowance = :override, unlimited = :unlimited, blocked = :blocked
WHERE scope = :scope AND user_id = :user
"""
INSERT_LEDGER = """
INSERT INTO credit_ledger
    (scope, user_id, kind, amount, free_delta, bonus_delta, reason, job_id, hold_id, actor, created_at)
VALUES (:scope, :user, :kind, :amount, :free_delta, :bonus_delta, :reason, :job_id, :hold_id, :actor, :now)
"""
# The hot path: check and hold in one statement. Matches no row (and so holds nothing) when the account
# does not exist, is due a refill, is blocked, or cannot afford it; the slow path then sorts out which.
RESERVE_FAST = """
INSERT INTO credit_holds (scope, user_id, amount, job_id, relax, created_at)
SELECT a.scope, a.user_id, CASE WHEN a.unlimited THEN 0 ELSE :cost END, :job_id, 0, :now
FROM credit_accounts AS a
WHERE a.scope = :scope AND a.user_id = :user AND a.blocked = 0 AND a.refills_at > :now
  AND (a.unlimited OR a.free_left + a.bonus - (
        SELECT coalesce(sum(h.amount), 0) FROM credit_holds AS h
        WHERE h.scope = a.scope AND h.user_id = a.user_id AND h.closed_at IS NULL) >= :cost)
RETURNING *
"""
INSERT_HOLD = """
INSERT INTO credit_holds (scope, user_id, amount, job_id, relax, created_at)
VALUES (:scope, :user, :amount, :job_id, :relax, :now)
RETURNING *
"""
# Settling is one statement: the charge entry is only written for a hold that is still open, and its
# triggers close the hold and debit the account. Free credits go first, then bonus. The charge never
# exceeds what is there: if a moderator took credits away while the job ran, the rest is forgiven.
SETTLE = """
INSERT INTO credit_ledger
    (scope, user_id, kind, amount, free_delta, bonus_delta, reason, job_id, hold_id, created_at)
SELECT h.scope, h.user_id, 'charge', h.amount,
       -min(a.free_left, h.amount), -min(a.bonus, h.amount - min(a.free_left, h.amount)),
       CASE WHEN h.relax THEN 'relax mode' WHEN h.amount = 0 THEN 'unlimited' ELSE '' END,
       h.job_id, h.id, :now
FROM credit_holds AS h
JOIN credit_accounts AS a ON a.scope = h.scope AND a.user_id = h.user_id
WHERE h.id = :hold_id AND h.closed_at IS NULL
RETURNING id
"""
# Releasing writes an entry without deltas: the member's history shows the job was not charged.
RELEASE = """
INSERT INTO credit_ledger (scope, user_id, kind, amount, reason, job_id, hold_id, created_at)
SELECT scope, user_id, 'release', amount, :reason, job_id, id, :now
FROM credit_holds WHERE id = :hold_id AND closed_at IS NULL
RETURNING id
"""
RELEASE_OLDER = """
INSERT INTO credit_ledger (scope, user_id, kind, amount, reason, job_id, hold_id, created_at)
SELECT scope, user_id, 'release', amount, :reason, job_id, id, :now
FROM credit_holds WHERE closed_at IS NULL AND created_at < :cutoff
RETURNING id
"""
GET_HOLD = "SELECT * FROM credit_holds WHERE id = ?"
ATTACH_JOB = "UPDATE credit_holds SET job_id = :job_id WHERE id = :hold_id RETURNING id"
OPEN_HOLDS = "SELECT * FROM credit_holds WHERE closed_at IS NULL ORDER BY id"
GET_POLICY = "SELECT allowance, period, relax_allowed FROM credit_policies WHERE scope = ?"
GET_PRICES = "SELECT kind, credits_per_unit FROM credit_prices WHERE scope = ?"
UPSERT_POLICY = """
INSERT INTO credit_policies (scope, allowance, period, relax_allowed, updated_at)
VALUES (:scope, :allowance, :period, :relax_allowed, :now)
ON CONFLICT (scope) DO UPDATE SET
    allowance = coalesce(excluded.allowance, allowance),
    period = coalesce(excluded.period, period),
    relax_allowed = coalesce(excluded.relax_allowed, relax_allowed),
    updated_at = excluded.updated_at
"""
UPSERT_PRICE = """
INSERT INTO credit_prices (scope, kind, credits_per_unit, updated_at) VALUES (:scope, :kind, :rate, :now)
ON CONFLICT (scope, kind) DO UPDATE SET
    credits_per_unit = excluded.credits_per_unit, updated_at = excluded.updated_at
"""
FOLLOWERS = "SELECT user_id, free_left FROM credit_accounts WHERE scope = ? AND allowance IS NULL"
# A new period moves the next reset of every account not already due one.
UPDATE_REFILLS_AT = "UPDATE credit_accounts SET refills_at = :next WHERE scope = :scope AND refills_at > :now"
GET_LEDGER = "SELECT * FROM credit_ledger WHERE scope = ? AND user_id = ? ORDER BY id DESC LIMIT ?"

VERIFY_BALANCES = """
SELECT a.scope, a.user_id, a.free_left, a.bonus,
       coalesce(sum(l.free_delta), 0) AS ledger_free, coalesce(sum(l.bonus_delta), 0) AS ledger_bonus
FROM credit_accounts AS a
LEFT JOIN credit_ledger AS l ON l.scope = a.scope AND l.user_id = a.user_id
GROUP BY a.scope, a.user_id
HAVING a.free_left != ledger_free OR a.bonus != ledger_bonus
"""
VERIFY_HOLDS = """
SELECT h.id, h.outcome, h.amount, l.kind, -(l.free_delta + l.bonus_delta) AS charged
FROM credit_holds AS h
LEFT JOIN credit_ledger AS l ON l.hold_id = h.id
WHERE (h.outcome IS NULL AND l.id IS NOT NULL)
   OR (h.outcome = 'settled' AND (l.kind IS NOT 'charge' OR -(l.free_delta + l.bonus_delta) > h.amount))
   OR (h.outcome = 'released' AND (l.kind IS NOT 'release' OR l.free_delta != 0 OR l.bonus_delta != 0))
"""
VERIFY_ORPHANS = """
SELECT l.id, l.scope, l.user_id FROM credit_ledger AS l
WHERE l.user_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM credit_accounts AS a WHERE a.scope = l.scope AND a.user_id = l.user_id)
"""


class CreditStore:
    """Balances, holds and the ledger, on the shared `Database`."""

    def __init__(
        self, db: Database, settings: CreditSettings, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    # -- member-facing ---------------------------------------------------------------------------------

    async def quote(
        self,
        scope: int,
        request: GenerationRequest,
        profile: ModelProfile,
        *,
        conn: aiosqlite.Connection | None = None,
    ) -> int:
        """Credits the request costs at this scope's prices, relax or not (`reserve` makes relax free).

        Work is `profile.work_units` of the output: `width × height` is the size the job produces (for
        an upscale, the enlarged size), so larger sizes, more steps and 4× upscales cost more. Rounded up.
        """
        _check_scope(scope)
        if request.kind is JobKind.SELECT:
            return 0
        policy = await self.policy(scope, conn=conn)
        units = profile.work_units(request.width, request.height, request.steps, request.images)
        # round() first so float noise (4.000000001) never costs a whole extra credit
        cost = math.ceil(round(units * policy.price(request.kind), 6))
        if cost > MAX_AMOUNT:
            raise InvalidAmount(
                f"This job would cost {cost:,} credits, more than the limit of {MAX_AMOUNT:,}."
            )
        return cost

    async def balance(self, scope: int, user: int, *, conn: aiosqlite.Connection | None = None) -> Balance:
        """The member's balance now, with a due refill applied (but not written: reading never writes)."""
        _check_scope(scope)
        _check_user(user)
        return (await self._account(scope, user, self._now(), conn=conn)).balance()

    async def reserve(
        self,
        scope: int,
        user: int,
        cost: int,
        job_id: int | None,
        *,
        relax: bool = False,
        conn: aiosqlite.Connection | None = None,
    ) -> Hold:
        """Hold `cost` credits for a job, or refuse (Blocked, InsufficientCredits, NotAllowed for relax)."""
        _check_scope(scope)
        _check_user(user)
        _check_amount(cost, "A job's cost", low=0)
        _check_optional_id(job_id, "job id")
        now = self._now()
        if not relax:
            params = {"scope": scope, "user": user, "cost": cost, "job_id": job_id, "now": now.timestamp()}
            rows = await self._run(RESERVE_FAST, params, conn)
            if rows:
                return Hold.from_row(rows[0])
        async with self._transaction(conn) as c:
            account = await self._touch(c, scope, user, now, create=True)
            if account.blocked:
                raise Blocked()
            if relax and not account.relax_allowed:
                raise NotAllowed(
                    "Relax mode is off in this server: a moderator can turn it on with `/quota relax on`."
                )
            if not relax and not account.unlimited and account.available < cost:
                raise InsufficientCredits(
                    needed=cost,
                    available=max(0, account.available),
                    refills_at=_from_ts(account.refills_at),
                    relax_allowed=account.relax_allowed,
                )
            amount = 0 if relax or account.unlimited else cost
            params = {"scope": scope, "user": user, "amount": amount, "job_id": job_id, "relax": relax}
            rows = await c.execute_fetchall(INSERT_HOLD, {**params, "now": now.timestamp()})
            return Hold.from_row(rows[0])

    async def attach_job(
        self, hold_id: int, job_id: int, *, conn: aiosqlite.Connection | None = None
    ) -> None:
        """Record the job a hold pays for, when the hold was made before the job row existed."""
        _check_hold_id(hold_id)
        _check_optional_id(job_id, "job id")
        if not await self._run(ATTACH_JOB, {"hold_id": hold_id, "job_id": job_id}, conn):
            raise UnknownAccount(f"There is no credit hold #{hold_id}.")

    async def settle(self, hold_id: int, *, conn: aiosqlite.Connection | None = None) -> bool:
        """Charge a finished job's hold. False (and nothing charged) if it was already settled or released."""
        _check_hold_id(hold_id)
        if await self._run(SETTLE, {"hold_id": hold_id, "now": self._now().timestamp()}, conn):
            return True
        await self._require_hold(hold_id, conn)
        return False

    async def release(self, hold_id: int, reason: str, *, conn: aiosqlite.Connection | None = None) -> bool:
        """Return a hold unpaid (job failed, cancelled, blocked). False if it was already closed."""
        _check_hold_id(hold_id)
        _check_reason(reason)
        params = {"hold_id": hold_id, "reason": reason, "now": self._now().timestamp()}
        if await self._run(RELEASE, params, conn):
            return True
        await self._require_hold(hold_id, conn)
        return False

    async def release_abandoned(
        self, older_than_s: float | None = None, *, conn: aiosqlite.Connection | None = None
    ) -> int:
        """Release every hold open longer than `older_than_s` (default: hold_timeout_s). Call at start-up."""
        timeout = self._settings.hold_timeout_s if older_than_s is None else older_than_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout < math.inf:
            raise InvalidAmount(f"older_than_s must be a number of seconds, 0 or more, not {older_than_s!r}.")
        now = self._now().timestamp()
        reason = "abandoned: the bot stopped before the job finished"
        params = {"cutoff": now - timeout, "reason": reason, "now": now}
        return len(await self._run(RELEASE_OLDER, params, conn))

    async def open_holds(self, *, conn: aiosqlite.Connection | None = None) -> list[Hold]:
        """Every hold not yet settled or released, oldest first, in all scopes."""
        return [Hold.from_row(row) for row in await self._run(OPEN_HOLDS, {}, conn)]

    # -- moderators ------------------------------------------------------------------------------------

    async def policy(self, scope: int, *, conn: aiosqlite.Connection | None = None) -> Policy:
        """The scope's allowance, period, relax mode and prices (the bot's defaults where unset)."""
        _check_scope(scope)
        rows = await self._run(GET_POLICY, (scope,), conn)
        prices = dict(DEFAULT_PRICES)
        for row in await self._run(GET_PRICES, (scope,), conn):
            prices[JobKind(row["kind"])] = row["credits_per_unit"]
        stored = rows[0] if rows else None
        return Policy(
            scope=scope,
            allowance=_default(stored, "allowance", self._settings.default_allowance),
            period=_default(stored, "period", self._settings.period),
            relax_allowed=bool(_default(stored, "relax_allowed", self._settings.relax_allowed)),
            prices=prices,
        )

    async def set_allowance(
        self,
        scope: int,
        user: int,
        allowance: int | None,
        *,
        unlimited: bool = False,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Balance:
        """Give a member their own allowance, unlimited credits, or (None, not unlimited) the scope's default.

        Takes effect now and keeps what they used this period: 10 of 40 used, new allowance 100 → 90 left.
        """
        self._check_moderator(scope, user, actor, actor_scope)
        if allowance is not None:
            _check_amount(allowance, "An allowance", low=0)
            if unlimited:
                raise InvalidCreditInput("Give either an allowance or unlimited credits, not both.")
        now = self._now()
        async with self._transaction(conn) as c:
            account = await self._touch(c, scope, user, now, create=True)
            changed = dataclasses.replace(account, override=allowance, unlimited=bool(unlimited))
            free_left = max(
                0, min(changed.allowance, account.free_left + changed.allowance - account.allowance)
            )
            changed = dataclasses.replace(changed, free_left=free_left)
            if unlimited:
                reason = "unlimited credits"
            elif allowance is None:
                reason = f"back to this server's default ({changed.allowance} per {changed.period})"
            else:
                reason = f"{allowance} free credits per {changed.period}"
            await self._save(
                c,
                account,
                changed,
                LedgerKind.ALLOWANCE,
                now,
                amount=changed.allowance,
                reason=reason,
                actor=actor,
            )
            return changed.balance()

    async def grant(
        self,
        scope: int,
        user: int,
        amount: int,
        reason: str,
        *,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Balance:
        """Add bonus credits (kept across periods, spent after the free allowance)."""
        self._check_moderator(scope, user, actor, actor_scope)
        _check_amount(amount, "The amount to grant")
        _check_reason(reason)
        now = self._now()
        async with self._transaction(conn) as c:
            account = await self._touch(c, scope, user, now, create=True)
            if account.bonus + amount > MAX_AMOUNT:
                raise InvalidAmount(
                    f"<@{user}> already has {account.bonus:,} bonus credits; a member can hold at most "
                    f"{MAX_AMOUNT:,}."
                )
            changed = dataclasses.replace(account, bonus=account.bonus + amount)
            await self._save(
                c, account, changed, LedgerKind.GRANT, now, amount=amount, reason=reason, actor=actor
            )
            return changed.balance()

    async def revoke(
        self,
        scope: int,
        user: int,
        amount: int,
        reason: str,
        *,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Balance:
        """Take bonus credits away (free credits are changed with `set_allowance`, not revoked)."""
        self._check_moderator(scope, user, actor, actor_scope)
        _check_amount(amount, "The amount to revoke")
        _check_reason(reason)
        now = self._now()
        async with self._transaction(conn) as c:
            account = await self._touch(c, scope, user, now, create=False)
            if amount > account.bonus:
                raise InvalidAmount(
                    f"<@{user}> has only {account.bonus} bonus credits, so {amount} cannot be taken back. "
                    "To lower their free credits, set their allowance instead."
                )
            changed = dataclasses.replace(account, bonus=account.bonus - amount)
            await self._save(
                c, account, changed, LedgerKind.REVOKE, now, amount=amount, reason=reason, actor=actor
            )
            return changed.balance()

    async def block(
        self,
        scope: int,
        user: int,
        *,
        actor: int,
        reason: str = "",
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Balance:
        """Stop a member from reserving credits here. Their open holds stay: the queue releases them."""
        self._check_moderator(scope, user, actor, actor_scope)
        _check_reason(reason)
        return await self._set_blocked(scope, user, True, actor, reason, conn)

    async def unblock(
        self,
        scope: int,
        user: int,
        *,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Balance:
        self._check_moderator(scope, user, actor, actor_scope)
        return await self._set_blocked(scope, user, False, actor, "", conn)

    async def reset_period(
        self,
        scope: int,
        user: int,
        *,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Balance:
        """Refill the member's free allowance now; the next scheduled refill stays where it was."""
        self._check_moderator(scope, user, actor, actor_scope)
        now = self._now()
        async with self._transaction(conn) as c:
            account = await self._touch(c, scope, user, now, create=False)
            changed = dataclasses.replace(account, free_left=account.allowance)
            await self._save(
                c, account, changed, LedgerKind.RESET, now, amount=account.allowance, actor=actor
            )
            return changed.balance()

    async def set_policy(
        self,
        scope: int,
        *,
        allowance: int | None = None,
        period: str | None = None,
        relax_allowed: bool | None = None,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Policy:
        """Change the scope's defaults; None keeps a value. Takes effect now for every member here.

        A new allowance reaches each member without an override at once, keeping what they used this
        period; a new period moves everyone's next refill to the new period's next reset.
        """
        self._check_moderator(scope, None, actor, actor_scope)
        if allowance is not None:
            _check_amount(allowance, "An allowance", low=0)
        if period is not None and period not in PERIODS:
            raise InvalidCreditInput(f"There is no period {period!r}: use day, week or month.")
        if relax_allowed is not None and not isinstance(relax_allowed, bool):
            raise InvalidCreditInput(f"relax_allowed must be True or False, not {relax_allowed!r}.")
        if allowance is None and period is None and relax_allowed is None:
            raise InvalidCreditInput("Nothing to change: give an allowance, a period or relax on/off.")
        now = self._now()
        async with self._transaction(conn) as c:
            old = await self.policy(scope, conn=c)
            new = dataclasses.replace(
                old,
                allowance=old.allowance if allowance is None else allowance,
                period=old.period if period is None else period,
                relax_allowed=old.relax_allowed if relax_allowed is None else relax_allowed,
            )
            # only what was given is stored: the rest keeps following the bot's settings
            given = {"allowance": allowance, "period": period, "relax_allowed": relax_allowed}
            await c.execute_fetchall(UPSERT_POLICY, {"scope": scope, "now": now.timestamp(), **given})
            changes = [
                f"{name} {getattr(old, name)} → {getattr(new, name)}"
                for name in ("allowance", "period", "relax_allowed")
                if getattr(old, name) != getattr(new, name)
            ]
            await self._log_scope(c, scope, LedgerKind.POLICY, now, ", ".join(changes) or "unchanged", actor)
            if new.allowance != old.allowance:
                await self._move_followers(c, scope, old.allowance, new.allowance, now, actor)
            if new.period != old.period:
                params = {
                    "scope": scope,
                    "next": next_refill(new.period, now).timestamp(),
                    "now": now.timestamp(),
                }
                await c.execute_fetchall(UPDATE_REFILLS_AT, params)
            return new

    async def set_price(
        self,
        scope: int,
        kind: JobKind,
        credits_per_unit: float,
        *,
        actor: int,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> Policy:
        """Set what one unit of work of `kind` costs here (1 = one credit per native-size image)."""
        self._check_moderator(scope, None, actor, actor_scope)
        if kind not in PRICED_KINDS:
            allowed = ", ".join(k.value for k in PRICED_KINDS)
            raise InvalidCreditInput(f"{kind!r} has no price (selecting an image is free): use {allowed}.")
        kind = JobKind(kind)
        rate = credits_per_unit
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= MAX_RATE:
            raise InvalidAmount(f"A price must be between 0 and {MAX_RATE:g} credits per unit, not {rate!r}.")
        now = self._now()
        async with self._transaction(conn) as c:
            old = await self.policy(scope, conn=c)
            params = {"scope": scope, "kind": kind.value, "rate": float(rate), "now": now.timestamp()}
            await c.execute_fetchall(UPSERT_PRICE, params)
            reason = f"{kind.value}: {old.price(kind):g} → {rate:g} credits per unit"
            await self._log_scope(c, scope, LedgerKind.PRICE, now, reason, actor)
            return dataclasses.replace(old, prices={**old.prices, kind: float(rate)})

    async def ledger(
        self,
        scope: int,
        user: int,
        limit: int = 20,
        *,
        actor_scope: int | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> list[LedgerEntry]:
        """The member's latest ledger entries, newest first. UnknownAccount if they have none here."""
        _check_scope(scope)
        _check_user(user)
        _check_actor_scope(scope, actor_scope)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidAmount(f"limit must be a whole number from 1 to 1000, not {limit!r}.")
        account = await self._account(scope, user, self._now(), conn=conn)
        if not account.exists:
            raise _unknown(user)
        return [LedgerEntry.from_row(row) for row in await self._run(GET_LEDGER, (scope, user, limit), conn)]

    # -- audit -----------------------------------------------------------------------------------------

    async def verify(self, *, conn: aiosqlite.Connection | None = None) -> list[str]:
        """Recompute every balance from the ledger and check every hold was closed once. [] when clean."""
        problems = []
        for row in await self._run(VERIFY_BALANCES, {}, conn):
            problems.append(
                f"account {row['scope']}/{row['user_id']}: stored free {row['free_left']}, "
                f"bonus {row['bonus']}; the ledger adds up to free {row['ledger_free']}, "
                f"bonus {row['ledger_bonus']}"
            )
        for row in await self._run(VERIFY_HOLDS, {}, conn):
            problems.append(
                f"hold {row['id']} ({row['outcome'] or 'open'}, {row['amount']} credits) is closed "
                f"in the ledger by {row['kind'] or 'nothing'} of {row['charged']}"
            )
        for row in await self._run(VERIFY_ORPHANS, {}, conn):
            problems.append(
                f"ledger entry {row['id']} belongs to no account ({row['scope']}/{row['user_id']})"
            )
        return problems

    # -- internals -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    @asynccontextmanager
    async def _transaction(self, conn: aiosqlite.Connection | None) -> AsyncIterator[aiosqlite.Connection]:
        """The caller's open transaction if given, else a new one."""
        if conn is not None:
            yield conn
        else:
            async with self._db.transaction() as own:
                yield own

    async def _run(
        self, sql: str, params: Mapping[str, Any] | tuple[Any, ...], conn: aiosqlite.Connection | None
    ) -> list[aiosqlite.Row]:
        """One statement (atomic on its own), in the caller's transaction if given."""
        if conn is not None:
            return list(await conn.execute_fetchall(sql, params))
        return await self._db.fetchall(sql, params)

    async def _load(self, scope: int, user: int, conn: aiosqlite.Connection | None) -> _Account:
        """The account as stored (all zero, `exists` False, for a member never seen) with its policy."""
        row = (await self._run(GET_ACCOUNT, {"scope": scope, "user": user}, conn))[0]
        return _Account(
            scope=scope,
            user=user,
            exists=bool(row["found"]),
            free_left=row["free_left"] or 0,
            bonus=row["bonus"] or 0,
            held=row["held"],
            refills_at=row["refills_at"] or 0.0,
            override=row["allowance"],
            unlimited=bool(row["unlimited"]),
            blocked=bool(row["blocked"]),
            policy_allowance=_default(row, "policy_allowance", self._settings.default_allowance),
            period=_default(row, "period", self._settings.period),
            relax_allowed=bool(_default(row, "relax_allowed", self._settings.relax_allowed)),
        )

    async def _account(
        self, scope: int, user: int, now: datetime, *, conn: aiosqlite.Connection | None
    ) -> _Account:
        """The account as it stands now, without writing: a due refill (or a first one) is applied."""
        account = await self._load(scope, user, conn)
        return account.refilled(now) if account.refills_at <= now.timestamp() else account

    async def _touch(
        self, conn: aiosqlite.Connection, scope: int, user: int, now: datetime, *, create: bool
    ) -> _Account:
        """The account as it stands now, inside a transaction: created if allowed, a due refill written."""
        account = await self._load(scope, user, conn)
        if not account.exists:
            if not create:
                raise _unknown(user)
            await conn.execute_fetchall(
                CREATE_ACCOUNT, {"scope": scope, "user": user, "now": now.timestamp()}
            )
            account = dataclasses.replace(account, exists=True)
        if account.refills_at > now.timestamp():
            return account
        refilled = account.refilled(now)
        reason = "first use" if account.refills_at == 0 else "new period"
        await self._save(
            conn, account, refilled, LedgerKind.REFILL, now, amount=refilled.allowance, reason=reason
        )
        return refilled

    async def _save(
        self,
        conn: aiosqlite.Connection,
        before: _Account,
        after: _Account,
        kind: LedgerKind,
        now: datetime,
        *,
        amount: int | None = None,
        reason: str = "",
        actor: int | None = None,
    ) -> None:
        """Move the account from `before` to `after`: one ledger entry carries the balance difference."""
        entry = {
            "scope": after.scope,
            "user": after.user,
            "kind": kind.value,
            "amount": amount,
            "free_delta": after.free_left - before.free_left,
            "bonus_delta": after.bonus - before.bonus,
            "reason": reason,
            "job_id": None,
            "hold_id": None,
            "actor": actor,
            "now": now.timestamp(),
        }
        await conn.execute_fetchall(INSERT_LEDGER, entry)
        if after.settings() != before.settings():
            params = {"scope": after.scope, "user": after.user, **after.settings()}
            await conn.execute_fetchall(SAVE_SETTINGS, params)

    async def _move_followers(
        self, conn: aiosqlite.Connection, scope: int, old: int, new: int, now: datetime, actor: int
    ) -> None:
        """A new scope allowance reaches every member without an override, keeping what they used."""
        entries = [
            {
                "scope": scope,
                "user": row["user_id"],
                "kind": LedgerKind.ALLOWANCE.value,
                "amount": new,
                "free_delta": max(0, min(new, row["free_left"] + new - old)) - row["free_left"],
                "bonus_delta": 0,
                "reason": f"this server's default is now {new}",
                "job_id": None,
                "hold_id": None,
                "actor": actor,
                "now": now.timestamp(),
            }
            for row in await conn.execute_fetchall(FOLLOWERS, (scope,))
        ]
        await conn.executemany(INSERT_LEDGER, entries)

    async def _log_scope(
        self, conn: aiosqlite.Connection, scope: int, kind: LedgerKind, now: datetime, reason: str, actor: int
    ) -> None:
        entry = {
            "scope": scope,
            "user": None,
            "kind": kind.value,
            "amount": None,
            "free_delta": 0,
            "bonus_delta": 0,
            "reason": reason,
            "job_id": None,
            "hold_id": None,
            "actor": actor,
            "now": now.timestamp(),
        }
        await conn.execute_fetchall(INSERT_LEDGER, entry)

    async def _set_blocked(
        self, scope: int, user: int, blocked: bool, actor: int, reason: str, conn: aiosqlite.Connection | None
    ) -> Balance:
        now = self._now()
        async with self._transaction(conn) as c:
            account = await self._touch(c, scope, user, now, create=blocked)
            changed = dataclasses.replace(account, blocked=blocked)
            kind = LedgerKind.BLOCK if blocked else LedgerKind.UNBLOCK
            await self._save(c, account, changed, kind, now, reason=reason, actor=actor)
            return changed.balance()

    async def _require_hold(self, hold_id: int, conn: aiosqlite.Connection | None) -> None:
        if not await self._run(GET_HOLD, (hold_id,), conn):
            raise UnknownAccount(f"There is no credit hold #{hold_id}.")

    def _check_moderator(self, scope: int, user: int | None, actor: int, actor_scope: int | None) -> None:
        _check_scope(scope)
        if user is not None:
            _check_user(user)
        _check_user(actor, "moderator")
        _check_actor_scope(scope, actor_scope)


# -- validation ----------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scope(scope: object) -> None:
    if not _is_int(scope) or not 0 <= scope <= MAX_ID:  # type: ignore[operator]
        raise UnknownAccount(f"{scope!r} is not a scope: use a server (guild) id, or 0 for direct messages.")


def _check_user(user: object, what: str = "member") -> None:
    if not _is_int(user) or not 1 <= user <= MAX_ID:  # type: ignore[operator]
        raise UnknownAccount(f"{user!r} is not a Discord user id, so it cannot be a {what}.")


def _check_actor_scope(scope: int, actor_scope: int | None) -> None:
    if actor_scope is not None and actor_scope != scope:
        raise NotAllowed(
            "Moderators can only change credits in the server they moderate, not in another one."
        )


def _check_amount(amount: object, what: str, *, low: int = 1) -> None:
    if not _is_int(amount) or not low <= amount <= MAX_AMOUNT:  # type: ignore[operator]
        raise InvalidAmount(f"{what} must be a whole number from {low} to {MAX_AMOUNT:,}, not {amount!r}.")


def _check_optional_id(value: object, what: str) -> None:
    if value is not None and (not _is_int(value) or not 1 <= value <= MAX_ID):  # type: ignore[operator]
        raise InvalidCreditInput(f"A {what} must be a positive whole number or None, not {value!r}.")


def _check_hold_id(hold_id: object) -> None:
    if not _is_int(hold_id) or not 1 <= hold_id <= MAX_ID:  # type: ignore[operator]
        raise UnknownAccount(f"There is no credit hold {hold_id!r}: hold ids are positive whole numbers.")


def _check_reason(reason: object) -> None:
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise InvalidCreditInput(f"A reason must be text of at most {MAX_REASON} characters.")


def _unknown(user: int) -> UnknownAccount:
    return UnknownAccount(
        f"<@{user}> has no credits account in this server yet: they have never used it here."
    )


def _default(row: aiosqlite.Row | None, column: str, fallback: Any) -> Any:
    value = None if row is None else row[column]
    return fallback if value is None else value


def _from_ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
