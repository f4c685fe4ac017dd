-- The host's schema on MySQL/MariaDB (InnoDB), as PostgreSQL's 0001–0005
-- leave it. The database is created utf8mb4 with the
-- utf8mb4_uca1400_nopad_as_cs collation: SKUs, codes and idempotency keys
-- (ASCII by validation) compare as on the other backends, case and
-- trailing spaces counted. Ids are UUIDs as BINARY(16); times are UTC
-- DATETIME(6); money and quantities BIGINT (minor units); JSON columns
-- are MariaDB's JSON (text checked to be JSON).

-- Catalog. A product belongs to one seller; its SKU is unique among the
-- seller's products on sale: MySQL has no partial index, so the key is on a
-- generated column that holds the SKU while the product is on sale and NULL
-- once it is deleted (a unique key admits any number of NULLs).
CREATE TABLE products (
    id          BINARY(16)   NOT NULL PRIMARY KEY,
    seller_id   BINARY(16)   NOT NULL,
    sku         VARCHAR(64)  NOT NULL,
    name        VARCHAR(200) NOT NULL,
    name_folded VARCHAR(800) NOT NULL DEFAULT '',
    description TEXT         NOT NULL,
    price       BIGINT       NOT NULL CHECK (price >= 0),
    currency    CHAR(3)      NOT NULL,
    stock       BIGINT       NOT NULL CHECK (stock >= 0),
    tags        JSON         NOT NULL,
    attributes  JSON         NOT NULL,
    created_at  DATETIME(6)  NOT NULL,
    updated_at  DATETIME(6)  NOT NULL,
    deleted_at  DATETIME(6),
    sku_on_sale VARCHAR(64) AS (IF(deleted_at IS NULL, sku, NULL)) PERSISTENT,
    UNIQUE KEY products_seller_sku_key (seller_id, sku_on_sale),
    KEY products_seller (seller_id, id)
) ENGINE = InnoDB;

-- One row per (product, tag), so filtering by tag reads the same everywhere.
CREATE TABLE product_tags (
    product_id BINARY(16)  NOT NULL,
    tag        VARCHAR(32) NOT NULL,
    PRIMARY KEY (tag, product_id),
    KEY product_tags_product (product_id),
    CONSTRAINT product_tags_product FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- A cart is its lines and its codes, per user. No foreign key to products
-- here (PostgreSQL and SQLite have one): InnoDB checks one by taking a
-- shared lock on the product's row, which waits for every checkout batch
-- that holds the row to take stock, and deadlocked a shopper's put with a
-- batch in the bench. A line is only ever put for a product read on sale
-- in the same request, and products are never deleted (only hidden).
CREATE TABLE cart_items (
    user_id    BINARY(16)  NOT NULL,
    product_id BINARY(16)  NOT NULL,
    quantity   BIGINT      NOT NULL CHECK (quantity > 0),
    added_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, product_id),
    KEY cart_items_product (product_id)
) ENGINE = InnoDB;

CREATE TABLE cart_codes (
    user_id  BINARY(16)  NOT NULL,
    code     VARCHAR(64) NOT NULL,
    added_at DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, code)
) ENGINE = InnoDB;

-- One row per shopper whose cart changed: every change to a cart (a line
-- put or removed, a code entered or removed, the cart emptied) writes, so
-- locks, its shopper's row first, and a checkout batch writes the rows of
-- its shoppers: a cart cannot change between the batch's read and its
-- commit, and concurrent code entries cannot race the count of codes past
-- its limit (PostgreSQL: SERIALIZABLE and an advisory lock).
CREATE TABLE cart_locks (
    user_id BINARY(16) NOT NULL PRIMARY KEY
) ENGINE = InnoDB;

CREATE TABLE orders (
    id             BINARY(16)  NOT NULL PRIMARY KEY,
    user_id        BINARY(16)  NOT NULL,
    status         VARCHAR(16) NOT NULL CHECK (status IN ('placed', 'paid', 'shipped', 'delivered', 'cancelled')),
    subtotal       BIGINT      NOT NULL,
    discount_total BIGINT      NOT NULL,
    total          BIGINT      NOT NULL,
    currency       CHAR(3)     NOT NULL,
    adjustments    JSON        NOT NULL,
    plugins        JSON        NOT NULL,
    created_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    KEY orders_user (user_id, id)
) ENGINE = InnoDB;

-- Lines keep what was charged; the product may change or disappear later.
CREATE TABLE order_items (
    order_id    BINARY(16)   NOT NULL,
    line_no     INT          NOT NULL,
    product_id  BINARY(16)   NOT NULL,
    sku         VARCHAR(64)  NOT NULL,
    name        VARCHAR(200) NOT NULL,
    seller_id   BINARY(16)   NOT NULL,
    quantity    BIGINT       NOT NULL,
    unit_price  BIGINT       NOT NULL,
    line_total  BIGINT       NOT NULL,
    adjustments JSON         NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB;

-- A checkout's Idempotency-Key (1–255 printable ASCII characters), written
-- in the checkout's own transaction. `key` is a reserved word in MySQL: the
-- statements quote it ("key", with ANSI_QUOTES).
CREATE TABLE idempotency (
    user_id    BINARY(16)   NOT NULL,
    `key`      VARCHAR(255) NOT NULL,
    body_hash  VARCHAR(64)  NOT NULL,
    cart_hash  VARCHAR(64)  NOT NULL,
    order_id   BINARY(16)   NOT NULL,
    status     INT          NOT NULL,
    response   JSON         NOT NULL,
    created_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (user_id, `key`)
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

-- Installed plugins, component bytes included, so every replica runs the
-- same versions. A platform plugin has no seller; a seller's plugin sees and
-- changes only that seller's lines.
CREATE TABLE plugins (
    id             BINARY(16)   NOT NULL PRIMARY KEY,
    name           VARCHAR(64)  NOT NULL,
    hook           VARCHAR(16)  NOT NULL CHECK (hook IN ('pricing', 'promotion', 'validation')),
    scope_key      VARCHAR(36)  NOT NULL, -- 'platform' or the seller's id
    seller_id      BINARY(16),
    version        BIGINT       NOT NULL,
    sha256         CHAR(64)     NOT NULL,
    size           BIGINT       NOT NULL,
    component      LONGBLOB     NOT NULL,
    priority       INT          NOT NULL,
    failure_policy VARCHAR(8)   NOT NULL CHECK (failure_policy IN ('closed', 'open')),
    config         MEDIUMTEXT   NOT NULL,
    enabled        BOOLEAN      NOT NULL,
    created_at     DATETIME(6)  NOT NULL,
    updated_at     DATETIME(6)  NOT NULL,
    UNIQUE KEY plugins_scope_name_key (scope_key, name)
) ENGINE = InnoDB;

-- Bumped in the same transaction as every change to `plugins`: replicas poll
-- this one row to know when to reload.
CREATE TABLE plugin_generation (
    id         INT    NOT NULL PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
) ENGINE = InnoDB;
INSERT INTO plugin_generation (id, generation) VALUES (1, 0);

-- Usage counters of limited discounts: one row per (plugin, key) for the
-- total ('' customer) and one per customer. A limit key is at most 256
-- bytes (the plugins' output text limit).
CREATE TABLE promotion_usage (
    plugin_id    BINARY(16)   NOT NULL,
    limit_key    VARCHAR(512) NOT NULL,
    customer_key VARCHAR(36)  NOT NULL,
    uses         BIGINT       NOT NULL CHECK (uses >= 0),
    PRIMARY KEY (plugin_id, limit_key, customer_key)
) ENGINE = InnoDB;

-- The uses an order took, given back when it is cancelled.
CREATE TABLE order_promotion_usage (
    order_id     BINARY(16)   NOT NULL,
    plugin_id    BINARY(16)   NOT NULL,
    limit_key    VARCHAR(512) NOT NULL,
    customer_key VARCHAR(36)  NOT NULL,
    PRIMARY KEY (order_id, plugin_id, limit_key, customer_key),
    CONSTRAINT order_promotion_usage_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB;

-- How many orders each user placed, kept by the checkout that places them.
CREATE TABLE customer_order_counts (
    user_id BINARY(16) NOT NULL PRIMARY KEY,
    placed  BIGINT     NOT NULL CHECK (placed >= 0)
) ENGINE = InnoDB;
