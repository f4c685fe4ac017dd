-- The ordered change log of revocations and role changes, which services that
-- verify tokens themselves (the host) follow over gRPC `WatchRevocations`,
-- and which account replicas tail to see each other's writes. Written in the
-- same transaction as the change it records; deleted once it can refuse
-- nothing more (`expires_at`, seconds since the epoch).
--
-- kind 'token': `subject` is a revoked token's jti.
-- kind 'user':  `subject` is a user; every token of it issued at or before
--               `at_ms` is refused (password change, deletion).
-- kind 'role':  `subject` is a user whose role became `role` at `at_ms`;
--               tokens issued at or before then carry the new role.
-- `created_ms` is the writer's clock when it wrote the row (readers re-read
-- recent rows by it; on SQLite, with one writer at a time, `seq` order is
-- commit order anyway).
CREATE TABLE revocation_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('token', 'user', 'role')),
    subject    BLOB    NOT NULL,
    at_ms      INTEGER,
    role       TEXT,
    expires_at INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX revocation_log_created_ms ON revocation_log (created_ms);
CREATE INDEX revocation_log_expires_at ON revocation_log (expires_at);

-- What was revoked before the log existed.
INSERT INTO revocation_log (kind, subject, at_ms, role, expires_at, created_ms)
SELECT 'token', jti, NULL, NULL, expires_at, 0 FROM revoked_tokens;
INSERT INTO revocation_log (kind, subject, at_ms, role, expires_at, created_ms)
SELECT 'user', user_id, cutoff_ms, NULL, expires_at, 0 FROM revoked_users;
