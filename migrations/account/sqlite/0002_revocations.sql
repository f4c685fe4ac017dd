-- Revocations, the durable record behind Redis (the fast path), so a Redis
-- restarted empty forgets none. Times are seconds (or milliseconds, where
-- named) since the epoch; a row is deleted once it can refuse nothing more.

-- Tokens signed out before their expiry, by `jti`, kept until that expiry.
CREATE TABLE revoked_tokens (
    jti        BLOB PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- Per user, the latest cutoff: every token issued at or before `cutoff_ms` is
-- refused (password change, deletion). No foreign key: the cutoff of a
-- deleted user outlives the user until its tokens have expired.
CREATE TABLE revoked_users (
    user_id    BLOB PRIMARY KEY NOT NULL,
    cutoff_ms  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_users_expires_at ON revoked_users (expires_at);
