// The WormFS web UI: plain JavaScript over the REST API (/api/v1), no build step, no
// network beyond the node it came from. Each page renders into #page and marks
// document.body.dataset.ready with its name once drawn (tests wait for it).
"use strict";

const $ = (sel) => document.querySelector(sel);
let refresh = null;

function token() { return sessionStorage.getItem("wormfs-token"); }

// A token in the address (#token=...&page=...) logs in at once and leaves the address.
function takeTokenFromAddress() {
  const h = location.hash;
  const m = h.match(/[#&?]token=([^&]+)/);
  if (!m) return;
  sessionStorage.setItem("wormfs-token", decodeURIComponent(m[1]));
  const rest = h.replace(/[#&?]?token=[^&]+&?/, "").replace(/^#?/, "");
  history.replaceState(null, "", rest ? "#" + rest : "#/overview");
}

async function api(method, path, body) {
  const init = { method, headers: { "Authorization": "Bearer " + token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch("/api/v1" + path, init);
  if (r.status === 401) { showLogin("This token is unknown or revoked."); throw new Error("unauthorized"); }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new Error(data && data.error ? data.error.message : r.statusText);
  return data;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c]));

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0; n = Number(n);
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function when(ns) {
  if (!ns) return "never";
  return new Date(Number(ns) / 1e6).toLocaleString();
}

function state(s) {
  const cls = s === "ok" || s === "online" || s === "active" || s === "done" || s === "idle" ? "ok"
    : s === "paused" || s === "draining" ? "warn" : "bad";
  return `<span class="${cls}">${esc(s)}</span>`;
}

function showLogin(message) {
  $("#login").hidden = false;
  $("#page").innerHTML = "";
  $("#logout").hidden = true;
  $("#login-error").textContent = message || "";
  document.body.dataset.ready = "login";
}

function table(heads, rows) {
  return `<table><thead><tr>${heads.map((h) => `<th>${h}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.join("")}</tbody></table>`;
}

const pages = {
  async overview() {
    const [c, risk, w] = await Promise.all([
      api("GET", "/cluster"), api("GET", "/files/at-risk?max_margin=0&limit=1"), api("GET", "/workers"),
    ]);
    const disks = c.nodes.flatMap((n) => n.disks);
    const total = disks.reduce((a, d) => a + Number(d.total), 0);
    const free = disks.reduce((a, d) => a + Number(d.free), 0);
    const online = c.nodes.filter((n) => n.state === "online").length;
    const card = (k, v, cls) => `<div class="card"><div class="v ${cls || ""}">${v}</div><div class="k">${k}</div></div>`;
    return `<h1>Overview</h1><div class="cards">` +
      card("master", esc(c.master || "none"), c.master ? "ok" : "bad") +
      card("nodes online", `${online} / ${c.nodes.length}`, online === c.nodes.length ? "ok" : "warn") +
      card("capacity free", `${bytes(free)} of ${bytes(total)}`) +
      card("files and directories", c.files) + card("data stored", bytes(c.bytes)) +
      card("stripes at risk", risk.at_risk, risk.at_risk ? "warn" : "ok") +
      card("stripes unreadable", risk.unreadable, risk.unreadable ? "bad" : "ok") +
      card("Raft term", c.term) + `</div>` +
      `<h2>Workers</h2>` + workerTable(w.workers, false) +
      `<h2>Policies</h2>` + policyTable(c.policies, c.default_policy);
  },

  async nodes() {
    const c = await api("GET", "/cluster");
    const rows = c.nodes.map((n) => {
      const disks = n.disks.map((d) => `<div class="mono">${esc(d.id)}: ${bytes(d.free)} free of ${bytes(d.total)} ` +
        `${state(n.state !== "online" ? "node " + n.state : !d.healthy ? "failed" : d.draining ? "draining" : "ok")} ` +
        (d.draining ? `<button data-disk="${esc(d.id)}" data-action="undrain">Undrain</button>`
          : `<button data-disk="${esc(d.id)}" data-action="drain">Drain</button>`) + `</div>`).join("");
      return `<tr data-node="${esc(n.id)}"><td>${esc(n.id)}</td><td class="mono">${esc(n.address)}</td>` +
        `<td>${state(n.state)}</td><td>${esc(n.role)}</td><td>${when(n.last_heartbeat)}</td><td>${disks}</td>` +
        `<td><button class="danger" data-remove="${esc(n.id)}">Remove…</button></td></tr>`;
    });
    return `<h1>Nodes and disks</h1>` +
      table(["node", "address", "state", "role", "last heartbeat", "disks", ""], rows) +
      `<div id="removal"></div>`;
  },

  async files(params) {
    const path = params.get("path") || "/";
    const attrIsDir = path === "/" || path.endsWith("/");
    const crumbs = path.split("/").filter(Boolean);
    let acc = "";
    const trail = [`<a href="#/files?path=/">/</a>`].concat(crumbs.map((c) => {
      acc += "/" + c;
      return `<a href="#/files?path=${encodeURIComponent(acc)}">${esc(c)}</a>`;
    })).join(" / ");
    const asDir = async (p) => {
      const l = await api("GET", "/files/list?path=" + encodeURIComponent(p));
      const base = p.endsWith("/") ? p : p + "/";
      const rows = l.entries.map((e) => {
        const full = base + e.name;
        const dir = e.kind === 2;
        return `<tr><td><a href="#/files?path=${encodeURIComponent(dir ? full + "/" : full)}">${esc(e.name)}${dir ? "/" : ""}</a></td>` +
          `<td>${dir ? "directory" : "file"}</td></tr>`;
      });
      return `<h1>Files</h1><p>${trail}</p>` + table(["name", "kind"], rows) +
        (l.more ? `<p>More entries follow (the first page is shown).</p>` : "");
    };
    if (attrIsDir) return asDir(path);
    const f = await api("GET", "/files/layout?path=" + encodeURIComponent(path));
    if (f.attr && f.attr.kind === 2) return asDir(path);
    const stripes = f.stripes.map((s) => {
      const chunks = s.inline ? "kept in the metadata" : s.chunks.map((c) =>
        `<div class="mono">chunk ${c.index}: ${esc(c.node)} / ${esc(c.disk)} ${bytes(c.size)} ${state(c.state)}</div>`).join("");
      const margin = s.inline ? "" : s.margin < 0 ? `<span class="bad">unreadable</span>` :
        `<span class="${s.margin === 0 ? "warn" : "ok"}">${s.margin}</span>`;
      return `<tr><td>${s.index}</td><td>${bytes(s.len)}</td><td>${margin}</td><td>${chunks}</td></tr>`;
    });
    const l = f.attr && f.attr.layout;
    return `<h1>${esc(path)}</h1><p>${trail}</p>` +
      `<p>${bytes(f.attr ? f.attr.size : 0)}` + (l ? `, policy ${esc(l.policy)} (${l.k}+${l.m})` : "") + `</p>` +
      `<div id="layout">` + table(["stripe", "bytes", "margin", "chunks"], stripes) + `</div>`;
  },

  async policies() {
    const p = await api("GET", "/policies");
    return `<h1>Policies</h1>` + policyTable(p.policies, p.default_policy);
  },

  async workers() {
    const w = await api("GET", "/workers");
    return `<h1>Workers</h1>` + workerTable(w.workers, true);
  },

  async users() {
    const [u, t] = await Promise.all([api("GET", "/users"), api("GET", "/tokens")]);
    const rows = u.users.map((x) => `<tr><td>${esc(x.name)}</td><td>${x.uid}</td><td>${x.gid}</td>` +
      `<td>${x.admin ? "admin" : ""}${x.host ? " host" : ""}</td><td>${when(x.created)}</td></tr>`);
    const toks = t.tokens.map((x) => `<tr><td>${esc(x.name)}</td><td>${when(x.created)}</td></tr>`);
    return `<h1>Users</h1>` + table(["user", "uid", "gid", "role", "created"], rows) +
      `<h2>Admin tokens</h2>` + table(["token", "created"], toks);
  },
};

function policyTable(policies, def) {
  return table(["policy", "k + m", "stripe", ""], policies.map((p) =>
    `<tr><td>${esc(p.name)}</td><td>${p.k} + ${p.m}</td><td>${bytes(p.stripe_size)}</td>` +
    `<td>${p.name === def ? "default" : ""}</td></tr>`));
}

function workerTable(workers, controls) {
  return table(["worker", "state", "progress", "rate", "time left", ""], workers.map((w) => {
    // a run with nothing to do (0 / 0) has no progress to draw: it is not 100 % of anything
    const pct = w.total ? Math.min(100, Math.floor(100 * w.done / w.total)) : null;
    const eta = w.eta_secs >= 0 ? `${w.eta_secs} s` : "";
    const buttons = !controls || w.name.startsWith("garbage") ? "" :
      (w.paused ? `<button data-worker="${esc(w.name)}" data-action="resume">Resume</button>`
        : `<button data-worker="${esc(w.name)}" data-action="pause">Pause</button>`) +
      (w.name === "scrub" ? ` <button data-worker="scrub" data-action="start">Start</button> ` +
        `<button data-worker="scrub" data-action="start" data-deep="1">Start deep</button>`
        : ` <button data-worker="repair" data-action="start">Look for work now</button>`);
    return `<tr data-worker-row="${esc(w.name)}"><td>${esc(w.name)}</td><td>${state(w.paused ? "paused" : w.state)}</td>` +
      (pct === null ? `<td class="muted">nothing to do</td>`
        : `<td><div class="bar"><div style="width:${pct}%"></div></div><span class="pct">${pct} %</span> ${w.done} / ${w.total}</td>`) +
      `<td>${bytes(w.rate)}/s</td><td>${eta}</td><td>${buttons}</td></tr>`;
  }));
}

async function route() {
  clearTimeout(refresh);
  takeTokenFromAddress();
  if (!token()) return showLogin();
  $("#login").hidden = true;
  $("#logout").hidden = false;
  const [name, query] = location.hash.replace(/^#\/?/, "").split("?");
  const page = pages[name] ? name : "overview";
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("current", a.dataset.page === page));
  try {
    $("#page").innerHTML = await pages[page](new URLSearchParams(query || ""));
    document.body.dataset.ready = page;
  } catch (e) {
    if (e.message === "unauthorized") return;
    $("#page").innerHTML = `<h1>${esc(page)}</h1><p class="error">${esc(e.message)}</p>`;
    document.body.dataset.ready = page + ":error";
  }
  if (page === "workers" || page === "overview") refresh = setTimeout(route, 2000);
}

document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  try {
    if (b.dataset.worker) {
      await api("POST", "/workers/" + b.dataset.worker, { action: b.dataset.action, deep: !!b.dataset.deep });
      await route();
    } else if (b.dataset.disk) {
      await api("POST", "/disks", { disk: b.dataset.disk, action: b.dataset.action });
      await route();
    } else if (b.dataset.remove) {
      const id = b.dataset.remove;
      const cost = await api("GET", "/nodes/" + encodeURIComponent(id) + "/removal");
      $("#removal").innerHTML = `<div class="preview" id="preview"><p>Removing <b>${esc(id)}</b> counts its chunks as lost: ` +
        `${cost.files_unreadable} files become unreadable and ${cost.files_at_risk} at risk until repair rebuilds ` +
        `${bytes(cost.rebuild_bytes)} on the other nodes.</p>` +
        `<button class="danger" data-confirm="${esc(id)}">Remove ${esc(id)}</button> <button data-cancel="1">Cancel</button></div>`;
      document.body.dataset.ready = "nodes:preview";
    } else if (b.dataset.confirm) {
      await api("DELETE", "/nodes/" + encodeURIComponent(b.dataset.confirm) + "?confirm=true");
      await route();
      document.body.dataset.ready = "nodes:removed";
    } else if (b.dataset.cancel) {
      $("#removal").innerHTML = "";
    }
  } catch (e) {
    if (e.message !== "unauthorized") alert(e.message);
  }
});

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("wormfs-token", $("#token").value.trim());
  route();
});
$("#logout").addEventListener("click", () => { sessionStorage.removeItem("wormfs-token"); showLogin(); });
window.addEventListener("hashchange", route);
route();
