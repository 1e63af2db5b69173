// unicom-serve's page: search by an image (drop, paste, upload or pick), browse pseudo classes.
// The state lives in the URL's hash, so every view can be shared and the back button works:
//   #q=item:12&k=10 | #q=query:<id> | #q=member:5 | #view=classes&sort=purity&class=3
"use strict";
const $ = (id) => document.getElementById(id);
let health = null;
let shown = "";          // the hash whose results are on screen (a hash change to it fetches nothing)
let localQuery = {};     // query id -> object URL of the uploaded image, for the query strip

function parseHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { view: p.get("view") || "search", q: p.get("q"), k: p.get("k"), sort: p.get("sort") || "size",
           cls: p.get("class") };
}

function setHash(params) {
  const p = new URLSearchParams();
  for (const [key, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") p.set(key, v);
  const h = "#" + p.toString();
  if (location.hash !== h) location.hash = h; else route();
}

function k() { return Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10)); }

function status(text) { $("status").textContent = text; }
function showError(text) { $("error").textContent = text || ""; }

async function api(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}`, kind: "http" }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [key, v] of Object.entries(attrs || {})) {
    if (key === "class") e.className = v; else if (key.startsWith("on")) e.addEventListener(key.slice(2), v);
    else e.setAttribute(key, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function card(src, alt, lines, onclick, label) {
  const meta = el("span", { class: "meta" }, ...lines);
  return el("button", { class: "card", type: "button", onclick, "aria-label": label, title: alt },
            el("img", { src, alt, loading: "lazy", width: "150", height: "150",
                        onerror: (e) => e.target.classList.add("missing") }), meta);
}

// ---------------------------------------------------------------- search

function renderResults(results) {
  const grid = $("results");
  grid.replaceChildren();
  results.forEach((r, i) => {
    const caption = r.caption || r.key;
    grid.append(card(r.image_url, caption, [
      el("span", { class: "score" }, `#${i + 1} · ${r.score.toFixed(3)}`), el("br"),
      el("span", { class: "caption" }, caption)],
      () => setHash({ q: `item:${r.id}`, k: k() }),
      `result ${i + 1}, score ${r.score.toFixed(3)}: ${caption}. Search from it`));
  });
  status(`${results.length} results`);
}

function renderQuery(kind, value, caption) {
  const src = kind === "item" ? `/items/${value}/image` : kind === "member" ? `/clusters/members/${value}/image`
    : localQuery[value];
  const text = kind === "item" ? `item ${value}` : kind === "member" ? `pseudo-class member ${value}`
    : `uploaded image ${value}`;
  $("query").replaceChildren(src ? el("img", { src, alt: "the query" }) : el("span"),
    el("span", { id: "query-label" }, el("strong", {}, "Query: "), text, caption ? ` — ${caption}` : ""));
}

async function runQuery(q, kk) {
  const [kind, value] = q.split(/:(.*)/s);
  const url = { item: `/items/${value}/neighbours`, query: `/queries/${value}/neighbours`,
                member: `/clusters/members/${value}/neighbours` }[kind];
  if (!url) { showError(`unknown query ${q}`); return; }
  showError("");
  status("searching…");
  try {
    const body = await api(`${url}?k=${kk}`);
    renderQuery(kind, value, body.query && body.query.caption);
    renderResults(body.results);
  } catch (e) { showError(e.message); status(""); }
}

async function searchFile(file) {
  if (!file) return;
  if (!health || !health.index) { showError("this server has no index to search"); return; }
  showError("");
  status("searching…");
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  try {
    const body = await api(`/search?k=${k()}`, { method: "POST", body: form });
    localQuery[body.query] = URL.createObjectURL(file);
    const h = new URLSearchParams({ q: `query:${body.query}`, k: k() }).toString();
    shown = "#" + h;
    history.pushState(null, "", shown);
    renderQuery("query", body.query);
    renderResults(body.results);
  } catch (e) { showError(e.message); status(""); }
}

async function pick() {
  try {
    const body = await api(`/items?random=true&limit=12&seed=${Math.floor(Math.random() * 1e9)}`);
    $("picks").replaceChildren(...body.items.map((it) => card(it.image_url, it.caption || it.key, [],
      () => setHash({ q: `item:${it.id}`, k: k() }), `search from ${it.caption || it.key}`)));
  } catch (e) { showError(e.message); }
}

function setupSearch() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => searchFile(e.target.files[0]));
  drop.addEventListener("keydown", (e) => {
    if (e.target === drop && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); $("file").click(); }
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    searchFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const f = [...(e.clipboardData || {}).files || []].find((x) => x.type.startsWith("image/"));
    if (f) searchFile(f);
  });
  $("pick").addEventListener("click", pick);
}

// ---------------------------------------------------------------- pseudo classes

let classRows = [];

async function loadClasses(sort) {
  const body = await api(`/clusters?sort=${sort}&limit=1000`);
  classRows = body.classes;
  $("classes-note").textContent = `${body.total} classes over ${body.samples} samples` +
    (body.ground_truth ? "; purity against the ground truth" : "; no ground truth: no purity");
  $("classes").replaceChildren(...classRows.map((c) => {
    const purity = c.purity === null ? "" : `purity ${(100 * c.purity).toFixed(0)}%`;
    return el("li", {}, el("button", { type: "button", "data-class": c.id,
                                        onclick: () => setHash({ view: "classes", sort, class: c.id }) },
      el("strong", {}, `class ${c.id}`),
      el("span", { class: "purity" + (c.purity !== null && c.purity < 0.5 ? " low" : "") },
         `${c.size.toLocaleString()} · ${purity}`),
      el("span", { class: "words" }, c.words.join(" ") || "(no captions)")));
  }));
  return sort;
}

async function openClass(c, sort) {
  const body = await api(`/clusters/${c}?limit=60`);
  const s = body.class;
  for (const b of document.querySelectorAll("#classes button")) {
    b.setAttribute("aria-current", String(b.dataset.class === String(c)));
  }
  $("class-title").textContent = `class ${c}: ${s.size.toLocaleString()} samples` +
    (s.purity === null ? "" : `, purity ${(100 * s.purity).toFixed(0)}% (mostly ${s.truth})`) +
    (s.words.length ? ` — ${s.words.join(" ")}` : "");
  $("members").replaceChildren(...body.members.map((m) => card(m.image_url, m.caption || m.key,
    [el("span", { class: "caption" }, m.caption || m.key)],
    () => setHash({ q: `member:${m.member}`, k: k() }),
    `member ${m.member}: ${m.caption || m.key}. Search the index from it`)));
}

let loadedSort = null;

async function showClasses(st) {
  try {
    if (loadedSort !== st.sort) loadedSort = await loadClasses(st.sort);
    $("sort").value = st.sort;
    if (st.cls !== null) await openClass(st.cls, st.sort);
    status("");
  } catch (e) { status(e.message); }
}

// ---------------------------------------------------------------- views and routing

function selectView(view) {
  for (const [name, tab] of [["search", $("tab-search")], ["classes", $("tab-classes")]]) {
    tab.setAttribute("aria-selected", String(name === view));
    tab.tabIndex = name === view ? 0 : -1;
    $(`view-${name}`).hidden = name !== view;
  }
}

function route() {
  const st = parseHash();
  if (st.k) $("k").value = st.k;
  if (st.q) {
    selectView("search");
    if (location.hash !== shown) { shown = location.hash; runQuery(st.q, k()); }
  } else if (st.view === "classes") {
    selectView("classes");
    if (location.hash !== shown) { shown = location.hash; showClasses(st); }
  } else {
    shown = location.hash;
    selectView("search");
  }
}

function setupTabs() {
  $("tab-search").addEventListener("click", () => setHash({}));
  $("tab-classes").addEventListener("click", () => setHash({ view: "classes", sort: $("sort").value }));
  document.querySelector("nav").addEventListener("keydown", (e) => {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const other = document.activeElement === $("tab-search") ? $("tab-classes") : $("tab-search");
    if (!other.hidden) { other.focus(); other.click(); }
  });
  $("sort").addEventListener("change", () => {
    const st = parseHash();
    setHash({ view: "classes", sort: $("sort").value, class: st.cls });
  });
}

async function main() {
  setupSearch();
  setupTabs();
  try {
    health = await api("/healthz");
  } catch (e) { status(e.message); return; }
  const parts = [];
  if (health.index) parts.push(`${health.index.items.toLocaleString()} images, ${health.index.dim}-d`);
  if (health.clusters) parts.push(`${health.clusters.classes} pseudo classes`);
  status(parts.join(" · "));
  if (!health.clusters) $("tab-classes").hidden = true;
  if (!health.index) { $("drop").hidden = true; if (!location.hash) location.hash = "#view=classes"; }
  window.addEventListener("hashchange", route);
  window.addEventListener("popstate", route);
  route();
}

main();
