//! Checkout, the use case: the caller's cart becomes an order in one
//! transaction. This module is orchestration only; every statement is in
//! `store::checkout`, the pricing in `pricing`.
//!
//! Read top to bottom:
//! 1. [`Checkout::checkout`] tries until one attempt answers: it retries a
//!    serialization failure, a deadlock, stock or a cart changed under it,
//!    and (at most three times) a database that went away (restart,
//!    failover, cut connection), with jittered backoff, for at most the
//!    configured number of attempts in all. A racing request with the same
//!    key that committed first is answered as it was.
//! 2. [`Checkout::try_once`] answers a replay at once and refuses an empty or
//!    short cart without writing; then it prices the cart it read (again only
//!    if it changed since the last try, so retries do not multiply plugin
//!    work) — plugins run here, holding no lock and no connection, so a slow
//!    plugin delays only its own shopper — and orders contention: checkouts
//!    of the same product queue in this process (striped locks) and, on
//!    PostgreSQL, across replicas (session advisory locks, taken by
//!    `store::checkout::transaction` *before* the transaction's snapshot).
//! 3. [`attempt_in_tx`] is the transaction's work (SERIALIZABLE on
//!    PostgreSQL, `BEGIN IMMEDIATE` on SQLite): read the cart again and
//!    check that it is what was priced (otherwise the next try prices it
//!    again); take each limited discount's use and each line's stock only if
//!    enough is left (`… WHERE stock >= qty`, in product order); write the
//!    order, its lines, the idempotency record and the `order.placed` event;
//!    empty the cart. Nothing of a failed attempt stays.
//!
//! What gives correctness — each of these alone keeps its invariant, with
//! any interleaving of checkouts, on any number of replicas:
//! - the transaction's isolation: SERIALIZABLE on PostgreSQL (a concurrent
//!   checkout that would change what this one read makes one of them fail
//!   and retry), SQLite's single writer (`BEGIN IMMEDIATE`);
//! - the conditional updates: stock is taken only `WHERE stock >= qty`, a
//!   discount's use only while its counter is below the cap, so neither can
//!   go past its limit whatever ran in between;
//! - the idempotency record's primary key `(user_id, key)`: two requests
//!   with one key can never both commit an order;
//! - the priced-snapshot check: the transaction places only the cart that
//!   was priced (same lines, codes and product fields), so the order charges
//!   what the shopper was shown.
//!
//! What only gives throughput — remove any of them and every answer stays
//! correct, only more attempts fail and retry:
//! - the striped in-process locks and the PostgreSQL session advisory locks:
//!   they queue checkouts of the same products and codes, so they seldom
//!   conflict under SERIALIZABLE;
//! - pricing outside the lock and the transaction: plugins hold no
//!   connection, no stripe and no write lock while they run, and a retry
//!   reuses the last pricing when the cart did not change.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shopeezy_common::db::Db;
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use crate::domain::{Caller, Cart, Order, PricedCart, Status};
use crate::error::{Error, Result, Shortage};
use crate::pricing::{Customer, Pipeline};
use crate::store;
use crate::store::checkout::{Attempt, CheckoutTx, StoredKey};

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
    stripes: Arc<[Mutex<()>]>,
    max_attempts: u32,
}

/// Number of in-process lock stripes products hash to.
const STRIPES: usize = 1024;

impl Checkout {
    /// Checkout over `db`, trying a transaction at most `max_attempts` times.
    pub fn new(db: Db, pipeline: Pipeline, max_attempts: u32) -> Self {
        let stripes = (0..STRIPES)
            .map(|_| Mutex::new(()))
            .collect::<Vec<_>>()
            .into();
        Self {
            db,
            pipeline,
            stripes,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Places the caller's cart as an order under `key`: tries until one
    /// attempt commits, answers, or the retries run out.
    pub async fn checkout(
        &self,
        caller: &Caller,
        key: &str,
        request: &CheckoutRequest,
    ) -> Result<Placed> {
        let body_hash = hash_hex(&serde_json::to_vec(&request.expected_total).unwrap_or_default());
        let mut backoff = Duration::from_millis(2);
        let mut faults = 0;
        // What the last try priced: the next one prices again only if the
        // cart or its products changed, so a checkout's retries cost one
        // pricing run (and one plugin budget), not one per try.
        let mut priced = None;
        for attempt_no in 1..=self.max_attempts {
            let last = attempt_no == self.max_attempts;
            match self
                .try_once(caller, key, &body_hash, request, &mut priced)
                .await
            {
                // A request with the same key committed first: answer as it
                // did (or 422 if this request differs).
                Err(e) if key_taken(&e) => {
                    let cart = store::carts::get(&self.db, caller.id).await?;
                    if let Some(placed) = self
                        .replay(caller.id, key, &body_hash, &cart_fingerprint(&cart))
                        .await?
                    {
                        return Ok(placed);
                    }
                    if last {
                        return Err(e);
                    }
                }
                Err(e) if retryable(&e) && !last => {
                    metrics::counter!("host_checkout_retries_total").increment(1);
                }
                Err(e) if retryable(&e) => {
                    tracing::warn!(error = %e, "checkout gave up after {attempt_no} attempts");
                    return Err(Error::CheckoutContention);
                }
                // The database went away (a restart, a failover, a cut
                // connection). The attempt either rolled back or, if its
                // COMMIT was cut, committed: the next try finds its
                // idempotency record and answers as it did.
                Err(e) if is_fault(&e) && faults < MAX_FAULT_RETRIES && !last => {
                    faults += 1;
                    metrics::counter!("host_checkout_retries_total").increment(1);
                    tracing::warn!(error = %e, "checkout retries after a database fault");
                    backoff = backoff.max(FAULT_BACKOFF);
                }
                other => return other,
            }
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64);
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
        Err(Error::Internal(anyhow::anyhow!(
            "checkout loop ended without an answer"
        )))
    }

    /// One try: read and price the cart with no lock held and no connection
    /// kept, then queue behind checkouts of the same products and run the
    /// transaction, which verifies that what was priced is still the cart.
    async fn try_once(
        &self,
        caller: &Caller,
        key: &str,
        body_hash: &str,
        request: &CheckoutRequest,
        priced_before: &mut Option<Priced>,
    ) -> Result<Placed> {
        // A replay, an empty cart and a short cart are answered without a lock
        // or a write. The cart is read before the key: a racing request with
        // the same key that commits in between leaves the key to be found.
        let cart = store::carts::get(&self.db, caller.id).await?;
        if let Some(placed) = self
            .replay(caller.id, key, body_hash, &cart_fingerprint(&cart))
            .await?
        {
            return Ok(placed);
        }
        precheck(&cart)?;
        let priced = match priced_before.take() {
            Some(before) if same_pricing_inputs(&before.cart, &cart) => before,
            _ => self.price(caller, cart).await?,
        };
        chargeable(&priced.priced, request)?;

        let result = {
            let _queued = self.queue_behind(&priced.cart).await;
            let attempt = InTransaction {
                caller,
                key,
                body_hash,
                snapshot: &priced,
            };
            store::checkout::transaction(&self.db, &lock_keys(&priced.cart), attempt).await
        };
        if result.is_ok() {
            Outcome::Placed.count();
        }
        *priced_before = Some(priced);
        result
    }

    /// Prices `cart` for the caller now. Plugins run here, before any lock:
    /// a slow plugin holds no connection, no stripe and no write lock that
    /// others wait for.
    async fn price(&self, caller: &Caller, cart: Cart) -> Result<Priced> {
        // Plugin input only (promotions use usage limits for hard caps): read
        // outside the transaction, so it adds no read to its conflict set.
        let order_count = store::orders::count_for_user(&self.db, caller.id).await?;
        let customer = Customer {
            id: caller.id,
            role: caller.role,
            order_count,
        };
        let now = shopeezy_common::db::now();
        let priced = self.pipeline.price(&cart, &customer, now).await?;
        Ok(Priced { cart, priced, now })
    }

    /// The stored answer when `key` was used before by this user: a replay
    /// if the request is the same, 422 if it is not.
    async fn replay(
        &self,
        user_id: Uuid,
        key: &str,
        body_hash: &str,
        cart_hash: &str,
    ) -> Result<Option<Placed>> {
        let stored = store::checkout::stored_key(&self.db, user_id, key).await?;
        stored.map(|s| answer(s, body_hash, cart_hash)).transpose()
    }

    /// Waits for the in-process stripes of the cart's products and codes, in
    /// stripe order (so two carts can never wait for each other).
    async fn queue_behind(&self, cart: &Cart) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = lock_keys(cart)
            .iter()
            .map(|k| (k.unsigned_abs() % STRIPES as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].lock().await);
        }
        guards
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
        let refused = Error::OutOfStock(short);
        Outcome::Refused(&refused).count();
        return Err(refused);
    }
    Ok(())
}

/// What was priced outside the transaction.
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

/// One attempt: the whole checkout in one transaction
/// ([`store::checkout::transaction`] begins and commits it; any error rolls
/// it back).
struct InTransaction<'a> {
    caller: &'a Caller,
    key: &'a str,
    body_hash: &'a str,
    snapshot: &'a Priced,
}

impl Attempt for InTransaction<'_> {
    type Output = Placed;

    async fn run<C: CheckoutTx>(self, tx: &mut C) -> Result<Placed> {
        attempt_in_tx(tx, self.caller, self.key, self.body_hash, self.snapshot).await
    }
}

async fn attempt_in_tx<C: CheckoutTx>(
    tx: &mut C,
    caller: &Caller,
    key: &str,
    body_hash: &str,
    snapshot: &Priced,
) -> Result<Placed> {
    // 1. The cart and its products, as this transaction sees them, must be
    //    what was priced (stock aside, which step 3 takes only if enough is
    //    left). If not (the cart or a product changed, or a racing request
    //    with the same key emptied it), the next try reads and prices again.
    let cart = tx.cart(caller.id).await?;
    if !same_pricing_inputs(&cart, &snapshot.cart) {
        return Err(Error::Contention);
    }
    precheck(&cart)?;
    let Priced { priced, now, .. } = snapshot;
    let cart_hash = cart_fingerprint(&cart);

    // 2. Take one use of each limited discount, only where its caps allow.
    let customer_key = caller.id.to_string();
    let mut uses = Vec::new();
    for claim in priced.claims() {
        let mut counters = Vec::new();
        if let Some(cap) = claim.total {
            counters.push((store::usage::TOTAL, cap));
        }
        if let Some(cap) = claim.per_customer {
            counters.push((customer_key.as_str(), cap));
        }
        for (who, cap) in counters {
            if !tx.take_use(claim.plugin_id, &claim.key, who, cap).await? {
                let label = priced.adjustment_label(claim);
                return Err(Error::PromotionUnavailable { label });
            }
            uses.push((claim.plugin_id, claim.key.clone(), who.to_owned()));
        }
    }

    // 3. Take the stock, line by line in product order, only where enough is left.
    for line in &cart.lines {
        if !tx.take_stock(line.product.id, line.quantity).await? {
            // The snapshot said there was enough: another checkout got there
            // first. Retrying sees the new stock.
            return Err(Error::Contention);
        }
    }

    // 4. The order, its lines and uses, the idempotency record and the event; empty the cart.
    let order = order_from(caller.id, priced.clone(), *now);
    let body = serde_json::to_value(&order).map_err(|e| Error::Internal(e.into()))?;
    tx.insert_order(&order).await?;
    for (plugin_id, key, who) in &uses {
        tx.record_use(order.id, *plugin_id, key, who).await?;
    }
    tx.insert_idempotency(caller.id, key, body_hash, &cart_hash, order.id, &body)
        .await?;
    tx.insert_event(&order.status_event()).await?;
    tx.clear_cart(caller.id).await?;
    Ok(Placed {
        status: StatusCode::CREATED,
        body,
        order_id: order.id,
        replayed: false,
    })
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

/// How many times a checkout tries again after the database went away.
const MAX_FAULT_RETRIES: u32 = 3;
/// The least wait before such a try.
const FAULT_BACKOFF: Duration = Duration::from_millis(50);

/// Whether an attempt failed because the database went away or cannot
/// write right now.
fn is_fault(e: &Error) -> bool {
    matches!(e, Error::Database(db) if shopeezy_common::db::fault(db) == Some(shopeezy_common::db::Fault::Unreachable))
}

/// Whether an attempt failed only because of a concurrent one: a
/// serialization failure, a deadlock, a lock wait that timed out, a racing
/// insert of the same idempotency key, or stock taken since the snapshot.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Contention => true,
        Error::Database(sqlx::Error::Database(db)) => {
            let code = db.code();
            matches!(code.as_deref(), Some("40001" | "40P01" | "55P03"))
                // SQLite: busy or locked.
                || matches!(code.as_deref(), Some("5" | "6" | "517" | "262"))
        }
        _ => false,
    }
}

/// Whether an attempt failed because the idempotency key was taken by a
/// request that committed first.
fn key_taken(e: &Error) -> bool {
    match e {
        Error::Database(sqlx::Error::Database(db)) => {
            db.is_unique_violation()
                && (db.constraint().is_some_and(|c| c.contains("idempotency"))
                    || db.message().contains("idempotency"))
        }
        _ => false,
    }
}

/// What a checkout of `cart` contends on: its products' stock and its
/// codes' usage counters, as lock keys in Shopeezy's own key space.
fn lock_keys(cart: &Cart) -> Vec<i64> {
    let key = |v: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        // A fixed hasher: every replica must derive the same key.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        "shopeezy-checkout".hash(&mut h);
        v(&mut h);
        h.finish() as i64
    };
    let mut keys: Vec<i64> = cart
        .lines
        .iter()
        .map(|l| key(&|h| l.product.id.hash(h)))
        .collect();
    keys.extend(cart.codes.iter().map(|c| key(&|h| c.hash(h))));
    keys.sort_unstable();
    keys.dedup();
    keys
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
    Outcome::Replayed.count();
    Ok(Placed {
        status: StatusCode::from_u16(stored.status as u16).unwrap_or(StatusCode::CREATED),
        body: stored.response.0,
        order_id: stored.order_id,
        replayed: true,
    })
}
