// Dashboard for the anomaly detection service: plain JS + canvas, no build step, no outside requests.
// Everything here goes through the documented API (REST under /api, WebSockets under /ws).
"use strict";

// ---------------------------------------------------------------------------------------------
// API access: bearer token from localStorage, as a header (REST) or a subprotocol (WebSocket).
const TOKEN_KEY = "mnad.token";
const token = () => localStorage.getItem(TOKEN_KEY) || "";

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await apiResponse(path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

// The raw response (for headers), after the same token and error handling as api().
async function apiResponse(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) needToken();
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).filter((l) => l !== "body").join(".")}: ${d.msg}`).join("; ") // 422
        : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

// Images need the token too, so they are fetched and shown from object URLs.
async function apiImage(path) {
  const blob = await api(path, { cache: "no-store" });
  return URL.createObjectURL(blob);
}

function setImage(img, path) {
  return apiImage(path).then((url) => {
    if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
    img.dataset.objectUrl = url;
    img.src = url;
    return img;
  });
}

// Object URLs keep their blobs alive until revoked: release those of images about to be dropped.
function releaseImages(root) {
  for (const img of root.querySelectorAll("img[data-object-url]")) URL.revokeObjectURL(img.dataset.objectUrl);
}

function b64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// A WebSocket that reconnects with backoff until closed; onopen runs on every (re)connect.
function socket(path, { onmessage, onopen, onclose } = {}) {
  let ws = null;
  let closed = false;
  let delay = 500;
  let timer = null;
  const connect = () => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    const protocols = token() ? ["mnad.bearer", `mnad.token.${b64url(token())}`] : [];
    ws = new WebSocket(url, protocols);
    ws.onopen = () => { delay = 500; if (onopen) onopen(); };
    ws.onmessage = (event) => onmessage && onmessage(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (onclose) onclose(event);
      if (closed || event.code === 4404 || event.code === 1008) return;
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (ws && ws.readyState <= 1) ws.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers
const $ = (sel, root = document) => root.querySelector(sel);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const clock = (t) => new Date(t * 1000).toLocaleTimeString();
const stamp = (t) => new Date(t * 1000).toLocaleString();
function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - 60 * m)} s`;
}

function banner(text) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
}

function needToken() {
  banner("This service needs an API token: enter it with the Token button.");
  $("#token-form").hidden = false;
}

// Two clicks to delete, no modal dialog.
function confirmButton(label, action) {
  const button = h("button", { class: "danger", type: "button" }, label);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.classList.add("armed");
      button.textContent = "Confirm";
      armed = setTimeout(() => { armed = null; button.classList.remove("armed"); button.textContent = label; }, 3000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    await action();
  });
  return button;
}

// Coalesces redraws: data may arrive far faster than it is worth drawing.
function throttled(fn, ms = 150) {
  let timer = null;
  const run = () => { timer = null; fn(); };
  const schedule = () => { if (timer === null) timer = setTimeout(run, ms); };
  schedule.cancel = () => { clearTimeout(timer); timer = null; };
  return schedule;
}

// ---------------------------------------------------------------------------------------------
// Charts on canvas
const COLORS = { line: "#4aa3ff", on: "#ff5a4f", off: "#ffb020", span: "rgba(255,90,79,0.18)",
  grid: "#2a3540", text: "#8a97a5", high: "#ff5a4f", marker: "#ffffff" };

function sizeCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const hh = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== hh) { canvas.width = w; canvas.height = hh; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, canvas.clientWidth, canvas.clientHeight];
}

// xs/ys: data; x0..x1: visible range; on/off: thresholds; spans: [[start, end]] shaded (alert episodes).
function drawChart(canvas, { xs, ys, x0, x1, on, off, spans = [], xLabel = (x) => x, marker = null }) {
  const [ctx, W, H] = sizeCanvas(canvas);
  const pad = { l: 36, r: 8, t: 8, b: 22 };
  const pw = W - pad.l - pad.r;
  const ph = H - pad.t - pad.b;
  if (!(x1 > x0)) x1 = x0 + 1;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y) => pad.t + (1 - Math.max(0, Math.min(1, y))) * ph;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = COLORS.span;
  for (const [s, e] of spans) {
    const a = Math.max(X(s), pad.l);
    const b = Math.min(X(e), pad.l + pw);
    if (b > a) ctx.fillRect(a, pad.t, Math.max(2, b - a), ph);
  }
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.text;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const y of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(y) + 0.5);
    ctx.lineTo(pad.l + pw, Y(y) + 0.5);
    ctx.stroke();
    ctx.fillText(y.toFixed(2), pad.l - 4, Y(y));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(xLabel(x), Math.min(Math.max(X(x), pad.l + 20), W - 30), pad.t + ph + 5);
  }
  for (const [value, color] of [[off, COLORS.off], [on, COLORS.on]]) {
    if (value === null || value === undefined) continue;
    ctx.strokeStyle = color;
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(value));
    ctx.lineTo(pad.l + pw, Y(value));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = COLORS.line;
  ctx.beginPath();
  let started = false;
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] < x0) continue;
    const px = X(xs[i]);
    const py = Y(ys[i]);
    if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
  }
  ctx.stroke();
  if (on !== null && on !== undefined) { // points above the alert threshold
    ctx.fillStyle = COLORS.high;
    for (let i = 0; i < xs.length; i++) if (xs[i] >= x0 && ys[i] >= on) ctx.fillRect(X(xs[i]) - 1.5, Y(ys[i]) - 1.5, 3, 3);
  }
  if (marker !== null) {
    ctx.strokeStyle = COLORS.marker;
    ctx.beginPath();
    ctx.moveTo(X(marker) + 0.5, pad.t);
    ctx.lineTo(X(marker) + 0.5, pad.t + ph);
    ctx.stroke();
  }
  canvas.dataset.points = String(xs.length);
  canvas.dataset.on = on ?? ""; // the thresholds drawn, for tests
  canvas.dataset.off = off ?? "";
  return { toX: (px) => x0 + ((px - pad.l) / pw) * (x1 - x0) };
}

function drawSpark(canvas, ys, on) {
  const [ctx, W, H] = sizeCanvas(canvas);
  ctx.clearRect(0, 0, W, H);
  if (on !== null && on !== undefined) {
    ctx.strokeStyle = "rgba(255,90,79,0.6)";
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(0, H - on * H);
    ctx.lineTo(W, H - on * H);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = COLORS.line;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  const n = ys.length;
  ys.forEach((y, i) => {
    const px = n > 1 ? (i / (n - 1)) * W : W;
    const py = H - 2 - Math.max(0, Math.min(1, y)) * (H - 4);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.stroke();
  canvas.dataset.points = String(n);
}

// ---------------------------------------------------------------------------------------------
// Views. Each returns a cleanup function run when the route changes.

// Calibration on the camera's own normal footage (POST/GET/DELETE /api/streams/{id}/calibration).
// c: the GET body or a "calibrated" message; on the streams list only the state is known (`calibration`).
function calibrationText(c) {
  if (c.state === "collecting") return c.progress === undefined ? "calibrating…" : `calibrating ${Math.floor(c.progress * 100)} %`;
  return c.state === "fitted" ? "calibrated on this camera" : "checkpoint's calibration";
}

function calibrationPill(c, attrs = {}) {
  const kind = c.state === "fitted" ? "ok" : c.state === "collecting" ? "warn" : "";
  return h("span", { class: `pill calibration ${kind}`, ...attrs }, calibrationText(c));
}

// The stream view's calibration panel: state, progress while collecting, Calibrate and Reset.
// onChange runs when the calibration in force changes (the alert thresholds may have moved).
function calibrationPanel(id, onChange) {
  const path = `/api/streams/${encodeURIComponent(id)}/calibration`;
  let current = null;
  let pill = h("span");
  const detail = h("span", { class: "muted grow", id: "calibration-detail" });
  const bar = h("progress", { max: 1, value: 0, hidden: true, id: "calibration-progress" });
  const seconds = h("input", { type: "number", name: "seconds", class: "num", min: 2, max: 3600, step: "any", value: 60,
    title: "seconds of normal footage, 2 to 3600" });
  const start = h("button", { type: "submit" }, "Calibrate");
  const form = h("form", { class: "inline", id: "calibrate-form", novalidate: true },
    h("label", {}, "seconds of normal footage", seconds), start);
  const resetSlot = h("span");
  const message = h("div", { class: "error-text", id: "calibration-error", role: "alert" });
  const el = h("div", { class: "panel calibration-panel", id: "calibration" },
    h("div", { class: "row" }, h("b", {}, "Calibration"), pill, detail, form, resetSlot), bar, message);

  function render(c) {
    const changed = current !== null && (current.state !== c.state || current.fitted_at !== c.fitted_at);
    const stateChanged = !current || current.state !== c.state;
    if (stateChanged && current) message.textContent = ""; // an error shown is about the previous state
    current = c;
    el.dataset.state = c.state;
    el.dataset.progress = String(c.progress);
    pill.replaceWith(pill = calibrationPill(c, { id: "calibration-state" }));
    bar.hidden = c.state !== "collecting";
    bar.value = c.progress;
    detail.textContent = c.state === "collecting"
      ? `${c.frames} of ${c.target_frames} frames collected: keep the scene normal until then`
      : c.state === "fitted" ? `fitted on ${c.frames} frames of this camera, ${stamp(c.fitted_at)}`
        : "fitted on the training camera's clips: calibrate if normal scenes here score high";
    form.hidden = c.state === "collecting";
    if (stateChanged) {
      resetSlot.replaceChildren(c.state === "model" ? "" : resetButton());
      resetSlot.title = c.state === "collecting" ? "stop collecting and go back to the checkpoint's calibration"
        : "go back to the checkpoint's calibration and thresholds";
    }
    if (changed) onChange();
  }
  async function load() {
    try { render(await api(path)); } catch (e) { if (e.status !== 404) message.textContent = problem(e); }
  }
  // a fresh one each time: a confirm button stays disabled once used
  const resetButton = () => confirmButton("Reset", () => act(() => api(path, { method: "DELETE" })));
  async function act(call) {
    start.disabled = true;
    message.textContent = "";
    try { render(await call()); } catch (e) {
      await load();
      message.textContent = problem(e);
      if (current && current.state !== "model") resetSlot.replaceChildren(resetButton());
    }
    start.disabled = false;
  }
  const problem = (e) => e instanceof ApiError ? `Calibration: ${e.message} (HTTP ${e.status})`
    : `Calibration: the service could not be reached (${e.message})`;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = Number(seconds.value);
    if (seconds.value === "" || !(value >= 2 && value <= 3600)) {
      message.textContent = "Calibration: give the seconds of normal footage to collect, from 2 to 3600.";
      return;
    }
    act(() => api(path, { method: "POST", json: { seconds: value } }));
  });
  load();
  const timer = setInterval(() => { if (current && current.state === "collecting") load(); }, 1000);
  return { el, update: (c) => render(c), close: () => clearInterval(timer) };
}

function streamStats(s) {
  return h("div", { class: "stats" },
    h("div", {}, h("b", {}, fmt(s.fps_in, 1)), h("span", {}, "fps in")),
    h("div", {}, h("b", {}, fmt(s.fps_out, 1)), h("span", {}, "fps out")),
    h("div", {}, h("b", {}, s.frames_dropped), h("span", {}, "dropped")),
    h("div", {}, h("b", { class: "score" }, fmt(s.last_score)), h("span", {}, "score")));
}

function stateBadge(s) {
  return h("span", { class: `pill ${s.state}`, title: s.last_error || "" }, s.state);
}

async function streamsView(root) {
  const cleanups = [];
  const cards = new Map(); // id -> {el, spark, ys, ws, on}
  const modelSelect = h("select", { name: "model" }, h("option", { value: "" }, "default"));
  serviceReady.then(() => api("/api/models")).then((models) => {
    modelSelect.append(...models.models.map((m) => h("option", { value: m.name }, m.name)));
  }).catch(() => {});
  const form = h("form", { class: "inline panel", id: "add-stream" },
    h("label", {}, "Camera URL (rtsp, http)", h("input", { name: "url", required: true, placeholder: "rtsp://camera/stream" })),
    h("label", {}, "Name", h("input", { name: "name", required: true, placeholder: "entrance" })),
    h("label", {}, "Model", modelSelect),
    h("label", {}, "fps cap", h("input", { name: "fps_cap", class: "num", type: "number", step: "any", min: "0" })),
    h("label", {}, "alert on", h("input", { name: "alert_on", class: "num", type: "number", step: "any", min: "0", max: "1" })),
    h("label", {}, "alert off", h("input", { name: "alert_off", class: "num", type: "number", step: "any", min: "0", max: "1" })),
    h("button", { type: "submit" }, "Add stream"),
    h("span", { class: "error-text", id: "add-error" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { url: data.url, name: data.name };
    if (data.model) body.model = data.model;
    for (const k of ["fps_cap", "alert_on", "alert_off"]) if (data[k] !== "") body[k] = Number(data[k]);
    try {
      await api("/api/streams", { method: "POST", json: body });
      form.reset();
      $("#add-error").textContent = "";
      refresh();
    } catch (e) {
      $("#add-error").textContent = e.message;
    }
  });
  const grid = h("div", { class: "cards", id: "stream-cards" });
  root.append(h("h1", {}, "Streams"), form, h("h2", {}, "Live"), grid);

  function card(s) {
    const spark = h("canvas", { class: "spark" });
    const el = h("div", { class: "card", dataset: { stream: s.id } });
    const entry = { el, spark, ys: [], on: s.alert.on, ws: null };
    // made once: refreshes re-insert the same button, so a first click stays armed across them
    entry.remove = confirmButton("Remove", async () => {
      await api(`/api/streams/${s.id}`, { method: "DELETE" }).catch((e) => banner(e.message));
      refresh();
    });
    entry.ws = socket(`/ws/streams/${s.id}`, {
      onmessage: (m) => {
        if (m.type !== "score") return;
        spark.dataset.received = String(Number(spark.dataset.received || 0) + 1);
        entry.ys.push(m.score);
        if (entry.ys.length > 150) entry.ys.splice(0, entry.ys.length - 150);
        const score = $(".score", el);
        if (score) score.textContent = fmt(m.score);
        el.classList.toggle("in-alert", m.in_alert);
        drawSpark(spark, entry.ys, entry.on);
      },
    });
    api(`/api/streams/${s.id}/scores?limit=150`).then((rows) => {
      if (entry.ys.length === 0) entry.ys = rows.map((r) => r.score);
      drawSpark(spark, entry.ys, entry.on);
    }).catch(() => {});
    cards.set(s.id, entry);
    return entry;
  }

  function fill(entry, s) {
    entry.on = s.alert.on;
    entry.el.classList.toggle("in-alert", s.alert.open);
    entry.el.replaceChildren(
      h("div", { class: "top" }, h("a", { href: `#/streams/${s.id}` }, s.name), stateBadge(s),
        s.alert.open ? h("span", { class: "pill alert" }, "ALERT") : null, entry.remove),
      h("div", { class: "url", title: s.url }, `${s.url} · ${s.model}`),
      streamStats(s), entry.spark,
      h("div", { class: "calibration-row" }, calibrationPill(entry.calibration && entry.calibration.state === s.calibration
        ? entry.calibration : { state: s.calibration }), h("a", { href: `#/streams/${s.id}`, class: "muted" },
        s.calibration === "model" ? "calibrate…" : "details")));
    drawSpark(entry.spark, entry.ys, entry.on);
  }

  async function refresh() {
    let streams;
    try { streams = await api("/api/streams"); } catch (_) { return; }
    const seen = new Set();
    for (const s of streams) {
      seen.add(s.id);
      const entry = cards.get(s.id) || card(s);
      fill(entry, s);
      if (s.calibration === "collecting") { // its progress, shown from the next refresh
        api(`/api/streams/${s.id}/calibration`).then((c) => { entry.calibration = c; }).catch(() => {});
      }
      if (!entry.el.isConnected) grid.append(entry.el);
    }
    for (const [id, entry] of cards) {
      if (!seen.has(id)) { entry.ws.close(); entry.el.remove(); cards.delete(id); }
    }
    if (!streams.length) grid.replaceChildren(h("div", { class: "empty" }, "No streams yet: add a camera above, or start serve with --stream video.mp4."));
    else $(".empty", grid)?.remove();
  }

  await refresh();
  const timer = setInterval(refresh, 1000);
  cleanups.push(() => clearInterval(timer), () => cards.forEach((c) => c.ws.close()));
  return () => cleanups.forEach((f) => f());
}

function alertRow(a, streamNames = {}) {
  const thumbs = h("div", { class: "thumbs" });
  if (a.thumbnail_url) {
    const plain = h("img", { alt: "peak frame", class: "thumb" });
    const loaded = setImage(plain, a.thumbnail_url);
    loaded.catch(() => {});
    thumbs.append(plain);
    if (a.heatmap_url) {
      const base = h("img", { alt: "peak frame" });
      const heat = h("img", { alt: "heatmap", class: "heat" });
      loaded.then(() => { base.src = plain.src; }).catch(() => {}); // one download for both pictures
      setImage(heat, a.heatmap_url).catch(() => {});
      thumbs.append(h("span", { class: "stack", title: "prediction error at the peak frame" }, base, heat));
    }
    thumbs.title = "click to enlarge";
    thumbs.addEventListener("click", () => enlarge(thumbs, `Alert ${a.id}: peak frame ${a.peak_frame}, score ${fmt(a.peak_score)}`));
  } else {
    thumbs.append(h("span", { class: "muted" }, "no picture"));
  }
  const open = a.end_time === null || a.end_time === undefined;
  const end = open ? Date.now() / 1000 : a.end_time;
  return h("tr", { dataset: { alert: a.id } },
    h("td", {}, thumbs),
    h("td", {}, h("a", { href: `#/streams/${a.stream_id}` }, streamNames[a.stream_id] || a.stream_id)),
    h("td", {}, stamp(a.start_time)),
    h("td", { class: "num" }, open ? h("span", { class: "pill alert" }, "open") : duration(end - a.start_time)),
    h("td", { class: "num" }, fmt(a.peak_score)),
    h("td", { class: "num" }, `${a.start_frame}–${open ? "…" : a.end_frame} (peak ${a.peak_frame})`));
}

// A closer look at an alert's pictures (the same images, shown large); a click or Escape closes it.
function enlarge(thumbs, caption) {
  const copy = thumbs.cloneNode(true);
  copy.className = "thumbs large";
  const box = h("div", { class: "lightbox", id: "lightbox" }, h("div", {}, copy, h("p", {}, caption)));
  const close = () => { box.remove(); window.removeEventListener("keydown", onKey); };
  const onKey = (event) => { if (event.key === "Escape") close(); };
  box.addEventListener("click", close);
  window.addEventListener("keydown", onKey);
  document.body.append(box);
}

function alertTable(rows, names) {
  return h("table", { class: "alerts" },
    h("thead", {}, h("tr", {}, ["Peak frame / heatmap", "Stream", "Started", "Duration", "Peak score", "Frames"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((a) => alertRow(a, names))));
}

async function streamView(root, id) {
  const cleanups = [];
  let info;
  try { info = await api(`/api/streams/${id}`); } catch (e) {
    root.append(h("h1", {}, "Stream"), h("p", { class: "error-text" }, e.message), h("a", { href: "#/streams" }, "Back to streams"));
    return () => {};
  }
  const WINDOW = { "1 min": 60, "2 min": 120 };
  let span = 60;
  const xs = []; const ys = []; const episodes = new Map(); // id -> [start, end|null]
  const title = h("h1", {}, info.name);
  const head = h("div", { class: "panel", id: "stream-head" });
  const pictureCanvas = h("canvas", { id: "live-picture", width: 640, height: 480 });
  const caption = h("span", { class: "caption" });
  const heatToggle = h("input", { type: "checkbox", checked: true, id: "heat-toggle" });
  const chart = h("canvas", { class: "chart", id: "score-chart" });
  const windowSelect = h("select", { id: "chart-window" }, Object.keys(WINDOW).map((k) => h("option", { value: WINDOW[k] }, k)));
  windowSelect.addEventListener("change", () => { span = Number(windowSelect.value); draw(); });
  const alertsBox = h("div", { id: "stream-alerts" });
  const calibration = calibrationPanel(id, async () => { // new thresholds: the chart's lines follow
    try { info = await api(`/api/streams/${id}`); renderHead(); draw(); } catch (_) { /* the next poll */ }
  });
  root.append(title, head, calibration.el,
    h("div", { class: "stream-view" },
      h("div", {}, h("h2", {}, "Live picture ", h("label", { class: "muted" }, heatToggle, " heatmap")),
        h("div", { class: "picture" }, pictureCanvas, caption)),
      h("div", {}, h("h2", {}, "Score ", windowSelect), h("div", { class: "panel" }, chart,
        h("div", { class: "legend" }, h("span", {}, h("i", { style: `background:${COLORS.line}` }), "score"),
          h("span", {}, h("i", { style: `background:${COLORS.on}` }), "alert on"),
          h("span", {}, h("i", { style: `background:${COLORS.off}` }), "alert off"),
          h("span", {}, h("i", { style: "background:rgba(255,90,79,0.5);height:10px" }), "alert episodes"))))),
    h("h2", {}, "Alerts of this stream"), alertsBox);

  function renderHead() {
    head.replaceChildren(
      h("div", { class: "top", style: "display:flex;gap:10px;align-items:center;margin-bottom:8px" }, stateBadge(info),
        info.alert.open ? h("span", { class: "pill alert", id: "alert-open" }, "ALERT") : null,
        h("span", { class: "muted" }, `${info.url} · model ${info.model} · alert on ${fmt(info.alert.on)} / off ${fmt(info.alert.off)}`)),
      streamStats(info));
  }
  renderHead();

  function draw() {
    const x1 = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
    // grow from the first point until the window is full, rather than squeezing a few seconds to the right edge
    const x0 = Math.max(x1 - span, Math.min(xs.length ? xs[0] : x1, x1 - 10));
    const spans = [...episodes.values()].map(([s, e]) => [s, e === null ? x1 : e]);
    drawChart(chart, { xs, ys, x0, x1, on: info.alert.on, off: info.alert.off, spans, xLabel: clock });
    chart.dataset.lastFrame = String(lastFrame);
  }
  let lastFrame = -1;
  function push(frame, t, score) {
    if (frame <= lastFrame && t <= (xs[xs.length - 1] || 0)) return;
    lastFrame = frame;
    xs.push(t); ys.push(score);
    if (xs.length > 3000) { xs.splice(0, 1000); ys.splice(0, 1000); }
  }

  async function loadAlerts() {
    const since = Date.now() / 1000 - 3600;
    try {
      const page = await api(`/api/alerts?stream=${encodeURIComponent(id)}&limit=20`);
      for (const a of page.items) if ((a.end_time || Infinity) >= since) episodes.set(a.id, [a.start_time, a.end_time]);
      releaseImages(alertsBox);
      alertsBox.replaceChildren(page.items.length ? alertTable(page.items, { [id]: info.name }) : h("div", { class: "empty" }, "No alerts for this stream."));
      alertsBox.dataset.count = String(page.total);
      draw();
    } catch (_) { /* shown on the next try */ }
  }

  try {
    for (const r of await api(`/api/streams/${id}/scores?limit=1200`)) push(r.frame, r.captured, r.score);
  } catch (_) { /* the socket fills it */ }
  await loadAlerts();
  draw();
  let alertsDirty = null;
  const ws = socket(`/ws/streams/${id}`, {
    onmessage: (m) => {
      if (m.type === "score") {
        push(m.frame, m.captured, m.score);
        redraw();
        if (info.alert.open !== m.in_alert) { info.alert.open = m.in_alert; renderHead(); }
      } else if (m.type === "calibrated") {
        info.alert = { ...info.alert, ...m.alert };
        renderHead();
        draw();
        calibration.update(m);
      } else if (m.type === "alert_open" || m.type === "alert_close") {
        episodes.set(m.id, [m.start_time, m.end_time]);
        clearTimeout(alertsDirty);
        alertsDirty = setTimeout(loadAlerts, 300);
      }
    },
  });
  const redraw = throttled(draw, 200);
  const ticker = setInterval(redraw, 1000); // keeps the time axis moving when the stream stalls
  let polls = 0;
  const poll = setInterval(async () => {
    try { info = await api(`/api/streams/${id}`); renderHead(); } catch (e) {
      if (e.status === 404) banner("This stream was removed.");
    }
    if (info.alert.open && ++polls % 2 === 0) loadAlerts(); // an open alert's peak frame follows the live one
  }, 2000);

  // The live picture: the latest scored frame, fetched again as soon as it is shown, at most ~4 fps.
  let alive = true;
  (async () => {
    const ctx = pictureCanvas.getContext("2d");
    while (alive) {
      const started = performance.now();
      if (info.frames_scored > 0) {
        try {
          const response = await apiResponse(`/api/streams/${id}/frame.jpg?overlay=${heatToggle.checked ? 1 : 0}&width=640`,
            { cache: "no-store" });
          const bitmap = await createImageBitmap(await response.blob());
          if (pictureCanvas.width !== bitmap.width || pictureCanvas.height !== bitmap.height) {
            pictureCanvas.width = bitmap.width; pictureCanvas.height = bitmap.height;
          }
          ctx.drawImage(bitmap, 0, 0);
          bitmap.close();
          pictureCanvas.dataset.loaded = String(Number(pictureCanvas.dataset.loaded || 0) + 1);
          caption.textContent = `frame ${response.headers.get("x-frame")} · score ${fmt(response.headers.get("x-score"))}` +
            ` · ${clock(Number(response.headers.get("x-captured")))}`;
        } catch (_) { /* stream gone or not scored yet: try again */ }
      }
      await sleep(Math.max(50, 250 - (performance.now() - started)));
    }
  })();
  cleanups.push(() => { alive = false; }, () => ws.close(), () => clearInterval(poll), () => clearInterval(ticker), () => redraw.cancel(),
    () => clearTimeout(alertsDirty), () => calibration.close());
  return () => cleanups.forEach((f) => f());
}

function toUnix(value) {
  return value ? new Date(value).getTime() / 1000 : null;
}

async function alertsView(root, params) {
  const LIMIT = 25;
  let offset = Number(params.get("offset") || 0);
  const streams = await api("/api/streams").catch(() => []);
  const names = Object.fromEntries(streams.map((s) => [s.id, s.name]));
  const streamSelect = h("select", { name: "stream", id: "filter-stream" }, h("option", { value: "" }, "all streams"),
    streams.map((s) => h("option", { value: s.id, selected: params.get("stream") === s.id }, s.name)));
  const since = h("input", { type: "datetime-local", name: "since", value: params.get("since") || "" });
  const until = h("input", { type: "datetime-local", name: "until", value: params.get("until") || "" });
  const list = h("div", { id: "alert-list" });
  const pager = h("div", { class: "pager" });
  const form = h("form", { class: "filters" },
    h("label", {}, "Stream", streamSelect), h("label", {}, "Since", since), h("label", {}, "Until", until),
    h("button", { type: "submit" }, "Filter"), h("button", { type: "button", onclick: () => { location.hash = "#/alerts"; } }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (streamSelect.value) q.set("stream", streamSelect.value);
    if (since.value) q.set("since", since.value);
    if (until.value) q.set("until", until.value);
    location.hash = `#/alerts?${q}`;
  });
  root.append(h("h1", {}, "Alerts"), form, list, pager);

  async function load() {
    const q = new URLSearchParams({ limit: LIMIT, offset });
    if (params.get("stream")) q.set("stream", params.get("stream"));
    if (toUnix(params.get("since"))) q.set("since", toUnix(params.get("since")));
    if (toUnix(params.get("until"))) q.set("until", toUnix(params.get("until")));
    let page;
    try { page = await api(`/api/alerts?${q}`); } catch (e) { list.replaceChildren(h("p", { class: "error-text" }, e.message)); return; }
    list.dataset.count = String(page.total);
    releaseImages(list);
    list.replaceChildren(page.items.length ? alertTable(page.items, names) : h("div", { class: "empty" }, "No alerts match."));
    pager.replaceChildren(
      h("button", { type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - LIMIT); load(); } }, "Newer"),
      h("span", { class: "muted" }, page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : ""),
      h("button", { type: "button", disabled: offset + LIMIT >= page.total, onclick: () => { offset += LIMIT; load(); } }, "Older"));
  }
  await load();
  let pending = null;
  const ws = socket("/ws/alerts", {
    onmessage: () => { clearTimeout(pending); pending = setTimeout(load, 300); },
  });
  // open alerts' peak frames move while they last: refresh while any is shown
  const timer = setInterval(() => { if (list.querySelector(".pill.alert")) load(); }, 5000);
  return () => { ws.close(); clearTimeout(pending); clearInterval(timer); };
}

function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/clips");
    if (token()) xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 202) resolve(body);
      else {
        if (xhr.status === 401) needToken();
        reject(new Error(body && body.detail ? body.detail : `upload failed (${xhr.status})`));
      }
    };
    xhr.onerror = () => reject(new Error("upload failed: connection error"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

async function clipsView(root) {
  const input = h("input", { type: "file", accept: "video/*", hidden: true, id: "clip-file" });
  const bar = h("progress", { max: 1, value: 0, hidden: true, id: "upload-progress" });
  const message = h("div", { class: "muted", id: "upload-message" });
  const drop = h("div", { class: "drop", id: "drop-zone" }, h("p", {}, "Drop a video here (MP4, MKV, AVI, WebM), or click to choose one."),
    h("p", { class: "hint" }, "It is scored frame by frame like a live camera; its timeline follows."));
  const send = async (file) => {
    if (!file) return;
    bar.hidden = false; bar.value = 0;
    message.className = "muted";
    message.textContent = `Uploading ${file.name}…`;
    try {
      const created = await uploadFile(file, (p) => { bar.value = p; message.textContent = `Uploading ${file.name}: ${Math.round(p * 100)} %`; });
      bar.value = 1;
      location.hash = `#/clips/${created.id}`;
    } catch (e) {
      message.className = "error-text";
      message.textContent = e.message;
    }
  };
  drop.addEventListener("click", () => input.click());
  input.addEventListener("change", () => send(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files[0]); });
  const recent = h("div", { id: "clip-list" });
  root.append(h("h1", {}, "Clips"), drop, input, bar, message, h("h2", {}, "Recent uploads"), recent);
  try {
    const clips = await api("/api/clips?limit=20");
    recent.replaceChildren(clips.length ? h("table", {}, h("thead", {}, h("tr", {}, ["File", "Uploaded", "Status", "Model"].map((t) => h("th", {}, t)))),
      h("tbody", {}, clips.map((c) => h("tr", {}, h("td", {}, h("a", { href: `#/clips/${c.id}` }, c.original_name || c.id)),
        h("td", {}, stamp(c.created)), h("td", {}, h("span", { class: `pill ${c.status === "done" ? "ok" : c.status === "failed" ? "bad" : "warn"}` }, c.status)),
        h("td", {}, c.model))))) : h("div", { class: "empty" }, "No uploads yet."));
  } catch (_) { /* list is optional */ }
  return () => {};
}

async function clipView(root, id) {
  let clip;
  try { clip = await api(`/api/clips/${id}`); } catch (e) {
    root.append(h("h1", {}, "Clip"), h("p", { class: "error-text" }, e.message), h("a", { href: "#/clips" }, "Back to clips"));
    return () => {};
  }
  const rows = clip.scores || [];
  const status = h("span", { class: "pill", id: "clip-status" });
  const bar = h("progress", { max: 1, value: clip.progress, id: "clip-progress" });
  const summary = h("div", { class: "muted", id: "clip-summary" });
  const chart = h("canvas", { class: "chart", id: "clip-chart" });
  const shown = h("div", { class: "clip-frame", id: "clip-frame" }, h("div", { class: "muted" }, "Click the timeline to see a frame and where it was anomalous."));
  const name = h("span", { id: "clip-name" }, "Clip");
  api("/api/clips?limit=1000").then((list) => {
    const item = list.find((c) => c.id === id);
    if (item && item.original_name) name.textContent = item.original_name;
  }).catch(() => {});
  root.append(h("h1", {}, name, status), bar, summary,
    h("div", { class: "panel", style: "margin-top:10px" }, chart,
      h("div", { class: "legend" }, h("span", {}, h("i", { style: `background:${COLORS.line}` }), "score"),
        h("span", {}, h("i", { style: `background:${COLORS.on}` }), "threshold on"),
        h("span", {}, h("i", { style: "background:rgba(255,90,79,0.5);height:10px" }), "anomalous segments"))),
    shown);
  let selected = null;
  let mapping = null;
  function draw() {
    const xs = rows.map((r) => r.frame);
    const ys = rows.map((r) => r.score);
    const segs = (clip.summary.anomalous_segments || []).map((s) => [s.start_frame, s.end_frame]);
    const x1 = Math.max(xs.length ? xs[xs.length - 1] : 1, clip.frames_decoded || 0);
    mapping = drawChart(chart, { xs, ys, x0: 0, x1, on: clip.summary.threshold_on, off: clip.summary.threshold_off,
      spans: segs, xLabel: (x) => `#${Math.round(x)}`, marker: selected });
    chart.dataset.segments = String(segs.length);
  }
  function renderStatus() {
    status.textContent = clip.status;
    status.className = `pill ${clip.status === "done" ? "ok" : clip.status === "failed" ? "bad" : "warn"}`;
    bar.value = clip.progress;
    const segs = clip.summary.anomalous_segments || [];
    summary.textContent = `${clip.frames_scored ?? rows.length} frames scored of ${clip.frames_decoded} decoded` +
      (clip.fps ? ` at ${fmt(clip.fps, 1)} fps` : "") + ` · model ${clip.model} · ${segs.length} anomalous segment(s)` +
      (clip.error ? ` · ${clip.error}` : "");
  }
  async function show(frame) {
    selected = frame;
    draw();
    const row = rows.find((r) => r.frame === frame);
    const plain = h("img", { alt: `frame ${frame}`, id: "clip-frame-picture" });
    const heat = h("img", { alt: `frame ${frame} heatmap`, id: "clip-frame-heatmap" });
    releaseImages(shown);
    shown.replaceChildren(
      h("figure", {}, plain, h("figcaption", {}, `frame ${frame} · score ${fmt(row && row.score)}`)),
      h("figure", {}, heat, h("figcaption", {}, "prediction error (where the model was surprised) · ← → step")));
    await Promise.all([setImage(plain, `/api/clips/${id}/frames/${frame}.jpg`),
      setImage(heat, `/api/clips/${id}/frames/${frame}.jpg?overlay=1`)]).catch((e) => banner(e.message));
    shown.dataset.frame = String(frame);
  }
  const nearest = (event) => {
    const x = mapping.toX(event.clientX - chart.getBoundingClientRect().left);
    let best = rows[0];
    for (const r of rows) if (Math.abs(r.frame - x) < Math.abs(best.frame - x)) best = r;
    return best;
  };
  chart.addEventListener("click", (event) => { if (rows.length && mapping) show(nearest(event).frame); });
  chart.addEventListener("mousemove", (event) => {
    if (!rows.length || !mapping) return;
    const r = nearest(event);
    chart.title = `frame ${r.frame} · score ${fmt(r.score)}${r.anomalous ? " · above threshold" : ""}`;
  });
  // arrow keys step through the scored frames once one is shown
  const onKey = (event) => {
    if (selected === null || !["ArrowLeft", "ArrowRight"].includes(event.key) || event.target.tagName === "INPUT") return;
    const k = rows.findIndex((r) => r.frame === selected) + (event.key === "ArrowRight" ? 1 : -1);
    if (k >= 0 && k < rows.length) { event.preventDefault(); show(rows[k].frame); }
  };
  window.addEventListener("keydown", onKey);
  renderStatus();
  draw();
  const redraw = throttled(() => { renderStatus(); draw(); }, 200);
  let ws = null;
  if (clip.status !== "done" && clip.status !== "failed") {
    ws = socket(`/ws/clips/${id}`, {
      onopen: () => { rows.length = 0; },
      onmessage: async (m) => {
        if (m.type === "score") {
          rows.push(m);
          if (m.progress !== undefined) clip.progress = m.progress;
          clip.frames_scored = rows.length;
          redraw();
        } else if (m.type === "done") {
          ws.close(); // before the server's own close, so it is not taken for a dropped connection
          clip = await api(`/api/clips/${id}?scores=false`);
          renderStatus();
          draw();
        }
      },
    });
  }
  const onResize = () => draw();
  window.addEventListener("resize", onResize);
  return () => {
    if (ws) ws.close();
    redraw.cancel();
    window.removeEventListener("resize", onResize);
    window.removeEventListener("keydown", onKey);
  };
}

// ---------------------------------------------------------------------------------------------
// Routing and start-up
let cleanup = () => {};
let routing = 0;

async function route() {
  const turn = ++routing;
  cleanup();
  cleanup = () => {};
  const [path, query] = (location.hash.replace(/^#/, "") || "/streams").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === parts[0]);
  const root = h("div", { class: "view" });
  releaseImages($("#view"));
  $("#view").replaceChildren(root);
  let done = () => {};
  try {
    if (parts[0] === "streams" && parts[1]) done = await streamView(root, decodeURIComponent(parts[1]));
    else if (parts[0] === "alerts") done = await alertsView(root, params);
    else if (parts[0] === "clips" && parts[1]) done = await clipView(root, decodeURIComponent(parts[1]));
    else if (parts[0] === "clips") done = await clipsView(root);
    else done = await streamsView(root);
  } catch (e) {
    root.append(h("p", { class: "error-text" }, `Could not load this view: ${e.message}`));
  }
  if (turn !== routing) done(); // the route changed while this view was loading
  else cleanup = done;
}

// Resolves once the service has loaded its models (endpoints that need them answer 503 before).
let markReady;
const serviceReady = new Promise((resolve) => { markReady = resolve; });

async function watchHealth() {
  const pill = $("#status");
  for (;;) {
    try {
      const response = await fetch("/healthz", { cache: "no-store" });
      const body = await response.json();
      if (body.ready) { pill.className = "pill ok"; pill.textContent = `ready · ${body.models.join(", ")}`; markReady(); }
      else if (!body.error) { pill.className = "pill warn"; pill.textContent = "loading models…"; }
      else { pill.className = "pill bad"; pill.textContent = "failed"; pill.title = body.error; }
    } catch (_) {
      pill.className = "pill bad"; pill.textContent = "unreachable";
    }
    await sleep(pill.classList.contains("ok") ? 10000 : 1000);
  }
}

function setupToken() {
  const form = $("#token-form");
  $("#token-toggle").addEventListener("click", () => { form.hidden = !form.hidden; $("#token-input").value = token(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
    form.hidden = true;
    banner("");
    route();
  });
  $("#token-clear").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); $("#token-input").value = ""; route(); });
}

window.addEventListener("hashchange", route);
setupToken();
watchHealth();
route();
