-- Every event the notifier handled, by CloudEvents id: written in the same
-- transaction as the notifications it produced, so an event delivered twice
-- is acted on once.
CREATE TABLE processed_events (
    event_id     BLOB PRIMARY KEY NOT NULL,
    event_type   TEXT NOT NULL,
    processed_at TEXT NOT NULL
);

-- What the notifier would send (it writes them here instead of mailing them).
CREATE TABLE notifications (
    id         BLOB PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('welcome', 'order_placed', 'order_shipped', 'order_cancelled')),
    event_id   BLOB NOT NULL REFERENCES processed_events (event_id),
    subject    TEXT NOT NULL, -- what the event was about, e.g. orders/<id>
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (event_id, kind)
);
CREATE INDEX notifications_user ON notifications (user_id, id DESC);
