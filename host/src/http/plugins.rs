//! Plugins: sellers and admins install WebAssembly components that change
//! prices, add promotions and validate carts. A seller's plugins are its own
//! (another seller gets 404); an admin's are platform-wide, and an admin sees
//! and manages every plugin.

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Path, Query, RawBody};
use shopeezy_common::page::{Page, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::plugin::{parse_config, parse_name, parse_priority};
use crate::domain::{
    Caller, FailurePolicy, Hook, MAX_PRICE, MAX_QUANTITY, NewPlugin, Plugin, Settings,
    parse_attributes, parse_code, parse_tags,
};
use crate::error::{Error, Result};
use crate::http::auth::Merchant;
use crate::plugins::io::{Report, SampleCart};
use crate::plugins::stats::StatsReport;
use crate::state::AppState;

/// The routes of this module; uploads may be as large as `module_bytes`
/// (and a little more, so an oversized component gets its reason, not 413).
pub fn router(module_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins, install))
        .routes(routes!(get_plugin, update_plugin, delete_plugin))
        .routes(routes!(replace_component))
        .routes(routes!(dry_run))
        .routes(routes!(plugin_stats))
        .layer(DefaultBodyLimit::max(
            module_bytes.saturating_mul(2).max(1 << 20),
        ))
}

/// A plugin's manifest.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// 1–64 characters of a-z, 0-9, `-`, `_`; unique within its scope.
    name: String,
    /// `pricing`, `promotion` or `validation`.
    hook: Hook,
    /// Lower runs first (default 100; -10000 to 10000).
    priority: Option<i32>,
    /// `closed` (default) or `open`.
    failure_policy: Option<FailurePolicy>,
    /// The merchant config given to the plugin (any JSON, at most 64 KiB).
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
}

fn multipart_problem(e: axum::extract::multipart::MultipartError) -> Error {
    shopeezy_common::extract::body_problem(e.status(), e.body_text()).into()
}

/// Reads the `manifest` and `component` parts of an upload. The whole body
/// is read (it is bounded) before anything is refused: an answer sent while
/// the client is still uploading would reach it as a reset connection
/// instead of the problem.
async fn read_upload(mut form: Multipart) -> Result<(Manifest, Vec<u8>)> {
    let (mut manifest, mut component, mut unknown) = (None, None, None);
    while let Some(field) = form.next_field().await.map_err(multipart_problem)? {
        match field.name() {
            Some("manifest") => manifest = Some(field.bytes().await.map_err(multipart_problem)?),
            Some("component") => {
                component = Some(field.bytes().await.map_err(multipart_problem)?.to_vec())
            }
            other => {
                unknown.get_or_insert_with(|| other.unwrap_or("(unnamed)").to_owned());
                field.bytes().await.map_err(multipart_problem)?;
            }
        }
    }
    if let Some(name) = unknown {
        return Err(Error::InvalidBody(format!(
            "unknown part {name}; send `manifest` and `component`"
        )));
    }
    let manifest = manifest
        .map(|bytes| {
            // The same rule as every JSON body: no NUL in any text.
            shopeezy_common::extract::refuse_nul_in_json(&bytes)?;
            serde_json::from_slice::<Manifest>(&bytes)
                .map_err(|e| Error::InvalidManifest(e.to_string()))
        })
        .transpose()?;
    match (manifest, component) {
        (Some(m), Some(c)) => Ok((m, c)),
        _ => Err(Error::InvalidBody(
            "send a multipart body with a `manifest` part and a `component` part".into(),
        )),
    }
}

/// Installs a plugin: a seller's runs on that seller's lines, an admin's on
/// the whole cart. The component is compiled and checked against the hook's
/// world now: anything else is 422 `invalid_component` with the reason.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins", security(("bearer" = ["seller", "admin"])),
    request_body(content_type = "multipart/form-data", description = "`manifest`: JSON `{name, hook, priority?, failure_policy?, config?}`; `component`: the .wasm"),
    responses(
        (status = 201, body = Plugin),
        (status = 403, body = shopeezy_common::Problem),
        (status = 409, body = shopeezy_common::Problem, description = "`plugin_name_taken`"),
        (status = 422, body = shopeezy_common::Problem, description = "`invalid_component` with `reason`, `invalid_manifest`"),
    ))]
async fn install(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    form: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<impl IntoResponse> {
    // A body that is not multipart is a problem like any other bad body.
    let form = form.map_err(|e| Error::UnreadableBody(e.body_text()))?;
    let (manifest, bytes) = read_upload(form).await?;
    let new = NewPlugin {
        name: parse_name(&manifest.name)?,
        hook: manifest.hook,
        seller_id: (!caller.is_admin()).then_some(caller.id),
        priority: parse_priority(manifest.priority.unwrap_or(100))?,
        failure_policy: manifest.failure_policy.unwrap_or_default(),
        config: parse_config(manifest.config.unwrap_or_else(|| serde_json::json!({})))?,
    };
    let registry = state.pipeline.registry();
    let (_, sha) = registry
        .compile(new.hook, bytes.clone())
        .await
        .map_err(Error::InvalidComponent)?;
    let plugin = registry.install(new, &bytes, &sha).await?;
    tracing::info!(plugin = %plugin.name, id = %plugin.id, by = %caller.id, "plugin installed");
    let location = format!("/v1/plugins/{}", plugin.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(plugin),
    ))
}

/// The plugin if the caller may manage it: its seller, or an admin. Anyone
/// else gets 404, as if it did not exist.
async fn managed(state: &AppState, caller: &Caller, id: Uuid) -> Result<Plugin> {
    match state.pipeline.registry().get(id).await? {
        Some(p) if caller.is_admin() || p.seller() == Some(caller.id) => Ok(p),
        _ => Err(Error::NotFound("plugin")),
    }
}

/// Paging of the plugin list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (1–100, default 20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// The caller's plugins (an admin: all of them).
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", security(("bearer" = ["seller", "admin"])), params(ListQuery),
    responses((status = 200, body = Page<Plugin>), (status = 403, body = shopeezy_common::Problem)))]
async fn list_plugins(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Plugin>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after: Option<Uuid> = page.cursor()?;
    let seller = (!caller.is_admin()).then_some(caller.id);
    let rows = state
        .pipeline
        .registry()
        .list(seller, after, limit + 1)
        .await?;
    Ok(Json(Page::from_rows(rows, limit, |p: &Plugin| p.id)))
}

/// One plugin.
#[utoipa::path(get, path = "/v1/plugins/{id}", tag = "plugins", security(("bearer" = ["seller", "admin"])),
    responses((status = 200, body = Plugin), (status = 404, body = shopeezy_common::Problem)))]
async fn get_plugin(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
) -> Result<Json<Plugin>> {
    Ok(Json(managed(&state, &caller, id).await?))
}

/// Setting changes; absent members are kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlugin {
    enabled: Option<bool>,
    priority: Option<i32>,
    failure_policy: Option<FailurePolicy>,
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
}

/// Changes a plugin's settings; in force for the next request on every replica.
#[utoipa::path(patch, path = "/v1/plugins/{id}", tag = "plugins", security(("bearer" = ["seller", "admin"])), request_body = UpdatePlugin,
    responses((status = 200, body = Plugin), (status = 404, body = shopeezy_common::Problem)))]
async fn update_plugin(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdatePlugin>,
) -> Result<Json<Plugin>> {
    let settings = Settings {
        enabled: body.enabled,
        priority: body.priority.map(parse_priority).transpose()?,
        failure_policy: body.failure_policy,
        config: body.config.map(parse_config).transpose()?,
    };
    managed(&state, &caller, id).await?;
    Ok(Json(
        state
            .pipeline
            .registry()
            .update(id, settings)
            .await?
            .ok_or_else(|| Error::NotFound("plugin"))?,
    ))
}

/// Uploads a new version (the raw `.wasm` as the body, or a multipart
/// `component` part); swapped in atomically.
#[utoipa::path(put, path = "/v1/plugins/{id}/component", tag = "plugins", security(("bearer" = ["seller", "admin"])),
    request_body(content_type = "application/wasm", description = "the component"),
    responses(
        (status = 200, body = Plugin),
        (status = 404, body = shopeezy_common::Problem),
        (status = 422, body = shopeezy_common::Problem, description = "`invalid_component` with `reason`"),
    ))]
async fn replace_component(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
    request: Request,
) -> Result<Json<Plugin>> {
    // The (bounded) body is read before anything is refused, so the client
    // gets the answer rather than a connection reset mid-upload.
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let bytes = if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| Error::UnreadableBody(e.body_text()))?;
        let mut found = None;
        while let Some(field) = form.next_field().await.map_err(multipart_problem)? {
            if field.name() == Some("component") {
                found = Some(field.bytes().await.map_err(multipart_problem)?.to_vec());
            }
        }
        found.ok_or_else(|| Error::InvalidBody("send a `component` part".into()))?
    } else {
        let RawBody(body) = RawBody::from_request(request, &state).await?;
        body.to_vec()
    };
    let plugin = managed(&state, &caller, id).await?;
    let registry = state.pipeline.registry();
    let (_, sha) = registry
        .compile(plugin.hook, bytes.clone())
        .await
        .map_err(Error::InvalidComponent)?;
    let updated = registry
        .replace_component(id, &bytes, &sha)
        .await?
        .ok_or_else(|| Error::NotFound("plugin"))?;
    tracing::info!(plugin = %updated.name, version = updated.version, "plugin component replaced");
    Ok(Json(updated))
}

/// Uninstalls a plugin.
#[utoipa::path(delete, path = "/v1/plugins/{id}", tag = "plugins", security(("bearer" = ["seller", "admin"])),
    responses((status = 204), (status = 404, body = shopeezy_common::Problem)))]
async fn delete_plugin(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    managed(&state, &caller, id).await?;
    if !state.pipeline.registry().delete(id).await? {
        return Err(Error::NotFound("plugin"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A dry run's input.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// The sample cart, shaped like the plugin's input.
    cart: SampleCart,
}

/// Runs the plugin once on a sample cart, exactly as checkout would (same
/// limits): its output or failure, fuel, time, peak memory and logs, each
/// beside the limit it ran under. A dry run is not counted in the plugin's
/// statistics (`GET /v1/plugins/{id}/stats`). The
/// sample is held to a cart's limits (lines, quantities, prices, codes,
/// tags, attributes, config), so it buys no more fuel or time than a real
/// cart; and a merchant runs at most a few dry runs at once (429 with
/// `Retry-After` beyond), since each is CPU work on the merchant's own input.
#[utoipa::path(post, path = "/v1/plugins/{id}/dry-run", tag = "plugins", security(("bearer" = ["seller", "admin"])), request_body = DryRun,
    responses(
        (status = 200, body = Report),
        (status = 404, body = shopeezy_common::Problem),
        (status = 422, body = shopeezy_common::Problem, description = "`validation_failed`: the sample breaks a cart's limits"),
        (status = 429, body = shopeezy_common::Problem, description = "`too_many_dry_runs`, with `Retry-After`"),
    ))]
async fn dry_run(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
    Json(body): Json<DryRun>,
) -> Result<Json<Report>> {
    let plugin = managed(&state, &caller, id).await?;
    check_sample(
        &body.cart,
        state.pipeline.registry().runtime().limits.cart_lines,
    )?;
    let registry = state.pipeline.registry().clone();
    let slots = registry.runtime().dry_runs.clone();
    let slot = slots
        .take(caller.id)
        .ok_or_else(|| Error::TooManyDryRuns(slots.per_merchant()))?;
    let compiled = registry.compiled(&plugin).await?;
    let input = body.cart.to_input(
        &plugin.config.to_string(),
        chrono::Utc::now().timestamp_millis(),
    );
    let report = tokio::task::spawn_blocking(move || {
        // The slot is held until the CPU work ends, also when the client
        // has gone away in the meantime.
        let _slot = slot;
        let runtime = registry.runtime();
        Report::new(
            runtime.call(&compiled, &input),
            &runtime.limits,
            input.lines.len(),
        )
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?;
    Ok(Json(report))
}

/// The plugin's calls as this host replica counted them since `since`:
/// how many, how many failed and the latest failures (newest first, at most
/// 10), and the median and 99th-percentile call time over the latest (at
/// most 1,000) calls. Counted from the host's own measurements of every
/// cart view and checkout that ran the plugin; dry runs are not counted.
/// The figures are in memory and per replica, from when this replica
/// started counting the plugin (its start, or the plugin's install): behind
/// a load balancer each replica answers its own share, and a restart starts
/// them again.
#[utoipa::path(get, path = "/v1/plugins/{id}/stats", tag = "plugins", security(("bearer" = ["seller", "admin"])),
    responses((status = 200, body = StatsReport), (status = 404, body = shopeezy_common::Problem)))]
async fn plugin_stats(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
) -> Result<Json<StatsReport>> {
    let plugin = managed(&state, &caller, id).await?;
    Ok(Json(state.pipeline.registry().stats().report(plugin.id)))
}

/// Refuses a sample a cart could not be: more lines than a cart may hold
/// (`max_lines`), a quantity or price out of a cart's range, more codes
/// than a cart holds, tags or attributes a product could not have, or a
/// config larger than a plugin's.
fn check_sample(cart: &SampleCart, max_lines: usize) -> Result<()> {
    if cart.lines.len() > max_lines {
        return Err(Error::invalid(
            "cart.lines",
            format!(
                "has {} lines; a cart has at most {max_lines}",
                cart.lines.len()
            ),
        ));
    }
    for line in &cart.lines {
        if !(1..=MAX_QUANTITY).contains(&i64::from(line.quantity)) {
            return Err(Error::invalid(
                "cart.lines.quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
        }
        if !(0..=MAX_PRICE).contains(&line.unit_price) {
            return Err(Error::invalid(
                "cart.lines.unit_price",
                format!("must be an integer of minor units between 0 and {MAX_PRICE}"),
            ));
        }
        let id_ok = |s: &str| s.len() <= 64;
        if !id_ok(&line.product_id) || !id_ok(&line.seller_id) || !id_ok(&line.sku) {
            return Err(Error::invalid(
                "cart.lines",
                "a product_id, seller_id or sku is longer than 64 bytes",
            ));
        }
        parse_tags(&line.tags)?;
        parse_attributes(&line.attributes)?;
    }
    if cart.codes.len() > MAX_CODES {
        return Err(Error::invalid(
            "cart.codes",
            format!("a cart holds at most {MAX_CODES} codes"),
        ));
    }
    for code in &cart.codes {
        parse_code(code)?;
    }
    if let Some(config) = &cart.config {
        parse_config(config.clone())?;
    }
    Ok(())
}

/// Most codes a sample may hold: as many as a cart.
const MAX_CODES: usize = crate::domain::MAX_CODES as usize;
