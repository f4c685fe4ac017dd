// The storefront: browse and search the catalog, a cart priced live by the
// merchants' plugins (with promotion codes), checkout and the shopper's
// orders. Every call is the REST API's, with the shopper's own token.

import {
  ApiError, FieldError, api, field, guard, h, money, onSignedOut, onSubmit, register,
  session, settings, settle, short, show, signIn, signOut, toast, uuid, when, wireSkipLink,
  goTo, routeOf,
} from "./api.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");

/** Catalog prices of the cart's products, to show what a plugin changed. */
const catalog = new Map();
/** The last cart view (for the count in the header and adding to a line). */
let cart = null;
/**
 * Counts renders: a page whose data arrives after the shopper moved on is
 * not shown over the newer one.
 */
let renderSeq = 0;

/**
 * The checkout being attempted, `{key, total}`: its idempotency key is kept
 * (in the tab, across a reload) until an answer comes, so placing the order
 * again after a lost answer, or a reload, cannot order twice.
 */
const CHECKOUT_KEY = "shopeezy.checkout";
function pendingCheckout() {
  try {
    return JSON.parse(sessionStorage.getItem(CHECKOUT_KEY));
  } catch {
    return null;
  }
}

const route = () => routeOf("/");
const go = (hash) => goTo(hash, render);

async function render() {
  const gen = ++renderSeq;
  const { parts, params } = route();
  const [section, id] = parts;
  // The header's cart count follows when it comes; no page waits for it.
  if (session() && !cart) loadCart().then(renderNav, () => {});
  renderNav();
  try {
    await settings();
    if (section === "signin") signInPage(params);
    else if (section === "register") registerPage();
    else if (section === "cart") await needsSession(cartPage);
    else if (section === "orders" && id) await needsSession(() => orderPage(id));
    else if (section === "orders") await needsSession(ordersPage);
    else await browsePage(params);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401 || gen !== renderSeq) return; // signing in again, or moved on
    show(main, h("h1", {}, e.status === 404 ? "Not found" : "Something went wrong"), h("p", { role: "alert" }, e.message));
  }
  if (gen === renderSeq) settle(main, "Shopeezy store");
}

async function needsSession(page) {
  if (!session()) return go(`#/signin?then=${encodeURIComponent(location.hash)}`);
  return page();
}

function renderNav() {
  const s = session();
  const count = cart ? cart.items.reduce((n, i) => n + i.quantity, 0) : 0;
  show(nav,
    h("a", { href: "#/" }, "Products"),
    s && h("a", { href: "#/cart", id: "cart-link" }, `Cart (${count})`),
    s && h("a", { href: "#/orders" }, "My orders"),
    s && (s.user.role === "seller" || s.user.role === "admin") && h("a", { href: "/console/" }, "Console"),
    s ? h("span", { class: "muted" }, s.user.username) : h("a", { href: "#/signin" }, "Sign in"),
    s ? h("button", { type: "button", class: "secondary", onclick: guard(async () => { await signOut(); cart = null; go("#/"); }) }, "Sign out")
      : h("a", { href: "#/register" }, "Register"));
}

onSignedOut(() => {
  cart = null;
  toast("Your session ended; sign in again.");
  render();
});
window.addEventListener("hashchange", render);
wireSkipLink(main);
render();

// ------------------------------------------------------------ accounts

function signInPage(params) {
  const gen = renderSeq;
  const form = h("form", { novalidate: true },
    field("Email or username", h("input", { name: "login", autocomplete: "username", required: true })),
    field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit" }, "Sign in"));
  onSubmit(form, async (data) => {
    if (!data.get("login")) throw new FieldError("login", "Enter your email or username.");
    await signIn(String(data.get("login")).trim(), String(data.get("password")));
    cart = null;
    const then = params.get("then");
    go(then && then.startsWith("#/") ? then : "#/");
  });
  gen === renderSeq && show(main, h("h1", {}, "Sign in"), h("section", { class: "panel" }, form),
    h("p", {}, "New here? ", h("a", { href: "#/register" }, "Create an account"), "."));
  form.querySelector("input").focus();
}

function registerPage() {
  const gen = renderSeq;
  const form = h("form", { novalidate: true },
    field("Name", h("input", { name: "name", autocomplete: "name", required: true })),
    field("Username", h("input", { name: "username", autocomplete: "username", required: true, autocapitalize: "off" })),
    field("Email", h("input", { name: "email", type: "email", autocomplete: "email", required: true })),
    field("Password", h("input", { name: "password", type: "password", autocomplete: "new-password", required: true }), "At least 8 characters"),
    h("button", { type: "submit" }, "Create account"));
  onSubmit(form, async (data) => {
    const fields = Object.fromEntries(["name", "username", "email", "password"].map((k) => [k, String(data.get(k) || "")]));
    await register(fields);
    await signIn(fields.email, fields.password);
    cart = null;
    go("#/");
  }, { email_taken: "email", username_taken: "username" });
  gen === renderSeq && show(main, h("h1", {}, "Create an account"), h("section", { class: "panel" }, form));
}

// ------------------------------------------------------------ browse

async function browsePage(params) {
  const gen = renderSeq;
  const q = new URLSearchParams({ limit: "24" });
  for (const k of ["q", "tag", "cursor"]) if (params.get(k)) q.set(k, params.get(k));
  const page = await api(`/v1/products?${q}`);
  const search = h("form", { role: "search", class: "row" },
    h("div", { class: "field grow" }, h("label", { for: "q" }, "Search the store"),
      h("input", { id: "q", name: "q", type: "search", value: params.get("q") || "" })),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Search")));
  search.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = new FormData(search).get("q");
    go(text ? `#/?q=${encodeURIComponent(text)}` : "#/");
  });
  const more = new URLSearchParams(params);
  if (page.next_cursor) more.set("cursor", page.next_cursor);
  gen === renderSeq && show(main, h("h1", {}, params.get("q") ? `Results for “${params.get("q")}”` : "Products"), search,
    page.items.length ? h("ul", { class: "cards" }, page.items.map(productCard)) : h("p", {}, "Nothing found."),
    h("div", { class: "pager" },
      params.get("cursor") && h("a", { href: params.get("q") ? `#/?q=${encodeURIComponent(params.get("q"))}` : "#/" }, "First page"),
      page.next_cursor && h("a", { href: `#/?${more}` }, "Next page")));
}

function productCard(p) {
  const qty = h("input", { name: "quantity", type: "number", min: "1", max: "10000", value: "1", "aria-label": `Quantity of ${p.name}` });
  const form = h("form", { class: "inline" }, qty, h("button", { type: "submit" }, "Add to cart"));
  onSubmit(form, async (data) => {
    if (!session()) return go(`#/signin?then=${encodeURIComponent("#/")}`);
    const n = Number(data.get("quantity"));
    if (!Number.isInteger(n) || n < 1) throw new FieldError("quantity", "Enter a quantity of 1 or more.");
    if (!cart) await loadCart();
    const line = cart.items.find((i) => i.product_id === p.id);
    cart = await api(`/v1/cart/items/${p.id}`, { method: "PUT", body: { quantity: (line?.quantity || 0) + n } });
    renderNav();
    toast(`${n} × ${p.name} added to the cart.`);
  });
  return h("li", { class: "card" },
    h("h2", {}, p.name),
    p.description && h("p", { class: "muted" }, p.description.length > 140 ? `${p.description.slice(0, 140)}…` : p.description),
    h("p", { class: "price" }, money(p.price, p.currency)),
    h("p", { class: p.stock > 0 ? "ok" : "bad" }, p.stock > 0 ? `${p.stock} in stock` : "Out of stock"),
    p.stock > 0 && form);
}

// ------------------------------------------------------------ cart

async function loadCart() {
  cart = await api("/v1/cart");
  return cart;
}

/** The catalog prices of the cart's products, as they are now. */
async function catalogPrices(items) {
  await Promise.all(items.map(async (i) => {
    try {
      catalog.set(i.product_id, await api(`/v1/products/${i.product_id}`));
    } catch {
      // Hidden meanwhile: the cart view no longer holds it after a reload.
      catalog.delete(i.product_id);
    }
  }));
}

async function cartPage() {
  const gen = renderSeq;
  await loadCart();
  await catalogPrices(cart.items);
  renderNav();
  const c = cart;
  const m = (v) => money(v, c.currency);
  if (!c.items.length) {
    return gen === renderSeq && show(main, h("h1", {}, "Your cart"), h("p", {}, "Your cart is empty. ", h("a", { href: "#/" }, "Browse products"), "."));
  }
  const rows = c.items.map((i) => {
    const listed = catalog.get(i.product_id)?.price;
    const qty = h("input", { name: "quantity", type: "number", min: "0", max: "10000", value: i.quantity, "aria-label": `Quantity of ${i.name}` });
    const form = h("form", { class: "inline" }, qty, h("button", { type: "submit", class: "secondary" }, "Update"));
    onSubmit(form, async (data) => {
      const n = Number(data.get("quantity"));
      if (!Number.isInteger(n) || n < 0) throw new FieldError("quantity", "Enter a whole number (0 removes).");
      cart = await api(`/v1/cart/items/${i.product_id}`, { method: "PUT", body: { quantity: n } });
      toast(n ? `${i.name}: ${n}. Total ${money(cart.total, cart.currency)}.` : `${i.name} removed.`);
      await cartPage();
    });
    return h("tr", {},
      h("td", { "data-label": "Product" }, i.name),
      h("td", { "data-label": "Unit price", class: "num unit-price" },
        listed !== undefined && listed !== i.unit_price
          ? [h("span", { class: "sr-only" }, "was "), h("del", {}, m(listed)), " ", h("span", { class: "sr-only" }, "now ")]
          : null,
        m(i.unit_price)),
      h("td", { "data-label": "Quantity", class: "num" }, form),
      h("td", { "data-label": "Discounts" }, i.adjustments.map((a) => h("div", { class: "ok" }, `${a.label}: ${m(a.amount)}`))),
      h("td", { "data-label": "Total", class: "num" }, m(i.line_total)),
      h("td", {}, h("button", {
        type: "button", class: "danger", "aria-label": `Remove ${i.name}`,
        onclick: guard(async () => {
          await api(`/v1/cart/items/${i.product_id}`, { method: "DELETE" });
          toast(`${i.name} removed.`);
          await cartPage();
        }),
      }, "Remove")));
  });
  const savedByPrices = c.items.reduce((s, i) => {
    const listed = catalog.get(i.product_id)?.price;
    return listed !== undefined && listed > i.unit_price ? s + (listed - i.unit_price) * i.quantity : s;
  }, 0);
  const codeForm = h("form", { class: "row", novalidate: true },
    h("div", { class: "grow" }, field("Promotion code", h("input", { name: "code", autocapitalize: "characters", required: true }))),
    h("div", { class: "field" }, h("button", { type: "submit", class: "secondary" }, "Apply")));
  onSubmit(codeForm, async (data) => {
    const code = String(data.get("code") || "").trim();
    if (!code) throw new FieldError("code", "Enter a code.");
    cart = await api("/v1/cart/codes", { method: "POST", body: { code } });
    toast(`Code ${code} entered. Total ${money(cart.total, cart.currency)}.`);
    await cartPage();
  });
  const checkoutForm = h("form", {}, h("button", { type: "submit", id: "checkout" }, `Place order · ${m(c.total)}`));
  onSubmit(checkoutForm, async () => {
    // The same attempt again (no answer came) keeps its key; a cart that
    // changed since is a new attempt.
    let pending = pendingCheckout();
    if (!pending || pending.total !== c.total) pending = { key: uuid(), total: c.total };
    sessionStorage.setItem(CHECKOUT_KEY, JSON.stringify(pending));
    try {
      const order = await api("/v1/checkout", {
        method: "POST", headers: { "Idempotency-Key": pending.key }, body: { expected_total: c.total },
      });
      sessionStorage.removeItem(CHECKOUT_KEY);
      cart = null;
      loadCart().then(renderNav, () => {});
      go(`#/orders/${order.id}?placed=1`);
    } catch (e) {
      // An answer came (not a lost one, not a 5xx to retry): this attempt is over.
      if (e instanceof ApiError && e.status !== 0 && e.status < 500) sessionStorage.removeItem(CHECKOUT_KEY);
      if (e instanceof ApiError && e.code === "price_changed") {
        await cartPage();
        toast("Prices changed since you looked: check the new total and place the order again.");
        return;
      }
      if (e instanceof ApiError && e.code === "idempotency_key_reused") {
        throw new ApiError(422, { detail: "An earlier attempt to place this order may have gone through: check My orders before trying again." });
      }
      throw e;
    }
  });
  gen === renderSeq && show(main, h("h1", {}, "Your cart"),
    h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("caption", {}, "Priced now, with the shop's current offers"),
      h("thead", {}, h("tr", {}, ["Product", "Unit price", "Quantity", "Discounts", "Total", "Remove"].map((t) =>
        h("th", { class: ["Unit price", "Quantity", "Total"].includes(t) ? "num" : null },
          t === "Remove" ? h("span", { class: "sr-only" }, t) : t)))),
      h("tbody", {}, rows))),
    c.violations.length ? h("div", { role: "alert" }, h("h2", {}, "Before you can order"),
      h("ul", {}, c.violations.map((v) => h("li", { class: "bad" }, v.message)))) : null,
    h("div", { class: "split" },
      h("div", {},
        codeForm,
        c.codes.length ? h("ul", { class: "plain" }, c.codes.map((code) => h("li", {}, h("span", { class: "badge" }, code), " ",
          h("button", {
            type: "button", class: "secondary", "aria-label": `Remove code ${code}`,
            onclick: guard(async () => {
              await api(`/v1/cart/codes/${encodeURIComponent(code)}`, { method: "DELETE" });
              toast(`Code ${code} removed.`);
              await cartPage();
            }),
          }, "Remove")))) : null),
      h("div", { class: "totals", id: "totals" },
        savedByPrices ? h("div", { class: "ok" }, h("span", {}, "You save on prices"), h("span", {}, m(savedByPrices))) : null,
        h("div", {}, h("span", {}, "Subtotal"), h("span", {}, m(c.subtotal))),
        c.adjustments.map((a) => h("div", { class: "ok" }, h("span", {}, a.label), h("span", {}, m(a.amount)))),
        c.discount_total ? h("div", {}, h("span", {}, "Discounts"), h("span", {}, m(-c.discount_total))) : null,
        h("div", { class: "total" }, h("span", {}, "Total"), h("span", {}, m(c.total))),
        checkoutForm)));
}

// ------------------------------------------------------------ orders

async function ordersPage() {
  const gen = renderSeq;
  const page = await api("/v1/orders?limit=50");
  gen === renderSeq && show(main, h("h1", {}, "My orders"),
    page.items.length
      ? h("ul", {}, page.items.map((o) => h("li", {},
          h("a", { href: `#/orders/${o.id}` }, `Order ${short(o.id)}`), ` · ${when(o.created_at)} · ${money(o.total, o.currency)} · ${o.status}`)))
      : h("p", {}, "No orders yet."));
}

async function orderPage(id) {
  const gen = renderSeq;
  const o = await api(`/v1/orders/${encodeURIComponent(id)}`);
  const m = (v) => money(v, o.currency);
  const placed = route().params.get("placed");
  gen === renderSeq && show(main,
    h("h1", {}, placed ? `Thank you! Order ${short(o.id)} is placed` : `Order ${short(o.id)}`),
    h("p", {}, `Status: `, h("span", { class: "badge" }, o.status), ` · placed ${when(o.created_at)}`),
    h("ul", {}, o.items.map((i) => h("li", {}, `${i.quantity} × ${i.name} at ${m(i.unit_price)}`,
      i.adjustments.map((a) => ` · ${a.label} ${m(a.amount)}`), ` = ${m(i.line_total)}`))),
    o.adjustments.map((a) => h("p", { class: "ok" }, `${a.label}: ${m(a.amount)}`)),
    h("p", { class: "price" }, `Total ${m(o.total)}`),
    (o.status === "placed" || o.status === "paid") && h("button", {
      type: "button", class: "danger",
      onclick: guard(async () => {
        if (!confirm("Cancel this order?")) return;
        await api(`/v1/orders/${o.id}/cancel`, { method: "POST" });
        toast("Order cancelled.");
        go(`#/orders/${o.id}`);
      }),
    }, "Cancel order"),
    h("p", {}, h("a", { href: "#/orders" }, "All my orders"), " · ", h("a", { href: "#/" }, "Keep shopping")));
}
