//! Checkout, the use case: the caller's cart becomes an order. This module
//! is the request's side; `batch` is the group commit that writes orders,
//! many per transaction. Every statement is in `store::checkout`, the
//! pricing in `pricing`.
//!
//! Read top to bottom:
//! 1. [`Checkout::checkout`] reads the cart with its products once and
//!    refuses an empty or visibly short cart, or one that cannot be charged
//!    (a plugin failed under `closed`, a rule is broken, the total is not
//!    the one shown) — after checking that the key was not used before, so a
//!    replay is always answered as one. It prices the cart it read (again
//!    only if it changed since the last try): plugins run here, holding no
//!    lock and no connection, so a slow plugin delays only its own shopper.
//! 2. It hands the priced cart to the [`batch::Committer`], which gathers
//!    the checkouts that arrive while the previous batch commits (a lone
//!    shopper waits for nobody; under load a batch is whatever queued, up
//!    to `SHOPEEZY_CHECKOUT_MAX_BATCH`) and runs them in one transaction
//!    (SERIALIZABLE on PostgreSQL, `BEGIN IMMEDIATE` on SQLite, READ
//!    COMMITTED with the rows it decides on locked first on MySQL): it reads
//!    every cart, key, stock row (locked) and usage counter of the batch at
//!    once, decides order by order in arrival order — the key used before
//!    (a replay, or 422), the cart changed since it was priced (this request
//!    reads and prices again), not enough stock left (409 at once), a
//!    limited discount used up (409) — and writes the orders it placed in
//!    one statement; one commit for all of them.
//! 3. A batch that fails as a whole (serialization failure, deadlock, a
//!    racing replica's key, a lost connection) is tried again from its
//!    reads; a batch that fails for another reason is split and each of its
//!    checkouts tried alone, so one bad order cannot fail the others. Nothing
//!    of a rolled-back batch stays, and each checkout in it is answered
//!    exactly once: placed (committed), or an error (nothing written).
//!
//! What gives correctness — each of these alone keeps its invariant, with
//! any interleaving of checkouts, on any number of replicas:
//! - the transaction's isolation: SERIALIZABLE on PostgreSQL (a concurrent
//!   transaction that would change what a batch read makes one of them fail
//!   and retry), SQLite's single writer (`BEGIN IMMEDIATE`); on MySQL
//!   (InnoDB) READ COMMITTED where every row a decision rests on is locked
//!   before it is read: the carts by their users' rows of `cart_locks`
//!   (which every change to a cart takes first), the stock rows and usage
//!   counters `FOR UPDATE`; keys are read plainly and guarded by their
//!   primary key. InnoDB's SERIALIZABLE would add shared and gap locks,
//!   which batches and shoppers then deadlock on, for no further guarantee.
//!   Deadlocks (SQLSTATE 40001) and lock-wait timeouts (1205) are retried
//!   like serialization failures;
//! - the stock rows locked (`FOR UPDATE`) before any decision, so the batch
//!   decides on the stock as it is, and the conditional writes: stock is
//!   taken only `WHERE stock >= qty`, a discount's use only up to its cap;
//!   if any would pass its limit the whole batch rolls back and retries;
//! - the idempotency record's primary key `(user_id, key)`: two requests
//!   with one key can never both commit an order;
//! - the priced-snapshot check: a batch places only the cart that was
//!   priced (same lines, codes and product fields), so the order charges
//!   what the shopper was shown.
//!
//! What only gives throughput — remove any of them and every answer stays
//! correct, only slower:
//! - the group commit: a hot product's row is locked and written once per
//!   batch, and one commit (one WAL flush) serves every order in it;
//! - one committer per replica: checkouts in one replica never conflict
//!   with each other (no session state either: the host works behind
//!   PgBouncer in transaction pooling);
//! - pricing outside the transaction: plugins hold no connection and no
//!   lock while they run, and a retry reuses the last pricing when the cart
//!   did not change.

mod batch;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shopeezy_common::db::Db;
use uuid::Uuid;

use crate::domain::{Caller, Cart, Order, PricedCart, Status};
use crate::error::{Error, Result, Shortage};
use crate::pricing::{Customer, Pipeline};
use crate::store;
use crate::store::checkout::StoredKey;

use batch::{Committer, Submission, Verdict};

/// What the client sent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The total the shopper was shown; when given and the cart now prices
    /// differently, checkout answers 409 `price_changed` instead of charging.
    pub expected_total: Option<i64>,
}

/// A checkout's answer: the order, and whether it is a replay.
#[derive(Debug)]
pub struct Placed {
    /// 201 (also on replay).
    pub status: StatusCode,
    /// The order's JSON as first answered.
    pub body: serde_json::Value,
    /// The order's id, for `Location`.
    pub order_id: Uuid,
    /// Whether this answers an earlier request with the same key.
    pub replayed: bool,
}

/// What checkout needs besides the request.
#[derive(Debug, Clone)]
pub struct Checkout {
    db: Db,
    pipeline: Pipeline,
    committer: Committer,
    max_attempts: u32,
}

impl Checkout {
    /// Checkout over `db`: a checkout (and a batch) is tried at most
    /// `max_attempts` times; a batch holds at most `max_batch` checkouts.
    /// Starts the committer's task (call it inside a Tokio runtime).
    pub fn new(db: Db, pipeline: Pipeline, max_attempts: u32, max_batch: usize) -> Self {
        let max_attempts = max_attempts.max(1);
        Self {
            committer: Committer::start(db.clone(), max_attempts, max_batch.max(1)),
            db,
            pipeline,
            max_attempts,
        }
    }

    /// Places the caller's cart as an order under `key`.
    pub async fn checkout(
        &self,
        caller: &Caller,
        key: &str,
        request: &CheckoutRequest,
    ) -> Result<Placed> {
        let result = self.place(caller, key, request).await;
        match &result {
            Ok(placed) if placed.replayed => Outcome::Replayed.count(),
            Ok(_) => Outcome::Placed.count(),
            Err(e) => Outcome::Refused(e).count(),
        }
        result
    }

    async fn place(&self, caller: &Caller, key: &str, request: &CheckoutRequest) -> Result<Placed> {
        let body_hash = hash_hex(&serde_json::to_vec(&request.expected_total).unwrap_or_default());
        // What the last try priced: the next one prices again only if the
        // cart or its products changed, so a checkout's tries cost one
        // pricing run (and one plugin budget), not one per try.
        let mut priced: Option<Arc<Priced>> = None;
        for _ in 0..self.max_attempts {
            let (cart, order_count) = store::carts::get(&self.db, caller.id).await?;
            if let Err(refused) = precheck(&cart) {
                return self
                    .refuse(caller.id, key, &body_hash, &cart, refused)
                    .await;
            }
            let snapshot = match priced.take() {
                Some(before) if same_pricing_inputs(&before.cart, &cart) => before,
                _ => Arc::new(self.price(caller, cart, order_count).await?),
            };
            if let Err(refused) = chargeable(&snapshot.priced, request) {
                let cart = snapshot.cart.clone();
                return self
                    .refuse(caller.id, key, &body_hash, &cart, refused)
                    .await;
            }
            let submission = Submission {
                caller: caller.clone(),
                key: key.to_owned(),
                body_hash: body_hash.clone(),
                priced: Arc::clone(&snapshot),
            };
            match self.committer.submit(submission).await? {
                Verdict::Answered(placed) => return Ok(placed),
                // The cart changed after it was priced: read it and price it again.
                Verdict::Stale => {
                    metrics::counter!("host_checkout_retries_total").increment(1);
                    priced = Some(snapshot);
                }
            }
        }
        Err(Error::CheckoutContention)
    }

    /// Answers a checkout refused before its batch: as a replay when its key
    /// was used before (a replay is answered as one whatever the cart is
    /// now), with `refused` otherwise.
    async fn refuse(
        &self,
        user_id: Uuid,
        key: &str,
        body_hash: &str,
        cart: &Cart,
        refused: Error,
    ) -> Result<Placed> {
        match store::checkout::stored_key(&self.db, user_id, key).await? {
            Some(stored) => answer(stored, body_hash, &cart_fingerprint(cart)),
            None => Err(refused),
        }
    }

    /// Prices `cart` for the caller now. Plugins run here, before any lock:
    /// a slow plugin holds no connection and no lock that others wait for.
    /// `order_count` is plugin input only (promotions use usage limits for
    /// hard caps): read with the cart, outside the transaction, so it adds no
    /// read to its conflict set.
    async fn price(&self, caller: &Caller, cart: Cart, order_count: i64) -> Result<Priced> {
        let customer = Customer {
            id: caller.id,
            role: caller.role,
            order_count,
        };
        let now = shopeezy_common::db::now();
        let priced = self.pipeline.price(&cart, &customer, now).await?;
        Ok(Priced { cart, priced, now })
    }
}

/// A checkout's outcome, as the `host_checkouts_total` counter labels it:
/// `placed`, `replayed`, or the refusing error's code.
enum Outcome<'a> {
    /// The order was committed.
    Placed,
    /// An earlier request with the key was answered again.
    Replayed,
    /// The checkout was refused with this error.
    Refused(&'a Error),
}

impl Outcome<'_> {
    /// Counts one checkout with this outcome.
    fn count(&self) {
        let label = match self {
            Self::Placed => "placed".to_owned(),
            Self::Replayed => "replayed".to_owned(),
            Self::Refused(e) => e.code().to_owned(),
        };
        metrics::counter!("host_checkouts_total", "outcome" => label).increment(1);
    }
}

/// Refuses an empty cart (422 `cart_empty`) and one whose stock is short now
/// (409 `out_of_stock`), reading only.
fn precheck(cart: &Cart) -> Result<()> {
    if cart.lines.is_empty() {
        return Err(Error::CartEmpty);
    }
    let short: Vec<Shortage> = cart
        .lines
        .iter()
        .filter(|l| l.quantity > l.product.stock)
        .map(|l| Shortage {
            product_id: l.product.id,
            requested: l.quantity,
            available: l.product.stock,
        })
        .collect();
    if !short.is_empty() {
        return Err(Error::OutOfStock(short));
    }
    Ok(())
}

/// What was priced outside the transaction.
#[derive(Debug)]
struct Priced {
    /// The cart as read before pricing.
    cart: Cart,
    /// Its price.
    priced: PricedCart,
    /// When it was priced (the order's time).
    now: chrono::DateTime<Utc>,
}

/// Refuses a priced cart that cannot be charged: a plugin failed under the
/// `closed` policy (503 `plugin_failed`), a rule is broken (422
/// `checkout_blocked`), or the total is not the one the shopper was shown
/// (409 `price_changed`).
fn chargeable(priced: &PricedCart, request: &CheckoutRequest) -> Result<()> {
    if let Some(failed) = priced.failed_plugin() {
        return Err(Error::PluginFailed {
            id: failed.id,
            name: failed.name.clone(),
            version: failed.version,
            reason: failed.reason.clone(),
        });
    }
    if !priced.violations.is_empty() {
        let violations = serde_json::to_value(&priced.violations).unwrap_or_default();
        return Err(Error::CheckoutBlocked(violations));
    }
    if let Some(expected) = request.expected_total.filter(|t| *t != priced.total) {
        return Err(Error::PriceChanged {
            total: priced.total,
            expected,
        });
    }
    Ok(())
}

/// Whether two reads of a cart would price the same: the same lines, codes
/// and every product field a plugin or the catalog price sees. Stock is not
/// among them.
fn same_pricing_inputs(a: &Cart, b: &Cart) -> bool {
    a.codes == b.codes
        && a.lines.len() == b.lines.len()
        && a.lines.iter().zip(&b.lines).all(|(x, y)| {
            let (p, q) = (&x.product, &y.product);
            x.quantity == y.quantity
                && p.id == q.id
                && p.price == q.price
                && p.currency == q.currency
                && p.seller_id == q.seller_id
                && p.sku == q.sku
                && p.name == q.name
                && p.tags == q.tags
                && p.attributes == q.attributes
        })
}

fn order_from(user_id: Uuid, priced: PricedCart, now: chrono::DateTime<Utc>) -> Order {
    Order {
        id: Uuid::now_v7(),
        user_id,
        status: Status::Placed,
        items: priced.items,
        adjustments: priced.adjustments,
        subtotal: priced.subtotal,
        discount_total: priced.discount_total,
        total: priced.total,
        currency: priced.currency,
        plugins: priced.plugins,
        created_at: now,
        updated_at: now,
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the cart held: its lines (product and quantity) and codes.
fn cart_fingerprint(cart: &Cart) -> String {
    let mut text = String::new();
    for l in &cart.lines {
        text.push_str(&format!("{}:{};", l.product.id, l.quantity));
    }
    text.push('|');
    text.push_str(&cart.codes.join(","));
    hash_hex(text.as_bytes())
}

/// The answer to a request whose key was used before (`stored`): the same
/// request again — same body, and the cart as it was or as that checkout
/// left it (empty) — is answered as the first time; any other request with
/// the key is 422 `idempotency_key_reused`.
fn answer(stored: StoredKey, body_hash: &str, cart_hash: &str) -> Result<Placed> {
    let same_cart =
        cart_hash == stored.cart_hash || cart_hash == cart_fingerprint(&Cart::default());
    if body_hash != stored.body_hash || !same_cart {
        return Err(Error::IdempotencyKeyReused);
    }
    Ok(Placed {
        status: StatusCode::from_u16(stored.status as u16).unwrap_or(StatusCode::CREATED),
        body: stored.response.0,
        order_id: stored.order_id,
        replayed: true,
    })
}
