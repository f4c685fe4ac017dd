//! The cart use case: a shopper's cart, always answered priced by the same
//! pipeline as checkout, and the rules of changing it (stock, one currency,
//! a bound on lines and codes).

use chrono::Utc;
use shopeezy_common::db::Db;
use uuid::Uuid;

use crate::domain::{Caller, Cart, Line, MAX_CODES, PricedCart, Quantity};
use crate::error::{Error, Result, Shortage};
use crate::pricing::{Customer, Pipeline};
use crate::store::{carts, usage};

/// The carts, over the host's database and the pricing pipeline.
#[derive(Debug, Clone)]
pub struct Carts {
    db: Db,
    pipeline: Pipeline,
}

impl Carts {
    /// The carts of `db`, priced by `pipeline`.
    pub fn new(db: Db, pipeline: Pipeline) -> Self {
        Self { db, pipeline }
    }

    /// The caller's cart, priced.
    pub async fn priced(&self, caller: &Caller) -> Result<PricedCart> {
        let (cart, order_count) = carts::get(&self.db, caller.id).await?;
        self.price(caller, cart, order_count).await
    }

    /// Prices `cart` for the caller, who placed `order_count` orders.
    async fn price(&self, caller: &Caller, cart: Cart, order_count: i64) -> Result<PricedCart> {
        let customer = Customer {
            id: caller.id,
            role: caller.role,
            order_count,
        };
        let priced = self.pipeline.price(&cart, &customer, Utc::now()).await?;
        // Show what checkout would charge: a discount whose limit is used up is gone.
        let exhausted = usage::exhausted(&self.db, &priced, caller.id).await?;
        if exhausted.is_empty() {
            Ok(priced)
        } else {
            priced.without(&exhausted)
        }
    }

    /// Empties the cart (lines and codes); the empty cart, priced.
    pub async fn clear(&self, caller: &Caller) -> Result<PricedCart> {
        carts::clear(&self.db, caller.id).await?;
        self.priced(caller).await
    }

    /// Sets a line's quantity (`None` removes the line, if there is one);
    /// the cart, priced. 404 for a product not on sale, 409
    /// `insufficient_stock` when its stock is short now, `currency_mismatch`
    /// when the cart is in another currency, `cart_full` when a new line
    /// would exceed a cart's bound.
    pub async fn set_quantity(
        &self,
        caller: &Caller,
        product_id: Uuid,
        quantity: Option<Quantity>,
    ) -> Result<PricedCart> {
        let Some(quantity) = quantity else {
            carts::remove(&self.db, caller.id, product_id).await?;
            return self.priced(caller).await;
        };
        // The cart as it is (with its products and the count of orders) and
        // the product when it is not in the cart yet: one read.
        let (mut cart, order_count, wanted) =
            carts::get_with_product(&self.db, caller.id, product_id).await?;
        let product = match cart.lines.iter().find(|l| l.product.id == product_id) {
            Some(line) => line.product.clone(),
            None => wanted.ok_or(Error::NotFound("product"))?,
        };
        if quantity.get() > product.stock {
            return Err(Error::InsufficientStock(Shortage {
                product_id: product.id,
                requested: quantity.get(),
                available: product.stock,
            }));
        }
        if let Some(other) = cart
            .lines
            .iter()
            .find(|l| l.product.currency != product.currency && l.product.id != product.id)
        {
            return Err(Error::CurrencyMismatch {
                cart: other.product.currency.clone(),
                product: product.currency,
            });
        }
        // The pricing of a cart (plugins included) grows with its lines: a cart
        // has a bound like every other input (a racing PUT of the same shopper
        // may add one more).
        let max_lines = self.pipeline.registry().runtime().limits.cart_lines;
        if cart.lines.len() >= max_lines && !cart.lines.iter().any(|l| l.product.id == product_id) {
            return Err(Error::CartFull(max_lines));
        }
        carts::set_quantity(&self.db, caller.id, product_id, quantity.get()).await?;
        // The cart is now what was read with this line set: priced without
        // reading it again.
        match cart
            .lines
            .binary_search_by_key(&product_id, |l| l.product.id)
        {
            Ok(i) => cart.lines[i].quantity = quantity.get(),
            Err(i) => cart.lines.insert(
                i,
                Line {
                    product,
                    quantity: quantity.get(),
                },
            ),
        }
        self.price(caller, cart, order_count).await
    }

    /// Removes a line; the cart, priced. 404 when there is no such line.
    pub async fn remove_item(&self, caller: &Caller, product_id: Uuid) -> Result<PricedCart> {
        if !carts::remove(&self.db, caller.id, product_id).await? {
            return Err(Error::NotFound("cart line"));
        }
        self.priced(caller).await
    }

    /// Enters a (parsed) promotion code; the cart, priced. 409
    /// `too_many_codes` when the cart holds [`MAX_CODES`] others.
    pub async fn add_code(&self, caller: &Caller, code: &str) -> Result<PricedCart> {
        if !carts::add_code(&self.db, caller.id, code).await? {
            return Err(Error::TooManyCodes(MAX_CODES));
        }
        self.priced(caller).await
    }

    /// Removes a (parsed) promotion code; the cart, priced. 404 when it was
    /// not entered.
    pub async fn remove_code(&self, caller: &Caller, code: &str) -> Result<PricedCart> {
        if !carts::remove_code(&self.db, caller.id, code).await? {
            return Err(Error::NotFound("code"));
        }
        self.priced(caller).await
    }
}
