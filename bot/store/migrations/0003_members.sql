-- Per-member defaults (/settings) and per-scope Discord-facing configuration.
CREATE TABLE member_preferences (
    scope        INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    aspect       TEXT,              -- default --ar, e.g. '16:9'
    stylize      INTEGER,           -- default --stylize
    relax        INTEGER NOT NULL DEFAULT 0,
    private      INTEGER NOT NULL DEFAULT 0,  -- results by DM / ephemeral only
    updated_at   REAL NOT NULL,
    PRIMARY KEY (scope, user_id)
);

CREATE TABLE scope_config (
    scope              INTEGER PRIMARY KEY,
    moderator_role_id  INTEGER,
    updated_at         REAL NOT NULL
);
