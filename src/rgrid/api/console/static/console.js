// rgrid console: pages over the same /api/v1 the CLI uses, signed in by a session cookie.
// Everything a script or a user wrote is put in the page as text (textContent), never as HTML.

const API = "/api/v1";
const STATES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const PAGE_SIZE = 50;

let session = null; // {account, csrf}
let cleanups = []; // what the current page must stop when another one is shown

// ---------------------------------------------------------------- small helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// replaceChildren() would write a null as the text "null"
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  return append(el, children);
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.hint = error.hint;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session) headers["x-csrf-token"] = session.csrf;
  const response = await fetch(path.startsWith("/console") ? path : API + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && session) signedOut(error.message);
    throw error;
  }
  return data;
}

function announce(message) {
  const status = document.getElementById("status");
  status.textContent = "";
  setTimeout(() => { status.textContent = message; }, 30);
}

function errorBox(error) {
  return h("div", { class: "error", role: "alert" },
    h("p", {}, error.message || String(error)),
    error.hint ? h("p", { class: "hint" }, error.hint) : null);
}

function money(micros) {
  if (micros === null || micros === undefined) return "—";
  if (micros === 0) return "€0.00";
  const euros = micros / 1e6;
  const digits = euros !== 0 && Math.abs(euros) < 0.01 ? 6 : 4;
  return "€" + euros.toFixed(digits);
}

function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function when(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  return h("time", { datetime: iso, title: iso }, t.toLocaleString());
}

function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state);
}

function executionLink(id) {
  return h("a", { href: `/console/executions/${encodeURIComponent(id)}`, class: "mono" }, id);
}

function batchLink(id) {
  return h("a", { href: `/console/batches/${encodeURIComponent(id)}`, class: "mono" }, id);
}

function facts(pairs) {
  const dl = h("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(h("dt", {}, term), append(h("dd"), [value]));
  }
  return dl;
}

function table(columns, rows, { caption, responsive = true } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) => h("tr", {}, columns.map((c) =>
    append(h("td", { "data-label": c.label, class: c.num ? "num" : null }), [c.cell(row)]))));
  return h("div", { class: "table-wrap" },
    h("table", { class: responsive ? "responsive" : null },
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, head), h("tbody", {}, body)));
}

function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (error) { if (error.status === 401) return; }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  cleanups.push(() => { stopped = true; clearTimeout(timer); });
}

// ---------------------------------------------------------------- ANSI colours, as text

const SGR = /\x1b\[([0-9;]*)m/g;
const OTHER_ESCAPES = /\x1b(\[[0-9;?]*[A-Za-ln-z]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])/g;

// A log line as spans: SGR colour codes become classes, every other escape is dropped, and the
// text goes in with textContent, so nothing a script prints can become markup.
function ansiLine(text) {
  const fragment = document.createDocumentFragment();
  let style = { bold: false, dim: false, italic: false, underline: false, fg: null };
  let last = 0;
  const emit = (chunk) => {
    chunk = chunk.replace(OTHER_ESCAPES, "");
    if (!chunk) return;
    const classes = [];
    if (style.bold) classes.push("ansi-bold");
    if (style.dim) classes.push("ansi-dim");
    if (style.italic) classes.push("ansi-italic");
    if (style.underline) classes.push("ansi-underline");
    if (style.fg !== null) classes.push(`ansi-fg-${style.fg}`);
    if (classes.length) fragment.append(h("span", { class: classes.join(" ") }, chunk));
    else fragment.append(document.createTextNode(chunk));
  };
  for (const match of text.matchAll(SGR)) {
    emit(text.slice(last, match.index));
    last = match.index + match[0].length;
    const codes = match[1] === "" ? [0] : match[1].split(";").map(Number);
    for (let i = 0; i < codes.length; i += 1) {
      const code = codes[i];
      if (code === 0) style = { bold: false, dim: false, italic: false, underline: false, fg: null };
      else if (code === 1) style.bold = true;
      else if (code === 2) style.dim = true;
      else if (code === 3) style.italic = true;
      else if (code === 4) style.underline = true;
      else if (code === 22) { style.bold = false; style.dim = false; }
      else if (code === 23) style.italic = false;
      else if (code === 24) style.underline = false;
      else if (code >= 30 && code <= 37) style.fg = code - 30;
      else if (code >= 90 && code <= 97) style.fg = code - 90;
      else if (code === 39) style.fg = null;
      else if (code === 38 || code === 48) i += codes[i + 1] === 5 ? 2 : 4; // 256/true colour: skipped
    }
  }
  emit(text.slice(last));
  return fragment;
}

// ---------------------------------------------------------------- session

async function start() {
  document.getElementById("signout").addEventListener("click", signOut);
  document.addEventListener("click", followLink);
  window.addEventListener("popstate", () => show());
  try {
    session = await api("/console/session");
  } catch (error) {
    if (error.status !== 401) throw error;
    return showSignIn(location.pathname === "/console/signin"
      ? "This sign-in link is not valid: it was used already or expired. Run `rgrid console` again, or paste an API key."
      : null);
  }
  signedIn();
  if (location.pathname === "/console/signin") history.replaceState(null, "", "/console/");
  show();
}

function signedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("account").textContent = session.account.name;
}

function signedOut(message) {
  session = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  stopPage();
  showSignIn(message);
}

function showSignIn(message) {
  const key = h("input", { id: "api-key", name: "key", type: "password", autocomplete: "off",
    required: true, spellcheck: "false", "aria-describedby": "key-help" });
  const problem = h("div", { "aria-live": "assertive" }, message ? errorBox({ message }) : null);
  const form = h("form", { onsubmit: async (event) => {
    event.preventDefault();
    fill(problem);
    try {
      session = await api("/console/session", { method: "POST", body: { key: key.value } });
    } catch (error) {
      fill(problem, errorBox(error));
      key.focus();
      return;
    }
    signedIn();
    if (location.pathname === "/console/signin") history.replaceState(null, "", "/console/");
    show();
  } },
  h("label", { for: "api-key" }, "API key", key),
  h("p", { id: "key-help", class: "muted" },
    "Paste a key (rg_…), or run ", h("code", {}, "rgrid console"), " to be signed in."),
  h("div", {}, h("button", { type: "submit" }, "Sign in")));
  render("Sign in", h("section", { class: "signin" }, h("h1", {}, "Sign in to rgrid"), problem, form));
  key.focus();
}

async function signOut() {
  try {
    await api("/console/signout", { method: "POST" });
  } catch (error) {
    if (error.status !== 401) { // 401: it had ended already
      document.getElementById("main").prepend(errorBox({ message: `Not signed out: ${error.message}`, hint: error.hint }));
      return;
    }
  }
  signedOut("You are signed out.");
  history.pushState(null, "", "/console/");
}

// ---------------------------------------------------------------- routing

function followLink(event) {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
      event.shiftKey || link.hasAttribute("download") || link.target) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/console")) return;
  if (url.pathname.startsWith("/console/static")) return;
  event.preventDefault();
  go(url.pathname + url.search);
}

function go(path) {
  history.pushState(null, "", path);
  show();
}

function stopPage() {
  for (const stop of cleanups) stop();
  cleanups = [];
}

function render(title, ...content) {
  document.title = `${title} · rgrid`;
  const main = document.getElementById("main");
  fill(main, ...content);
}

async function show() {
  stopPage();
  if (!session) return showSignIn(null);
  const parts = location.pathname.replace(/^\/console\/?/, "").split("/").filter(Boolean)
    .map(decodeURIComponent);
  const section = parts[0] || "executions";
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const pages = { executions: parts[1] ? executionPage : executionsPage,
    batches: batchPage, cost: costPage, workers: workersPage };
  const page = pages[section];
  try {
    if (!page || (section === "batches" && !parts[1])) throw new ApiError(404, { error: { message: "There is no such page." } });
    await page(parts[1]);
  } catch (error) {
    if (!session) return;
    const title = error.status === 404 ? "Not found" : "Something went wrong";
    render(title, h("h1", {}, title), errorBox(error),
      h("p", {}, h("a", { href: "/console/" }, "Back to the executions")));
  }
  document.getElementById("main").focus({ preventScroll: true });
}

// ---------------------------------------------------------------- executions

async function executionsPage() {
  const params = new URLSearchParams(location.search);
  const field = (name, label, attrs = {}) => h("label", { for: `f-${name}` }, label,
    h("input", { id: `f-${name}`, name, value: params.get(name) || "", ...attrs }));
  const stateSelect = h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "any"),
    STATES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter executions",
    onsubmit: (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      for (const [name, value] of new FormData(form)) if (value.trim()) query.set(name, value.trim());
      go(`/console/executions${query.toString() ? "?" + query : ""}`);
    } },
  field("id", "Id starts with", { placeholder: "exec_…", size: 14 }),
  h("label", { for: "f-status" }, "State", stateSelect),
  field("script", "Script", { placeholder: "process.py", size: 14 }),
  field("batch", "Batch", { placeholder: "batch_…", size: 14 }),
  field("metadata", "Metadata", { placeholder: "key=value", size: 14 }),
  field("from", "From", { type: "date" }),
  field("to", "To", { type: "date" }),
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter"),
    h("a", { href: "/console/executions" }, "Clear")));

  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (params.get("status")) query.append("status", params.get("status"));
  if (params.get("script")) query.set("script", params.get("script"));
  if (params.get("batch")) query.set("batch", params.get("batch"));
  if (params.get("metadata")) query.append("metadata", params.get("metadata"));
  if (params.get("id")) query.set("id_prefix", params.get("id"));
  if (params.get("from")) query.set("since", new Date(params.get("from") + "T00:00:00").toISOString());
  if (params.get("to")) {
    const end = new Date(params.get("to") + "T00:00:00");
    end.setDate(end.getDate() + 1);
    query.set("until", end.toISOString());
  }
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));

  const results = h("div", { id: "executions" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  render("Executions", h("h1", {}, "Executions"), form, results, pager);

  const load = async () => {
    const page = await api(`/executions?${query}`);
    fill(results, page.data.length ? executionsTable(page.data)
      : h("p", { class: "muted" }, "No executions match."));
    const pageNo = Number(params.get("page") || "1");
    const next = new URLSearchParams(params);
    next.set("cursor", page.next_cursor || "");
    next.set("page", String(pageNo + 1));
    fill(pager,
      pageNo > 1 ? h("button", { type: "button", class: "secondary", onclick: () => history.back() }, "← Newer") : null,
      h("span", { class: "muted" }, `Page ${pageNo}`),
      page.next_cursor ? h("a", { class: "button", href: `/console/executions?${next}` }, "Older →") : null,
      pageNo > 1 ? h("a", { href: `/console/executions?${withoutPaging(params)}` }, "Newest") : null);
  };
  await load();
  every(3000, async () => {
    // live: the page shown is fetched again while any of it can still change (or on page 1)
    if (!params.get("cursor") || results.querySelector(".state-running, .state-queued, .state-retrying")) await load();
  });
}

function withoutPaging(params) {
  const copy = new URLSearchParams(params);
  copy.delete("cursor");
  copy.delete("page");
  return copy;
}

function executionsTable(items) {
  return table([
    { label: "Id", cell: (e) => executionLink(e.id) },
    { label: "Script", cell: (e) => h("code", {}, e.script) },
    { label: "State", cell: (e) => stateBadge(e.state) },
    { label: "Created", cell: (e) => when(e.created_at) },
    { label: "Duration", num: true, cell: (e) => seconds(e.duration_s) },
    { label: "Exit", num: true, cell: (e) => e.exit_code ?? "—" },
    { label: "Cost", num: true, cell: (e) => money(e.cost_micros) },
    { label: "Batch", cell: (e) => e.batch_id ? batchLink(e.batch_id) : "—" },
  ], items, { caption: "Executions, newest first" });
}

async function executionPage(id) {
  let execution = await api(`/executions/${encodeURIComponent(id)}`);
  const heading = h("h1", {}, "Execution ", h("span", { class: "mono" }, execution.id));
  const summary = h("section", { "aria-labelledby": "summary-h" });
  const actions = h("div", { class: "actions" });
  const outputs = h("section", { "aria-labelledby": "outputs-h" });
  const log = h("pre", { class: "log", id: "log", role: "log", "aria-label": "Log", tabindex: "0" });
  const logState = h("p", { class: "legend", id: "log-state" });
  render(`Execution ${execution.id}`, heading, actions, summary,
    h("section", { "aria-labelledby": "log-h" }, h("h2", { id: "log-h" }, "Log"),
      h("p", { class: "legend" }, "Lines marked “out” are stdout, “err” stderr."), log, logState),
    outputs);

  const refresh = async () => {
    execution = await api(`/executions/${encodeURIComponent(id)}`);
    fill(summary, h("h2", { id: "summary-h" }, "Summary"), executionFacts(execution));
    const ended = TERMINAL.has(execution.state);
    fill(actions,
      !ended ? h("button", { type: "button", class: "danger", onclick: () => act("cancel") }, "Cancel")
        // a succeeded run is run again only when asked in so many words (the CLI's --force)
        : execution.state === "succeeded"
          ? h("button", { type: "button", class: "secondary", onclick: () => act("retry?force=true") }, "Run again")
          : h("button", { type: "button", onclick: () => act("retry") }, "Retry"));
    if (TERMINAL.has(execution.state)) await showOutputs(outputs, execution);
    else fill(outputs);
  };
  const act = async (what) => {
    try {
      const made = await api(`/executions/${encodeURIComponent(id)}/${what}`, { method: "POST" });
      if (what.startsWith("retry")) { announce(`Retried as ${made.id}`); go(`/console/executions/${made.id}`); }
      else { announce("Cancelled"); await refresh(); }
    } catch (error) {
      actions.append(errorBox(error));
    }
  };
  await refresh();
  followLog(id, log, logState, refresh);
  // queued → running, the worker, the cost so far: the facts follow the execution too
  every(3000, async () => { if (!TERMINAL.has(execution.state)) await refresh(); });
}

// as the CLI says it: a run too short to cost a micro is "< €0.000001", a cache hit costs nothing
function costOf(e) {
  const ran = !e.cached_from && (e.duration_s || 0) > 0;
  return e.cost_micros === 0 && ran ? "< €0.000001" : money(e.cost_micros);
}

function executionFacts(e) {
  const cache = e.cached_from
    ? h("span", {}, "answered from the cache: ", executionLink(e.cached_from),
      e.network_used ? " (it used the network; reused as --cache always asks)" : "")
    : e.state === "succeeded" && e.network && e.network_used !== false
      ? (e.network_used ? "not reusable (it used the network)"
        : "not reusable (whether it used the network was not observed)")
      : e.cache;
  const failure = e.failure_class
    ? h("span", {}, h("strong", {}, e.failure_class), e.cause ? ` — ${e.cause}` : "",
      e.hint ? h("div", { class: "hint" }, e.hint) : null)
    : null;
  const metadata = Object.entries(e.metadata || {});
  return facts([
    ["State", stateBadge(e.state)],
    ["Script", h("code", {}, e.script)],
    ["Arguments", e.args.length ? h("code", {}, JSON.stringify(e.args)) : "none"],
    ["Exit code", e.exit_code ?? "—"],
    ["Failure", failure],
    ["Created", when(e.created_at)],
    ["Started", when(e.started_at)],
    ["Finished", when(e.finished_at)],
    ["Duration", seconds(e.duration_s)],
    ["Worker", e.worker],
    ["Attempt", `${e.attempt} of at most ${e.max_retries + 1}`],
    ["Retry of", e.retry_of ? h("span", {}, executionLink(e.retry_of), e.retry_reason ? ` (${e.retry_reason})` : "") : null],
    ["Batch", e.batch_id ? h("span", {}, batchLink(e.batch_id), ` item ${e.batch_index}`, e.batch_input ? ` (${e.batch_input})` : "") : null],
    ["Cache", cache],
    ["Cost", h("span", {}, costOf(e), e.cost_micros === null ? "" : e.cost_final ? " (final)" : " (provisional)")],
    ["Metadata", metadata.length ? h("ul", {}, metadata.map(([k, v]) => h("li", {}, h("code", {}, `${k}=${v}`)))) : null],
    ["Python", e.python_version],
    ["Dependencies", e.requirements.length
      ? h("span", {}, h("code", {}, e.requirements.join(", ")), ` (from ${e.dependency_source})`) : "none"],
    ["Installed", e.packages.length ? h("code", {}, e.packages.join(", ")) : null],
    ["Environment", e.env_names.length ? h("code", {}, e.env_names.join(", ")) : null],
    ["Limits", `${seconds(e.timeout_s)} · ${bytes(e.memory_bytes)} memory · network ${e.network ? "on" : "off"}`],
  ]);
}

async function showOutputs(section, execution) {
  const listing = await api(`/executions/${encodeURIComponent(execution.id)}/artifacts?kind=output`);
  const base = `${API}/executions/${encodeURIComponent(execution.id)}/outputs/`;
  fill(section, h("h2", { id: "outputs-h" }, "Outputs"),
    listing.data.length ? table([
      { label: "File", cell: (a) => h("code", {}, a.path) },
      { label: "Size", num: true, cell: (a) => bytes(a.size) },
      { label: "Expires", cell: (a) => a.expires_at ? when(a.expires_at) : "never" },
      { label: "", cell: (a) => h("a", { href: base + a.path.split("/").map(encodeURIComponent).join("/"),
        download: a.path.split("/").pop(), "aria-label": `Download ${a.path}` }, "Download") },
    ], listing.data, { caption: "Output files" }) : h("p", { class: "muted" }, "No output files."));
}

// The log, live over the same WebSocket the CLI follows: lines are appended by sequence number,
// and a dropped connection resumes after the last one shown (no gap, no repeat).
function followLog(id, log, logState, onEnd) {
  let lastSeq = 0;
  let lastAttempt = null;
  let socket = null;
  let stopped = false;
  let retryMs = 250;
  let timer = null;
  let failures = 0; // connections in a row that closed without opening
  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${API}/executions/${encodeURIComponent(id)}/logs/stream?after=${lastSeq}`);
    log.setAttribute("aria-busy", "true");
    socket.onopen = () => { retryMs = 250; logState.textContent = "Following the log live."; };
    socket.onmessage = (event) => {
      const page = JSON.parse(event.data);
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      for (const line of page.data) {
        if (line.seq <= lastSeq) continue;
        if (line.attempt !== lastAttempt && lastAttempt !== null) {
          log.append(h("span", { class: "line attempt" }, `— attempt ${line.attempt} —`));
        }
        lastAttempt = line.attempt;
        const el = h("span", { class: `line ${line.stream}`, dataset: { seq: line.seq } });
        el.append(ansiLine(line.text.replace(/\r?\n$/, "")));
        log.append(el);
        lastSeq = line.seq;
      }
      lastSeq = Math.max(lastSeq, page.last_seq || 0);
      if (atBottom) log.scrollTop = log.scrollHeight;
      if (page.done) {
        stopped = true;
        log.removeAttribute("aria-busy");
        logState.textContent = `The execution ended (${page.state}${page.exit_code === null ? "" : `, exit code ${page.exit_code}`}).`;
        announce(`Execution ${page.state}`);
        onEnd().catch(() => {});
      }
    };
    let opened = false;
    socket.addEventListener("open", () => { opened = true; failures = 0; });
    socket.onclose = async () => {
      if (stopped) return;
      failures = opened ? 0 : failures + 1;
      if (failures >= 3) {
        // refused rather than cut (signed out, gone): ask the API what is wrong, say so
        try { await api(`/executions/${encodeURIComponent(id)}`); } catch (error) {
          logState.textContent = `The log cannot be followed: ${error.message}`;
          return;
        }
      }
      logState.textContent = "Connection lost; resuming…";
      timer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  };
  connect();
  cleanups.push(() => { stopped = true; clearTimeout(timer); if (socket) socket.close(); });
}

// ---------------------------------------------------------------- batches

async function batchPage(id) {
  const heading = h("h1", {}, "Batch ", h("span", { class: "mono" }, id));
  const progress = h("section", { "aria-labelledby": "progress-h" });
  const actions = h("div", { class: "actions" });
  const failed = h("section", { "aria-labelledby": "failed-h" });
  const all = h("section", { "aria-labelledby": "items-h" });
  const items = new Map();
  let changedAfter = null;
  render(`Batch ${id}`, heading, progress, actions, failed, all);

  const load = async () => {
    const query = changedAfter ? `?changed_after=${encodeURIComponent(changedAfter)}` : "";
    const answer = await api(`/batches/${encodeURIComponent(id)}/items${query}`);
    // the items endpoint names only each index's current execution (a retried one replaces it)
    for (const item of answer.data) items.set(item.index, item);
    changedAfter = answer.next_changed_after || changedAfter;
    draw(answer.batch);
  };
  const draw = (batch) => {
    const latest = [...items.values()].sort((a, b) => a.index - b.index);
    const count = (state) => latest.filter((i) => i.state === state).length;
    const done = count("succeeded");
    const bad = count("failed");
    const cancelled = count("cancelled");
    const running = count("running");
    const queued = latest.length - done - bad - cancelled - running;
    const bar = h("div", { class: "progress", role: "img",
      "aria-label": `${done} done, ${bad} failed, ${running} running, ${queued} queued of ${batch.total}` });
    for (const [cls, n] of [["done", done], ["failed", bad + cancelled], ["running", running]]) {
      const span = h("span", { class: cls });
      span.style.width = `${batch.total ? (100 * n) / batch.total : 0}%`;
      bar.append(span);
    }
    fill(progress, h("h2", { id: "progress-h" }, "Progress"), bar,
      h("ul", { class: "counts", id: "counts" },
        h("li", {}, h("strong", {}, done), " done"), h("li", {}, h("strong", {}, bad), " failed"),
        cancelled ? h("li", {}, h("strong", {}, cancelled), " cancelled") : null,
        h("li", {}, h("strong", {}, running), " running"), h("li", {}, h("strong", {}, queued), " queued"),
        h("li", {}, `of ${batch.total} · `, h("code", {}, batch.script), ` · parallel ${batch.parallel} · `, money(batch.cost_micros))));
    // as `rgrid retry --batch ID --failed-only`: the failed items, not the cancelled ones
    const failures = latest.filter((i) => i.state === "failed");
    fill(actions,
      h("button", { type: "button", disabled: failures.length === 0, onclick: retryFailed }, `Retry failed (${failures.length})`),
      batch.done ? null : h("button", { type: "button", class: "danger", onclick: cancel }, "Cancel"),
      h("a", { href: `/console/executions?batch=${encodeURIComponent(id)}` }, "Its executions"));
    fill(failed, h("h2", { id: "failed-h" }, `Failed items (${failures.length})`),
      failures.length ? table([
        { label: "Item", num: true, cell: (i) => i.index },
        { label: "Input", cell: (i) => h("code", {}, i.input) },
        { label: "Execution", cell: (i) => executionLink(i.id) },
        { label: "Exit", num: true, cell: (i) => i.exit_code ?? "—" },
        { label: "Cause", cell: (i) => h("span", {}, h("strong", {}, i.failure_class || i.state), i.cause ? ` — ${i.cause}` : "") },
      ], failures, { caption: "Failed items and their causes" }) : h("p", { class: "muted" }, "None."));
    fill(all, h("h2", { id: "items-h" }, `Items (${latest.length})`), table([
      { label: "Item", num: true, cell: (i) => i.index },
      { label: "Input", cell: (i) => h("code", {}, i.input) },
      { label: "State", cell: (i) => stateBadge(i.state) },
      { label: "Execution", cell: (i) => executionLink(i.id) },
      { label: "Attempt", num: true, cell: (i) => i.attempt },
    ], latest, { caption: "Every item" }));
  };
  const retryFailed = async () => {
    try {
      const made = await api(`/batches/${encodeURIComponent(id)}/retry`, { method: "POST", body: { failed_only: true } });
      announce(`Retrying ${made.length} failed items`);
      await load();
    } catch (error) { actions.append(errorBox(error)); }
  };
  const cancel = async () => {
    try { await api(`/batches/${encodeURIComponent(id)}/cancel`, { method: "POST" }); announce("Cancelled"); await load(); }
    catch (error) { actions.append(errorBox(error)); }
  };
  await load();
  every(2000, load);
}

// ---------------------------------------------------------------- cost

async function costPage() {
  const params = new URLSearchParams(location.search);
  const days = Number(params.get("days") || "30");
  const since = new Date(Date.now() - days * 86400e3).toISOString();
  const [byDay, byBatch] = await Promise.all([
    api(`/cost?by=day&since=${encodeURIComponent(since)}`),
    api(`/cost?by=batch&since=${encodeURIComponent(since)}`),
  ]);
  let limit = null;
  try { limit = await api("/cost/limit"); } catch (error) { if (error.status !== 404) throw error; }

  const key = h("input", { id: "meta-key", name: "key", value: params.get("key") || "", placeholder: "project" });
  const byKey = h("div", { id: "by-key" });
  const estimateOut = h("div", { id: "estimate", "aria-live": "polite" });
  const script = h("input", { id: "estimate-script", name: "script", placeholder: "process.py", required: true });

  render("Cost", h("h1", {}, "Cost"),
    h("section", { "aria-labelledby": "limit-h" }, h("h2", { id: "limit-h" }, "Spending limit"), limitView(limit)),
    h("section", { "aria-labelledby": "day-h" },
      h("h2", { id: "day-h" }, `Spend per day, last ${days} days`),
      costChart(byDay.groups, days),
      h("p", {}, `Total: ${money(byDay.total.cost_micros)} over ${byDay.total.executions} executions, `,
        seconds(byDay.total.compute_us / 1e6), " of compute."),
      byDay.idle ? h("p", { class: "muted" }, `Idle: ${money(byDay.idle.micros)} over ${byDay.idle.periods} paid billing periods in which nothing ran (charged to no account).`) : null,
      h("details", {}, h("summary", {}, "The same as a table"), costTable(byDay.groups, "Day"))),
    h("section", { "aria-labelledby": "batch-h" }, h("h2", { id: "batch-h" }, "By batch"),
      byBatch.groups.length ? costTable(byBatch.groups, "Batch") : h("p", { class: "muted" }, "No batches in this time.")),
    h("section", { "aria-labelledby": "key-h" }, h("h2", { id: "key-h" }, "By a metadata key"),
      h("form", { class: "filters", onsubmit: async (event) => {
        event.preventDefault();
        await showByKey();
      } }, h("label", { for: "meta-key" }, "Metadata key", key), h("button", { type: "submit" }, "Show")),
      byKey),
    h("section", { "aria-labelledby": "estimate-h" }, h("h2", { id: "estimate-h" }, "Estimate a script"),
      h("form", { class: "filters", onsubmit: async (event) => {
        event.preventDefault();
        try {
          const e = await api(`/estimate?script=${encodeURIComponent(script.value.trim())}`);
          const perRun = (us) => Math.round((us / 3.6e9) * e.hourly_price_micros);
          fill(estimateOut, facts([
            ["Based on", e.basis === "default" ? "no earlier runs (a default guess)" : `${e.runs} earlier runs (${e.basis})`],
            ["Median run", seconds(e.median_us / 1e6)],
            ["90th percentile", seconds(e.p90_us / 1e6)],
            ["Price", `${money(e.hourly_price_micros)} per slot-hour`],
            ["A median run costs about", money(perRun(e.median_us))],
          ]));
        } catch (error) { fill(estimateOut, errorBox(error)); }
      } }, h("label", { for: "estimate-script" }, "Script name", script), h("button", { type: "submit" }, "Estimate")),
      estimateOut));

  async function showByKey() {
    const name = key.value.trim();
    if (!name) return;
    try {
      const report = await api(`/cost?by=${encodeURIComponent("metadata:" + name)}&since=${encodeURIComponent(since)}`);
      fill(byKey, report.groups.length ? costTable(report.groups, name) : h("p", { class: "muted" }, "Nothing has this key."));
    } catch (error) { fill(byKey, errorBox(error)); }
  }
  if (key.value) await showByKey();
}

function limitView(limit) {
  if (!limit) return h("p", {}, "No spending limit is set (", h("code", {}, "rgrid cost limit set 5.00"), " sets one).");
  const used = limit.limit_micros ? limit.spent_micros / limit.limit_micros : 0;
  return h("div", { id: "limit" },
    h("p", {}, `${money(limit.spent_micros)} of ${money(limit.limit_micros)} per ${limit.period} used (${(used * 100).toFixed(1)}%) since `, when(limit.period_start), "."),
    h("meter", { min: 0, max: limit.limit_micros, low: limit.limit_micros * 0.8, high: limit.limit_micros * 0.95,
      optimum: 0, value: Math.min(limit.spent_micros, limit.limit_micros), "aria-label": "Spending limit used" }));
}

function costTable(groups, label) {
  return table([
    { label, cell: (g) => label === "Batch" && g.group.startsWith("batch_") ? batchLink(g.group) : h("code", {}, g.group) },
    { label: "Executions", num: true, cell: (g) => g.executions },
    { label: "Compute", num: true, cell: (g) => seconds(g.compute_us / 1e6) },
    { label: "Cost", num: true, cell: (g) => money(g.cost_micros) },
  ], groups, { caption: `Cost by ${label}` });
}

// Bars per day as SVG built node by node (no library): one bar per day of the range, the
// empty days included, so the chart's time axis is even.
function costChart(groups, days) {
  const byDay = new Map(groups.map((g) => [g.group, g.cost_micros]));
  const series = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    const day = new Date(Date.now() - i * 86400e3).toISOString().slice(0, 10);
    series.push([day, byDay.get(day) || 0]);
  }
  const width = 720, height = 240, left = 70, bottom = 40, top = 14;
  const max = Math.max(1, ...series.map(([, v]) => v));
  const step = (width - left - 10) / series.length;
  const chart = svg("svg", { class: "chart", id: "cost-chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": "chart-title" }, svg("title", { id: "chart-title" },
    `Spend per day over the last ${days} days; the highest day ${money(max === 1 ? 0 : max)}`));
  chart.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - 5, y2: height - bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    svg("text", { x: left - 6, y: top + 4, "text-anchor": "end" }, money(max === 1 ? 0 : max)),
    svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "€0"));
  series.forEach(([day, value], i) => {
    const barHeight = ((height - bottom - top) * value) / max;
    const x = left + i * step + 1;
    chart.append(svg("rect", { class: "bar", x, y: height - bottom - barHeight, width: Math.max(1, step - 2),
      height: barHeight, "data-day": day, "data-micros": value }, svg("title", {}, `${day}: ${money(value)}`)));
    if (i % Math.ceil(series.length / 6) === 0 || i === series.length - 1) {
      chart.append(svg("text", { x: x + step / 2, y: height - bottom + 16, "text-anchor": "middle" }, day.slice(5)));
    }
  });
  return chart;
}

// ---------------------------------------------------------------- workers

async function workersPage() {
  const list = h("div", { id: "workers" });
  const scaler = h("div", { id: "autoscaler" });
  render("Workers", h("h1", {}, "Workers"), list, scaler);
  const load = async () => {
    const [workers, auto] = await Promise.all([api("/workers"), api("/autoscaler")]);
    fill(list, workers.length ? table([
      { label: "Worker", cell: (w) => h("code", {}, w.name) },
      { label: "State", cell: (w) => w.state },
      { label: "Slots busy/total", num: true, cell: (w) => `${w.busy}/${w.slots}` },
      { label: "Price per hour", num: true, cell: (w) => money(w.hourly_price_micros) },
      { label: "Billing period ends", cell: (w) => w.period_end ? when(w.period_end) : w.ended_at ? h("span", {}, "ended ", when(w.ended_at)) : "—" },
      { label: "Kind", cell: (w) => w.kind || w.executor || "—" },
      { label: "Provider id", cell: (w) => w.provider_id || "—" },
    ], workers, { caption: "Workers" }) : h("p", { class: "muted" }, "No workers."));
    fill(scaler, auto.enabled ? h("section", { "aria-labelledby": "auto-h" },
      h("h2", { id: "auto-h" }, "Autoscaler"), facts([
        ["Provider", `${auto.provider} (${auto.kind})`],
        ["Nodes", `${auto.min_nodes} to ${auto.max_nodes}`],
        ["Status", auto.status],
        ["Last error", auto.last_error],
        ["Creating waits until", auto.backoff_until ? when(auto.backoff_until) : null],
      ])) : null);
  };
  await load();
  every(3000, load);
}

start().catch((error) => render("Error", h("h1", {}, "The console could not start"), errorBox(error)));
