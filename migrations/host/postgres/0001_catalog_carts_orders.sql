-- Catalog. A product belongs to one seller; its SKU is unique per seller.
-- Deleting a product hides it (deleted_at) so past orders keep their lines.
CREATE TABLE products (
    id          UUID PRIMARY KEY,
    seller_id   UUID        NOT NULL,
    sku         TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL,
    price       BIGINT      NOT NULL CHECK (price >= 0),
    currency    TEXT        NOT NULL,
    stock       BIGINT      NOT NULL CHECK (stock >= 0),
    tags        JSONB       NOT NULL,
    attributes  JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);
-- A SKU is unique among a seller's products on sale; a deleted one frees it.
CREATE UNIQUE INDEX products_seller_sku_key ON products (seller_id, sku) WHERE deleted_at IS NULL;
CREATE INDEX products_seller ON products (seller_id, id);

-- One row per (product, tag), so filtering by tag reads the same on both backends.
CREATE TABLE product_tags (
    product_id UUID NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (tag, product_id)
);

-- A cart is its lines and its codes, per user.
CREATE TABLE cart_items (
    user_id    UUID        NOT NULL,
    product_id UUID        NOT NULL REFERENCES products (id),
    quantity   BIGINT      NOT NULL CHECK (quantity > 0),
    added_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, product_id)
);

CREATE TABLE cart_codes (
    user_id  UUID        NOT NULL,
    code     TEXT        NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, code)
);

CREATE TABLE orders (
    id             UUID PRIMARY KEY,
    user_id        UUID        NOT NULL,
    status         TEXT        NOT NULL CHECK (status IN ('placed', 'paid', 'shipped', 'delivered', 'cancelled')),
    subtotal       BIGINT      NOT NULL,
    discount_total BIGINT      NOT NULL,
    total          BIGINT      NOT NULL,
    currency       TEXT        NOT NULL,
    adjustments    JSONB       NOT NULL,
    plugins        JSONB       NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, id);

-- Lines keep what was charged; the product may change or disappear later.
CREATE TABLE order_items (
    order_id    UUID   NOT NULL REFERENCES orders (id),
    line_no     INT    NOT NULL,
    product_id  UUID   NOT NULL,
    sku         TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    seller_id   UUID   NOT NULL,
    quantity    BIGINT NOT NULL,
    unit_price  BIGINT NOT NULL,
    line_total  BIGINT NOT NULL,
    adjustments JSONB  NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- A checkout's Idempotency-Key, written in the checkout's own transaction.
CREATE TABLE idempotency (
    user_id    UUID        NOT NULL,
    key        TEXT        NOT NULL,
    body_hash  TEXT        NOT NULL,
    cart_hash  TEXT        NOT NULL,
    order_id   UUID        NOT NULL,
    status     INT         NOT NULL,
    response   JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- Events written in the same transaction as the change they describe, relayed
-- to the broker afterwards (transactional outbox).
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID        NOT NULL UNIQUE,
    routing_key  TEXT        NOT NULL,
    event_type   TEXT        NOT NULL,
    subject      TEXT        NOT NULL,
    payload      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    sent_at      TIMESTAMPTZ
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
