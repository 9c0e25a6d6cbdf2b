// offshoot web UI: the API key (kept in this tab's sessionStorage and sent
// as a bearer token), the SQL console, branch actions and live endpoint
// states. Pages are rendered by the server; this script only calls the
// JSON API under /v1 and swaps page content.
"use strict";
(() => {
  const KEY = "offshoot.apiKey";
  const getKey = () => sessionStorage.getItem(KEY) || "";
  const headers = (extra) => {
    const h = Object.assign({}, extra || {});
    const k = getKey();
    if (k) h["Authorization"] = "Bearer " + k;
    return h;
  };
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const say = (el, msg, bad) => { if (el) { el.textContent = msg; el.classList.toggle("error", !!bad); } };

  // api calls the JSON API and returns the decoded body, or throws an
  // Error whose message comes from the problem+json body.
  async function api(method, url, body) {
    const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(url, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!res.ok) {
      const p = data || {};
      let msg = (p.title || res.statusText) + (p.detail ? ": " + p.detail : "");
      if (p.sqlstate) msg += " (SQLSTATE " + p.sqlstate + ")";
      if (res.status === 401) msg += " — enter an API key at the top of the page.";
      const err = new Error(msg);
      err.status = res.status;
      err.problem = p;
      throw err;
    }
    return data;
  }

  // fetchPage loads url with the key and returns the parsed document.
  async function fetchPage(url) {
    const res = await fetch(url, { headers: headers({ Accept: "text/html" }) });
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    return { status: res.status, doc };
  }

  // reloadMain re-renders the page's <main> from the server, with the key.
  async function reloadMain() {
    const { status, doc } = await fetchPage(location.href);
    const main = $("main", doc);
    if (!main) return status;
    $("main").replaceWith(main);
    document.title = doc.title;
    document.body.toggleAttribute("data-needs-key", doc.body.hasAttribute("data-needs-key"));
    init();
    return status;
  }

  function keyForm() {
    const form = $("#key-form");
    if (!form) return;
    const status = $("#key-status");
    say(status, getKey() ? "key set for this tab" : "");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = form.key.value.trim();
      if (!v) return;
      sessionStorage.setItem(KEY, v);
      form.key.value = "";
      say(status, "key set for this tab");
      if (document.body.hasAttribute("data-needs-key")) {
        const st = await reloadMain();
        if (st === 401) say(status, "key rejected", true);
      }
    });
    $("#key-forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); say(status, "key forgotten"); });
  }

  function renderResult(r) {
    const wrap = document.createElement("div");
    const cap = document.createElement("p");
    cap.textContent = r.command + (r.truncated ? " (truncated)" : "");
    wrap.appendChild(cap);
    if (!r.columns || r.columns.length === 0) return wrap;
    const t = document.createElement("table");
    t.className = "grid result-grid";
    const hr = t.createTHead().insertRow();
    for (const c of r.columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = c.name;
      th.title = c.type;
      hr.appendChild(th);
    }
    const tb = t.createTBody();
    for (const row of r.rows || []) {
      const tr = tb.insertRow();
      for (const v of row) {
        const td = tr.insertCell();
        if (v === null) { td.textContent = "NULL"; td.className = "null"; }
        else if (typeof v === "object") td.textContent = JSON.stringify(v);
        else { td.textContent = String(v); if (typeof v === "number") td.className = "num"; }
      }
    }
    wrap.appendChild(t);
    return wrap;
  }

  function sqlConsole() {
    const form = $("#sql-form");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const status = $("#sql-status"), out = $("#sql-result");
      out.replaceChildren();
      say(status, "running…");
      const body = { sql: form.sql.value, read_only: form.read_only.checked, max_rows: Number(form.max_rows.value) || 200 };
      try {
        const res = await api("POST", form.dataset.url, body);
        for (const r of res.results) out.appendChild(renderResult(r));
        say(status, res.results.length + " result(s) in " + res.duration_ms.toFixed(1) + " ms");
      } catch (e) {
        say(status, e.message, true);
      }
    });
  }

  // parseLabels reads "k=v, k2=v2" into {k: "v", k2: "v2"}.
  function parseLabels(text) {
    const out = {};
    for (const part of text.split(",")) {
      const p = part.trim();
      if (!p) continue;
      const i = p.indexOf("=");
      if (i <= 0) throw new Error("labels: want key=value, got " + p);
      out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
    }
    return out;
  }

  function formJSON(form) {
    const o = {};
    const json = (form.dataset.jsonFields || "").split(",");
    for (const [k, v] of new FormData(form)) if (v !== "") o[k] = json.includes(k) ? JSON.parse(v) : v;
    return o;
  }

  function actions() {
    for (const form of $$("form[data-api]")) {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const out = $(".result", form);
        if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
        say(out, "working…");
        try {
          await api(form.dataset.api, form.dataset.url, formJSON(form));
          say(out, "done");
          if (form.dataset.after === "reload") await reloadMain();
        } catch (e) { say(out, e.message, true); }
      });
    }
    for (const b of $$("button[data-action]")) {
      b.addEventListener("click", async () => {
        let body;
        if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
        try {
          if (b.dataset.body) body = JSON.parse(b.dataset.body);
          if (b.dataset.prompt) {
            const v = prompt(b.dataset.prompt, b.dataset.default || "");
            if (v === null) return;
            body = { [b.dataset.field]: b.dataset.kind === "labels" ? parseLabels(v) : v };
          }
          await api(b.dataset.action, b.dataset.url, body);
          if (b.dataset.after) location.assign(b.dataset.after);
          else await reloadMain();
        } catch (e) { alert(e.message); }
      });
    }
    for (const b of $$("button[data-copy-conn]")) {
      b.addEventListener("click", async () => {
        try {
          const c = await api("GET", b.dataset.copyConn);
          const s = c.connection_uri || c.uri || c.connection_string || JSON.stringify(c);
          await navigator.clipboard.writeText(s);
          b.textContent = "Copied";
        } catch (e) { alert(e.message); }
      });
    }
  }

  // Live endpoint states: poll the project's states (a small JSON object
  // {branch: state}) and update every state shown.
  let poller = 0;
  function pollStates() {
    clearInterval(poller);
    const el = $("[data-poll]");
    if (!el) return;
    const every = Number(el.dataset.pollMs) || 2000;
    poller = setInterval(async () => {
      try {
        const res = await fetch(el.dataset.poll, { headers: headers() });
        if (!res.ok) return;
        const states = await res.json();
        for (const cell of $$("[data-state-for]")) {
          const st = states[cell.dataset.stateFor];
          if (st !== undefined && cell.textContent !== st) {
            cell.textContent = st;
            cell.className = "state st-" + st;
          }
        }
      } catch (e) { /* next tick */ }
    }, every);
  }

  // Pages of work in progress (a running experiment) re-render their
  // <main> until the work is done.
  let refresher = 0;
  function refresh() {
    clearTimeout(refresher);
    const el = $("[data-refresh]");
    if (el) refresher = setTimeout(reloadMain, Number(el.dataset.refresh) || 3000);
  }

  function init() {
    refresh();
    sqlConsole();
    actions();
    pollStates();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    keyForm();
    init();
    if (document.body.hasAttribute("data-needs-key") && getKey()) await reloadMain();
  });
})();
