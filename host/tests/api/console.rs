//! The console's and storefront's files as a browser gets them (the pages
//! themselves are driven in Chromium by testkit/tests/console.rs): every
//! file a page loads is served, the whole page stays under 100 KB, pages
//! carry a policy that allows nothing from another origin but the account
//! service, and a browser's copy is revalidated by its ETag.

use std::collections::BTreeSet;

use reqwest::Method;
use reqwest::header::{ETAG, IF_NONE_MATCH};

use crate::helpers::{Backend, send, spawn_app};

/// The files a page loads: its `src`/`href` attributes and, from each
/// script, its `import … from "./x.js"` (relative to `/assets/`).
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["src=\"", "href=\"", "from \"./"] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let Some(end) = rest.find('"') else { continue };
            let target = &rest[..end];
            if marker == "from \"./" {
                found.push(format!("/assets/{target}"));
            } else if target.starts_with("/assets/") {
                found.push(target.to_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_load_only_their_own_small_files_under_a_strict_policy() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    for page in ["/console/", "/shop/"] {
        let reply = send(app.host(Method::GET, page)).await;
        reply.expect(200);
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        let policy = reply.header("content-security-policy").unwrap();
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(
            policy.contains(&format!("connect-src 'self' {};", app.accounts.account_url)),
            "the pages may call the account service, nothing else: {policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));

        // Every file the page loads, followed through the scripts' imports.
        let html = reply.body.as_str().unwrap().to_owned();
        let mut total = html.len();
        let mut queue = references(&html);
        let mut seen = BTreeSet::new();
        while let Some(path) = queue.pop() {
            if !seen.insert(path.clone()) {
                continue;
            }
            let file = app
                .accounts
                .client
                .get(format!("{}{path}", app.host_url))
                .send()
                .await
                .unwrap();
            assert_eq!(file.status(), 200, "{page} loads {path}");
            assert_eq!(
                file.headers()["x-content-type-options"],
                "nosniff",
                "{path}"
            );
            let text = file.text().await.unwrap();
            total += text.len();
            queue.extend(references(&text));
        }
        assert!(
            seen.len() >= 3,
            "{page} loads its stylesheet and scripts: {seen:?}"
        );
        assert!(total < 100 * 1024, "{page} loads {total} bytes: {seen:?}");
    }

    let settings = send(app.host(Method::GET, "/console/settings.json")).await;
    settings.expect(200);
    assert_eq!(settings.body["account_url"], app.accounts.account_url);
    // Amounts are shown with the catalog's own digits, not the browser's.
    let digits = &settings.body["currency_digits"];
    assert_eq!(
        (digits["USD"].as_u64(), digits["JPY"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(digits["IQD"].as_u64(), Some(3), "{digits}");
    assert!(
        digits.get("XAU").is_none(),
        "no digits for what is not money"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_revalidated_and_unknown_ones_are_problems() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    let first = send(app.host(Method::GET, "/assets/console.js")).await;
    first.expect(200);
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let etag = first.header(ETAG.as_str()).unwrap().to_owned();
    let again = send(
        app.host(Method::GET, "/assets/console.js")
            .header(IF_NONE_MATCH, &etag),
    )
    .await;
    again.expect(304);
    let other = send(
        app.host(Method::GET, "/assets/console.js")
            .header(IF_NONE_MATCH, "\"stale\""),
    )
    .await;
    other.expect(200);

    send(app.host(Method::GET, "/assets/nothing.js"))
        .await
        .expect_problem(404, "not_found");
    // A page is served at its own address only (with its policy).
    send(app.host(Method::GET, "/assets/console.html"))
        .await
        .expect_problem(404, "not_found");
    // A weak or listed tag of the same file is current too.
    let listed = send(
        app.host(Method::GET, "/assets/console.js")
            .header(IF_NONE_MATCH, format!("\"x\", W/{etag}")),
    )
    .await;
    listed.expect(304);
    send(app.host(Method::GET, "/assets/..%2Fconsole.rs"))
        .await
        .expect_client_error();

    // The bare paths lead to the pages (the root to the storefront).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, to) in [
        ("/", "/shop/"),
        ("/console", "/console/"),
        ("/shop", "/shop/"),
    ] {
        let reply = client
            .get(format!("{}{path}", app.host_url))
            .send()
            .await
            .unwrap();
        assert!(
            reply.status().is_redirection(),
            "{path}: {}",
            reply.status()
        );
        assert_eq!(reply.headers()["location"], to, "{path}");
    }
}
