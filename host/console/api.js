// What the console and the storefront share: the session, calls to the REST
// API with the signed-in user's own token, money, problems shown next to
// the field they concern, and a small DOM builder. Text from the API is only
// ever set as text (never parsed as HTML), and the pages' security policy
// allows no inline script, so a product name cannot run code.

const SESSION_KEY = "shopeezy.session";

let settingsLoaded;
let currencyDigits = {};
/**
 * `{account_url, currency_digits}` (served by the host): where people sign
 * in, and each currency's digits after the point. Loaded before a page
 * renders; a failed load is tried again at the next call.
 */
export function settings() {
  settingsLoaded ??= fetch("/console/settings.json")
    .then((r) => {
      if (!r.ok) throw new Error(`settings: HTTP ${r.status}`);
      return r.json();
    })
    .then((s) => {
      currencyDigits = s.currency_digits || {};
      return s;
    })
    .catch((e) => {
      settingsLoaded = null;
      throw new ApiError(0, { title: "Network error", detail: `The server could not be reached (${e.message}).` });
    });
  return settingsLoaded;
}

/** A failed call: the HTTP status and the problem+json document. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || "";
    this.retryAfter = retryAfter;
  }
}

// ------------------------------------------------------------ session

/** The signed-in user `{token, user}` of this tab, or null. */
export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    return s && s.expires_at > Date.now() ? s : null;
  } catch {
    return null;
  }
}

function saveSession(s) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** Called when the API refuses the token (expired, revoked). */
let signedOut = () => {};
export function onSignedOut(f) {
  signedOut = f;
}

async function request(url, { method = "GET", body, form, token, headers = {} } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, { method, headers: h, body: payload });
  } catch {
    throw new ApiError(0, {
      title: "Network error",
      detail: "The server could not be reached. Check the connection and try again.",
    });
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    throw new ApiError(response.status, data, response.headers.get("retry-after"));
  }
  return data;
}

/**
 * A call to this host's API as the signed-in user (anonymous without one).
 * A 401 when this tab had signed in (the token expired, or was signed out
 * elsewhere) ends the session: the page goes back to signing in.
 */
export async function api(path, options = {}) {
  const s = session();
  try {
    return await request(path, { ...options, token: s?.token });
  } catch (e) {
    if (e.status === 401 && sessionStorage.getItem(SESSION_KEY)) {
      clearSession();
      signedOut();
    }
    throw e;
  }
}

/** A call to the account service (`anonymous`: without the tab's token). */
async function account(path, options = {}, anonymous = false) {
  const { account_url } = await settings();
  return request(account_url + path, { ...options, token: anonymous ? undefined : session()?.token });
}

/** Signs in by email or username; the user. */
export async function signIn(login, password) {
  const who = login.includes("@") ? { email: login } : { username: login };
  const r = await account("/v1/auth/login", { method: "POST", body: { ...who, password } }, true);
  saveSession({
    token: r.access_token,
    user: r.user,
    // A minute early, so a page never starts with a token about to expire.
    expires_at: Date.now() + Math.max(0, r.expires_in - 60) * 1000,
  });
  return r.user;
}

/** Registers a customer (then sign in). */
export function register(fields) {
  return account("/v1/auth/register", { method: "POST", body: fields }, true);
}

/** Signs out everywhere this token works (the account service revokes it). */
export async function signOut() {
  try {
    await account("/v1/auth/logout", { method: "POST" });
  } catch {
    // Signed out here in any case; the token expires on its own.
  }
  clearSession();
}

// ------------------------------------------------------------ routing

/** The page a `#/section/id?query` address names (`home` when there is none). */
export function routeOf(home) {
  const [path, query] = location.hash.slice(1).split("?");
  return { parts: (path || home).split("/").filter(Boolean), params: new URLSearchParams(query) };
}

/** Goes to `hash`, rendering again when it is already there. */
export function goTo(hash, render) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

// ------------------------------------------------------------ DOM

/**
 * `h("p", {class: "x", onclick: f}, "text", child, [more])`: an element.
 * Strings become text nodes; null and false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let fieldSeq = 0;
/** A labelled form field: `<div><label>…</label><input id name …></div>`. */
export function field(label, input, hint) {
  const id = input.id || `f${++fieldSeq}`;
  input.id = id;
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

/** Replaces the contents of `el`. */
export function show(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Says `text` to everyone (screen readers too) for a few seconds. */
export function toast(text) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.textContent = ""), 5000);
}

// ------------------------------------------------------------ problems

/** Clears a form's shown problems. */
export function clearProblems(form) {
  for (const el of form.querySelectorAll(".field-error, .form-error")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    const hint = document.getElementById(`${el.id}-hint`);
    if (hint) el.setAttribute("aria-describedby", hint.id);
    else el.removeAttribute("aria-describedby");
  }
}

/**
 * Shows a failed call in `form`: next to the field the problem names
 * (its `field` member, or `codes[problem.code]`), else at the top of the
 * form. The field is marked invalid and focused.
 */
export function showProblem(form, error, codes = {}) {
  clearProblems(form);
  const p = error.problem || {};
  const name = codes[p.code] || p.field || "";
  let text = p.detail || error.message;
  if (p.reason && !text.includes(p.reason)) text += `: ${p.reason}`;
  if (error.retryAfter) text += ` (try again in ${error.retryAfter} s)`;
  const input = name ? findField(form, name) : null;
  if (input) {
    input.id ||= `f${++fieldSeq}`;
    const msg = h("p", { class: "field-error", id: `${input.id}-error` }, text);
    const box = input.closest(".field");
    if (box) box.append(msg);
    else input.after(msg);
    input.setAttribute("aria-invalid", "true");
    const hint = document.getElementById(`${input.id}-hint`);
    input.setAttribute("aria-describedby", hint ? `${msg.id} ${hint.id}` : msg.id);
    input.focus();
  } else {
    const msg = h("p", { class: "form-error", role: "alert" }, text);
    form.prepend(msg);
  }
}

/** The form control for an API field name (`cart.lines.quantity` → `quantity`). */
function findField(form, name) {
  for (let n = name; n; n = n.includes(".") ? n.slice(n.indexOf(".") + 1) : "") {
    const el = form.querySelector(`[name="${CSS.escape(n)}"]`);
    if (el) return el;
  }
  return null;
}

/**
 * Runs `work` for a submitted form, once at a time; a failure is shown in
 * the form (`codes` maps a problem's code to the field it concerns). The
 * button is marked busy, not disabled, so keyboard focus stays on it.
 */
export function onSubmit(form, work, codes = {}) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    const button = form.querySelector("button[type=submit], button:not([type])");
    button?.setAttribute("aria-disabled", "true");
    form.setAttribute("aria-busy", "true");
    clearProblems(form);
    try {
      await work(new FormData(form));
    } catch (e) {
      if (e?.status === 401) return; // back to signing in
      const known = e instanceof ApiError || e instanceof FieldError;
      showProblem(form, known ? e : new ApiError(0, { detail: String(e?.message || e) }), codes);
    } finally {
      button?.removeAttribute("aria-disabled");
      form.removeAttribute("aria-busy");
    }
  });
  return form;
}

/**
 * Runs `work` for a button: a failure is shown at the top of the page
 * until the next one (`role=alert`), not in a passing notice.
 */
export function guard(work) {
  return async (event) => {
    const button = event?.currentTarget;
    if (button?.getAttribute("aria-disabled") === "true") return;
    button?.setAttribute("aria-disabled", "true");
    document.getElementById("page-alert")?.remove();
    try {
      await work(event);
    } catch (e) {
      if (e?.status === 401) return;
      fail(e);
    } finally {
      button?.removeAttribute("aria-disabled");
    }
  };
}

/** Shows a failure at the top of the page. */
export function fail(e) {
  const main = document.getElementById("main");
  document.getElementById("page-alert")?.remove();
  let text = e?.problem?.detail || e?.message || String(e);
  if (e?.retryAfter) text += ` (try again in ${e.retryAfter} s)`;
  main.prepend(h("p", { id: "page-alert", class: "form-error", role: "alert" }, text));
}

/** After a page rendered: its title, and focus on its heading (unless the page put it elsewhere). */
export function settle(main, product) {
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} · ${product}` : product;
  if (main.contains(document.activeElement) && document.activeElement !== main) return;
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  } else {
    main.focus();
  }
}

/** The skip link moves focus to the page without touching the route. */
export function wireSkipLink(main) {
  document.querySelector(".skip")?.addEventListener("click", (e) => {
    e.preventDefault();
    settle(main, document.title);
  });
}

/** A random (v4) UUID, also where `crypto.randomUUID` is missing (plain http off localhost). */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A problem found before calling the API, about the field `name`. */
export class FieldError extends Error {
  constructor(name, detail) {
    super(detail);
    this.problem = { field: name, detail };
  }
}

// ------------------------------------------------------------ money

/**
 * Digits after the point in `currency` (2 for USD, 0 for JPY, 3 for IQD),
 * from the host's table (the one that counts the catalog's minor units).
 */
export function digits(currency) {
  return currencyDigits[currency] ?? 2;
}

/** Minor units as the amount people read: `1250, "USD"` → `$12.50`. */
export function money(minor, currency) {
  const d = digits(currency);
  try {
    return new Intl.NumberFormat(undefined, {
      style: "currency", currency, minimumFractionDigits: d, maximumFractionDigits: d,
    }).format(minor / 10 ** d);
  } catch {
    return `${(minor / 10 ** d).toFixed(d)} ${currency}`;
  }
}

/** `"12.5", "USD"` → 1250; NaN when it is not an amount of that currency. */
export function parseMoney(text, currency) {
  const d = digits(currency);
  const m = /^\s*(\d{1,12})(?:\.(\d*))?\s*$/.exec(text);
  if (!m || (m[2] || "").length > d) return NaN;
  return Number(m[1]) * 10 ** d + Number((m[2] || "").padEnd(d, "0") || 0);
}

/** Minor units as a plain decimal for an input: 1250 → "12.50". */
export function decimal(minor, currency) {
  const d = digits(currency);
  return d ? (minor / 10 ** d).toFixed(d) : String(minor);
}

/** A UTC time as the reader's local date and time. */
export function when(iso) {
  return new Date(iso).toLocaleString();
}

/**
 * An id shortened for people: its last 8 characters. Ids are UUIDv7, whose
 * first characters are the time (ids made in the same minute share them)
 * and whose last are random.
 */
export function short(id) {
  return String(id).slice(-8);
}
