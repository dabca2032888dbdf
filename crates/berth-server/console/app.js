// berth console: plain JavaScript, its own source (no build step, nothing from elsewhere).
//
// Every view reads the API with the token the user entered (kept in sessionStorage, so it
// lasts as long as the tab) and refreshes once a second. Pages are built with DOM calls and
// text nodes only, never from HTML strings: container ids, commands, reasons, logs and
// tenant names are shown as text and cannot inject markup.
"use strict";

// Errors of this page, for whoever looks (the browser test reads them): a script error or
// a rejected promise nobody handled.
window.berthConsoleErrors = [];
window.addEventListener("error", (event) => window.berthConsoleErrors.push(String(event.message)));
window.addEventListener("unhandledrejection", (event) =>
  window.berthConsoleErrors.push(String(event.reason)));

// How long the last build of each view took, in ms (fetch and DOM), for measuring.
window.berthTimings = {};

const TOKEN_KEY = "berth.token";
const REFRESH_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const TERMINAL = new Set(["exited", "failed", "lost", "preempted"]);

/** An API answer other than 2xx. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- the API ----

/** Calls the API at `path` with the session's token; the parsed JSON answer. */
async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    // The token was revoked or mistyped: ask again rather than poll with it.
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin((body && body.message) || "the token was refused");
  }
  if (!response.ok) {
    throw new ApiError(response.status, (body && body.message) || response.statusText);
  }
  return body;
}

/** The path of a container's endpoint. */
function containerPath(id, rest = "") {
  return "/v1/containers/" + encodeURIComponent(id) + rest;
}

// ---- building the page ----

/**
 * An element `tag` with `attrs` (`class`, `id`, other attributes; `on*` functions become
 * listeners) and `children`: strings and numbers become text nodes, null is skipped.
 */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element `tag` with `attrs` and `children`, like `h`. */
function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `node` with `children`, as `h` takes them. */
function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** A table with `headings` and `rows` (arrays of cells, or `{cells, class}`). */
function table(headings, rows) {
  return h("table", null,
    h("thead", null, h("tr", null, headings.map((t) => h("th", null, t)))),
    h("tbody", null, rows.map((row) => Array.isArray(row)
      ? h("tr", null, row.map(cell))
      : h("tr", { class: row.class, "data-id": row.id }, row.cells.map(cell)))));
}

function cell(value) {
  return value instanceof Node && value.nodeName === "TD" ? value : h("td", null, value);
}

function num(value) {
  return h("td", { class: "num" }, value);
}

function statusBadge(status) {
  return h("span", { class: "status status-" + status }, status);
}

/** A capacity bar: `used` of `total`, labelled. */
function bar(used, total, label, extraClass) {
  const fraction = total > 0 ? Math.min(1, used / total) : 0;
  const fill = h("span");
  // CSSOM, not a style attribute: the security policy forbids inline styles.
  fill.style.width = (fraction * 100).toFixed(1) + "%";
  const classes = ["bar", extraClass, fraction >= 1 ? "full" : null].filter(Boolean).join(" ");
  return [h("span", { class: classes, title: label }, fill), h("span", { class: "bar-label" }, label)];
}

function age(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return ms + " ms";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", "") : "";
}

function mib(value) {
  return value >= 1024 ? (value / 1024).toFixed(1) + " GiB" : value + " MiB";
}

/** What a view shows when the API refused or failed. */
function failure(error) {
  if (error.status === 403) {
    return h("p", { class: "error" }, "This token may not see this: " + error.message +
      " (the fleet, the demand and the throughput need an admin token).");
  }
  return h("p", { class: "error" }, String(error.message || error));
}

// ---- the views: each has `mount(params)`, returning its root node and a `refresh()` ----

const fleetView = {
  mount() {
    const root = h("section", { id: "fleet" });
    return { root, refresh: () => refreshFleet(root) };
  },
};

async function refreshFleet(root) {
  const started = performance.now();
  const list = await api("/v1/workers");
  const byPool = new Map();
  for (const worker of list.workers) {
    if (!byPool.has(worker.pool)) byPool.set(worker.pool, []);
    byPool.get(worker.pool).push(worker);
  }
  const sections = [...byPool.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([pool, workers]) => poolSection(pool, workers));
  fill(root,
    h("p", { class: "note" }, list.workers.length + " workers in " + byPool.size + " pools"),
    ...sections,
    quarantinedSection(list.quarantined || []));
  // Reading a size lays the page out now, so that the figure includes the layout.
  void root.offsetHeight;
  window.berthTimings.fleet = performance.now() - started;
}

function poolSection(pool, workers) {
  const lost = workers.filter((w) => w.status === "lost").length;
  return h("div", { class: "pool" },
    h("h2", null, "Pool " + pool + " (" + workers.length + " workers" + (lost ? ", " + lost + " lost" : "") + ")"),
    table(["Worker", "Status", "Heartbeat", "CPU", "Memory", "GPUs", "Runtime"],
      workers.map(workerRow)));
}

function workerRow(w) {
  const cpuUsed = w.total.cpu_millicores - w.free.cpu_millicores;
  const memUsed = w.total.memory_mib - w.free.memory_mib;
  const gpus = (w.gpus || []).map((g) => bar(1000 - g.free_milli, 1000,
    "#" + g.index + (g.healthy ? "" : " unhealthy"), g.healthy ? "gpu" : "gpu unhealthy"));
  return {
    id: w.id,
    class: "worker " + w.status,
    cells: [
      h("td", { class: "worker-id" }, w.id),
      h("td", { class: "worker-status" }, statusBadge(w.status)),
      num(age(w.heartbeat_age_ms)),
      h("td", null, bar(cpuUsed, w.total.cpu_millicores, cpuUsed + "/" + w.total.cpu_millicores + "m")),
      h("td", null, bar(memUsed, w.total.memory_mib, mib(memUsed) + "/" + mib(w.total.memory_mib))),
      h("td", null, gpus.length ? gpus : (w.gpu_type ? w.gpu_type : "")),
      h("td", null, w.runtime),
    ],
  };
}

function quarantinedSection(quarantined) {
  if (quarantined.length === 0) return null;
  return h("div", null,
    h("h2", null, "Quarantined (records that do not read back; set aside until they register again)"),
    table(["Subject", "What is wrong"], quarantined.map((v) => ({
      class: "quarantined", cells: [h("td", null, statusBadge("quarantined"), " ", v.subject), v.detail],
    }))));
}

// Filters of the containers view, kept while the tab lives.
const filters = { state: "", tenant: "", worker: "" };

const containersView = {
  mount() {
    const body = h("div");
    const states = ["", "pending", "scheduled", "pulling", "running", "exited", "failed", "lost", "preempted"];
    const select = h("select", { id: "filter-state", onchange: () => { filters.state = select.value; } },
      states.map((st) => h("option", { value: st }, st || "any state")));
    select.value = filters.state;
    const text = (name) => {
      const input = h("input", { id: "filter-" + name, placeholder: name, oninput: () => { filters[name] = input.value.trim(); } });
      input.value = filters[name];
      return input;
    };
    const root = h("section", { id: "containers" },
      h("div", { class: "filters" }, h("label", null, "State ", select), text("tenant"), text("worker")),
      body);
    return { root, refresh: () => refreshContainers(body) };
  },
};

async function refreshContainers(body) {
  const query = "?limit=1000" + (filters.state ? "&state=" + encodeURIComponent(filters.state) : "");
  const list = await api("/v1/containers" + query);
  // The API filters by state; tenant and worker are matched here, on what it returned.
  const shown = list.containers.filter((c) =>
    (!filters.tenant || c.tenant === filters.tenant) && (!filters.worker || c.worker === filters.worker));
  fill(body,
    h("p", { class: "note" }, shown.length + " of the " + list.containers.length + " newest containers"),
    containerTable(shown));
}

function containerTable(containers) {
  return table(["Container", "Tenant", "State", "Worker", "Submitted", "Reason"],
    containers.map((c) => ({
      id: c.id,
      class: "container",
      cells: [
        h("td", null, h("a", { href: "#/containers/" + encodeURIComponent(c.id) }, c.id)),
        c.tenant,
        h("td", { class: "container-state" }, statusBadge(c.state)),
        c.worker || "",
        when(c.submitted_at_ms),
        c.reason || "",
      ],
    })));
}

const containerView = {
  mount(id) {
    const record = h("div");
    const logs = h("pre", { class: "logs", id: "logs" });
    const follow = { next: undefined, done: false };
    const root = h("section", { id: "container" },
      h("h2", null, "Container ", h("code", null, id)), record, h("h2", null, "Logs"), logs);
    return {
      root,
      refresh: async () => {
        await refreshRecord(id, record);
        await followLogs(id, logs, follow);
      },
    };
  },
};

async function refreshRecord(id, node) {
  const c = await api(containerPath(id));
  const fields = [
    ["state", statusBadge(c.state)], ["tenant", c.tenant], ["worker", c.worker], ["reason", c.reason],
    ["command", (c.command || []).join(" ")], ["image", c.image], ["exit code", c.exit_code],
    ["cpu", c.resources.cpu_millicores + "m"], ["memory", mib(c.resources.memory_mib)],
    ["gpu", c.gpu ? JSON.stringify(c.gpu) : null], ["pool", c.pool], ["priority", c.priority],
    ["submitted", when(c.submitted_at_ms)], ["scheduled", when(c.scheduled_at_ms)],
    ["started", when(c.started_at_ms)], ["finished", when(c.finished_at_ms)],
    ["retries", c.retries + " of " + c.max_retries], ["deferrals", c.deferrals],
    ["cancel requested", c.cancel_requested ? "yes" : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  fill(node,
    h("dl", { class: "record" }, fields.map(([name, value]) => [h("dt", null, name), h("dd", { "data-field": name }, value)])),
    cancelButton(c));
}

/**
 * The cancel button, for a container that has not ended. Whoever may read the container
 * may cancel it (an admin, or a client of its tenant); the API decides and its refusal is
 * shown.
 */
function cancelButton(c) {
  if (TERMINAL.has(c.state) || c.cancel_requested) return null;
  const result = h("span", { class: "error" });
  const button = h("button", {
    id: "cancel", class: "danger", type: "button",
    onclick: async () => {
      button.disabled = true;
      try {
        await api(containerPath(c.id, "/cancel"), { method: "POST" });
      } catch (error) {
        result.textContent = error.message;
        button.disabled = false;
      }
    },
  }, "Cancel");
  return h("p", null, button, " ", result);
}

/** Appends the log lines printed since the last call; stops once the container ended. */
async function followLogs(id, pre, follow) {
  if (follow.done) return;
  const after = follow.next === undefined ? "" : "?after=" + follow.next;
  const slice = await api(containerPath(id, "/logs") + after);
  if (slice.dropped > 0) pre.append(document.createTextNode("[" + slice.dropped + " lines no longer kept]\n"));
  if (slice.lines.length > 0) pre.append(document.createTextNode(slice.lines.join("\n") + "\n"));
  follow.next = slice.next;
  follow.done = TERMINAL.has(slice.state);
}

const backlogView = {
  mount() {
    const root = h("section", { id: "backlog" });
    return { root, refresh: () => refreshBacklog(root) };
  },
};

async function refreshBacklog(root) {
  const pending = await api("/v1/containers?state=pending&limit=1000");
  const demand = await api("/v1/demand").catch((error) => error);
  fill(root,
    h("h2", null, "Unmet demand per pool"),
    demand instanceof Error ? failure(demand) : demandTable(demand.pools),
    h("h2", null, "The queue (" + pending.containers.length + " pending, newest first)"),
    table(["Container", "Tenant", "Priority", "Waited", "Deferrals", "Reason"],
      pending.containers.map((c) => [
        h("a", { href: "#/containers/" + encodeURIComponent(c.id) }, c.id), c.tenant, num(c.priority),
        num(age(Date.now() - c.submitted_at_ms)), num(c.deferrals), c.reason || "",
      ])));
}

function demandTable(pools) {
  if (pools.length === 0) return h("p", { class: "note" }, "Nothing waits for room.");
  return table(["Pool", "Requests", "CPU", "Memory", "GPUs by type"], pools.map((p) => [
    p.pool === null ? "(no pool matches)" : p.pool, num(p.requests), num(p.resources.cpu_millicores + "m"),
    num(mib(p.resources.memory_mib)),
    Object.entries(p.gpus_by_type).map(([type, count]) => type + ": " + count).join(", "),
  ]));
}

const throughputView = {
  mount() {
    const root = h("section", { id: "throughput" });
    return { root, refresh: () => refreshThroughput(root) };
  },
};

async function refreshThroughput(root) {
  const view = await api("/v1/throughput?minutes=5");
  const placed = view.seconds.reduce((sum, second) => sum + second.placed, 0);
  fill(root,
    h("h2", null, "Placements per second (bars) and p50 placement latency (dots), last 5 minutes"),
    chart(view.seconds),
    h("p", { class: "note" }, placed + " placements in the window, from " + view.records_read +
      " container records" + (view.truncated ? " (the read hit its limit: older placements are missing)" : "") + "."));
}

/** The throughput chart: a bar per second for placements, a dot for the p50 latency. */
function chart(seconds) {
  const width = 900, height = 260, pad = 40;
  const maxPlaced = Math.max(1, ...seconds.map((x) => x.placed));
  const latencies = seconds.map((x) => x.p50_latency_ms).filter((x) => x !== null);
  const maxLatency = Math.max(1, ...latencies);
  const step = (width - 2 * pad) / Math.max(1, seconds.length);
  const y = (value, max) => height - pad - (value / max) * (height - 2 * pad);
  const bars = seconds.map((x, i) => x.placed === 0 ? null : s("rect", {
    class: "placed", x: pad + i * step, y: y(x.placed, maxPlaced), width: Math.max(1, step - 0.5),
    height: height - pad - y(x.placed, maxPlaced),
  }, s("title", null, x.placed + " placed at " + when(x.at_ms))));
  // A dot per second with placements: a line would join seconds far apart.
  const dots = seconds.map((x, i) => x.p50_latency_ms === null ? null : s("circle", {
    class: "latency", cx: (pad + (i + 0.5) * step).toFixed(1), cy: y(x.p50_latency_ms, maxLatency).toFixed(1), r: 3,
  }, s("title", null, "p50 " + x.p50_latency_ms + " ms at " + when(x.at_ms))));
  return s("svg", { class: "chart", id: "throughput-chart", width, height, viewBox: "0 0 " + width + " " + height },
    s("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    s("text", { x: 4, y: pad - 8 }, maxPlaced + "/s"),
    s("text", { x: width - pad - 60, y: pad - 8 }, "p50 " + maxLatency + " ms"),
    s("text", { x: pad, y: height - pad + 16 }, "-5 min"),
    s("text", { x: width - pad - 20, y: height - pad + 16 }, "now"),
    bars,
    dots);
}

// ---- routing and the refresh loop ----

/** The view of the location's hash, and its parameter. */
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  switch (parts[0]) {
    case "containers":
      return parts[1] ? { name: "containers", view: containerView, param: decodeURIComponent(parts[1]) }
        : { name: "containers", view: containersView };
    case "backlog": return { name: "backlog", view: backlogView };
    case "throughput": return { name: "throughput", view: throughputView };
    default: return { name: "fleet", view: fleetView };
  }
}

// The mounted view; a new mount makes older refreshes stop.
let current = null;

function mount() {
  const { name, view, param } = route();
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("current", link.id === "nav-" + name);
  }
  const mounted = view.mount(param);
  current = mounted;
  document.getElementById("view").replaceChildren(mounted.root);
  tick(mounted);
}

/** Refreshes `mounted` now and once a second after each refresh, while it is current. */
async function tick(mounted) {
  if (mounted !== current || !sessionStorage.getItem(TOKEN_KEY)) return;
  const status = document.getElementById("status");
  try {
    await mounted.refresh();
    status.className = "";
    status.textContent = "live, updated " + new Date().toLocaleTimeString();
  } catch (error) {
    // A refusal or an unknown container stays so: say it in the view. Anything else may
    // pass (a restarting server): keep the last good view and say it is stale.
    if (mounted === current && (error.status === 403 || error.status === 404)) {
      fill(mounted.root, failure(error));
    }
    status.className = "error";
    status.textContent = "not updated: " + error.message;
  }
  setTimeout(() => tick(mounted), REFRESH_MS);
}

function showLogin(message) {
  current = null;
  document.getElementById("login").hidden = false;
  document.getElementById("forget").hidden = true;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("view").replaceChildren();
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("forget").hidden = false;
  mount();
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  start();
});
document.getElementById("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
});
window.addEventListener("hashchange", () => { if (sessionStorage.getItem(TOKEN_KEY)) mount(); });

if (sessionStorage.getItem(TOKEN_KEY)) start(); else showLogin();
