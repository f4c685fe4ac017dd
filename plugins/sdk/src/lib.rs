//! The guest SDK for Shopeezy plugins: a plugin is a short, typed Rust function.
//!
//! A plugin crate is a `cdylib` built for `wasm32-wasip2`. It implements one
//! hook's trait and exports it with that hook's macro:
//!
//! ```
//! use shopeezy_plugin_sdk::prelude::*;
//!
//! struct HalfPrice;
//!
//! impl PricingPlugin for HalfPrice {
//!     fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
//!         Ok(cart.lines.iter().enumerate()
//!             .map(|(i, line)| PriceChange::new(i, percent_off(line.unit_price, 5_000)))
//!             .collect())
//!     }
//! }
//!
//! export_pricing!(HalfPrice);
//! ```
//!
//! | hook | trait (`prelude`) | export macro | returns |
//! |---|---|---|---|
//! | `pricing` | [`PricingPlugin`](prelude::PricingPlugin) | [`export_pricing!`] | `Vec<PriceChange>` |
//! | `promotion` | [`PromotionPlugin`](prelude::PromotionPlugin) | [`export_promotion!`] | `Vec<Discount>` |
//! | `validation` | [`ValidationPlugin`](prelude::ValidationPlugin) | [`export_validation!`] | `Vec<Violation>` |
//!
//! Everything a plugin needs is in [`prelude`]: the WIT types ([`Cart`],
//! [`Line`], …), the money helpers ([`percent_of`], [`percent_off`],
//! [`line_total`], [`subtotal`], [`format_money`], [`format_percent`]),
//! [`config`] for the merchant's JSON, line lookups ([`attribute`],
//! [`has_tag`], [`line_matches`]), [`utc_ms`] to compare dates with
//! `cart.now_ms`, and [`log`].
//!
//! The outputs have short constructors: [`PriceChange::new`],
//! [`Discount::line`] / [`Discount::order`] (then `.with_code(…)`,
//! `.with_limit(…)`), [`Violation::new`] (then `.on_line(…)`).
//! [`testing`] builds carts for a plugin's native unit tests.
//!
//! The bindings of each world are generated here from the repository's
//! `wit/plugin.wit`, so every plugin built with this SDK matches the contract
//! the host checks at upload.
//!
//! The default feature `bump-alloc` makes the guest's global allocator a
//! bump allocator (see `src/bump.rs`): it never reuses memory, which is sound
//! only because the host gives every call a fresh instance, and it roughly
//! halves the fuel a call uses. `default-features = false` keeps the standard
//! allocator.

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
mod bump;
mod helpers;
pub mod log;
mod outputs;
pub mod testing;

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump::new();

/// Bindings of the `pricing` world; it also defines the shared types.
#[allow(clippy::too_many_arguments)] // the generated canonical-ABI glue
pub mod pricing {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "pricing",
        pub_export_macro: true,
        default_bindings_module: "shopeezy_plugin_sdk::pricing",
        // The promotion and validation types live here too, so that every
        // world shares one `Cart`, `Line`, … and the helpers serve all hooks.
        generate_unused_types: true,
        additional_derives: [Clone, PartialEq, Eq],
    });
}

/// Bindings of the `promotion` world.
#[allow(clippy::too_many_arguments)] // the generated canonical-ABI glue
pub mod promotion {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "promotion",
        pub_export_macro: true,
        default_bindings_module: "shopeezy_plugin_sdk::promotion",
        with: {
            "shopeezy:plugin/types@0.1.0": crate::pricing::shopeezy::plugin::types,
            "shopeezy:plugin/log@0.1.0": crate::pricing::shopeezy::plugin::log,
        },
    });
}

/// Bindings of the `validation` world.
#[allow(clippy::too_many_arguments)] // the generated canonical-ABI glue
pub mod validation {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "validation",
        pub_export_macro: true,
        default_bindings_module: "shopeezy_plugin_sdk::validation",
        with: {
            "shopeezy:plugin/types@0.1.0": crate::pricing::shopeezy::plugin::types,
            "shopeezy:plugin/log@0.1.0": crate::pricing::shopeezy::plugin::log,
        },
    });
}

pub use helpers::{
    BPS_PER_WHOLE, attribute, config, format_money, format_percent, has_any_tag, has_tag,
    line_matches, line_total, percent_of, percent_off, subtotal, utc_ms,
};
pub use pricing::shopeezy::plugin::types::{
    Amount, Cart, Customer, Discount, Line, Money, PriceChange, Target, UsageLimit, Violation,
};

/// Everything a plugin usually needs: `use shopeezy_plugin_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::log;
    pub use crate::pricing::Guest as PricingPlugin;
    pub use crate::promotion::Guest as PromotionPlugin;
    pub use crate::validation::Guest as ValidationPlugin;
    pub use crate::{
        Amount, BPS_PER_WHOLE, Cart, Customer, Discount, Line, Money, PriceChange, Target,
        UsageLimit, Violation, attribute, config, format_money, format_percent, has_any_tag,
        has_tag, line_matches, line_total, percent_of, percent_off, subtotal, utc_ms,
    };
    pub use crate::{export_pricing, export_promotion, export_validation};
}

/// Exports a type implementing [`prelude::PricingPlugin`] as the plugin's
/// `price` function. Use it once, at the top level of the plugin crate.
#[macro_export]
macro_rules! export_pricing {
    ($plugin:ident) => {
        $crate::pricing::export!($plugin with_types_in $crate::pricing);
    };
}

/// Exports a type implementing [`prelude::PromotionPlugin`] as the plugin's
/// `discounts` function. Use it once, at the top level of the plugin crate.
#[macro_export]
macro_rules! export_promotion {
    ($plugin:ident) => {
        $crate::promotion::export!($plugin with_types_in $crate::promotion);
    };
}

/// Exports a type implementing [`prelude::ValidationPlugin`] as the plugin's
/// `validate` function. Use it once, at the top level of the plugin crate.
#[macro_export]
macro_rules! export_validation {
    ($plugin:ident) => {
        $crate::validation::export!($plugin with_types_in $crate::validation);
    };
}
