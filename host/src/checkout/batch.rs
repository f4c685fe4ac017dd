//! Group commit: the checkouts of one replica are written by one committer,
//! many per transaction (see the module above for what a batch decides and
//! why it is safe).
//!
//! Batches form by themselves: the committer takes whatever checkouts
//! queued while it was committing the previous batch (at most
//! `max_batch`), so a lone shopper's checkout starts at once and under load
//! a batch grows to what arrives during one commit — no timer, no waiting
//! for a batch to fill.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use rand::Rng;
use sqlx::types::Json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Placed, Priced, answer, cart_fingerprint, order_from, same_pricing_inputs};
use crate::domain::{Caller, Cart, Claim};
use crate::error::{Error, Result, Shortage};
use crate::store;
use crate::store::checkout::{Batch, CheckoutTx, Counter, NewKey, StoredKey, Writes};
use shopeezy_common::db::Db;

/// One checkout, priced, waiting for its batch.
#[derive(Debug, Clone)]
pub(super) struct Submission {
    /// Who checks out.
    pub caller: Caller,
    /// Their idempotency key.
    pub key: String,
    /// The hash of the request's body.
    pub body_hash: String,
    /// The cart as read and priced.
    pub priced: Arc<Priced>,
}

/// What a batch answers one checkout (besides a refusal).
#[derive(Debug)]
pub(super) enum Verdict {
    /// Placed, or a replay of the order its key placed before.
    Answered(Placed),
    /// The cart changed after it was priced: read and price it again.
    Stale,
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Verdict>>,
}

/// The queue of one replica's checkouts and the task that commits them.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    queue: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the committer's task over `db`.
    pub fn start(db: Db, max_attempts: u32, max_batch: usize) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(commit_forever(db, jobs, max_attempts, max_batch));
        Self { queue }
    }

    /// Queues `submission` for the next batch; its answer once committed.
    pub async fn submit(&self, submission: Submission) -> Result<Verdict> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { submission, reply })
            .map_err(|_| Error::Internal(anyhow::anyhow!("the checkout committer stopped")))?;
        answer.await.map_err(|_| {
            Error::Internal(anyhow::anyhow!("the checkout committer dropped a checkout"))
        })?
    }
}

/// The committer's loop: takes what queued, commits it, answers each.
async fn commit_forever(
    db: Db,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    max_attempts: u32,
    max_batch: usize,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("host_checkout_batch_size").record(batch.len() as f64);
        let (submissions, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.submission, j.reply)).unzip();
        // In a task of its own: a panic answers this batch 500, and the
        // committer goes on with the next.
        let db = db.clone();
        let answers =
            match tokio::spawn(async move { commit(db, submissions, max_attempts).await }).await {
                Ok(answers) => answers,
                Err(e) => {
                    tracing::error!(error = %e, "a checkout batch panicked");
                    replies
                        .iter()
                        .map(|_| Err(Error::Internal(anyhow::anyhow!("checkout batch failed"))))
                        .collect()
                }
            };
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A checkout whose request went away was still committed (or
            // not) as answered here; its key replays it.
            let _ = reply.send(answer);
        }
    }
}

/// How many times a batch tries again after the database went away.
const MAX_FAULT_RETRIES: u32 = 3;
/// The least wait before such a try.
const FAULT_BACKOFF: Duration = Duration::from_millis(50);

/// Commits `submissions` as one batch, trying it again while it fails as a
/// whole for a reason that passes (a conflict, a database that went away),
/// splitting it when it fails for another: one answer per submission, in
/// order.
fn commit(
    db: Db,
    submissions: Vec<Submission>,
    max_attempts: u32,
) -> Pin<Box<dyn Future<Output = Vec<Result<Verdict>>> + Send>> {
    Box::pin(async move {
        let mut backoff = Duration::from_millis(2);
        let mut faults = 0;
        for attempt in 1..=max_attempts {
            let last = attempt == max_attempts;
            let decide = Decide {
                submissions: &submissions,
            };
            match store::checkout::transaction(&db, decide).await {
                Ok(answers) => return answers,
                Err(e) if retryable(&e) && !last => {
                    metrics::counter!("host_checkout_batch_retries_total").increment(1);
                }
                Err(e) if retryable(&e) => {
                    tracing::warn!(error = %e, "a checkout batch gave up after {attempt} attempts");
                    return submissions
                        .iter()
                        .map(|_| Err(Error::CheckoutContention))
                        .collect();
                }
                // The database went away (a restart, a failover, a cut
                // connection). The batch either rolled back or, if its
                // COMMIT was cut, committed: the next try finds its keys
                // and answers each as it did.
                Err(e) if is_fault(&e) && faults < MAX_FAULT_RETRIES && !last => {
                    faults += 1;
                    metrics::counter!("host_checkout_batch_retries_total").increment(1);
                    tracing::warn!(error = %e, "a checkout batch retries after a database fault");
                    backoff = backoff.max(FAULT_BACKOFF);
                }
                // Still gone: every checkout of the batch is answered 503
                // `database_unavailable` now (split, each would wait for its
                // own retries, one after the other).
                Err(e) if is_fault(&e) => {
                    tracing::warn!(error = %e, "a checkout batch gave up: the database is unreachable");
                    return submissions
                        .iter()
                        .map(|_| Err(Error::Database(sqlx::Error::PoolClosed)))
                        .collect();
                }
                // Anything else: one checkout's own failure must not fail
                // the others. Alone, each gets its own answer.
                Err(e) if submissions.len() > 1 => {
                    tracing::warn!(error = %e, "a checkout batch failed; its checkouts are tried one by one");
                    let mut answers = Vec::with_capacity(submissions.len());
                    for s in submissions {
                        answers.extend(commit(db.clone(), vec![s], max_attempts).await);
                    }
                    return answers;
                }
                Err(e) => return vec![Err(e)],
            }
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64);
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
        submissions
            .iter()
            .map(|_| Err(Error::CheckoutContention))
            .collect()
    })
}

/// Whether the database went away or cannot write right now.
fn is_fault(e: &Error) -> bool {
    matches!(e, Error::Database(db) if shopeezy_common::db::fault(db) == Some(shopeezy_common::db::Fault::Unreachable))
}

/// Whether a batch failed only because of a concurrent transaction: a
/// serialization failure, a deadlock, a lock wait that timed out, a racing
/// replica's insert of the same idempotency key, or a limit a row would have
/// passed (stock or uses changed between the read and the write).
fn retryable(e: &Error) -> bool {
    match e {
        Error::Contention => true,
        Error::Database(sqlx::Error::Database(db)) => {
            let code = db.code();
            matches!(code.as_deref(), Some("40001" | "40P01" | "55P03"))
                // MySQL: a lock wait that timed out (a deadlock is 40001).
                || db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|my| my.number() == 1205)
                // SQLite: busy or locked.
                || matches!(code.as_deref(), Some("5" | "6" | "517" | "262"))
                // A racing request with the same key committed first: the
                // next try reads its record and answers as it did.
                || (db.is_unique_violation()
                    && (db.constraint().is_some_and(|c| c.contains("idempotency"))
                        || db.message().contains("idempotency")))
        }
        _ => false,
    }
}

/// One batch's work in its transaction.
struct Decide<'a> {
    submissions: &'a [Submission],
}

impl Batch for Decide<'_> {
    type Output = Vec<Result<Verdict>>;

    async fn run<C: CheckoutTx>(self, tx: &mut C) -> Result<Self::Output> {
        decide(tx, self.submissions).await
    }
}

/// The batch's reads, its decisions in arrival order, and its writes.
async fn decide<C: CheckoutTx>(
    tx: &mut C,
    submissions: &[Submission],
) -> Result<Vec<Result<Verdict>>> {
    // 1. Read everything the batch decides on, each kind in one go.
    let mut users: Vec<Uuid> = submissions.iter().map(|s| s.caller.id).collect();
    users.sort_unstable();
    users.dedup();
    let carts = tx.carts(&users).await?;
    let mut keys: Vec<(Uuid, String)> = submissions
        .iter()
        .map(|s| (s.caller.id, s.key.clone()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let stored = tx.stored_keys(&keys).await?;
    let mut products: Vec<Uuid> = carts
        .values()
        .flat_map(|c| c.lines.iter().map(|l| l.product.id))
        .collect();
    products.sort_unstable();
    products.dedup();
    let mut stock = if products.is_empty() {
        HashMap::new()
    } else {
        tx.lock_stock(&products).await?
    };
    let mut caps: HashMap<Counter, i64> = HashMap::new();
    // Each checkout is decided on the cap it was priced with; the write's
    // guard is the largest of them (a plugin's config may change between
    // two pricings), so it never refuses what a decision allowed.
    for s in submissions {
        for (counter, cap, _) in counters(s) {
            let known = caps.entry(counter).or_insert(cap);
            *known = (*known).max(cap);
        }
    }
    let mut counter_list: Vec<Counter> = caps.keys().cloned().collect();
    counter_list.sort_unstable();
    let stored_uses = if counter_list.is_empty() {
        HashMap::new()
    } else {
        tx.uses(&counter_list).await?
    };

    // 2. Decide each checkout in arrival order, on what the batch has
    //    taken so far.
    let mut uses = stored_uses.clone();
    let mut taken_stock: HashMap<Uuid, i64> = HashMap::new();
    let mut placed_keys: HashMap<(Uuid, String), StoredKey> = HashMap::new();
    let mut emptied: HashSet<Uuid> = HashSet::new();
    let mut writes = Writes::default();
    let empty = Cart::default();
    let mut answers = Vec::with_capacity(submissions.len());
    for s in submissions {
        let user = s.caller.id;
        let cart = if emptied.contains(&user) {
            &empty
        } else {
            carts.get(&user).unwrap_or(&empty)
        };
        let id_key = (user, s.key.clone());
        // The key was used before (committed, or earlier in this batch).
        if let Some(before) = stored.get(&id_key).or_else(|| placed_keys.get(&id_key)) {
            let replay = answer(before.clone(), &s.body_hash, &cart_fingerprint(cart));
            answers.push(replay.map(Verdict::Answered));
            continue;
        }
        // The cart is not what was priced: price it again.
        if !same_pricing_inputs(cart, &s.priced.cart) {
            answers.push(Ok(Verdict::Stale));
            continue;
        }
        // Not enough stock left now.
        let short: Vec<Shortage> = cart
            .lines
            .iter()
            .filter_map(|l| {
                let available = stock.get(&l.product.id).copied().unwrap_or(0);
                (l.quantity > available).then_some(Shortage {
                    product_id: l.product.id,
                    requested: l.quantity,
                    available,
                })
            })
            .collect();
        if !short.is_empty() {
            answers.push(Err(Error::OutOfStock(short)));
            continue;
        }
        // A limited discount used up.
        let wanted = counters(s);
        let mut this_order: HashMap<&Counter, i64> = HashMap::new();
        let mut unavailable = None;
        for (counter, cap, claim) in &wanted {
            let so_far = uses.get(counter).copied().unwrap_or(0);
            let mine = this_order.entry(counter).or_insert(0);
            if so_far + *mine >= *cap {
                unavailable = Some(*claim);
                break;
            }
            *mine += 1;
        }
        if let Some(claim) = unavailable {
            let label = s.priced.priced.adjustment_label(claim);
            answers.push(Err(Error::PromotionUnavailable { label }));
            continue;
        }

        // Placed: take its stock and uses, and write it with the batch.
        for l in &cart.lines {
            if let Some(left) = stock.get_mut(&l.product.id) {
                *left -= l.quantity;
            }
            *taken_stock.entry(l.product.id).or_insert(0) += l.quantity;
        }
        for (counter, n) in this_order {
            *uses.entry(counter.clone()).or_insert(0) += n;
        }
        let order = order_from(user, s.priced.priced.clone(), s.priced.now);
        let body = serde_json::to_value(&order).map_err(|e| Error::Internal(e.into()))?;
        for (counter, _, _) in &wanted {
            writes.order_uses.push((order.id, counter.clone()));
        }
        let key = StoredKey {
            body_hash: s.body_hash.clone(),
            cart_hash: cart_fingerprint(cart),
            order_id: order.id,
            status: i32::from(StatusCode::CREATED.as_u16()),
            response: Json(body.clone()),
        };
        placed_keys.insert(id_key, key.clone());
        writes.keys.push(NewKey {
            user_id: user,
            key: s.key.clone(),
            stored: key,
        });
        writes.events.push(order.status_event());
        answers.push(Ok(Verdict::Answered(Placed {
            status: StatusCode::CREATED,
            body,
            order_id: order.id,
            replayed: false,
        })));
        writes.orders.push(order);
        emptied.insert(user);
    }

    // 3. Write what was placed, in one go.
    let mut stock_writes: Vec<(Uuid, i64)> = taken_stock.into_iter().collect();
    stock_writes.sort_unstable();
    writes.stock = stock_writes;
    for counter in counter_list {
        let now = uses.get(&counter).copied().unwrap_or(0);
        let cap = caps[&counter];
        match stored_uses.get(&counter) {
            Some(&before) if now > before => writes.more_uses.push((counter, now - before, cap)),
            None if now > 0 => writes.new_uses.push((counter, now)),
            _ => {}
        }
    }
    tx.write(&writes).await?;
    Ok(answers)
}

/// The usage counters one checkout takes a use of, with their caps and the
/// discount each is for: per limited discount, its total and its
/// per-customer counter, in the discounts' order (a counter twice takes two
/// uses).
fn counters(s: &Submission) -> Vec<(Counter, i64, &Claim)> {
    let customer = s.caller.id.to_string();
    let mut out = Vec::new();
    for claim in s.priced.priced.claims() {
        if let Some(cap) = claim.total {
            let counter = (
                claim.plugin_id,
                claim.key.clone(),
                store::usage::TOTAL.to_owned(),
            );
            out.push((counter, i64::from(cap), claim));
        }
        if let Some(cap) = claim.per_customer {
            let counter = (claim.plugin_id, claim.key.clone(), customer.clone());
            out.push((counter, i64::from(cap), claim));
        }
    }
    out
}
