//! Seller scoping: a seller's plugin sees and changes only that seller's
//! lines; another seller cannot see or manage it; a customer cannot install
//! one; an admin sees and manages every plugin.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, id_of, send, spawn_app};
use crate::plugin_helpers::{
    assert_charged_as_shown, assert_ran, components, line_of, manifest, upload_form,
};

every_backend!(
    a_sellers_promotion_touches_only_its_own_lines,
    a_sellers_order_discounts_never_take_more_than_its_lines,
    a_seller_cannot_see_or_manage_another_sellers_plugin,
);

async fn a_sellers_promotion_touches_only_its_own_lines(backend: Backend) {
    let Some([sale, codes, limits]) =
        components(["attribute_sale", "promo_codes", "purchase_limits"])
    else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (seller_a, seller_b) = (app.seller().await, app.seller().await);
    let on_sale = json!({"sale_percent": "10"});
    // B's product first: carts list lines by product id, so A's line is the
    // cart's second line but the first its plugins see.
    let b = id_of(
        &app.product_with(&seller_b, "B's lamp", 3_000, 50, &[], on_sale.clone())
            .await,
    );
    let a = id_of(
        &app.product_with(&seller_a, "A's lamp", 1_000, 50, &[], on_sale)
            .await,
    );
    let a_sale = app
        .install_plugin(&seller_a, "my-sale", "promotion", &sale, json!({}))
        .await;
    assert_eq!(
        a_sale["scope"],
        json!({"kind": "seller", "seller_id": seller_a.id})
    );
    let a_codes = app
        .install_plugin(
            &seller_a,
            "my-codes",
            "promotion",
            &codes,
            json!({"config": {"codes": [{"code": "ASHOP20", "percent": 2000}]}}),
        )
        .await;

    let alice = app.customer().await;
    app.put_item(&alice, a, 2).await.expect(200);
    app.put_item(&alice, b, 1).await.expect(200);
    let cart = app.add_code(&alice, "ASHOP20").await;
    cart.expect(200);
    let cart = cart.body;
    assert_eq!(
        line_of(&cart, a)["adjustments"],
        json!([{"label": "Sale 10%", "amount": -200, "plugin": "my-sale"}]),
        "{cart}"
    );
    assert_eq!(
        line_of(&cart, b)["adjustments"],
        json!([]),
        "seller B's line, on sale too, is not A's to discount: {cart}"
    );
    // 20 % of A's lines (20.00) only, not of the whole cart (50.00).
    assert_eq!(
        cart["adjustments"],
        json!([{"label": "ASHOP20: 20% off", "amount": -400, "code": "ASHOP20", "plugin": "my-codes"}]),
        "{cart}"
    );
    assert_eq!(cart["subtotal"], 5_000);
    assert_eq!(cart["total"], 5_000 - 200 - 400);

    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_ran(&order, &[(&a_sale, "applied"), (&a_codes, "applied")]);

    // A cart with only B's lines does not run A's plugins at all.
    let bob = app.customer().await;
    app.put_item(&bob, b, 1).await.expect(200);
    app.add_code(&bob, "ASHOP20").await.expect(200);
    let cart = app.cart_view(&bob).await;
    assert_eq!(cart["discount_total"], 0, "{cart}");
    let order = app.place_order(&bob).await;
    assert_charged_as_shown(&order, &cart);
    assert_eq!(order["plugins"], json!([]), "{order}");

    // A seller's validation finds only what is wrong with its own lines.
    app.install_plugin(
        &seller_a,
        "limits",
        "validation",
        &limits,
        json!({"config": {"max_per_product": 1}}),
    )
    .await;
    let carol = app.customer().await;
    app.put_item(&carol, b, 2).await.expect(200);
    app.put_item(&carol, a, 2).await.expect(200);
    let cart = app.cart_view(&carol).await;
    let violations = cart["violations"].as_array().unwrap();
    assert_eq!(
        violations.len(),
        1,
        "only A's line breaks A's limit: {cart}"
    );
    assert_eq!(violations[0]["product_id"], a.to_string(), "{cart}");
    assert_eq!(violations[0]["plugin"], "limits");
    app.checkout(&carol, Some("limits"), None)
        .await
        .expect_problem(422, "checkout_blocked");
    app.put_item(&carol, a, 1).await.expect(200);
    app.place_order(&carol).await;
}

async fn a_seller_cannot_see_or_manage_another_sellers_plugin(backend: Backend) {
    let Some([sale]) = components(["attribute_sale"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (seller_a, seller_b) = (app.seller().await, app.seller().await);
    let a_plugin = app
        .install_plugin(&seller_a, "sale", "promotion", &sale, json!({}))
        .await;
    let a_id = id_of(&a_plugin);
    // Names are unique per scope: B may use the same one.
    let b_plugin = app
        .install_plugin(&seller_b, "sale", "promotion", &sale, json!({}))
        .await;
    let platform = app
        .install_plugin(&app.admin, "sale", "promotion", &sale, json!({}))
        .await;
    // ...but not twice in one scope.
    app.upload_plugin(&seller_a, &manifest("sale", "promotion", json!({})), &sale)
        .await
        .expect_problem(409, "plugin_name_taken");

    // B gets 404 for everything about A's plugin, as if it did not exist.
    app.get_plugin(&seller_b, a_id)
        .await
        .expect_problem(404, "not_found");
    app.patch_plugin(&seller_b, a_id, json!({"enabled": false}))
        .await
        .expect_problem(404, "not_found");
    app.replace_component(&seller_b, a_id, &sale)
        .await
        .expect_problem(404, "not_found");
    app.dry_run(
        &seller_b,
        a_id,
        json!({"lines": [{"quantity": 1, "unit_price": 100}]}),
    )
    .await
    .expect_problem(404, "not_found");
    app.delete_plugin(&seller_b, a_id)
        .await
        .expect_problem(404, "not_found");
    assert_eq!(app.listed_plugins(&seller_b).await, vec![id_of(&b_plugin)]);

    // A's plugin is untouched.
    let still = app.get_plugin(&seller_a, a_id).await;
    still.expect(200);
    assert_eq!(still.body, a_plugin);
    assert_eq!(app.listed_plugins(&seller_a).await, vec![a_id]);

    // A customer cannot install or list plugins. (Refused before the body is
    // read: a small one, so the answer is not lost to a reset mid-upload.)
    let tiny = b"\0asm\x01\0\0\0";
    let customer = app.customer().await;
    app.upload_plugin(&customer, &manifest("mine", "promotion", json!({})), tiny)
        .await
        .expect_problem(403, "forbidden");
    app.list_plugins(&customer)
        .await
        .expect_problem(403, "forbidden");
    app.get_plugin(&customer, a_id)
        .await
        .expect_problem(403, "forbidden");
    // Nor can anyone signed out.
    let anonymous = send(
        app.host(Method::POST, "/v1/plugins")
            .multipart(upload_form(r#"{"name":"x","hook":"promotion"}"#, tiny)),
    )
    .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    // The admin sees every plugin and may manage a seller's.
    let mut all = app.listed_plugins(&app.admin).await;
    all.sort();
    let mut expected = vec![a_id, id_of(&b_plugin), id_of(&platform)];
    expected.sort();
    assert_eq!(all, expected);
    app.get_plugin(&app.admin, a_id).await.expect(200);
    let patched = app
        .patch_plugin(&app.admin, a_id, json!({"enabled": false}))
        .await;
    patched.expect(200);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["scope"], a_plugin["scope"], "still A's");
    app.dry_run(
        &app.admin,
        a_id,
        json!({"lines": [{"quantity": 1, "unit_price": 100, "attributes": {"sale_percent": "50"}}]}),
    )
    .await
    .expect(200);
    app.delete_plugin(&app.admin, a_id).await.expect(204);
    app.get_plugin(&seller_a, a_id)
        .await
        .expect_problem(404, "not_found");
    assert!(app.listed_plugins(&seller_a).await.is_empty());
}

/// Two order discounts of one seller's plugins stack at most to that
/// seller's lines: what is left of "the order" for a seller's plugin is what
/// is left of its own lines, never another seller's.
async fn a_sellers_order_discounts_never_take_more_than_its_lines(backend: Backend) {
    let Some([codes]) = components(["promo_codes"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (seller_a, seller_b) = (app.seller().await, app.seller().await);
    let a = id_of(&app.product(&seller_a, "A's cup", 1_000, 50).await);
    let b = id_of(&app.product(&seller_b, "B's kettle", 3_000, 50).await);
    let mut plugins = Vec::new();
    for (name, code, priority) in [("codes-1", "AONE", 1), ("codes-2", "ATWO", 2)] {
        plugins.push(
            app.install_plugin(
                &seller_a,
                name,
                "promotion",
                &codes,
                json!({"priority": priority, "config": {"codes": [{"code": code, "fixed": 800}]}}),
            )
            .await,
        );
    }

    let alice = app.customer().await;
    app.put_item(&alice, a, 1).await.expect(200);
    app.put_item(&alice, b, 1).await.expect(200);
    app.add_code(&alice, "AONE").await.expect(200);
    let cart = app.add_code(&alice, "ATWO").await;
    cart.expect(200);
    let cart = cart.body;
    let amounts: Vec<&Value> = cart["adjustments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["amount"])
        .collect();
    assert_eq!(
        amounts,
        [&json!(-800), &json!(-200)],
        "the second discount gets only what is left of A's 10.00: {cart}"
    );
    assert_eq!(cart["discount_total"], 1_000, "{cart}");
    assert_eq!(
        cart["total"], 3_000,
        "B's kettle is charged in full: {cart}"
    );

    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_ran(
        &order,
        &[(&plugins[0], "applied"), (&plugins[1], "applied")],
    );
}
