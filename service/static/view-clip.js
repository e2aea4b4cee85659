// #/clips/<id>: an upload's score timeline with its anomalous segments; click or ← → for a frame and its heatmap.
import { api, releaseImages, setImage, socket } from "./api.js";
import { COLORS, drawChart } from "./charts.js";
import { banner, fmt, h, throttled } from "./dom.js";

export async function clipView(root, id) {
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
      (clip.fps ? ` at ${fmt(clip.fps, 1)} fps` : "") + ` · model ${clip.model}` + (clip.stream ? ` · scored as stream ${clip.stream}` : "") + ` · ${segs.length} anomalous segment(s)` +
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
