-- Installed plugins, component bytes included, so every replica runs the
-- same versions. A platform plugin has no seller; a seller's plugin sees and
-- changes only that seller's lines.
CREATE TABLE plugins (
    id             UUID PRIMARY KEY,
    name           TEXT        NOT NULL,
    hook           TEXT        NOT NULL CHECK (hook IN ('pricing', 'promotion', 'validation')),
    scope_key      TEXT        NOT NULL, -- 'platform' or the seller's id
    seller_id      UUID,
    version        BIGINT      NOT NULL,
    sha256         TEXT        NOT NULL,
    size           BIGINT      NOT NULL,
    component      BYTEA       NOT NULL,
    priority       INT         NOT NULL,
    failure_policy TEXT        NOT NULL CHECK (failure_policy IN ('closed', 'open')),
    config         TEXT        NOT NULL,
    enabled        BOOLEAN     NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT plugins_scope_name_key UNIQUE (scope_key, name)
);

-- Bumped in the same transaction as every change to `plugins`: replicas poll
-- this one row to know when to reload.
CREATE TABLE plugin_generation (
    id         INT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO plugin_generation (id, generation) VALUES (1, 0);

-- Usage counters of limited discounts: one row per (plugin, key) for the
-- total ('' customer) and one per customer.
CREATE TABLE promotion_usage (
    plugin_id    UUID   NOT NULL,
    limit_key    TEXT   NOT NULL,
    customer_key TEXT   NOT NULL,
    uses         BIGINT NOT NULL CHECK (uses >= 0),
    PRIMARY KEY (plugin_id, limit_key, customer_key)
);

-- The uses an order took, given back when it is cancelled.
CREATE TABLE order_promotion_usage (
    order_id     UUID NOT NULL REFERENCES orders (id),
    plugin_id    UUID NOT NULL,
    limit_key    TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    PRIMARY KEY (order_id, plugin_id, limit_key, customer_key)
);
