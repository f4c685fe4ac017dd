//! `POST /v1/checkout`: the cart becomes an order (see `checkout.rs`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use shopeezy_common::extract::RawBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::checkout::CheckoutRequest;
use crate::domain::{Caller, Order};
use crate::error::{Code, Error, Result};
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(checkout))
}

/// The error answers of `POST /v1/checkout`, as its OpenAPI operation
/// documents them (see `http::document_errors`; 401 is documented for
/// every operation alike).
pub const ERRORS: &[Code] = &[
    Code::IdempotencyKeyRequired,
    Code::MalformedJson,
    Code::OutOfStock,
    Code::PriceChanged,
    Code::PromotionUnavailable,
    Code::InvalidBody,
    Code::CartEmpty,
    Code::CheckoutBlocked,
    Code::IdempotencyKeyReused,
    Code::PluginFailed,
    Code::CheckoutContention,
    Code::AuthUnavailable,
    Code::PluginsLoading,
];

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Places the cart as an order. The `Idempotency-Key` header makes a retry
/// safe: the same key and request answer the same order (with
/// `Idempotent-Replayed: true`), even when the two requests race.
#[utoipa::path(post, path = "/v1/checkout", tag = "checkout", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1–255 printable ASCII characters, unique per checkout")),
    request_body(content = Option<CheckoutRequest>, description = "optional"),
    responses(
        (status = 201, body = Order, headers(("Location" = String), ("Idempotent-Replayed" = String))),
    ))]
async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let request = parse_body(&body)?;
    // Run to the end even if the client goes away: it can replay the key.
    let placed =
        tokio::spawn(async move { state.checkout.checkout(&caller, &key, &request).await })
            .await
            .map_err(|e| Error::Internal(e.into()))??;
    let location = HeaderValue::try_from(format!("/v1/orders/{}", placed.order_id))
        .map_err(|e| Error::Internal(e.into()))?;
    let mut response = (
        placed.status,
        [(header::LOCATION, location)],
        axum::Json(placed.body),
    )
        .into_response();
    if placed.replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<String> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or(Error::IdempotencyKeyRequired)?
        .to_str()
        .map_err(|_| Error::IdempotencyKeyRequired)?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(Error::IdempotencyKeyRequired);
    }
    Ok(key.to_owned())
}

/// The body is optional; when sent it must be a valid [`CheckoutRequest`].
fn parse_body(body: &[u8]) -> Result<CheckoutRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CheckoutRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::MalformedJson(e.to_string())
        } else {
            Error::InvalidBody(e.to_string())
        }
    })
}
