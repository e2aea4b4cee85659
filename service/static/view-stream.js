// #/streams/<id>: the live picture with its heatmap, the score chart, calibration, mask and alerts of one stream.
import { api, apiResponse, releaseImages, socket } from "./api.js";
import { calibrationPanel } from "./calibration.js";
import { COLORS, drawChart } from "./charts.js";
import { banner, clock, fmt, h, sleep, throttled } from "./dom.js";
import { maskPanel } from "./mask.js";
import { alertTable } from "./view-alerts.js";
import { stateBadge, streamStats } from "./view-streams.js";

export async function streamView(root, id) {
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
  const mask = maskPanel(id, pictureCanvas);
  mask.update(info.mask);
  root.append(title, head, calibration.el, mask.el,
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
      } else if (m.type === "mask") {
        mask.update(m);
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
          mask.draw(ctx);
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
