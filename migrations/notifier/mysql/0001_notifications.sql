-- The notifier's schema on MySQL/MariaDB (InnoDB); see PostgreSQL's 0001.
-- Ids are UUIDs as BINARY(16), times UTC DATETIME(6).

-- Every event the notifier handled, by CloudEvents id: written in the same
-- transaction as the notifications it produced, so an event delivered twice
-- is acted on once.
CREATE TABLE processed_events (
    event_id     BINARY(16)   NOT NULL PRIMARY KEY,
    event_type   VARCHAR(255) NOT NULL,
    processed_at DATETIME(6)  NOT NULL
) ENGINE = InnoDB;

-- What the notifier would send (it writes them here instead of mailing them).
CREATE TABLE notifications (
    id         BINARY(16)   NOT NULL PRIMARY KEY,
    user_id    BINARY(16)   NOT NULL,
    kind       VARCHAR(32)  NOT NULL CHECK (kind IN ('welcome', 'order_placed', 'order_shipped', 'order_cancelled')),
    event_id   BINARY(16)   NOT NULL,
    subject    VARCHAR(255) NOT NULL, -- what the event was about, e.g. orders/<id>
    title      TEXT         NOT NULL,
    body       TEXT         NOT NULL,
    created_at DATETIME(6)  NOT NULL,
    UNIQUE KEY notifications_event_kind_key (event_id, kind),
    KEY notifications_user (user_id, id),
    CONSTRAINT notifications_event FOREIGN KEY (event_id) REFERENCES processed_events (event_id)
) ENGINE = InnoDB;
