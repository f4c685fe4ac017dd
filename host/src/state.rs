//! What every request handler shares: the database, the account service's
//! client, and the use cases. Built by `startup`, read by `http`.

use shopeezy_common::db::Db;
use shopeezy_common::events::Relay;

use crate::auth::AuthClient;
use crate::cart::Carts;
use crate::checkout::Checkout;
use crate::pricing::Pipeline;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The host's database.
    pub db: Db,
    /// Token verification (the account service's keys and revocations).
    pub auth: AuthClient,
    /// The pricing pipeline, with the plugins in force.
    pub pipeline: Pipeline,
    /// The carts, always priced.
    pub carts: Carts,
    /// The checkout transaction.
    pub checkout: Checkout,
    /// The outbox relay, which sends the committed events.
    pub relay: Relay,
}
