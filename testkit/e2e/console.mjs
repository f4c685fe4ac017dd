// The console and storefront end to end in headless Chromium (Debian's
// package, driven by playwright-core). Started by testkit/tests/console.rs
// with the running services' addresses and the users it made:
//
//   HOST_URL, ACCOUNT_URL     the host and the account service
//   SELLER, OTHER_SELLER      two sellers' emails (the shopper registers)
//   ADMIN, ADMIN_PASSWORD     the platform admin; PASSWORD everyone else's
//   WASM                      the volume-pricing example component
//   SHOTS                     where screenshots go
//   CHROMIUM                  the browser (default /usr/bin/chromium)
//
// It exits 0 when every step saw what a user should see; otherwise it
// prints the failed step, saves a screenshot of it and exits 1.

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const HOST = env("HOST_URL");
const ACCOUNT = env("ACCOUNT_URL");
const SHOTS = env("SHOTS");
const PASSWORD = env("PASSWORD");
const SKU = `beans-${Date.now().toString(36)}`;
const PRODUCT = `Espresso beans ${SKU.slice(6)}`;
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

/** What each page load fetched: bytes by URL, and any other origin asked. */
const loads = [];

async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  // Generous: under the whole suite two cores serve three browsers and the services.
  page.setDefaultTimeout(30_000);
  page.setDefaultNavigationTimeout(30_000);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/the server responded with a status of (4\d\d)/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on("request", (r) => {
    const origin = new URL(r.url()).origin;
    if (origin !== HOST && origin !== ACCOUNT && !r.url().startsWith("data:")) {
      problems.push(`request to another origin: ${r.url()}`);
    }
  });
  page.problems = problems;
  return page;
}

/** Opens `path` and records the bytes of the page's own files. */
async function open(page, path) {
  const reads = [];
  const listener = (response) => {
    const url = response.url();
    if (!url.startsWith(HOST) || url.includes("/v1/")) return;
    // A redirect has no body.
    reads.push(response.body().then((b) => [url, b.length], () => [url, 0]));
  };
  page.on("response", listener);
  await page.goto(HOST + path, { waitUntil: "networkidle" });
  page.off("response", listener);
  const assets = new Map(await Promise.all(reads));
  const total = [...assets.values()].reduce((a, b) => a + b, 0);
  loads.push({ path, total, files: assets.size });
  assert.ok(total < 100 * 1024, `${path} loads ${total} bytes of assets (limit 100 KB)`);
}

async function shot(page, name) {
  // A passing notice would cover part of a full-page picture.
  await page.evaluate(() => { const t = document.getElementById("toast"); if (t) t.textContent = ""; });
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Every form control on the page has a name a screen reader announces. */
async function assertLabelled(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
      .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || (el.tagName === "BUTTON" && el.textContent.trim())))
      .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, [], `unlabelled controls on ${page.url()}`);
}

async function signIn(page, login, password) {
  await page.getByLabel("Email or username").fill(login);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

let step = "start";
let current;
try {
  // ---------------------------------------------------------- the seller
  step = "seller signs in to the console (keyboard only)";
  const seller = (current = await newPage());
  await open(seller, "/console/");
  await seller.getByLabel("Email or username").focus();
  await seller.keyboard.type(env("SELLER"));
  await seller.keyboard.press("Tab");
  await seller.keyboard.type(PASSWORD);
  await seller.keyboard.press("Enter");
  await seller.getByRole("heading", { name: "Products" }).waitFor();

  step = "seller creates a product; a problem shows next to its field";
  await seller.getByRole("link", { name: "New product" }).click();
  await seller.getByLabel("Name").fill(PRODUCT);
  await seller.getByLabel("SKU").fill("not a sku!");
  await seller.getByLabel("Price").fill("10.00");
  await seller.getByLabel("Stock").fill("50");
  await seller.getByLabel("Tags").fill("coffee, beans");
  await seller.getByRole("button", { name: "Create product" }).click();
  const sku = seller.getByLabel("SKU");
  await seller.locator("[aria-invalid=true][name=sku]").waitFor();
  const described = await sku.getAttribute("aria-describedby");
  const message = await seller.locator(`#${described.split(" ")[0]}`).innerText();
  assert.match(message, /sku/i, `the SKU's problem is shown beside it: ${message}`);
  await shot(seller, "console-product-error");
  await sku.fill(SKU);
  await seller.getByRole("button", { name: "Create product" }).click();
  await seller.getByRole("heading", { name: `Edit ${PRODUCT}` }).waitFor();
  const productUrl = seller.url();

  step = "seller finds it by search and sets its stock";
  await seller.getByRole("link", { name: "← Products" }).click();
  await seller.getByLabel("Search products").fill(PRODUCT.split(" ").pop());
  await seller.getByRole("button", { name: "Search" }).click();
  await seller.getByRole("table", { name: /^Products matching/ }).waitFor();
  await seller.getByRole("link", { name: PRODUCT }).waitFor();
  await seller.getByLabel(`Stock of ${PRODUCT}`).fill("40");
  const stockSet = seller.waitForResponse((r) => r.url().endsWith("/stock") && r.request().method() === "PUT");
  await seller.getByRole("button", { name: "Set" }).first().click();
  assert.equal((await stockSet).status(), 200, "the stock is set");
  assert.equal(await seller.getByLabel(`Stock of ${PRODUCT}`).inputValue(), "40");
  await shot(seller, "console-products");

  step = "seller installs the volume-pricing component";
  await seller.getByRole("link", { name: "Plugins" }).click();
  await seller.getByRole("link", { name: "Install a plugin" }).click();
  await seller.getByLabel("Name").fill("volume");
  await seller.getByLabel("Hook").selectOption("pricing");
  await seller.getByLabel("Config (JSON)").fill('{"tiers": [{"min_quantity": 3, "percent_off": 10}]}');
  await seller.getByLabel("Component").setInputFiles(env("WASM"));
  await seller.getByRole("button", { name: "Install" }).click();
  await seller.getByRole("heading", { name: /^volume v1/ }).waitFor();
  const pluginUrl = seller.url();

  step = "seller dry-runs it on a sample cart of 3 and sees the discount";
  await seller.getByLabel(`Quantity of ${PRODUCT}`).fill("3");
  await seller.getByRole("button", { name: "Run" }).click();
  await seller.getByRole("heading", { name: "Succeeded" }).waitFor();
  const adjustments = await seller.locator("ul.adjustments").innerText();
  assert.match(adjustments, /\$10\.00 → \$9\.00/, `the dry run shows the new price: ${adjustments}`);
  const resources = await seller.getByRole("table", { name: "Resources and limits" }).innerText();
  for (const row of ["Fuel", "Time", "Memory", "Log lines"]) assert.ok(resources.includes(row), `${row} in ${resources}`);
  await seller.getByText("volume prices on 1 line(s)").waitFor();
  await assertLabelled(seller);
  await shot(seller, "console-dry-run");

  // -------------------------------------------------- another seller
  step = "another seller cannot see the plugin";
  const other = (current = await newPage());
  await open(other, "/console/");
  await signIn(other, env("OTHER_SELLER"), PASSWORD);
  await other.getByRole("link", { name: "Plugins" }).click();
  await other.getByRole("heading", { name: "Plugins" }).waitFor();
  await other.getByText("No plugins installed.").waitFor();
  await other.goto(pluginUrl);
  await other.getByRole("heading", { name: "Not found" }).waitFor();
  step = "another seller cannot manage the product";
  await other.getByRole("link", { name: "Products" }).click();
  await other.getByRole("heading", { name: "Products" }).waitFor();
  await other.goto(productUrl);
  await other.getByRole("heading", { name: "Not found" }).waitFor();
  assert.equal(await other.getByRole("button", { name: "Save changes" }).count(), 0);
  await other.context().close();

  // -------------------------------------------------- the shopper
  step = "a shopper registers in the storefront (phone-sized screen)";
  const shopper = (current = await newPage({ width: 390, height: 844 }));
  await open(shopper, "/shop/");
  await shopper.getByRole("link", { name: "Register" }).click();
  const username = `shopper-${SKU.slice(6)}`;
  await shopper.getByLabel("Name", { exact: true }).fill("Sam Shopper");
  await shopper.getByLabel("Username").fill(username);
  await shopper.getByLabel("Email").fill(`${username}@example.com`);
  await shopper.getByLabel("Password").fill("short");
  await shopper.getByRole("button", { name: "Create account" }).click();
  await shopper.locator("[aria-invalid=true][name=password]").waitFor();
  await assertLabelled(shopper);
  await shopper.getByLabel("Password").fill(PASSWORD);
  await shopper.getByRole("button", { name: "Create account" }).click();
  await shopper.getByRole("link", { name: /^Cart/ }).waitFor();

  step = "shopper finds the product and puts 3 in the cart";
  await shopper.getByLabel("Search the store").fill(SKU.slice(6));
  await shopper.getByRole("button", { name: "Search" }).click();
  await shopper.getByRole("heading", { name: /^Results for/ }).waitFor();
  await shopper.getByRole("heading", { name: PRODUCT }).waitFor();
  await shopper.getByLabel(`Quantity of ${PRODUCT}`).fill("3");
  await shopper.getByRole("button", { name: "Add to cart" }).click();
  await shopper.getByRole("link", { name: "Cart (3)" }).waitFor();
  await shot(shopper, "shop-browse");

  step = "shopper's cart shows the plugin's price";
  await shopper.getByRole("link", { name: "Cart (3)" }).click();
  await shopper.getByRole("heading", { name: "Your cart" }).waitFor();
  const price = await shopper.locator("td.unit-price").first().innerText();
  assert.match(price, /was\s+\$10\.00\s+now\s+\$9\.00/, `was and now prices: ${price}`);
  const totals = await shopper.locator("#totals").innerText();
  assert.match(totals, /Total\s+\$27\.00/, `the total: ${totals}`);
  assert.match(totals, /You save on prices\s+\$3\.00/, `the saving: ${totals}`);
  await assertLabelled(shopper);
  await shot(shopper, "shop-cart");

  step = "shopper checks out";
  await shopper.getByRole("button", { name: /Place order/ }).click();
  const heading = await shopper.getByRole("heading", { name: /^Thank you! Order \S+ is placed$/ }).innerText();
  const orderShort = heading.split(" ")[3];
  await shot(shopper, "shop-order");
  assert.deepEqual(shopper.problems, [], "the storefront ran without errors");

  // -------------------------------------------------- the admin
  step = "admin sees the order, priced by the plugin, and marks it paid";
  const admin = (current = await newPage());
  await open(admin, "/console/");
  await signIn(admin, env("ADMIN"), env("ADMIN_PASSWORD"));
  await admin.getByRole("link", { name: "Orders" }).click();
  await admin.getByRole("link", { name: orderShort }).click();
  await admin.getByRole("heading", { name: new RegExp(`Order ${orderShort}`) }).waitFor();
  const pricedBy = await admin.locator("ul.plugins").innerText();
  assert.match(pricedBy, /volume v1: applied/, `the order names the plugin version: ${pricedBy}`);
  assert.match(await admin.locator("#order-status").innerText(), /placed/);
  await admin.getByRole("button", { name: "Mark paid" }).click();
  await admin.locator("#order-status", { hasText: "paid" }).waitFor();
  await shot(admin, "console-order");
  assert.deepEqual(admin.problems, [], "the admin's console ran without errors");

  step = "the seller's plugin page counts the shopper's calls";
  current = seller;
  await seller.reload({ waitUntil: "networkidle" });
  const calls = await seller.locator(".stats div", { hasText: "Calls" }).locator("dd").innerText();
  assert.ok(Number(calls) >= 1, `calls counted: ${calls}`);
  await shot(seller, "console-plugin");

  step = "seller's new version that is not a component is refused beside its field";
  const junk = `${SHOTS}/not-a-component.wasm`;
  writeFileSync(junk, "this is not WebAssembly");
  await seller.getByLabel("Component").setInputFiles(junk);
  await seller.getByRole("button", { name: "Upload new version" }).click();
  await seller.locator("[aria-invalid=true][name=component]").waitFor();

  step = "seller uploads a new version, disables it, and uninstalls it";
  await seller.getByLabel("Component").setInputFiles(env("WASM"));
  await seller.getByRole("button", { name: "Upload new version" }).click();
  await seller.getByRole("heading", { name: /^volume v2/ }).waitFor();
  await seller.getByLabel("Enabled").uncheck();
  await seller.getByLabel("Priority").fill("5");
  await seller.getByRole("button", { name: "Save settings" }).click();
  await seller.getByRole("heading", { name: /^volume v2 disabled/ }).waitFor();
  assert.equal(await seller.getByLabel("Priority").inputValue(), "5");
  seller.once("dialog", (d) => d.accept());
  await seller.getByRole("button", { name: "Uninstall" }).click();
  await seller.getByText("No plugins installed.").waitFor();
  assert.deepEqual(seller.problems, [], "the seller's console ran without errors");

  console.log(JSON.stringify({ ok: true, loads }));
  await browser.close();
} catch (e) {
  console.error(`FAILED at step: ${step}\n${e.stack || e}`);
  if (current) {
    console.error(`page: ${current.url()}\nproblems: ${JSON.stringify(current.problems)}`);
    await current.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    console.error(`screenshot: ${SHOTS}/failure.png`);
  }
  await browser.close();
  process.exit(1);
}
