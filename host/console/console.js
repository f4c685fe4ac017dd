// The merchant console: products and stock, plugins (install, versions,
// settings, dry runs, statistics) and, for admins, orders. Every call is the
// REST API's, made with the signed-in user's token: a seller sees and
// changes what the API lets that seller see and change, nothing more.

import {
  ApiError, FieldError, api, decimal, field, guard, h, money, onSignedOut, onSubmit,
  parseMoney, session, settings, settle, short, show, signIn, signOut, toast, when, wireSkipLink,
  goTo, routeOf,
} from "./api.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");

const NEXT_STATUS = { placed: "paid", paid: "shipped", shipped: "delivered" };
/** Columns of numbers, aligned right with their heading. */
const NUMERIC = new Set(["Version", "Priority", "Lines", "Total", "Quantity", "Unit price", "Line total"]);

// ------------------------------------------------------------ routing

const route = () => routeOf("/products");
const go = (hash) => goTo(hash, render);

function me() {
  return session()?.user;
}

function isMerchant(user) {
  return user && (user.role === "seller" || user.role === "admin");
}

/**
 * Counts renders: a page whose data arrives after the reader moved on
 * (a slow answer, a quick click elsewhere) is not shown over the newer one.
 */
let renderSeq = 0;

async function render() {
  const gen = ++renderSeq;
  const user = me();
  renderNav(user);
  const { parts, params } = route();
  const [section, id] = parts;
  try {
    await settings();
    if (!user) signInPage();
    else if (!isMerchant(user)) notMerchantPage(user);
    else await page(user, section, id, params);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401 || gen !== renderSeq) return; // signing in again, or moved on
    show(main, h("h1", {}, e.status === 404 ? "Not found" : "Something went wrong"),
      h("p", { role: "alert" }, e.status === 404 ? "There is nothing here you can see." : e.message));
  }
  if (gen === renderSeq) settle(main, "Shopeezy console");
}

/** The page the route names (orders: admins only). */
async function page(user, section, id, params) {
  if (section === "products" && id === "new") await productForm(null);
  else if (section === "products" && id) await productPage(id);
  else if (section === "plugins" && id === "new") pluginInstallPage();
  else if (section === "plugins" && id) await pluginPage(id);
  else if (section === "plugins") await pluginsPage(params);
  else if (section === "orders" && user.role === "admin" && id) await orderPage(id);
  else if (section === "orders" && user.role === "admin") await ordersPage(params);
  else await productsPage(params);
}

function renderNav(user) {
  const here = route().parts[0] || "products";
  const link = (hash, text, key) =>
    h("a", { href: hash, "aria-current": here === key ? "page" : null }, text);
  if (!user) return show(nav, h("a", { href: "/shop/" }, "Storefront"));
  show(nav,
    isMerchant(user) && link("#/products", "Products", "products"),
    isMerchant(user) && link("#/plugins", "Plugins", "plugins"),
    user.role === "admin" && link("#/orders", "Orders", "orders"),
    h("a", { href: "/shop/" }, "Storefront"),
    h("span", { class: "muted" }, `${user.username} (${user.role})`),
    h("button", { type: "button", class: "secondary", onclick: guard(async () => { await signOut(); go("#/products"); }) }, "Sign out"));
}

onSignedOut(() => {
  toast("Your session ended; sign in again.");
  render();
});
window.addEventListener("hashchange", render);
wireSkipLink(main);
render();

// ------------------------------------------------------------ sign in

function signInPage() {
  const gen = renderSeq;
  const form = h("form", { class: "panel", novalidate: true },
    field("Email or username", h("input", { name: "login", autocomplete: "username", required: true })),
    field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit" }, "Sign in"));
  onSubmit(form, async (data) => {
    if (!data.get("login")) throw new FieldError("login", "Enter your email or username.");
    await signIn(String(data.get("login")).trim(), String(data.get("password")));
    render();
  });
  gen === renderSeq && show(main, h("h1", {}, "Sign in to the console"),
    h("p", {}, "For sellers and admins. Shoppers: the ", h("a", { href: "/shop/" }, "storefront"), "."),
    h("section", { class: "panel" }, form));
  form.querySelector("input").focus();
}

function notMerchantPage(user) {
  const gen = renderSeq;
  gen === renderSeq && show(main, h("h1", {}, "The console is for sellers and admins"),
    h("p", {}, `You are signed in as ${user.username}, a ${user.role}. `,
      h("a", { href: "/shop/" }, "Go to the storefront"), "."));
}

// ------------------------------------------------------------ products

/** The products the caller manages: a seller's own; an admin's view is every seller's. */
function productQuery(params) {
  const q = new URLSearchParams({ limit: "20" });
  const user = me();
  if (user.role !== "admin") q.set("seller_id", user.id);
  if (params.get("q")) q.set("q", params.get("q"));
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  return q;
}

async function productsPage(params) {
  const gen = renderSeq;
  const page = await api(`/v1/products?${productQuery(params)}`);
  const search = h("form", { role: "search", class: "row" },
    h("div", { class: "field grow" }, h("label", { for: "q" }, "Search products"),
      h("input", { id: "q", name: "q", type: "search", value: params.get("q") || "" })),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Search")));
  search.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new FormData(search).get("q");
    go(q ? `#/products?q=${encodeURIComponent(q)}` : "#/products");
  });
  const rows = page.items.map((p) => h("tr", {},
    h("td", { "data-label": "Name" }, h("a", { href: `#/products/${p.id}` }, p.name)),
    h("td", { "data-label": "SKU" }, p.sku),
    h("td", { "data-label": "Price", class: "num" }, money(p.price, p.currency)),
    h("td", { "data-label": "Stock", class: "num" }, stockForm(p))));
  const more = new URLSearchParams(params);
  if (page.next_cursor) more.set("cursor", page.next_cursor);
  gen === renderSeq && show(main,
    h("div", { class: "row" }, h("h1", { class: "grow" }, "Products"),
      h("a", { class: "button", href: "#/products/new" }, "New product")),
    search,
    page.items.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "stack" },
          h("caption", {}, params.get("q") ? `Products matching “${params.get("q")}”` : me().role === "admin" ? "Every seller's products on sale" : "Your products on sale"),
          h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "SKU"), h("th", { class: "num" }, "Price"), h("th", { class: "num" }, "Stock"))),
          h("tbody", {}, rows)))
      : h("p", {}, params.get("q") ? "No product matches." : "No products yet."),
    h("div", { class: "pager" },
      params.get("cursor") && h("a", { href: params.get("q") ? `#/products?q=${encodeURIComponent(params.get("q"))}` : "#/products" }, "First page"),
      page.next_cursor && h("a", { href: `#/products?${more}` }, "Next page")),
    h("p", { class: "hint" }, "Hidden products are no longer listed or sold; past orders keep their lines."));
}

/** A small form that sets one product's stock. */
function stockForm(p) {
  const input = h("input", { name: "stock", type: "number", min: "0", step: "1", value: p.stock, "aria-label": `Stock of ${p.name}` });
  const form = h("form", { class: "inline" }, input, h("button", { type: "submit", class: "secondary" }, "Set"));
  return onSubmit(form, async (data) => {
    const stock = Number(data.get("stock"));
    if (!Number.isInteger(stock) || String(data.get("stock")).trim() === "") throw new FieldError("stock", "Enter a whole number.");
    const updated = await api(`/v1/products/${p.id}/stock`, { method: "PUT", body: { stock } });
    input.value = updated.stock;
    toast(`Stock of ${p.name} set to ${updated.stock}.`);
  });
}

async function productPage(id) {
  const gen = renderSeq;
  const p = await api(`/v1/products/${encodeURIComponent(id)}`);
  // Products are public, but only its seller (or an admin) manages one: the
  // API refuses the rest (403), and the console does not offer it.
  if (me().role !== "admin" && p.seller_id !== me().id) throw new ApiError(404, { detail: "product not found" });
  if (gen === renderSeq) await productForm(p);
}

/** Creates (`p` null) or edits a product. */
async function productForm(p) {
  const gen = renderSeq;
  const currency = p?.currency || "USD";
  const attributes = Object.entries(p?.attributes || {}).map(([k, v]) => `${k}=${v}`).join("\n");
  const form = h("form", { novalidate: true },
    h("div", { class: "row" },
      h("div", { class: "grow" }, field("Name", h("input", { name: "name", required: true, maxlength: "200", value: p?.name || "" }))),
      h("div", { class: "grow" }, field("SKU", h("input", { name: "sku", required: true, maxlength: "64", value: p?.sku || "", autocapitalize: "off" }), "Letters, digits, - _ . (unique among your products)"))),
    field("Description", h("textarea", { name: "description", maxlength: "5000" }, p?.description || "")),
    h("div", { class: "row" },
      field("Price", h("input", { name: "price", inputmode: "decimal", required: true, value: p ? decimal(p.price, currency) : "" }), "In the currency's units, e.g. 12.50"),
      field("Currency", h("input", { name: "currency", required: true, maxlength: "3", size: "4", value: currency, autocapitalize: "characters" }), "ISO 4217"),
      !p && field("Stock", h("input", { name: "stock", type: "number", min: "0", step: "1", value: "0" }))),
    field("Tags", h("input", { name: "tags", value: (p?.tags || []).join(", ") }), "Separated by commas"),
    field("Attributes", h("textarea", { name: "attributes" }, attributes), "One key=value per line; plugins can read them"),
    h("button", { type: "submit" }, p ? "Save changes" : "Create product"));
  onSubmit(form, async (data) => {
    const body = productBody(data);
    if (p) {
      await api(`/v1/products/${p.id}`, { method: "PATCH", body });
      toast("Product saved.");
      go(`#/products/${p.id}`);
    } else {
      const stock = Number(data.get("stock") || 0);
      if (!Number.isInteger(stock)) throw new FieldError("stock", "Enter a whole number.");
      const created = await api("/v1/products", { method: "POST", body: { ...body, stock } });
      toast(`Product ${created.name} created.`);
      go(`#/products/${created.id}`);
    }
  }, { sku_taken: "sku" });
  const extra = p && h("section", { class: "panel" },
    h("h2", {}, "Stock and sale"),
    h("div", { class: "row" }, stockForm(p),
      h("button", {
        type: "button", class: "danger",
        onclick: guard(async () => {
          if (!confirm(`Hide ${p.name} from sale? It leaves every cart; past orders keep it.`)) return;
          await api(`/v1/products/${p.id}`, { method: "DELETE" });
          toast(`${p.name} is hidden.`);
          go("#/products");
        }),
      }, "Hide from sale")));
  gen === renderSeq && show(main, h("p", {}, h("a", { href: "#/products" }, "← Products")),
    h("h1", {}, p ? `Edit ${p.name}` : "New product"),
    h("section", { class: "panel" }, form), extra);
}

function productBody(data) {
  const currency = String(data.get("currency") || "").trim().toUpperCase();
  const price = parseMoney(String(data.get("price")), currency || "USD");
  if (Number.isNaN(price)) throw new FieldError("price", "Enter an amount such as 12.50.");
  const attributes = {};
  for (const line of String(data.get("attributes") || "").split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new FieldError("attributes", `“${line.trim()}” is not key=value.`);
    attributes[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return {
    name: String(data.get("name")).trim(),
    sku: String(data.get("sku")).trim(),
    description: String(data.get("description") || ""),
    price,
    currency,
    tags: String(data.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean),
    attributes,
  };
}

// ------------------------------------------------------------ plugins

async function pluginsPage(params) {
  const gen = renderSeq;
  const q = new URLSearchParams({ limit: "50" });
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  const page = await api(`/v1/plugins?${q}`);
  const rows = page.items.map((p) => h("tr", {},
    h("td", { "data-label": "Name" }, h("a", { href: `#/plugins/${p.id}` }, p.name)),
    h("td", { "data-label": "Hook" }, p.hook),
    h("td", { "data-label": "Scope" }, p.scope.kind),
    h("td", { "data-label": "Version", class: "num" }, `v${p.version}`),
    h("td", { "data-label": "Priority", class: "num" }, p.priority),
    h("td", { "data-label": "On failure" }, p.failure_policy),
    h("td", { "data-label": "State" }, p.enabled ? h("span", { class: "badge ok" }, "enabled") : h("span", { class: "badge muted" }, "disabled"))));
  gen === renderSeq && show(main,
    h("div", { class: "row" }, h("h1", { class: "grow" }, "Plugins"),
      h("a", { class: "button", href: "#/plugins/new" }, "Install a plugin")),
    page.items.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "stack" },
          h("caption", {}, me().role === "admin" ? "Every plugin" : "Your plugins"),
          h("thead", {}, h("tr", {}, ["Name", "Hook", "Scope", "Version", "Priority", "On failure", "State"].map((t) => h("th", { class: NUMERIC.has(t) ? "num" : null }, t)))),
          h("tbody", {}, rows)))
      : h("p", {}, "No plugins installed."),
    page.next_cursor && h("div", { class: "pager" }, h("a", { href: `#/plugins?cursor=${encodeURIComponent(page.next_cursor)}` }, "Next page")));
}

const HOOKS = ["pricing", "promotion", "validation"];
const POLICIES = [["closed", "closed: a failure blocks checkout"], ["open", "open: a failure is skipped"]];

function options(values, selected) {
  return values.map((v) => {
    const [value, text] = Array.isArray(v) ? v : [v, v];
    return h("option", { value, selected: value === selected ? true : null }, text);
  });
}

/** The config textarea's JSON, or a field problem. */
function configOf(data) {
  const text = String(data.get("config") || "").trim() || "{}";
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FieldError("config", `Not JSON: ${e.message}`);
  }
}

function priorityOf(data) {
  if (String(data.get("priority") ?? "").trim() === "") throw new FieldError("priority", "Enter a whole number from -10000 to 10000.");
  const priority = Number(data.get("priority"));
  if (!Number.isInteger(priority)) throw new FieldError("priority", "Enter a whole number from -10000 to 10000.");
  return priority;
}

const PLUGIN_CODES = { plugin_name_taken: "name", invalid_component: "component", invalid_manifest: "config" };

function pluginInstallPage() {
  const gen = renderSeq;
  const form = h("form", { novalidate: true },
    h("div", { class: "row" },
      h("div", { class: "grow" }, field("Name", h("input", { name: "name", required: true, maxlength: "64", autocapitalize: "off" }), "a-z, 0-9, - and _")),
      field("Hook", h("select", { name: "hook" }, options(HOOKS, "pricing"))),
      field("Priority", h("input", { name: "priority", type: "number", value: "100", min: "-10000", max: "10000" }), "Lower runs first"),
      field("On failure", h("select", { name: "failure_policy" }, options(POLICIES, "closed")))),
    field("Config (JSON)", h("textarea", { name: "config", spellcheck: "false", rows: "6" }, "{}"), "Given to the plugin as is; at most 64 KiB"),
    field("Component", h("input", { name: "component", type: "file", accept: ".wasm,application/wasm", required: true }), "A WebAssembly component built for the hook's world"),
    h("button", { type: "submit" }, "Install"));
  onSubmit(form, async (data) => {
    const file = data.get("component");
    if (!(file instanceof File) || !file.size) throw new FieldError("component", "Choose a .wasm file.");
    const manifest = {
      name: String(data.get("name")).trim(),
      hook: data.get("hook"),
      priority: priorityOf(data),
      failure_policy: data.get("failure_policy"),
      config: configOf(data),
    };
    const body = new FormData();
    body.append("manifest", new Blob([JSON.stringify(manifest)], { type: "application/json" }));
    body.append("component", file, file.name);
    const plugin = await api("/v1/plugins", { method: "POST", form: body });
    toast(`${plugin.name} installed.`);
    go(`#/plugins/${plugin.id}`);
  }, PLUGIN_CODES);
  gen === renderSeq && show(main, h("p", {}, h("a", { href: "#/plugins" }, "← Plugins")),
    h("h1", {}, "Install a plugin"), h("section", { class: "panel" }, form));
}

async function pluginPage(id) {
  const gen = renderSeq;
  const plugin = await api(`/v1/plugins/${encodeURIComponent(id)}`);
  const settingsForm = h("form", { novalidate: true },
    h("div", { class: "check" }, h("input", { id: "enabled", name: "enabled", type: "checkbox", checked: plugin.enabled }), h("label", { for: "enabled" }, "Enabled")),
    h("div", { class: "row" },
      field("Priority", h("input", { name: "priority", type: "number", value: plugin.priority, min: "-10000", max: "10000" })),
      field("On failure", h("select", { name: "failure_policy" }, options(POLICIES, plugin.failure_policy)))),
    field("Config (JSON)", h("textarea", { name: "config", spellcheck: "false", rows: "8" }, JSON.stringify(plugin.config, null, 2))),
    h("button", { type: "submit" }, "Save settings"));
  onSubmit(settingsForm, async (data) => {
    const body = { enabled: data.get("enabled") === "on", priority: priorityOf(data), failure_policy: data.get("failure_policy"), config: configOf(data) };
    await api(`/v1/plugins/${plugin.id}`, { method: "PATCH", body });
    toast("Settings saved.");
    go(`#/plugins/${plugin.id}`);
  });

  const upload = h("form", { novalidate: true },
    field("Component", h("input", { name: "component", type: "file", accept: ".wasm,application/wasm", required: true })),
    h("button", { type: "submit" }, "Upload new version"));
  onSubmit(upload, async (data) => {
    const file = data.get("component");
    if (!(file instanceof File) || !file.size) throw new FieldError("component", "Choose a .wasm file.");
    const body = new FormData();
    body.append("component", file, file.name);
    const updated = await api(`/v1/plugins/${plugin.id}/component`, { method: "PUT", form: body });
    toast(`Version ${updated.version} is in force.`);
    go(`#/plugins/${plugin.id}`);
  }, PLUGIN_CODES);

  const uninstall = h("button", {
    type: "button", class: "danger",
    onclick: guard(async () => {
      if (!confirm(`Uninstall ${plugin.name}? It stops running at once.`)) return;
      await api(`/v1/plugins/${plugin.id}`, { method: "DELETE" });
      toast(`${plugin.name} uninstalled.`);
      go("#/plugins");
    }),
  }, "Uninstall");

  const stats = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const dry = h("div", {});
  gen === renderSeq && show(main, h("p", {}, h("a", { href: "#/plugins" }, "← Plugins")),
    h("h1", {}, `${plugin.name} `, h("span", { class: "badge" }, `v${plugin.version}`), " ",
      plugin.enabled ? h("span", { class: "badge ok" }, "enabled") : h("span", { class: "badge muted" }, "disabled")),
    h("p", { class: "muted" }, `${plugin.hook} plugin · ${plugin.scope.kind === "platform" ? "platform-wide" : "your lines only"} · ${(plugin.size / 1024).toFixed(1)} KiB · sha256 ${plugin.sha256.slice(0, 12)}… · changed ${when(plugin.updated_at)}`),
    h("section", { class: "panel", "aria-labelledby": "stats-h" }, h("h2", { id: "stats-h" }, "In production"), stats),
    h("section", { class: "panel", "aria-labelledby": "dry-h" }, h("h2", { id: "dry-h" }, "Dry run"), dry),
    h("div", { class: "split" },
      h("section", { class: "panel", "aria-labelledby": "set-h" }, h("h2", { id: "set-h" }, "Settings"), settingsForm),
      h("section", { class: "panel", "aria-labelledby": "ver-h" }, h("h2", { id: "ver-h" }, "New version"), upload,
        h("h2", {}, "Uninstall"), h("p", { class: "hint" }, "Orders it priced keep its name and version."), uninstall)));
  loadStats(plugin, stats);
  await dryRunPanel(plugin, dry);
}

async function loadStats(plugin, el) {
  try {
    const s = await api(`/v1/plugins/${plugin.id}/stats`);
    const us = (v) => (v === null || v === undefined ? "—" : v >= 1000 ? `${(v / 1000).toFixed(1)} ms` : `${v} µs`);
    show(el,
      h("dl", { class: "stats" },
        stat("Calls", s.calls), stat("Failures", s.failures),
        stat("p50 time", us(s.p50_us)), stat("p99 time", us(s.p99_us))),
      h("p", { class: "hint" }, `On this host since ${when(s.since)}; times over the last ${s.sampled_calls} calls. Dry runs are not counted.`),
      s.recent_failures.length
        ? h("div", {}, h("h3", {}, "Last failures"), h("ul", {}, s.recent_failures.map((f) =>
            h("li", {}, h("span", { class: "badge bad" }, f.kind), ` ${when(f.at)}: ${f.reason}`))))
        : h("p", {}, "No failures."));
  } catch (e) {
    show(el, h("p", { class: "muted" }, `Statistics are not available: ${e.message}`));
  }
}

function stat(label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, String(value)));
}

/** The dry-run form: a sample cart from the merchant's own products. */
async function dryRunPanel(plugin, el) {
  const q = new URLSearchParams({ limit: "100" });
  const seller = plugin.scope.seller_id;
  if (seller) q.set("seller_id", seller);
  const products = (await api(`/v1/products?${q}`)).items;
  if (!products.length) {
    return show(el, h("p", {}, "Create a product first: the sample cart is made of your products. ", h("a", { href: "#/products/new" }, "New product")));
  }
  const rows = products.map((p, i) => h("tr", {},
    h("td", { "data-label": "Product" }, p.name, " ", h("span", { class: "muted" }, p.sku)),
    h("td", { "data-label": "Price", class: "num" }, money(p.price, p.currency)),
    h("td", { "data-label": "Quantity", class: "num" },
      h("input", { name: `qty-${i}`, type: "number", min: "0", max: "10000", value: i === 0 ? "1" : "0", "aria-label": `Quantity of ${p.name}` }))));
  const form = h("form", { novalidate: true },
    h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("caption", {}, "Sample cart"),
      h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", { class: "num" }, "Price"), h("th", { class: "num" }, "Quantity"))),
      h("tbody", {}, rows))),
    h("div", { class: "row" },
      h("div", { class: "grow" }, field("Codes", h("input", { name: "codes", autocapitalize: "characters" }), "Promotion codes entered, separated by commas")),
      field("Customer's earlier orders", h("input", { name: "order_count", type: "number", min: "0", value: "0" }))),
    h("button", { type: "submit" }, "Run"));
  const result = h("div", {});
  onSubmit(form, async (data) => {
    const picked = products.map((p, i) => [p, Number(data.get(`qty-${i}`) || 0)]).filter(([, n]) => n > 0);
    if (!picked.length) throw new FieldError("qty-0", "Put at least one product in the sample cart.");
    const lines = picked.map(([p, quantity]) => ({
      product_id: p.id, sku: p.sku, seller_id: p.seller_id, quantity, unit_price: p.price, tags: p.tags, attributes: p.attributes,
    }));
    const cart = {
      lines,
      currency: picked[0][0].currency,
      codes: String(data.get("codes") || "").split(",").map((c) => c.trim()).filter(Boolean),
      customer: { id: me().id, role: "customer", order_count: Number(data.get("order_count") || 0) },
    };
    const report = await api(`/v1/plugins/${plugin.id}/dry-run`, { method: "POST", body: { cart } });
    show(result, dryRunReport(report, picked, cart.currency));
    result.querySelector("h3")?.focus();
  });
  show(el, h("p", { class: "hint" }, "Runs this plugin once, as checkout would, with the same limits. Nothing is saved."), form, result);
}

function dryRunReport(r, picked, currency) {
  const lineName = (i) => (picked[i] ? `${picked[i][0].name} (line ${i + 1})` : `line ${i + 1}`);
  const out = r.output || {};
  const adjustments = [];
  for (const c of out.price_changes || []) {
    const [p, n] = picked[c.line] || [{ price: 0 }, 0];
    const delta = (c.unit_price - p.price) * n;
    adjustments.push(`${lineName(c.line)}: unit price ${money(p.price, currency)} → ${money(c.unit_price, currency)} (${money(delta, currency)} on ${n})`);
  }
  for (const d of out.discounts || []) {
    const target = d.target === "order" ? "order" : lineName(d.target.line);
    const amount = d.amount.fixed !== undefined ? money(d.amount.fixed, currency) : `${d.amount.percent / 100} %`;
    adjustments.push(`${d.label || "discount"} on ${target}: ${amount} off${d.code ? ` (code ${d.code})` : ""}${d.limit ? ` (limited: ${d.limit.total ?? "∞"} total, ${d.limit.per_customer ?? "∞"} per customer)` : ""}`);
  }
  const violations = (out.violations || []).map((v) => `${v.code}: ${v.message}${v.line !== null && v.line !== undefined ? ` (${lineName(v.line)})` : ""}`);
  const bytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`);
  const usage = (label, used, limit, fmt) => h("tr", {},
    h("th", { scope: "row" }, label),
    h("td", { class: "num" }, fmt(used)),
    h("td", { class: "num" }, limit === undefined || limit === null ? "—" : fmt(limit)),
    h("td", {}, limit ? h("meter", { min: "0", max: String(limit), value: String(Math.min(used, limit)), "aria-label": `${label} used of limit` }) : null));
  const us = (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v} µs`);
  return h("div", { class: "split" },
    h("div", {},
      h("h3", { tabindex: "-1" }, r.failure ? h("span", { class: "bad" }, `Failed: ${r.failure.kind}`) : h("span", { class: "ok" }, "Succeeded")),
      r.failure && h("p", { role: "alert" }, r.failure.reason),
      h("h4", {}, "Adjustments"),
      adjustments.length ? h("ul", { class: "adjustments" }, adjustments.map((a) => h("li", {}, a))) : h("p", { class: "muted" }, "None."),
      h("h4", {}, "Violations"),
      violations.length ? h("ul", {}, violations.map((v) => h("li", { class: "warn" }, v))) : h("p", { class: "muted" }, "None."),
      h("h4", {}, "Output"),
      h("pre", {}, r.output ? JSON.stringify(r.output, null, 2) : "—")),
    h("div", {},
      h("table", {},
        h("caption", {}, "Resources and limits"),
        h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "Used"), h("th", { class: "num" }, "Limit"), h("th", {}, ""))),
        h("tbody", {},
          usage("Fuel", r.fuel_used, r.fuel_limit, (v) => v.toLocaleString()),
          usage("Time", r.time_us, r.time_limit_us, us),
          usage("Memory", r.peak_memory_bytes, r.memory_limit_bytes, bytes),
          usage("Log lines", r.logs.length, r.log_lines_limit, String))),
      h("h4", {}, "Logs"),
      r.logs.length
        ? h("pre", { class: "logs" }, r.logs.map((l) => `${l.level || "info"}  ${l.message ?? JSON.stringify(l)}`).join("\n"))
        : h("p", { class: "muted" }, "Nothing logged."),
      r.logs_dropped ? h("p", { class: "warn" }, `${r.logs_dropped} more lines dropped past the limit.`) : null));
}

// ------------------------------------------------------------ orders (admin)

async function ordersPage(params) {
  const gen = renderSeq;
  const q = new URLSearchParams({ limit: "20" });
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  const page = await api(`/v1/admin/orders?${q}`);
  const rows = page.items.map((o) => h("tr", {},
    h("td", { "data-label": "Order" }, h("a", { href: `#/orders/${o.id}` }, short(o.id))),
    h("td", { "data-label": "Placed" }, when(o.created_at)),
    h("td", { "data-label": "Customer" }, short(o.user_id)),
    h("td", { "data-label": "Lines", class: "num" }, o.items.length),
    h("td", { "data-label": "Total", class: "num" }, money(o.total, o.currency)),
    h("td", { "data-label": "Status" }, h("span", { class: "badge" }, o.status))));
  gen === renderSeq && show(main, h("h1", {}, "Orders"),
    page.items.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "stack" },
          h("caption", {}, "Every order, newest first"),
          h("thead", {}, h("tr", {}, ["Order", "Placed", "Customer", "Lines", "Total", "Status"].map((t) => h("th", { class: NUMERIC.has(t) ? "num" : null }, t)))),
          h("tbody", {}, rows)))
      : h("p", {}, "No orders yet."),
    h("div", { class: "pager" },
      params.get("cursor") && h("a", { href: "#/orders" }, "First page"),
      page.next_cursor && h("a", { href: `#/orders?cursor=${encodeURIComponent(page.next_cursor)}` }, "Next page")));
}

async function orderPage(id) {
  const gen = renderSeq;
  const o = await api(`/v1/orders/${encodeURIComponent(id)}`);
  const m = (v) => money(v, o.currency);
  const next = NEXT_STATUS[o.status];
  const move = async (path, body, done) => {
    await api(path, { method: "POST", body });
    toast(done);
    go(`#/orders/${o.id}`);
  };
  gen === renderSeq && show(main, h("p", {}, h("a", { href: "#/orders" }, "← Orders")),
    h("h1", {}, `Order ${short(o.id)} `, h("span", { class: "badge", id: "order-status" }, o.status)),
    h("p", { class: "muted" }, `Placed ${when(o.created_at)} by customer ${o.user_id}; last change ${when(o.updated_at)}.`),
    h("div", { class: "row" },
      next && h("button", { type: "button", onclick: guard(() => move(`/v1/admin/orders/${o.id}/status`, { status: next }, `Order marked ${next}.`)) }, `Mark ${next}`),
      (o.status === "placed" || o.status === "paid") && h("button", {
        type: "button", class: "danger",
        onclick: guard(async () => confirm("Cancel this order? Its stock goes back.") && move(`/v1/orders/${o.id}/cancel`, undefined, "Order cancelled.")),
      }, "Cancel order")),
    h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("caption", {}, "Lines"),
      h("thead", {}, h("tr", {}, ["Product", "SKU", "Quantity", "Unit price", "Adjustments", "Line total"].map((t) => h("th", { class: NUMERIC.has(t) ? "num" : null }, t)))),
      h("tbody", {}, o.items.map((i) => h("tr", {},
        h("td", { "data-label": "Product" }, i.name),
        h("td", { "data-label": "SKU" }, i.sku),
        h("td", { "data-label": "Quantity", class: "num" }, i.quantity),
        h("td", { "data-label": "Unit price", class: "num" }, m(i.unit_price)),
        h("td", { "data-label": "Adjustments" }, i.adjustments.map((a) => h("div", {}, `${a.label}: ${m(a.amount)}`))),
        h("td", { "data-label": "Line total", class: "num" }, m(i.line_total))))))),
    o.adjustments.length ? h("div", {}, h("h2", {}, "Order adjustments"), h("ul", {}, o.adjustments.map((a) => h("li", {}, `${a.label}: ${m(a.amount)}${a.code ? ` (code ${a.code})` : ""} — ${a.plugin}`)))) : null,
    h("div", { class: "totals" },
      h("div", {}, h("span", {}, "Subtotal"), h("span", {}, m(o.subtotal))),
      o.discount_total ? h("div", {}, h("span", {}, "Discounts"), h("span", {}, m(-o.discount_total))) : null,
      h("div", { class: "total" }, h("span", {}, "Total"), h("span", {}, m(o.total)))),
    h("h2", {}, "Priced by"),
    o.plugins.length
      ? h("ul", { class: "plugins" }, o.plugins.map((p) => h("li", {}, `${p.name} v${p.version}: ${p.outcome}${p.reason ? ` (${p.reason})` : ""}`)))
      : h("p", { class: "muted" }, "Catalog prices only: no plugin ran."));
}
