//! The catalog: sellers list and manage their own products, anyone browses.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, id_of, spawn_app, without_times};

every_backend!(
    pgbouncer:
    a_seller_lists_a_product_anyone_can_find,
    search_filters_and_pages,
    search_takes_wildcards_literally,
    search_ignores_case_beyond_ascii,
    a_new_product_reads_back_as_it_was_answered,
    a_sku_is_unique_per_seller,
    only_the_owner_or_an_admin_manages_a_product,
    customers_cannot_list_products,
    a_deleted_product_leaves_sale_but_not_past_orders,
);

async fn a_seller_lists_a_product_anyone_can_find(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;

    let created = app
        .create_product(
            &seller,
            json!({
                "sku": "TEE-RED-M",
                "name": "  Red T-shirt  ",
                "description": "Soft cotton.\nMachine washable.",
                "price": 1_999,
                "currency": "EUR",
                "stock": 12,
                "tags": ["Shirts", "sale", "shirts"],
                "attributes": {"sale_percent": "10"},
            }),
        )
        .await;

    created.expect(201);
    let product = &created.body;
    let id = created.id();
    assert_eq!(
        created.header("location").map(str::to_owned),
        Some(format!("/v1/products/{id}"))
    );
    assert_eq!(product["seller_id"], seller.id.to_string());
    assert_eq!(product["sku"], "TEE-RED-M");
    assert_eq!(product["name"], "Red T-shirt", "the name is trimmed");
    assert_eq!(product["price"], 1_999);
    assert_eq!(product["currency"], "EUR");
    assert_eq!(product["stock"], 12);
    assert_eq!(
        product["tags"],
        json!(["sale", "shirts"]),
        "tags normalised"
    );
    assert_eq!(product["attributes"], json!({"sale_percent": "10"}));

    // Anyone, signed in or not, finds it.
    let read = app.get_product(id).await;
    read.expect(200);
    assert_eq!(without_times(&read.body), without_times(product));
    assert!(app.listed_ids("").await.contains(&id));

    // The owner changes it; absent members are kept.
    let patched = app
        .patch_product(&seller, id, json!({"price": 1_499, "name": "Red tee"}))
        .await;
    patched.expect(200);
    assert_eq!(patched.body["price"], 1_499);
    assert_eq!(patched.body["name"], "Red tee");
    assert_eq!(patched.body["sku"], "TEE-RED-M");
    assert_eq!(patched.body["stock"], 12);
    let restocked = app.set_stock(&seller, id, 40).await;
    restocked.expect(200);
    assert_eq!(restocked.body["stock"], 40);
    let read = app.get_product(id).await;
    assert_eq!(read.body["price"], 1_499);
    assert_eq!(read.body["stock"], 40);
    assert_eq!(read.body["tags"], json!(["sale", "shirts"]));

    // New tags replace the old ones, in the tag filter too.
    let retagged = app
        .patch_product(&seller, id, json!({"tags": ["Summer"]}))
        .await;
    retagged.expect(200);
    assert_eq!(retagged.body["tags"], json!(["summer"]));
    assert_eq!(app.listed_ids("tag=summer").await, vec![id]);
    assert!(app.listed_ids("tag=sale").await.is_empty());
}

async fn search_filters_and_pages(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.seller().await;
    let ben = app.seller().await;
    let mut anns = Vec::new();
    for (name, tags) in [
        ("Blue Widget", json!(["tools"])),
        ("Green widget deluxe", json!(["tools", "garden"])),
        ("Garden hose", json!(["garden"])),
        ("WIDGETRON 3000", json!([])),
        ("Spanner", json!(["tools"])),
    ] {
        let reply = app
            .create_product(
                &ann,
                json!({"sku": format!("ann-{}", anns.len()), "name": name, "price": 100,
                       "currency": "USD", "stock": 1, "tags": tags}),
            )
            .await;
        reply.expect(201);
        anns.push(reply.id());
    }
    let bens = id_of(&app.product(&ben, "Widget by Ben", 100, 1).await);

    let mut widgets = app.listed_ids("q=wIdGeT").await;
    widgets.sort();
    let mut expected = vec![anns[0], anns[1], anns[3], bens];
    expected.sort();
    assert_eq!(
        widgets, expected,
        "a case-insensitive substring of the name"
    );
    assert!(app.listed_ids("q=nothing-like-this").await.is_empty());

    let mut tools = app.listed_ids("tag=tools").await;
    tools.sort();
    let mut expected = vec![anns[0], anns[1], anns[4]];
    expected.sort();
    assert_eq!(tools, expected);
    assert_eq!(
        app.listed_ids("tag=TOOLS").await.len(),
        3,
        "tags ignore case"
    );
    assert_eq!(app.listed_ids("tag=garden&q=hose").await, vec![anns[2]]);
    assert_eq!(
        app.listed_ids(&format!("seller_id={}", ben.id)).await,
        vec![bens]
    );
    assert!(
        app.listed_ids(&format!("seller_id={}", Uuid::new_v4()))
            .await
            .is_empty()
    );

    // Ann's five products, two at a time: every one once, then no cursor.
    let mut seen = Vec::new();
    let mut query = format!("seller_id={}&limit=2", ann.id);
    let mut pages = 0;
    loop {
        let page = app.list_products(&query).await;
        page.expect(200);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(id_of));
        pages += 1;
        match page.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("seller_id={}&limit=2&cursor={cursor}", ann.id),
            None => break,
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no product twice: {seen:?}");
    let mut expected = anns.clone();
    expected.sort();
    assert_eq!(sorted, expected);

    // The default page is 20.
    for i in 0..20 {
        app.product(&ben, &format!("Bulk {i}"), 1, 1).await;
    }
    let first = app.list_products("").await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 20);
    assert!(first.body["next_cursor"].is_string());
}

async fn search_takes_wildcards_literally(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let plain = id_of(&app.product(&seller, "Plain soap", 300, 1).await);
    let percent = id_of(&app.product(&seller, "100% cotton bag", 300, 1).await);
    let under = id_of(&app.product(&seller, "snake_case mug", 300, 1).await);

    assert_eq!(app.listed_ids("q=%25").await, vec![percent]);
    assert_eq!(app.listed_ids("q=_").await, vec![under]);
    assert_eq!(app.listed_ids("q=soap").await, vec![plain]);
    // A blank search is no filter.
    assert_eq!(app.listed_ids("q=%20%20").await.len(), 3);
}

/// "Case-insensitive" means for every shopper's language, not only ASCII.
async fn search_ignores_case_beyond_ascii(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let eclair = id_of(&app.product(&seller, "Éclair au chocolat", 450, 10).await);

    assert_eq!(app.listed_ids("q=chocolat").await, vec![eclair]);
    assert_eq!(
        app.listed_ids("q=%C3%89CLAIR").await,
        vec![eclair],
        "q=ÉCLAIR"
    );
    assert_eq!(
        app.listed_ids("q=%C3%A9clair").await,
        vec![eclair],
        "q=éclair"
    );
}

/// The 201 answer is the product as stored: a client that keeps it holds
/// what `GET /v1/products/{id}` says, timestamps included.
async fn a_new_product_reads_back_as_it_was_answered(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let created = app.product(&seller, "Teapot", 2_400, 3).await;

    let read = app.get_product(id_of(&created)).await;

    read.expect(200);
    assert_eq!(read.body, created);
}

async fn a_sku_is_unique_per_seller(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.seller().await;
    let ben = app.seller().await;
    let body = json!({"sku": "MUG-1", "name": "Mug", "price": 900, "currency": "USD"});
    let first = app.create_product(&ann, body.clone()).await;
    first.expect(201);

    app.create_product(&ann, body.clone())
        .await
        .expect_problem(409, "sku_taken");
    assert_eq!(app.product_rows().await, 1);
    // Another seller may use the same SKU.
    app.create_product(&ben, body.clone()).await.expect(201);
    // Renaming another of Ann's products to that SKU is refused too.
    let other = id_of(&app.product(&ann, "Cup", 800, 1).await);
    app.patch_product(&ann, other, json!({"sku": "MUG-1"}))
        .await
        .expect_problem(409, "sku_taken");
    assert_ne!(app.get_product(other).await.body["sku"], "MUG-1");
    // Deleting the product frees its SKU.
    app.delete_product(&ann, first.id()).await.expect(204);
    app.create_product(&ann, body).await.expect(201);
}

async fn only_the_owner_or_an_admin_manages_a_product(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.seller().await;
    let ben = app.seller().await;
    let alice = app.customer().await;
    let created = app.product(&ann, "Ann's lamp", 5_000, 10).await;
    let id = id_of(&created);

    let refused = |status: u16| [403, 404].contains(&status);
    let patch = app.patch_product(&ben, id, json!({"price": 1})).await;
    assert!(refused(patch.status.as_u16()), "{}", patch.body);
    patch.expect_client_error();
    let stock = app.set_stock(&ben, id, 0).await;
    assert!(refused(stock.status.as_u16()), "{}", stock.body);
    let delete = app.delete_product(&ben, id).await;
    assert!(refused(delete.status.as_u16()), "{}", delete.body);
    // Ben cannot list a product for Ann either.
    let for_ann = app
        .create_product(
            &ben,
            json!({"sku": "x", "name": "x", "price": 1, "currency": "USD", "seller_id": ann.id}),
        )
        .await;
    for_ann.expect_problem(403, "forbidden");
    // A customer cannot manage it at all.
    app.patch_product(&alice, id, json!({"price": 1}))
        .await
        .expect_problem(403, "forbidden");
    app.set_stock(&alice, id, 0)
        .await
        .expect_problem(403, "forbidden");
    app.delete_product(&alice, id)
        .await
        .expect_problem(403, "forbidden");

    let read = app.get_product(id).await;
    assert_eq!(
        without_times(&read.body),
        without_times(&created),
        "nothing changed"
    );
    assert_eq!(read.body["updated_at"], read.body["created_at"]);

    // An admin can do all of it.
    let admin = app.admin.clone();
    let patched = app.patch_product(&admin, id, json!({"price": 4_500})).await;
    patched.expect(200);
    assert_eq!(patched.body["price"], 4_500);
    assert_eq!(patched.body["seller_id"], ann.id.to_string(), "still Ann's");
    app.set_stock(&admin, id, 3).await.expect(200);
    assert_eq!(app.stock_of(id).await, 3);
    let for_ann = app
        .create_product(
            &admin,
            json!({"sku": "ADM-1", "name": "Listed by admin", "price": 1, "currency": "USD", "seller_id": ann.id}),
        )
        .await;
    for_ann.expect(201);
    assert_eq!(for_ann.body["seller_id"], ann.id.to_string());
    app.delete_product(&admin, id).await.expect(204);
    app.get_product(id).await.expect_problem(404, "not_found");
}

async fn customers_cannot_list_products(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.customer().await;

    app.create_product(
        &alice,
        json!({"sku": "x", "name": "x", "price": 1, "currency": "USD"}),
    )
    .await
    .expect_problem(403, "forbidden");

    assert_eq!(app.product_rows().await, 0);
}

async fn a_deleted_product_leaves_sale_but_not_past_orders(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Vintage radio", 15_000, 5).await);
    let alice = app.customer().await;
    let bob = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    let order = id_of(&app.place_order(&alice).await);
    app.put_item(&bob, product, 1).await.expect(200);

    app.delete_product(&seller, product).await.expect(204);

    app.get_product(product)
        .await
        .expect_problem(404, "not_found");
    assert!(!app.listed_ids("").await.contains(&product));
    assert!(!app.listed_ids("q=radio").await.contains(&product));
    app.delete_product(&seller, product)
        .await
        .expect_problem(404, "not_found");
    app.patch_product(&seller, product, json!({"price": 1}))
        .await
        .expect_problem(404, "not_found");
    app.set_stock(&seller, product, 9)
        .await
        .expect_problem(404, "not_found");
    // It can no longer be bought: it left Bob's cart and cannot be put back.
    assert_eq!(app.cart_lines(&bob).await, vec![]);
    app.put_item(&bob, product, 1)
        .await
        .expect_problem(404, "not_found");

    // Alice's order keeps its line as charged.
    let read = app.get_order(&alice, order).await;
    read.expect(200);
    let line = &read.body["items"][0];
    assert_eq!(line["product_id"], product.to_string());
    assert_eq!(line["name"], "Vintage radio");
    assert_eq!(line["unit_price"], 15_000);
    assert_eq!(read.body["total"], 15_000);
}
