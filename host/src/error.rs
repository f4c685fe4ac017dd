//! The host's one error type, answered as problem+json.
//!
//! Each answer the API documents is a variant of [`Error`]; its status and
//! stable `code` are defined once, by [`Code`], which also lists them for
//! the OpenAPI document and labels the checkout metrics. Call sites name a
//! variant, never a code string.
//!
//! This module is the bottom layer with `domain`: it imports nothing else
//! from the crate, so its payloads are plain values.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shopeezy_common::Problem;
use uuid::Uuid;

/// Declares [`Code`]: each answer's stable code and status, once.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = ($status:ident, $code:literal),)*) => {
        /// The stable code of an answer, with its status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code the host answers with, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as sent in the problem's `code` member.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// The extra members a problem with this code carries, as the
            /// API documents them (empty when none).
            pub fn members(self) -> &'static str {
                match self {
                    Code::InsufficientStock => "`product_id`, `requested`, `available`",
                    Code::OutOfStock => "`items` (`product_id`, `requested`, `available`)",
                    Code::PriceChanged => "`total`",
                    Code::PromotionUnavailable => "`label`",
                    Code::ValidationFailed => "`field`",
                    Code::CheckoutBlocked => "`violations`",
                    Code::InvalidComponent => "`reason`",
                    Code::PluginFailed => "`plugin` (`id`, `name`, `version`), `reason`",
                    _ => "",
                }
            }

            /// The HTTP status the code is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

codes! {
    /// The body is not a readable request (a multipart body that cannot be parsed).
    UnreadableBody = (BAD_REQUEST, "invalid_body"),
    /// A checkout without a usable `Idempotency-Key` header.
    IdempotencyKeyRequired = (BAD_REQUEST, "idempotency_key_required"),
    /// A body that is not JSON.
    MalformedJson = (BAD_REQUEST, "malformed_json"),
    /// No usable bearer token.
    Unauthorized = (UNAUTHORIZED, "unauthorized"),
    /// The caller's role may not do this.
    Forbidden = (FORBIDDEN, "forbidden"),
    /// No such thing, or not the caller's to see.
    NotFound = (NOT_FOUND, "not_found"),
    /// The seller already has a product with that SKU.
    SkuTaken = (CONFLICT, "sku_taken"),
    /// A plugin of that name is installed in the scope.
    PluginNameTaken = (CONFLICT, "plugin_name_taken"),
    /// An order cannot make that move.
    InvalidTransition = (CONFLICT, "invalid_transition"),
    /// A product in another currency than the cart's.
    CurrencyMismatch = (CONFLICT, "currency_mismatch"),
    /// The cart holds as many different products as it may.
    CartFull = (CONFLICT, "cart_full"),
    /// The cart holds as many codes as it may.
    TooManyCodes = (CONFLICT, "too_many_codes"),
    /// Less stock than a cart line asks for.
    InsufficientStock = (CONFLICT, "insufficient_stock"),
    /// Less stock than the checkout's cart asks for.
    OutOfStock = (CONFLICT, "out_of_stock"),
    /// The cart totals other than the shopper was shown.
    PriceChanged = (CONFLICT, "price_changed"),
    /// A limited discount is used up.
    PromotionUnavailable = (CONFLICT, "promotion_unavailable"),
    /// A field failed validation.
    ValidationFailed = (UNPROCESSABLE_ENTITY, "validation_failed"),
    /// A body of the right syntax but the wrong shape.
    InvalidBody = (UNPROCESSABLE_ENTITY, "invalid_body"),
    /// Checkout of an empty cart.
    CartEmpty = (UNPROCESSABLE_ENTITY, "cart_empty"),
    /// A rule of the shop blocks checkout.
    CheckoutBlocked = (UNPROCESSABLE_ENTITY, "checkout_blocked"),
    /// An `Idempotency-Key` used before for another checkout.
    IdempotencyKeyReused = (UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    /// A plugin component that does not compile or breaks a limit.
    InvalidComponent = (UNPROCESSABLE_ENTITY, "invalid_component"),
    /// A plugin manifest that is not valid.
    InvalidManifest = (UNPROCESSABLE_ENTITY, "invalid_manifest"),
    /// Too many dry runs of one merchant at once.
    TooManyDryRuns = (TOO_MANY_REQUESTS, "too_many_dry_runs"),
    /// Something that should not happen; the detail is in the log.
    Internal = (INTERNAL_SERVER_ERROR, "internal"),
    /// The database cannot write: its disk is full.
    StorageFull = (INSUFFICIENT_STORAGE, "storage_full"),
    /// A plugin failed under the `closed` policy.
    PluginFailed = (SERVICE_UNAVAILABLE, "plugin_failed"),
    /// Checkout ran out of retries against concurrent checkouts.
    CheckoutContention = (SERVICE_UNAVAILABLE, "checkout_contention"),
    /// The account service cannot check tokens right now.
    AuthUnavailable = (SERVICE_UNAVAILABLE, "auth_unavailable"),
    /// The installed plugins are still being compiled after a start.
    PluginsLoading = (SERVICE_UNAVAILABLE, "plugins_loading"),
    /// The database cannot be reached.
    DatabaseUnavailable = (SERVICE_UNAVAILABLE, "database_unavailable"),
}

/// A cart line whose stock is short, as `out_of_stock` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortage {
    /// The product.
    pub product_id: Uuid,
    /// How many the cart holds.
    pub requested: i64,
    /// How many are left.
    pub available: i64,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400 `invalid_body`: a body that cannot be read as sent.
    #[error("unreadable body: {0}")]
    UnreadableBody(String),
    /// 400 `idempotency_key_required`.
    #[error("no usable Idempotency-Key")]
    IdempotencyKeyRequired,
    /// 400 `malformed_json`, with the parser's message.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 401 `unauthorized`: no usable token, and why.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// 403 `forbidden`, and why.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404 `not_found`: no such thing (named), or not the caller's to see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409 `sku_taken`.
    #[error("sku taken")]
    SkuTaken,
    /// 409 `plugin_name_taken`.
    #[error("plugin name taken")]
    PluginNameTaken,
    /// 409 `invalid_transition`: an order that is `from` cannot become `to`.
    #[error("an order that is {from} cannot become {to}")]
    InvalidTransition {
        /// The order's status.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
    /// 409 `currency_mismatch`: the cart is in one currency, the product in another.
    #[error("the cart is in {cart}, this product in {product}")]
    CurrencyMismatch {
        /// The cart's currency.
        cart: String,
        /// The product's currency.
        product: String,
    },
    /// 409 `cart_full`: a cart holds at most this many different products.
    #[error("cart full ({0} lines)")]
    CartFull(usize),
    /// 409 `too_many_codes`: a cart holds at most this many codes.
    #[error("too many codes ({0})")]
    TooManyCodes(i64),
    /// 409 `insufficient_stock` with `product_id`, `requested`, `available`.
    #[error("insufficient stock: {0:?}")]
    InsufficientStock(Shortage),
    /// 409 `out_of_stock` with the short lines as `items`.
    #[error("out of stock: {0:?}")]
    OutOfStock(Vec<Shortage>),
    /// 409 `price_changed`: the cart totals `total`, not `expected`.
    #[error("the cart now totals {total}, not {expected}")]
    PriceChanged {
        /// The total now.
        total: i64,
        /// The total the shopper was shown.
        expected: i64,
    },
    /// 409 `promotion_unavailable`: the discount labelled so is used up.
    #[error("{label} has reached its usage limit")]
    PromotionUnavailable {
        /// The discount's code or label.
        label: String,
    },
    /// 422 `validation_failed` naming the field.
    #[error("{field} {detail}")]
    Invalid {
        /// The member at fault.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// 422 `invalid_body`: a body of the wrong shape, and why.
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// 422 `cart_empty`.
    #[error("the cart is empty")]
    CartEmpty,
    /// 422 `checkout_blocked` with the rules broken (`violations`, as JSON).
    #[error("checkout blocked")]
    CheckoutBlocked(serde_json::Value),
    /// 422 `idempotency_key_reused`.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// 422 `invalid_component` with the `reason`.
    #[error("the component was refused: {0}")]
    InvalidComponent(String),
    /// 422 `invalid_manifest` with the parser's message.
    #[error("the manifest is not valid: {0}")]
    InvalidManifest(String),
    /// 429 `too_many_dry_runs`: at most this many run at once per merchant.
    #[error("too many dry runs (at most {0})")]
    TooManyDryRuns(usize),
    /// 503 `plugin_failed`: a plugin failed under the `closed` policy.
    #[error("plugin {name} failed")]
    PluginFailed {
        /// The plugin's id.
        id: Uuid,
        /// Its name.
        name: String,
        /// The version that ran.
        version: i64,
        /// Why it failed.
        reason: Option<String>,
    },
    /// 503 `checkout_contention`: the retries ran out.
    #[error("too many concurrent checkouts")]
    CheckoutContention,
    /// 503 `auth_unavailable`.
    #[error("tokens cannot be checked")]
    AuthUnavailable,
    /// 503 `plugins_loading`.
    #[error("plugins loading")]
    PluginsLoading,
    /// An answer made by `shopeezy_common` (extractors, paging, body
    /// limits), passed on as it is.
    #[error("{0}")]
    Problem(#[from] Problem),
    /// The database failed: 503 `database_unavailable`, 507 `storage_full`
    /// or 500.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A concurrent checkout took what this one's snapshot saw; retried
    /// (500 if it ever escaped).
    #[error("lost a race with a concurrent checkout")]
    Contention,
    /// Anything else that should not happen (500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// 422 `validation_failed` naming the field.
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            detail: detail.into(),
        }
    }

    /// The stable code of this error; `None` for a problem passed on from
    /// `shopeezy_common`, whose code is its own.
    pub fn kind(&self) -> Option<Code> {
        Some(match self {
            Self::UnreadableBody(_) => Code::UnreadableBody,
            Self::IdempotencyKeyRequired => Code::IdempotencyKeyRequired,
            Self::MalformedJson(_) => Code::MalformedJson,
            Self::Unauthenticated(_) => Code::Unauthorized,
            Self::Forbidden(_) => Code::Forbidden,
            Self::NotFound(_) => Code::NotFound,
            Self::SkuTaken => Code::SkuTaken,
            Self::PluginNameTaken => Code::PluginNameTaken,
            Self::InvalidTransition { .. } => Code::InvalidTransition,
            Self::CurrencyMismatch { .. } => Code::CurrencyMismatch,
            Self::CartFull(_) => Code::CartFull,
            Self::TooManyCodes(_) => Code::TooManyCodes,
            Self::InsufficientStock(_) => Code::InsufficientStock,
            Self::OutOfStock(_) => Code::OutOfStock,
            Self::PriceChanged { .. } => Code::PriceChanged,
            Self::PromotionUnavailable { .. } => Code::PromotionUnavailable,
            Self::Invalid { .. } => Code::ValidationFailed,
            Self::InvalidBody(_) => Code::InvalidBody,
            Self::CartEmpty => Code::CartEmpty,
            Self::CheckoutBlocked(_) => Code::CheckoutBlocked,
            Self::IdempotencyKeyReused => Code::IdempotencyKeyReused,
            Self::InvalidComponent(_) => Code::InvalidComponent,
            Self::InvalidManifest(_) => Code::InvalidManifest,
            Self::TooManyDryRuns(_) => Code::TooManyDryRuns,
            Self::PluginFailed { .. } => Code::PluginFailed,
            Self::CheckoutContention => Code::CheckoutContention,
            Self::AuthUnavailable => Code::AuthUnavailable,
            Self::PluginsLoading => Code::PluginsLoading,
            Self::Database(e) => match shopeezy_common::db::fault(e) {
                Some(
                    shopeezy_common::db::Fault::Unreachable | shopeezy_common::db::Fault::Conflict,
                ) => Code::DatabaseUnavailable,
                Some(shopeezy_common::db::Fault::DiskFull) => Code::StorageFull,
                None => Code::Internal,
            },
            Self::Contention | Self::Internal(_) => Code::Internal,
            Self::Problem(_) => return None,
        })
    }

    /// The `code` this error is answered with (also the outcome label of
    /// the checkout metrics).
    pub fn code(&self) -> &str {
        match self {
            Self::Problem(p) => &p.code,
            other => other.kind().map_or("internal", Code::as_str),
        }
    }

    /// The problem answer for this error: status and code from [`Code`],
    /// the detail and the members each code documents.
    pub fn problem(&self) -> Problem {
        let kind = match (self, self.kind()) {
            (Self::Problem(p), _) => return p.clone(),
            (Self::Database(e), _) => return shopeezy_common::db::failure_problem(e),
            (_, Some(kind)) => kind,
            (_, None) => return Problem::internal(),
        };
        let problem = |detail: String| Problem::new(kind.status(), kind.as_str(), detail);
        match self {
            Self::UnreadableBody(detail)
            | Self::MalformedJson(detail)
            | Self::InvalidBody(detail) => problem(detail.clone()),
            Self::IdempotencyKeyRequired => problem(
                "send an Idempotency-Key header (1–255 printable ASCII characters)".into(),
            ),
            Self::Unauthenticated(why) => problem(why.clone())
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
            Self::Forbidden(why) => problem((*why).into()),
            Self::NotFound(what) => Problem::not_found(what),
            Self::SkuTaken => problem("this seller already has a product with that sku".into()),
            Self::PluginNameTaken => {
                problem("a plugin of that name is installed in this scope".into())
            }
            Self::InvalidTransition { .. }
            | Self::CurrencyMismatch { .. }
            | Self::PromotionUnavailable { .. } => {
                let p = problem(self.to_string());
                match self {
                    Self::PromotionUnavailable { label } => p.with("label", label),
                    _ => p,
                }
            }
            Self::CartFull(max_lines) => problem(format!(
                "a cart holds at most {max_lines} different products"
            )),
            Self::TooManyCodes(max) => problem(format!("a cart holds at most {max} codes")),
            Self::InsufficientStock(s) => problem(format!("only {} left", s.available))
                .with("product_id", s.product_id)
                .with("requested", s.requested)
                .with("available", s.available),
            Self::OutOfStock(items) => {
                let items: Vec<serde_json::Value> = items
                    .iter()
                    .map(|s| serde_json::json!({"product_id": s.product_id, "requested": s.requested, "available": s.available}))
                    .collect();
                problem("some products do not have enough stock".into()).with("items", items)
            }
            Self::PriceChanged { total, .. } => problem(self.to_string()).with("total", total),
            Self::Invalid { field, detail } => {
                problem(format!("{field} {detail}")).with("field", field)
            }
            Self::CartEmpty => problem("the cart is empty".into()),
            Self::CheckoutBlocked(violations) => {
                problem("the cart breaks a rule of the shop".into()).with("violations", violations)
            }
            Self::IdempotencyKeyReused => problem(
                "this Idempotency-Key was used for a different checkout; use a new key".into(),
            ),
            Self::InvalidComponent(reason) => {
                problem(format!("the component was refused: {reason}")).with("reason", reason)
            }
            Self::InvalidManifest(why) => problem(format!("the manifest is not valid: {why}")),
            Self::TooManyDryRuns(per_merchant) => problem(format!(
                "at most {per_merchant} dry runs of one merchant run at once; retry when one has finished"
            ))
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            Self::PluginFailed {
                id,
                name,
                version,
                reason,
            } => problem(format!(
                "plugin {name} failed; checkout is closed until it works"
            ))
            .with(
                "plugin",
                serde_json::json!({"id": id, "name": name, "version": version}),
            )
            .with("reason", reason),
            Self::CheckoutContention => problem(
                "too many concurrent checkouts; retry with the same Idempotency-Key".into(),
            ),
            Self::AuthUnavailable => {
                problem("tokens cannot be checked right now; try again shortly".into())
            }
            Self::PluginsLoading => problem(
                "the host has just started and is still compiling the installed plugins; try again shortly".into(),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("2")),
            Self::Problem(_) | Self::Database(_) | Self::Contention | Self::Internal(_) => {
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            // The cause goes to the log, never to the client.
            tracing::error!(error = %self, "request failed");
        }
        problem.into_response()
    }
}

/// A result with the host's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_answers_with_its_codes_status_and_code() {
        let samples = [
            Error::CartEmpty,
            Error::OutOfStock(Vec::new()),
            Error::invalid("quantity", "must be between 0 and 10000"),
            Error::NotFound("order"),
            Error::Unauthenticated("no token".into()),
            Error::PluginsLoading,
            Error::TooManyDryRuns(2),
        ];
        for e in samples {
            let (kind, problem) = (e.kind(), e.problem());
            let kind = kind.unwrap_or(Code::Internal);
            assert_eq!(problem.code, kind.as_str());
            assert_eq!(problem.status, kind.status().as_u16());
            assert_eq!(e.code(), kind.as_str());
        }
    }

    #[test]
    fn codes_are_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert((code.status(), code.as_str())), "{code:?}");
        }
    }
}
