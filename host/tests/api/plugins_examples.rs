//! The example plugins change the cart view and the charged order as their
//! READMEs say, and the pipeline runs pricing before promotions and each
//! hook's plugins by priority.

use serde_json::{Value, json};

use crate::helpers::{Backend, id_of, spawn_app};
use crate::plugin_helpers::{
    assert_charged_as_shown, assert_ran, component, components, labels, line_of, violations_with,
};

every_backend!(
    volume_pricing_lowers_the_unit_price_at_a_tier,
    attribute_sale_discounts_the_lines_on_sale,
    promo_codes_apply_only_once_entered,
    a_first_order_code_stops_once_an_order_is_placed,
    purchase_limits_block_checkout_with_the_violations,
    pricing_runs_before_promotions_and_each_hook_by_priority,
);

async fn volume_pricing_lowers_the_unit_price_at_a_tier(backend: Backend) {
    let Some(wasm) = component("volume_pricing") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let mug = app
        .product_with(&seller, "Mug", 1_999, 500, &[], json!({}))
        .await;
    let plate = app
        .product_with(&seller, "Plate", 1_000, 500, &["bulk"], json!({}))
        .await;
    let (mug_id, plate_id) = (id_of(&mug), id_of(&plate));
    let plugin = app
        .install_plugin(
            &app.admin,
            "volume",
            "pricing",
            &wasm,
            json!({"config": {
                "tiers": [{"min_quantity": 10, "percent_off": 5}, {"min_quantity": 50, "percent_off": 12}],
                "skus": [mug["sku"]],
            }}),
        )
        .await;
    assert_eq!(plugin["hook"], "pricing");
    assert_eq!(plugin["version"], 1);
    assert_eq!(plugin["scope"], json!({"kind": "platform"}));
    assert_eq!(plugin["failure_policy"], "closed");
    assert_eq!(plugin["enabled"], true);
    assert_eq!(plugin["size"], wasm.len());

    let alice = app.customer().await;
    // Below the first tier, and a line the plugin does not select: catalog prices.
    app.put_item(&alice, mug_id, 9).await.expect(200);
    app.put_item(&alice, plate_id, 20).await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(line_of(&cart, mug_id)["unit_price"], 1_999);
    assert_eq!(line_of(&cart, plate_id)["unit_price"], 1_000);

    // 12 mugs reach the 5 % tier: 19.99 − 0.99 (0.9995 rounded down) = 19.00.
    app.put_item(&alice, mug_id, 12).await.expect(200);
    let cart = app.cart_view(&alice).await;
    let line = line_of(&cart, mug_id);
    assert_eq!(line["unit_price"], 1_900, "{cart}");
    assert_eq!(line["line_total"], 12 * 1_900);
    assert_eq!(
        line["adjustments"],
        json!([]),
        "a price change is not a discount"
    );
    assert_eq!(line_of(&cart, plate_id)["unit_price"], 1_000);
    assert_eq!(cart["subtotal"], 12 * 1_900 + 20 * 1_000);
    assert_eq!(cart["discount_total"], 0);
    assert_eq!(cart["total"], 12 * 1_900 + 20 * 1_000);

    // 60 mugs reach the 12 % tier: 19.99 − 2.39 = 17.60.
    app.put_item(&alice, mug_id, 60).await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(line_of(&cart, mug_id)["unit_price"], 1_760, "{cart}");

    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_eq!(order["total"], 60 * 1_760 + 20 * 1_000);
    assert_ran(&order, &[(&plugin, "applied")]);
    let stored = app.get_order(&alice, id_of(&order)).await;
    stored.expect(200);
    assert_eq!(stored.body, order, "the stored order is the one answered");
}

async fn attribute_sale_discounts_the_lines_on_sale(backend: Backend) {
    let Some(wasm) = component("attribute_sale") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let shoes = id_of(
        &app.product_with(
            &seller,
            "Shoes",
            2_500,
            50,
            &[],
            json!({"sale_percent": "10"}),
        )
        .await,
    );
    let socks = id_of(
        &app.product_with(&seller, "Socks", 500, 50, &[], json!({}))
            .await,
    );
    let typo = id_of(
        &app.product_with(
            &seller,
            "Hat",
            1_500,
            50,
            &[],
            json!({"sale_percent": "abc"}),
        )
        .await,
    );
    let plugin = app
        .install_plugin(&app.admin, "attribute-sale", "promotion", &wasm, json!({}))
        .await;

    let alice = app.customer().await;
    app.put_item(&alice, shoes, 2).await.expect(200);
    app.put_item(&alice, socks, 3).await.expect(200);
    app.put_item(&alice, typo, 1).await.expect(200);
    let cart = app.cart_view(&alice).await;
    let line = line_of(&cart, shoes);
    assert_eq!(
        line["unit_price"], 2_500,
        "a discount leaves the unit price"
    );
    assert_eq!(
        line["adjustments"],
        json!([{"label": "Sale 10%", "amount": -500, "plugin": "attribute-sale"}]),
        "{cart}"
    );
    assert_eq!(line["line_total"], 4_500);
    assert_eq!(line_of(&cart, socks)["adjustments"], json!([]));
    assert_eq!(
        line_of(&cart, typo)["adjustments"],
        json!([]),
        "a typo is skipped, not a failure"
    );
    assert_eq!(cart["violations"], json!([]), "{cart}");
    let subtotal = 2 * 2_500 + 3 * 500 + 1_500;
    assert_eq!(cart["subtotal"], subtotal);
    assert_eq!(cart["discount_total"], 500);
    assert_eq!(cart["total"], subtotal - 500);

    // The sale ends when the seller removes the attribute... or changes it.
    app.patch_product(
        &seller,
        shoes,
        json!({"attributes": {"sale_percent": "25"}}),
    )
    .await
    .expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(line_of(&cart, shoes)["adjustments"][0]["amount"], -1_250);
    assert_eq!(line_of(&cart, shoes)["adjustments"][0]["label"], "Sale 25%");

    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_eq!(order["discount_total"], 1_250);
    assert_ran(&order, &[(&plugin, "applied")]);
}

async fn promo_codes_apply_only_once_entered(backend: Backend) {
    let Some(wasm) = component("promo_codes") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let beans = id_of(
        &app.product_with(&seller, "Beans", 1_000, 100, &["coffee"], json!({}))
            .await,
    );
    let mug = id_of(
        &app.product_with(&seller, "Mug", 2_000, 100, &[], json!({}))
            .await,
    );
    let plugin = app
        .install_plugin(
            &app.admin,
            "promo-codes",
            "promotion",
            &wasm,
            json!({"config": {"codes": [
                {"code": "SAVE10", "percent": 1000, "min_subtotal": 5000},
                {"code": "FIVEOFF", "fixed": 500},
                {"code": "B2G1", "buy": 2, "get": 1, "tag": "coffee"},
            ]}}),
        )
        .await;

    // Percent off the order, once the subtotal reaches the minimum.
    let alice = app.customer().await;
    app.put_item(&alice, beans, 3).await.expect(200);
    app.put_item(&alice, mug, 1).await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["adjustments"], json!([]), "no code entered: {cart}");
    assert_eq!(cart["total"], 5_000);
    let entered = app.add_code(&alice, "save10").await;
    entered.expect(200);
    let cart = entered.body;
    assert_eq!(cart["codes"], json!(["SAVE10"]));
    assert_eq!(
        cart["adjustments"],
        json!([{"label": "SAVE10: 10% off", "amount": -500, "code": "SAVE10", "plugin": "promo-codes"}]),
        "{cart}"
    );
    assert_eq!(cart["discount_total"], 500);
    assert_eq!(cart["total"], 4_500);
    assert_eq!(cart, app.cart_view(&alice).await, "the view is stable");
    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_eq!(order["total"], 4_500);
    assert_ran(&order, &[(&plugin, "applied")]);

    // Below the minimum the code gives nothing; a fixed code gives its amount.
    let bob = app.customer().await;
    app.put_item(&bob, mug, 1).await.expect(200);
    let cart = app.add_code(&bob, "SAVE10").await;
    cart.expect(200);
    assert_eq!(cart.body["adjustments"], json!([]), "{}", cart.body);
    assert_eq!(cart.body["total"], 2_000);
    let cart = app.add_code(&bob, "FIVEOFF").await;
    cart.expect(200);
    let cart = cart.body;
    assert_eq!(
        cart["adjustments"],
        json!([{"label": "FIVEOFF: 5.00 USD off", "amount": -500, "code": "FIVEOFF", "plugin": "promo-codes"}]),
        "{cart}"
    );
    assert_eq!(cart["total"], 1_500);
    let order = app.place_order(&bob).await;
    assert_charged_as_shown(&order, &cart);
    assert_eq!(order["total"], 1_500);

    // Buy two, get one free: 6 bags of coffee give 2 free bags, on the line.
    let carol = app.customer().await;
    app.put_item(&carol, beans, 6).await.expect(200);
    app.put_item(&carol, mug, 1).await.expect(200);
    assert_eq!(
        line_of(&app.cart_view(&carol).await, beans)["adjustments"],
        json!([])
    );
    let cart = app.add_code(&carol, "B2G1").await;
    cart.expect(200);
    let cart = cart.body;
    let line = line_of(&cart, beans);
    assert_eq!(
        line["adjustments"],
        json!([{"label": "B2G1: buy 2, get 1 free", "amount": -2_000, "code": "B2G1", "plugin": "promo-codes"}]),
        "{cart}"
    );
    assert_eq!(line["line_total"], 4_000);
    assert_eq!(line_of(&cart, mug)["adjustments"], json!([]), "not coffee");
    assert_eq!(cart["total"], 6_000);
    // Removing the code removes the discount.
    let removed = app.remove_code(&carol, "B2G1").await;
    removed.expect(200);
    assert_eq!(removed.body["total"], 8_000);
    let cart = app.add_code(&carol, "B2G1").await.body.clone();
    let order = app.place_order(&carol).await;
    assert_charged_as_shown(&order, &cart);
    assert_eq!(order["total"], 6_000);
}

/// Plugins see how many orders the customer placed (`order-count`), kept by
/// the checkout itself: a first-order code works until the first order.
async fn a_first_order_code_stops_once_an_order_is_placed(backend: Backend) {
    let Some(wasm) = component("promo_codes") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let mug = id_of(
        &app.product_with(&seller, "Mug", 2_000, 100, &[], json!({}))
            .await,
    );
    app.install_plugin(
        &app.admin,
        "promo-codes",
        "promotion",
        &wasm,
        json!({"config": {"codes": [{"code": "WELCOME", "fixed": 500, "first_order_only": true}]}}),
    )
    .await;

    let alice = app.customer().await;
    let bob = app.customer().await;
    for shopper in [&alice, &bob] {
        app.put_item(shopper, mug, 1).await.expect(200);
        app.add_code(shopper, "WELCOME").await.expect(200);
    }
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["total"], 1_500, "a first order: {cart}");
    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);

    // Alice has placed an order now; Bob has not.
    app.put_item(&alice, mug, 1).await.expect(200);
    app.add_code(&alice, "WELCOME").await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["adjustments"], json!([]), "a second order: {cart}");
    assert_eq!(cart["total"], 2_000);
    let order = app.place_order(&alice).await;
    assert_eq!(order["total"], 2_000);
    assert_eq!(app.cart_view(&bob).await["total"], 1_500);
}

async fn purchase_limits_block_checkout_with_the_violations(backend: Backend) {
    let Some(wasm) = component("purchase_limits") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let mug = app
        .product_with(&seller, "Mug", 1_000, 100, &[], json!({}))
        .await;
    let mug_id = id_of(&mug);
    let knife = id_of(
        &app.product_with(&seller, "Knife", 3_000, 100, &["restricted"], json!({}))
            .await,
    );
    let plugin = app
        .install_plugin(
            &app.admin,
            "purchase-limits",
            "validation",
            &wasm,
            json!({"config": {"max_per_product": 5, "blocked_tags": ["restricted"]}}),
        )
        .await;

    let alice = app.customer().await;
    app.put_item(&alice, mug_id, 6).await.expect(200);
    app.put_item(&alice, knife, 1).await.expect(200);
    let cart = app.cart_view(&alice).await;
    let too_many = violations_with(&cart, "max_quantity_per_product");
    assert_eq!(too_many.len(), 1, "{cart}");
    assert_eq!(too_many[0]["product_id"], mug_id.to_string());
    assert_eq!(too_many[0]["plugin"], "purchase-limits");
    assert_eq!(
        too_many[0]["message"],
        format!(
            "At most 5 of {} per order; the cart has 6",
            mug["sku"].as_str().unwrap()
        )
    );
    let blocked = violations_with(&cart, "blocked_product");
    assert_eq!(blocked.len(), 1, "{cart}");
    assert_eq!(blocked[0]["product_id"], knife.to_string());

    let refused = app.checkout(&alice, Some("limits-1"), None).await;
    refused.expect_problem(422, "checkout_blocked");
    assert_eq!(
        refused.body["violations"], cart["violations"],
        "checkout names the violations the cart view shows"
    );
    assert_eq!(app.order_rows().await, 0, "nothing is written");
    assert_eq!(app.outbox_rows().await, 0);
    assert_eq!(app.stock_of(mug_id).await, 100);

    // Within the limits, the cart checks out and the order records the plugin.
    app.put_item(&alice, mug_id, 5).await.expect(200);
    app.remove_item(&alice, knife).await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["violations"], json!([]), "{cart}");
    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_ran(&order, &[(&plugin, "applied")]);
    assert_eq!(app.stock_of(mug_id).await, 95);
}

/// Catalog prices → pricing plugins (by priority) → promotion plugins (by
/// priority): a promotion's percent is of the price pricing set, and a
/// pricing plugin runs first whatever its priority number.
async fn pricing_runs_before_promotions_and_each_hook_by_priority(backend: Backend) {
    let Some([volume, sale]) = components(["volume_pricing", "attribute_sale"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let lamp = id_of(
        &app.product_with(
            &seller,
            "Lamp",
            2_000,
            100,
            &[],
            json!({"sale_percent": "10", "member_percent": "5"}),
        )
        .await,
    );
    // Installed in the opposite order of their priorities, so running by
    // installation order would show.
    let member = app
        .install_plugin(
            &app.admin,
            "member-sale",
            "promotion",
            &sale,
            json!({"priority": 50, "config": {"attribute": "member_percent", "label": "Members {percent}%"}}),
        )
        .await;
    let seasonal = app
        .install_plugin(
            &app.admin,
            "seasonal-sale",
            "promotion",
            &sale,
            json!({"priority": 10}),
        )
        .await;
    let tiers = app
        .install_plugin(
            &app.admin,
            "tiers",
            "pricing",
            &volume,
            json!({"priority": 500, "config": {"tiers": [{"min_quantity": 10, "percent_off": 10}]}}),
        )
        .await;

    let alice = app.customer().await;
    app.put_item(&alice, lamp, 10).await.expect(200);
    let cart = app.cart_view(&alice).await;
    let line = line_of(&cart, lamp);
    // 20.00 − 10 % = 18.00 a unit; 180.00 a line; the sales are of 180.00.
    assert_eq!(line["unit_price"], 1_800, "{cart}");
    assert_eq!(
        line["adjustments"],
        json!([
            {"label": "Sale 10%", "amount": -1_800, "plugin": "seasonal-sale"},
            {"label": "Members 5%", "amount": -900, "plugin": "member-sale"},
        ]),
        "promotions in priority order, each on the priced line: {cart}"
    );
    assert_eq!(cart["subtotal"], 18_000);
    assert_eq!(cart["discount_total"], 2_700);
    assert_eq!(cart["total"], 15_300);

    // Swapping the priorities swaps the order of the adjustments.
    app.patch_plugin(&app.admin, id_of(&member), json!({"priority": 1}))
        .await
        .expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(
        labels(&line_of(&cart, lamp)["adjustments"]),
        ["Members 5%", "Sale 10%"],
        "{cart}"
    );

    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    let member_now: Value = app.get_plugin(&app.admin, id_of(&member)).await.body;
    assert_ran(
        &order,
        &[
            (&tiers, "applied"),
            (&member_now, "applied"),
            (&seasonal, "applied"),
        ],
    );
}
