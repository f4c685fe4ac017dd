-- The account service's schema on MySQL/MariaDB (InnoDB), as PostgreSQL's
-- 0001–0003 leave it. The database is created utf8mb4 with the
-- utf8mb4_uca1400_nopad_as_cs collation: case, accents and trailing spaces
-- count, as on the other backends (email and username are stored
-- lower-cased: the unique keys are case-insensitive as there). Ids are UUIDs as BINARY(16); times are UTC
-- DATETIME(6) (microseconds, as PostgreSQL keeps them).

-- Users of every role.
CREATE TABLE users (
    id            BINARY(16)   NOT NULL PRIMARY KEY,
    name          VARCHAR(200) NOT NULL,
    username      VARCHAR(64)  NOT NULL,
    email         VARCHAR(320) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role          VARCHAR(16)  NOT NULL CHECK (role IN ('customer', 'seller', 'admin')),
    created_at    DATETIME(6)  NOT NULL,
    updated_at    DATETIME(6)  NOT NULL,
    UNIQUE KEY users_email_key (email),
    UNIQUE KEY users_username_key (username)
) ENGINE = InnoDB;

-- Events written in the same transaction as the change they describe,
-- relayed to the broker afterwards (transactional outbox). The unsent rows
-- are found by (sent_at, seq): MySQL has no partial index.
CREATE TABLE outbox (
    seq          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id           BINARY(16)   NOT NULL,
    routing_key  VARCHAR(255) NOT NULL,
    event_type   VARCHAR(255) NOT NULL,
    subject      VARCHAR(255) NOT NULL,
    payload      JSON         NOT NULL,
    created_at   DATETIME(6)  NOT NULL,
    sent_at      DATETIME(6),
    UNIQUE KEY outbox_id_key (id),
    KEY outbox_unsent (sent_at, seq)
) ENGINE = InnoDB;

-- The relay's lock: one row, locked by the replica draining the outbox for
-- the length of a batch's transaction, so that no two replicas interleave.
CREATE TABLE outbox_relay (
    id INT NOT NULL PRIMARY KEY CHECK (id = 1)
) ENGINE = InnoDB;
INSERT INTO outbox_relay (id) VALUES (1);

-- Revocations, the durable record behind Redis (the fast path). Times are
-- seconds (or milliseconds, where named) since the epoch; a row is deleted
-- once it can refuse nothing more.
CREATE TABLE revoked_tokens (
    jti        BINARY(16) NOT NULL PRIMARY KEY,
    expires_at BIGINT     NOT NULL,
    KEY revoked_tokens_expires_at (expires_at)
) ENGINE = InnoDB;

CREATE TABLE revoked_users (
    user_id    BINARY(16) NOT NULL PRIMARY KEY,
    cutoff_ms  BIGINT     NOT NULL,
    expires_at BIGINT     NOT NULL,
    KEY revoked_users_expires_at (expires_at)
) ENGINE = InnoDB;

-- The ordered change log of revocations and role changes that hosts follow
-- over gRPC `WatchRevocations` (see PostgreSQL's 0003 for the kinds).
-- `seq` comes from AUTO_INCREMENT, which, like a PostgreSQL sequence, may
-- commit out of order: readers re-read recent rows by `created_ms`.
CREATE TABLE revocation_log (
    seq        BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind       VARCHAR(8)  NOT NULL CHECK (kind IN ('token', 'user', 'role')),
    subject    BINARY(16)  NOT NULL,
    at_ms      BIGINT,
    role       VARCHAR(16),
    expires_at BIGINT      NOT NULL,
    created_ms BIGINT      NOT NULL,
    KEY revocation_log_created_ms (created_ms),
    KEY revocation_log_expires_at (expires_at)
) ENGINE = InnoDB;
