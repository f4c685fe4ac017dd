//! Usage counters of limited discounts. Checkout takes uses inside its
//! transaction (see `checkout.rs`); the cart view only reads them.

use shopeezy_common::db::Db;
use shopeezy_common::sql;
use shopeezy_common::with_db;
use uuid::Uuid;

use crate::domain::{Claim, PricedCart};
use crate::error::Result;

/// The counter row of the total uses of a limit.
pub const TOTAL: &str = "";

/// The statement that reads one counter.
const USES_SQL: &str = "SELECT uses FROM promotion_usage WHERE plugin_id = $1 AND limit_key = $2 AND customer_key = $3";

/// Whether `claim` can take one more use, given its counters' values.
pub fn fits(claim: &Claim, total_uses: i64, customer_uses: i64) -> bool {
    claim.total.is_none_or(|cap| total_uses < i64::from(cap))
        && claim
            .per_customer
            .is_none_or(|cap| customer_uses < i64::from(cap))
}

/// The limits (plugin, key) of the cart's discounts that are used up for `customer`.
pub async fn exhausted(
    db: &Db,
    priced: &PricedCart,
    customer: Uuid,
) -> Result<Vec<(Uuid, String)>> {
    let mut out = Vec::new();
    for claim in priced.claims() {
        let customer_key = customer.to_string();
        let (total, mine): (Option<i64>, Option<i64>) = with_db!(db, pool => (
            sqlx::query_scalar(sql!(pool, USES_SQL)).bind(claim.plugin_id).bind(&claim.key).bind(TOTAL).fetch_optional(pool).await?,
            sqlx::query_scalar(sql!(pool, USES_SQL)).bind(claim.plugin_id).bind(&claim.key).bind(&customer_key).fetch_optional(pool).await?,
        ));
        if !fits(claim, total.unwrap_or(0), mine.unwrap_or(0)) {
            out.push((claim.plugin_id, claim.key.clone()));
        }
    }
    Ok(out)
}
