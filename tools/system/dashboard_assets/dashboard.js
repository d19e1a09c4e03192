// The microcore dashboard: status, routes and the event graph from /system/*, and a
// live feed of requests and events over server-sent events (/system/feed).
// Plain DOM code, no dependencies; every value from the server goes in as text.
"use strict";

(function () {
  const FEED_LIMIT = 300; // rows kept in the feed list (oldest removed)
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  const state = {
    paused: false,
    shown: 0,
    dropped: 0,
    knownNames: new Set(),
    graphTimer: null,
  };

  // -- helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "title") node.title = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function when(seconds) {
    if (!seconds) return "—";
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function short(id) {
    return id ? String(id).slice(-6) : "";
  }

  function clip(text, max) {
    text = String(text);
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function problem(message) {
    const banner = $("problem");
    banner.hidden = !message;
    banner.textContent = message || "";
  }

  async function api(path) {
    const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      problem("The system token is missing or wrong: reload the page to enter it.");
      throw new Error("unauthorized");
    }
    // /system/health answers 503 with a body when something failed: still data
    if (!response.ok && response.status !== 503) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  // -- status: tools and plugins -----------------------------------------------------

  function errorText(error) {
    if (!error) return "";
    const where = error.file ? ` (${error.file}${error.line ? ":" + error.line : ""})` : "";
    return `${error.type}: ${error.message}${where}`;
  }

  function renderStatus(status) {
    const tools = Object.entries(status.tools);
    const plugins = Object.entries(status.plugins);
    const failed = tools.filter(([, t]) => t.status !== "ok").length +
      plugins.filter(([, p]) => p.status !== "ok").length;

    const health = $("health");
    health.textContent = failed ? `${failed} failed` : "healthy";
    health.className = "badge " + (failed ? "failed" : "ok");
    $("counts").textContent = `${tools.length} tools · ${plugins.length} plugins`;
    const reload = status.reloaded_at ? ` · reloaded ${when(status.reloaded_at)} (${status.reload_ms} ms)` : "";
    $("times").textContent = `booted ${when(status.booted_at)} (${status.boot_ms} ms)${reload}`;

    const toolRows = tools.map(([name, tool]) =>
      el("tr", { class: tool.status === "ok" ? "ok" : "failed", "data-tool": name },
        el("td", { class: "mono" }, name),
        el("td", { class: "status " + tool.status }, tool.status),
        el("td", { class: "error" }, errorText(tool.error))));
    $("tools").tBodies[0].replaceChildren(...toolRows);

    const pluginRows = plugins.map(([identity, plugin]) => {
      const error = errorText(plugin.error) || errorText(plugin.reload_error);
      const owns = [
        ...(plugin.routes || []),
        ...(plugin.subscriptions || []).map((s) => "on " + s),
      ];
      return el("tr", { class: plugin.status === "ok" ? "ok" : "failed", "data-plugin": identity },
        el("td", { class: "mono" }, identity, el("div", { class: "muted" }, plugin.file || ""),
          hosted(plugin.details)),
        el("td", { class: "status " + plugin.status }, plugin.status),
        el("td", {}, owns.join(" · "), error ? el("div", { class: "error" }, error) : null));
    });
    $("plugins").tBodies[0].replaceChildren(...pluginRows);
  }

  // -- scheduled jobs -------------------------------------------------------------------

  function seconds(value) {
    if (value === null || value === undefined) return "";
    return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
  }

  function renderJobs(jobs) {
    $("no-jobs").hidden = jobs.length > 0;
    const rows = jobs.map((job) => {
      const last = job.last_run ? `${when(job.last_run)} (${seconds(job.last_duration)})` : "never";
      const health = job.running ? "running" : job.last_error ? "failed" : job.runs ? "ok" : "waiting";
      return el("tr", { class: job.last_error ? "failed" : "", "data-job": `${job.owner}/${job.name}` },
        el("td", { class: "mono" }, job.name, el("div", { class: "muted" }, job.owner)),
        el("td", { class: "mono schedule" }, job.schedule),
        el("td", { class: "status " + health }, health),
        el("td", { class: "last-run" }, "last " + last),
        el("td", { class: "next-run" }, "next " + (job.next_run ? when(job.next_run) : "—")),
        el("td", { class: "muted counts" },
          `${job.runs} runs · ${job.failures} failures · ${job.skips} skips`),
        el("td", { class: "error" }, job.last_error || ""));
    });
    $("jobs").tBodies[0].replaceChildren(...rows);
  }

  // A plugin a tool runs itself (a sidecar): its process id and restarts.
  function hosted(details) {
    if (!details || !details.kind) return null;
    const facts = [details.kind];
    if (details.pid) facts.push("pid " + details.pid);
    if (details.restarts) facts.push(details.restarts + (details.restarts === 1 ? " restart" : " restarts"));
    return el("div", { class: "muted" }, facts.join(" · "));
  }

  function renderRoutes(body) {
    const rows = body.routes.map((route) =>
      el("tr", { class: route.server_errors ? "failed" : "" },
        el("td", { class: "mono" }, route.method || route.kind),
        el("td", { class: "mono" }, route.path),
        el("td", { class: "mono" }, route.owner),
        el("td", {}, route.summary || ""),
        el("td", { class: "muted" }, `${route.requests} req` + (route.server_errors ? ` · ${route.server_errors} 5xx` : ""))));
    $("routes").tBodies[0].replaceChildren(...rows);
  }

  // -- the event graph: senders → names → receivers, drawn as SVG -----------------------

  function renderGraph(graph) {
    const flows = [
      ...graph.events.map((e) => ({
        name: e.name, kind: "event", failed: e.failed, count: e.published,
        senders: e.publishers, receivers: e.subscribers.map((s) => s.plugin),
      })),
      ...graph.requests.map((r) => ({
        name: r.name, kind: "request", failed: false, count: r.published,
        senders: r.requesters, receivers: r.responders,
      })),
    ];
    state.knownNames = new Set(flows.map((f) => f.name));
    const failedNodes = new Set(graph.nodes.filter((n) => n.status !== "ok").map((n) => n.id));
    const senders = [...new Set(flows.flatMap((f) => f.senders))].sort();
    const receivers = [...new Set(flows.flatMap((f) => f.receivers))].sort();

    const W = 230, H = 26, GAP = 12, TOP = 34, COL = [10, 330, 650];
    const rows = Math.max(senders.length, flows.length, receivers.length, 1);
    const root = $("graph");
    root.setAttribute("width", COL[2] + W + 10);
    root.setAttribute("height", TOP + rows * (H + GAP) + 10);
    root.replaceChildren();

    const y = (i) => TOP + i * (H + GAP);
    ["publishers · requesters", "events · requests", "subscribers · responders"].forEach((t, i) =>
      root.append(svg("text", { x: COL[i], y: 16, class: "column-title" }, t)));
    if (!flows.length) {
      root.append(svg("text", { x: COL[1], y: TOP + 16 }, "no events yet"));
      return;
    }

    const edges = svg("g", {});
    root.append(edges);
    const curve = (x1, y1, x2, y2) => {
      const mid = (x1 + x2) / 2;
      return `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    };
    const node = (x, i, label, classes, count) => {
      const g = svg("g", { class: "node " + classes, transform: `translate(${x},${y(i)})` });
      g.append(svg("rect", { width: W, height: H, rx: 5 }));
      g.append(svg("text", { x: 8, y: 17 }, clip(label, 30)));
      if (count) g.append(svg("text", { x: W - 6, y: 17, "text-anchor": "end", class: "count" }, String(count)));
      const title = svg("title", {}, label);
      g.append(title);
      root.append(g);
    };

    senders.forEach((name, i) => node(COL[0], i, name, "plugin" + (failedNodes.has(name) ? " failed" : "")));
    receivers.forEach((name, i) => node(COL[2], i, name, "plugin" + (failedNodes.has(name) ? " failed" : "")));
    flows.forEach((flow, i) => {
      node(COL[1], i, flow.name, flow.kind + (flow.failed ? " failed" : ""), flow.count);
      const cls = "edge " + flow.kind + (flow.failed ? " failed" : "");
      for (const sender of flow.senders) {
        const s = senders.indexOf(sender);
        edges.append(svg("path", { class: cls, d: curve(COL[0] + W, y(s) + H / 2, COL[1], y(i) + H / 2) }));
      }
      for (const receiver of flow.receivers) {
        const r = receivers.indexOf(receiver);
        edges.append(svg("path", { class: cls, d: curve(COL[1] + W, y(i) + H / 2, COL[2], y(r) + H / 2) }));
      }
    });
  }

  // -- the live feed ---------------------------------------------------------------------

  function feedRow(kind, item, history) {
    let classes = kind + (history ? " history" : "");
    let what, where, detail = null;
    if (kind === "request") {
      if (item.status >= 500) classes += " failed";
      else if (item.status >= 400) classes += " warn";
      what = `${item.method} ${item.path} → ${item.status}`;
      where = `${item.duration_ms} ms · ${item.owner || "unrouted"}`;
    } else {
      if (item.failed) classes += " failed";
      what = `${item.name} from ${item.source}`;
      const cause = item.parent_id ? `after ${short(item.parent_id)}` : `req ${short(item.correlation_id)}`;
      where = `${short(item.id)} · ${cause}`;
      if (item.trace_id) {
        const label = `trace ${item.trace_id.slice(0, 8)}`;
        const url = state.traceUrl && state.traceUrl.replace("{trace_id}", item.trace_id);
        // SYSTEM_TRACE_URL comes from the server's settings, the id is 32 hex digits
        where = el("span", {}, where, " · ", url && /^https?:\/\//.test(url)
          ? el("a", { href: url, target: "_blank", rel: "noopener", title: item.trace_id }, label)
          : el("span", { title: item.trace_id }, label));
      }
      if (!item.payload_hidden && item.payload !== null && item.payload !== undefined) {
        detail = el("span", { class: "payload" },
          typeof item.payload === "string" ? item.payload : JSON.stringify(item.payload));
      }
    }
    const stamp = item.timestamp ? new Date(item.timestamp * 1000).toLocaleTimeString() : "";
    return el("li", {
      class: classes,
      "data-kind": kind,
      "data-name": item.name || null,
      "data-corr": kind === "request" ? item.request_id : item.correlation_id,
    },
    el("span", { class: "time" }, stamp),
    el("span", { class: "kind" }, kind),
    el("span", { class: "what" }, what),
    el("span", { class: "where" }, where),
    detail);
  }

  function addRow(row, older) {
    const feed = $("feed");
    if (older) feed.append(row); // history goes under what arrived live
    else feed.prepend(row);
    while (feed.childElementCount > FEED_LIMIT) feed.lastElementChild.remove();
    state.shown += 1;
    updateFeedStats();
  }

  function notice(text) {
    addRow(el("li", { class: "notice" }, text));
  }

  function updateFeedStats() {
    $("feed-stats").textContent = `${state.shown} shown` + (state.dropped ? ` · ${state.dropped} dropped (reader too slow)` : "");
  }

  function onItem(kind, raw) {
    const item = JSON.parse(raw);
    if (kind === "event") scheduleGraph(state.knownNames.has(item.name) ? 2000 : 300); // counts, new names
    if (!state.paused) addRow(feedRow(kind, item, false));
  }

  function connect() {
    const source = new EventSource("/system/feed");
    const badge = $("connection");
    source.addEventListener("ready", (e) => {
      state.traceUrl = JSON.parse(e.data).trace_url || null;
      badge.textContent = "live";
      badge.className = "badge live";
      problem("");
    });
    source.addEventListener("request", (e) => onItem("request", e.data));
    source.addEventListener("event", (e) => onItem("event", e.data));
    source.addEventListener("dropped", (e) => {
      const n = JSON.parse(e.data).dropped;
      state.dropped += n;
      notice(`${n} items dropped: this page read too slowly`);
    });
    source.addEventListener("plugins", refresh);
    source.addEventListener("reload", refresh);
    source.addEventListener("error", (e) => {
      if (e.data) problem(JSON.parse(e.data).message);
      badge.textContent = "reconnecting";
      badge.className = "badge offline";
    });
  }

  // correlated rows light up together: a request and every event it caused
  $("feed").addEventListener("mouseover", (e) => {
    const li = e.target.closest("li[data-corr]");
    for (const other of document.querySelectorAll("#feed li.linked")) other.classList.remove("linked");
    if (!li) return;
    for (const other of document.querySelectorAll("#feed li[data-corr]")) {
      if (other.dataset.corr === li.dataset.corr) other.classList.add("linked");
    }
  });

  $("pause").addEventListener("click", (e) => {
    state.paused = !state.paused;
    e.target.setAttribute("aria-pressed", String(state.paused));
    e.target.textContent = state.paused ? "Resume" : "Pause";
  });
  $("clear").addEventListener("click", () => {
    $("feed").replaceChildren();
    state.shown = 0;
    updateFeedStats();
  });
  $("only-failures").addEventListener("change", (e) => {
    $("feed").classList.toggle("only-failures", e.target.checked);
  });

  // -- loading ---------------------------------------------------------------------------

  async function refreshGraph() {
    const graph = await api("/system/graph");
    renderGraph(graph);
    renderOutbox(graph.outbox);
  }

  // Events committed with publish(..., transaction=tx), not relayed to the bus yet.
  function renderOutbox(pending) {
    const el = $("outbox");
    el.hidden = pending === null || pending === undefined;
    el.textContent = `outbox: ${pending} pending`;
    el.classList.toggle("warn", pending > 0);
  }

  function scheduleGraph(delay) {
    if (state.graphTimer) return; // one refresh at a time, however many events arrive
    state.graphTimer = setTimeout(() => {
      state.graphTimer = null;
      refreshGraph().catch((err) => problem(String(err)));
    }, delay);
  }

  async function refresh() {
    try {
      const [status, routes] = await Promise.all([api("/system/status"), api("/system/routes")]);
      renderStatus(status);
      renderJobs(status.jobs || []);
      renderRoutes(routes);
      await refreshGraph();
    } catch (err) {
      if (String(err) !== "Error: unauthorized") problem("Could not load: " + err);
    }
  }

  async function loadHistory() {
    const body = await api("/system/events?limit=50");
    for (const event of body.events.reverse()) addRow(feedRow("event", event, true), true);
  }

  refresh().then(loadHistory).catch(() => {});
  connect();
  setInterval(refresh, 15000); // slow safety net; the feed triggers refreshes on reloads
  setInterval(() => { // jobs run on their own time: their last and next runs move
    api("/system/status").then((status) => renderJobs(status.jobs || [])).catch(() => {});
  }, 5000);
})();
