-- The credit ledger (bot/credits.py). Times are Unix seconds (REAL, UTC).
--
-- credit_ledger is the truth: every change to a balance is one appended entry, and two triggers keep
-- the rest in step with it inside the same statement: an entry adds its deltas to its account, and an
-- entry that names a hold closes that hold. So free_left and bonus always equal the sums of free_delta
-- and bonus_delta (CreditStore.verify recomputes them), and settling a job is one INSERT.
-- What open holds reserve is never stored: it is summed from credit_holds where it is needed.

-- A scope (a guild id, or 0 for direct messages) that a moderator configured. NULL = the bot's default.
CREATE TABLE credit_policies (
    scope          INTEGER PRIMARY KEY,
    allowance      INTEGER CHECK (allowance BETWEEN 0 AND 1000000000),
    period         TEXT CHECK (period IN ('day', 'week', 'month')),
    relax_allowed  INTEGER CHECK (relax_allowed IN (0, 1)),
    updated_at     REAL NOT NULL
);

-- Credits per unit of work (one image at the model's native size and default steps) per job kind.
CREATE TABLE credit_prices (
    scope             INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    credits_per_unit  REAL NOT NULL CHECK (credits_per_unit BETWEEN 0 AND 1000),
    updated_at        REAL NOT NULL,
    PRIMARY KEY (scope, kind)
);

CREATE TABLE credit_accounts (
    scope       INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    free_left   INTEGER NOT NULL CHECK (free_left BETWEEN 0 AND 1000000000),
    bonus       INTEGER NOT NULL CHECK (bonus BETWEEN 0 AND 1000000000),
    refills_at  REAL NOT NULL,        -- next period reset; the first touch after it refills free_left
    allowance   INTEGER CHECK (allowance BETWEEN 0 AND 1000000000),  -- the member's override, else NULL
    unlimited   INTEGER NOT NULL DEFAULT 0 CHECK (unlimited IN (0, 1)),
    blocked     INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    created_at  REAL NOT NULL,
    PRIMARY KEY (scope, user_id)
);

-- Credits set aside for a queued or running job: open until settled (paid) or released (returned).
CREATE TABLE credit_holds (
    id          INTEGER PRIMARY KEY,
    scope       INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount BETWEEN 0 AND 1000000000),
    job_id      INTEGER,
    relax       INTEGER NOT NULL DEFAULT 0 CHECK (relax IN (0, 1)),
    created_at  REAL NOT NULL,
    closed_at   REAL,
    outcome     TEXT CHECK (outcome IN ('settled', 'released')),
    reason      TEXT NOT NULL DEFAULT '',
    CHECK ((closed_at IS NULL) = (outcome IS NULL)),
    FOREIGN KEY (scope, user_id) REFERENCES credit_accounts (scope, user_id)
);
CREATE INDEX credit_holds_open ON credit_holds (scope, user_id) WHERE closed_at IS NULL;

-- Append-only. user_id is NULL for a scope-wide change (policy, prices).
CREATE TABLE credit_ledger (
    id           INTEGER PRIMARY KEY,
    scope        INTEGER NOT NULL,
    user_id      INTEGER,
    kind         TEXT NOT NULL CHECK (kind IN (
                     'refill', 'charge', 'release', 'grant', 'revoke', 'allowance',
                     'reset', 'block', 'unblock', 'policy', 'price')),
    amount       INTEGER,             -- the entry's own figure: credits charged or granted, new allowance
    free_delta   INTEGER NOT NULL DEFAULT 0,
    bonus_delta  INTEGER NOT NULL DEFAULT 0,
    reason       TEXT NOT NULL DEFAULT '',
    job_id       INTEGER,
    hold_id      INTEGER REFERENCES credit_holds (id),  -- set on the one entry that closes a hold
    actor        INTEGER,             -- the moderator; NULL when Atelier itself made the change
    created_at   REAL NOT NULL,
    FOREIGN KEY (scope, user_id) REFERENCES credit_accounts (scope, user_id)
);
CREATE INDEX credit_ledger_account ON credit_ledger (scope, user_id, id);
-- A hold is closed by exactly one entry: a second settle can never charge twice.
CREATE UNIQUE INDEX credit_ledger_closes ON credit_ledger (hold_id) WHERE hold_id IS NOT NULL;

CREATE TRIGGER credit_ledger_applies_to_account AFTER INSERT ON credit_ledger
WHEN NEW.free_delta != 0 OR NEW.bonus_delta != 0
BEGIN
    UPDATE credit_accounts
    SET free_left = free_left + NEW.free_delta, bonus = bonus + NEW.bonus_delta
    WHERE scope = NEW.scope AND user_id = NEW.user_id;
END;

CREATE TRIGGER credit_ledger_closes_hold AFTER INSERT ON credit_ledger
WHEN NEW.hold_id IS NOT NULL
BEGIN
    UPDATE credit_holds
    SET closed_at = NEW.created_at, reason = NEW.reason,
        outcome = CASE NEW.kind WHEN 'charge' THEN 'settled' ELSE 'released' END
    WHERE id = NEW.hold_id;
END;

CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
BEGIN
    SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;

CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
BEGIN
    SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;
