//! Plugins as the registry keeps them: their hook, scope, settings and
//! policy, and the validated values a manifest is made of. What runs them is
//! `plugins::runtime`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The hook a plugin implements: which world its component targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Sets unit prices.
    Pricing,
    /// Adds discounts.
    Promotion,
    /// Blocks checkout.
    Validation,
}

impl Hook {
    /// The hook's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pricing => "pricing",
            Self::Promotion => "promotion",
            Self::Validation => "validation",
        }
    }

    /// The hook of a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pricing" => Some(Self::Pricing),
            "promotion" => Some(Self::Promotion),
            "validation" => Some(Self::Validation),
            _ => None,
        }
    }
}

/// What happens when a plugin fails (trap, limit, invalid output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The cart view shows the failure and checkout answers 503 (default).
    #[default]
    Closed,
    /// The plugin is skipped; the order records that it was.
    Open,
}

impl FailurePolicy {
    /// The policy's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// Whose plugin it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    /// `platform` (installed by an admin: the whole cart) or `seller` (only
    /// that seller's lines).
    pub kind: String,
    /// The seller, for a seller's plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<Uuid>,
}

/// A plugin as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Plugin {
    /// The plugin's id.
    pub id: Uuid,
    /// Its name, unique within its scope.
    pub name: String,
    /// The hook it implements.
    pub hook: Hook,
    /// Whose it is.
    pub scope: Scope,
    /// Its version: 1, then one more for each new component.
    pub version: i64,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: i64,
    /// Order among plugins of the same hook: lower runs first.
    pub priority: i32,
    /// What a failure does.
    pub failure_policy: FailurePolicy,
    /// The merchant's configuration, given to the plugin as JSON text.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Whether it runs.
    pub enabled: bool,
    /// When it was installed (UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

impl Plugin {
    /// The seller whose lines the plugin sees; `None` for a platform plugin.
    pub fn seller(&self) -> Option<Uuid> {
        self.scope.seller_id
    }
}

/// Most bytes of a plugin's config (as JSON text).
pub const MAX_CONFIG_BYTES: usize = 64 << 10;

/// A validated manifest of a new plugin.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// Name.
    pub name: String,
    /// Hook.
    pub hook: Hook,
    /// Seller, or `None` for a platform plugin.
    pub seller_id: Option<Uuid>,
    /// Priority.
    pub priority: i32,
    /// Failure policy.
    pub failure_policy: FailurePolicy,
    /// Config.
    pub config: serde_json::Value,
}

/// Validated setting changes; `None` keeps a setting.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New priority.
    pub priority: Option<i32>,
    /// New failure policy.
    pub failure_policy: Option<FailurePolicy>,
    /// New config.
    pub config: Option<serde_json::Value>,
}

/// A plugin's name: 1–64 characters of `a-z`, `0-9`, `-`, `_`.
pub fn parse_name(raw: &str) -> Result<String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_');
    if raw.is_empty() || raw.len() > 64 || !raw.chars().all(ok) {
        return Err(Error::invalid(
            "name",
            "must be 1 to 64 characters of a-z, 0-9, '-' or '_'",
        ));
    }
    Ok(raw.to_owned())
}

/// A plugin's priority: -10000 to 10000 (lower runs first).
pub fn parse_priority(raw: i32) -> Result<i32> {
    if !(-10_000..=10_000).contains(&raw) {
        return Err(Error::invalid(
            "priority",
            "must be between -10000 and 10000",
        ));
    }
    Ok(raw)
}

/// A plugin's config: any JSON of at most [`MAX_CONFIG_BYTES`] bytes.
pub fn parse_config(raw: serde_json::Value) -> Result<serde_json::Value> {
    if raw.to_string().len() > MAX_CONFIG_BYTES {
        return Err(Error::invalid(
            "config",
            format!("must be at most {MAX_CONFIG_BYTES} bytes of JSON"),
        ));
    }
    Ok(raw)
}
