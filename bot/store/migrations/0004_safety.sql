-- Content safety (bot/safety/): per-scope prompt filter changes, mod-log and image settings, reviews.

-- What moderators changed in a scope's prompt filter: a term they added, or a default term they removed.
-- The built-in rule on sexual content involving minors is code, not rows: it cannot be removed.
CREATE TABLE safety_terms (
    scope       INTEGER NOT NULL,
    term        TEXT NOT NULL,                 -- lower case, single spaces
    change      TEXT NOT NULL CHECK (change IN ('added', 'removed')),
    changed_by  INTEGER NOT NULL,
    changed_at  REAL NOT NULL,
    PRIMARY KEY (scope, term)
);

CREATE TABLE safety_config (
    scope              INTEGER PRIMARY KEY,
    modlog_channel_id  INTEGER,               -- where moderation events are posted; NULL = nowhere
    flagged_images     TEXT CHECK (flagged_images IN ('withhold', 'spoiler')),  -- NULL = the setting
    updated_at         REAL NOT NULL
);

-- A refused request a member may ask moderators to look at: 'offered' with the refusal, 'pending' once
-- asked for (counts toward the daily limit), then 'approved' (job_id is the job it ran as) or 'denied'.
CREATE TABLE safety_reviews (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    scope          INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    channel_id     INTEGER,                   -- where the member asked, and where an approved job posts
    request        TEXT NOT NULL,             -- JSON of GenerationRequest.to_dict()
    parent_job_id  INTEGER,
    parent_index   INTEGER,
    reason         TEXT NOT NULL,             -- why it was refused
    status         TEXT NOT NULL CHECK (status IN ('offered', 'pending', 'approved', 'denied')),
    created_at     REAL NOT NULL,
    requested_at   REAL,
    decided_by     INTEGER,
    decided_at     REAL,
    job_id         INTEGER
);
CREATE INDEX safety_reviews_by_member ON safety_reviews (scope, user_id, requested_at);

-- The job was asked for in an age-restricted channel (image checks do not withhold there), and why its
-- images were withheld, if they were.
ALTER TABLE jobs ADD COLUMN nsfw INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN flagged TEXT;
