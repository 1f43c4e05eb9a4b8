-- The generation job queue: one row per job, written before any change is announced.
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: buttons carry job ids for ever
    kind           TEXT NOT NULL CHECK (kind IN ('imagine', 'vary', 'upscale', 'select')),
    scope          INTEGER NOT NULL,                   -- guild id, 0 = DMs
    owner          INTEGER NOT NULL,                   -- the member who asked (and pays)
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    request        TEXT NOT NULL,                      -- JSON of GenerationRequest.to_dict()
    relax          INTEGER NOT NULL DEFAULT 0,
    cost           INTEGER NOT NULL DEFAULT 0,         -- credits held, charged only if delivered
    hold_id        INTEGER,                            -- the credit hold; NULL for free select jobs
    channel_id     INTEGER,                            -- where the job's message lives
    message_id     INTEGER,
    parent_job_id  INTEGER REFERENCES jobs (id),       -- vary / upscale / select of a grid image
    parent_index   INTEGER,                            -- which image of the parent (1-4)
    attempts       INTEGER NOT NULL DEFAULT 0,         -- times it was started (a restart may retry once)
    worker         TEXT,                               -- the worker that runs (or ran) it
    created_at     REAL NOT NULL,                      -- unix seconds
    started_at     REAL,
    finished_at    REAL,
    grid_path      TEXT,                               -- the 2x2 grid PNG for four-image jobs
    result_paths   TEXT NOT NULL DEFAULT '[]',         -- JSON list of PNG paths, image 1 first
    recipes        TEXT NOT NULL DEFAULT '[]',         -- JSON list of Recipe.to_dict(), one per image
    error          TEXT,                               -- why it failed or was cancelled
    cancelled_by   INTEGER
);

CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE INDEX jobs_by_member ON jobs (scope, owner, status);
CREATE INDEX jobs_by_message ON jobs (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX jobs_served ON jobs (owner, started_at) WHERE started_at IS NOT NULL;

-- Per-scope queue overrides set by moderators; NULL limits fall back to QueueSettings.
CREATE TABLE queue_scopes (
    scope                   INTEGER PRIMARY KEY,
    paused                  INTEGER NOT NULL DEFAULT 0,
    max_queued_per_member   INTEGER CHECK (max_queued_per_member IS NULL OR max_queued_per_member >= 1),
    max_running_per_member  INTEGER CHECK (max_running_per_member IS NULL OR max_running_per_member >= 1),
    updated_at              REAL NOT NULL
);
