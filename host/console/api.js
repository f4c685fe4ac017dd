// What the console and the storefront share: the session, calls to the REST
// API with the signed-in user's own token, money, problems shown next to
// the field they concern, and a small DOM builder. Text from the API is only
// ever set as text (never parsed as HTML), and the pages' security policy
// allows no inline script, so a product name cannot run code.

const SESSION_KEY = "shopeezy.session";

let settingsLoaded;
/** `{account_url}`: where people sign in (served by the host). */
export function settings() {
  settingsLoaded ??= fetch("/console/settings.json").then((r) => r.json());
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

/** A call to this host's API as the signed-in user (anonymous without one). */
export async function api(path, options = {}) {
  const s = session();
  try {
    return await request(path, { ...options, token: s?.token });
  } catch (e) {
    if (e.status === 401 && s) {
      clearSession();
      signedOut();
    }
    throw e;
  }
}

/** A call to the account service. */
async function account(path, options = {}) {
  const { account_url } = await settings();
  return request(account_url + path, { ...options, token: session()?.token });
}

/** Signs in by email or username; the user. */
export async function signIn(login, password) {
  const who = login.includes("@") ? { email: login } : { username: login };
  const r = await account("/v1/auth/login", { method: "POST", body: { ...who, password } });
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
  return account("/v1/auth/register", { method: "POST", body: fields });
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
    const msg = h("p", { class: "field-error", id: `${input.id}-error` }, text);
    input.closest(".field")?.append(msg) ?? input.after(msg);
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

/** Runs `work` for a submitted form, its button busy meanwhile. */
export function onSubmit(form, work) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit], button:not([type])");
    if (button?.disabled) return;
    if (button) button.disabled = true;
    form.setAttribute("aria-busy", "true");
    clearProblems(form);
    try {
      await work(new FormData(form));
    } catch (e) {
      const known = e instanceof ApiError || e instanceof FieldError;
      showProblem(form, known ? e : new ApiError(0, { detail: String(e?.message || e) }));
    } finally {
      if (button) button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
  return form;
}

/** A problem found before calling the API, about the field `name`. */
export class FieldError extends Error {
  constructor(name, detail) {
    super(detail);
    this.problem = { field: name, detail };
  }
}

// ------------------------------------------------------------ money

/** Digits after the point in `currency` (2 for USD, 0 for JPY). */
export function digits(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** Minor units as the amount people read: `1250, "USD"` → `$12.50`. */
export function money(minor, currency) {
  const d = digits(currency);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 10 ** d);
  } catch {
    return `${(minor / 10 ** d).toFixed(d)} ${currency}`;
  }
}

/** `"12.5", "USD"` → 1250; NaN when it is not an amount of that currency. */
export function parseMoney(text, currency) {
  const d = digits(currency);
  const m = /^\s*(\d{1,12})(?:[.,](\d*))?\s*$/.exec(text);
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
