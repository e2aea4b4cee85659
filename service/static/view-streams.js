// #/streams: add and remove cameras; each one's state, rates, latest score and live sparkline.
import { api, serviceReady, socket } from "./api.js";
import { calibrationPill } from "./calibration.js";
import { drawSpark } from "./charts.js";
import { $, banner, confirmButton, fmt, h } from "./dom.js";

export function streamStats(s) {
  return h("div", { class: "stats" },
    h("div", {}, h("b", {}, fmt(s.fps_in, 1)), h("span", {}, "fps in")),
    h("div", {}, h("b", {}, fmt(s.fps_out, 1)), h("span", {}, "fps out")),
    h("div", {}, h("b", {}, s.frames_dropped), h("span", {}, "dropped")),
    h("div", {}, h("b", { class: "score" }, fmt(s.last_score)), h("span", {}, "score")));
}

// The latest validation of a checkpoint: a recalibration's (calibrate) supersedes training's.
export function validationLevels(provenance) {
  const latest = provenance?.recalibration ? provenance.recalibration.validation : provenance?.validation;
  return latest?.levels || [];
}

function levelText(p) {
  const pct = (x) => `${+(100 * x).toFixed(1)}`;
  const delay = p.median_delay_s === null ? "" : `, ${p.median_delay_s.toFixed(1)} s`;
  return `${pct(p.level[0])}/${pct(p.level[1])}: ${p.detected}/${p.events} events${delay}, ` +
    `${p.false_episodes} false alarms, ${pct(p.normal_above_on)} % normal above`;
}

export function stateBadge(s) {
  return h("span", { class: `pill ${s.state}`, title: s.last_error || "" }, s.state);
}

export async function streamsView(root) {
  const cleanups = [];
  const cards = new Map(); // id -> {el, spark, ys, ws, on}
  const modelSelect = h("select", { name: "model" }, h("option", { value: "" }, "default"));
  // the operating points validation measured for each model (model/validation.py ALERT_LEVELS): picking one
  // fills the thresholds below, so an operator trades missed events for false alarms knowingly
  const levelSelect = h("select", { name: "level", title: "Thresholds measured on the model's validation footage" });
  const levels = new Map(); // model name -> [operating point]
  let defaultModel = null;
  const showLevels = () => {
    const points = levels.get(modelSelect.value || defaultModel) || [];
    levelSelect.replaceChildren(h("option", { value: "" }, points.length ? "the model's thresholds" : "—"),
      ...points.map((p, i) => h("option", { value: String(i) }, levelText(p))));
    levelSelect.disabled = !points.length;
  };
  serviceReady.then(() => api("/api/models")).then((models) => {
    defaultModel = models.default;
    for (const m of models.models) levels.set(m.name, validationLevels(m.provenance));
    modelSelect.append(...models.models.map((m) => h("option", { value: m.name }, m.name)));
    showLevels();
  }).catch(() => {});
  modelSelect.addEventListener("change", showLevels);
  const form = h("form", { class: "inline panel", id: "add-stream" },
    h("label", {}, "Camera URL (rtsp, rtsps)", h("input", { name: "url", required: true, placeholder: "rtsp://camera/stream" })),
    h("label", {}, "Name", h("input", { name: "name", required: true, placeholder: "entrance" })),
    h("label", {}, "Model", modelSelect),
    h("label", {}, "Sensitivity", levelSelect),
    h("label", {}, "fps cap", h("input", { name: "fps_cap", class: "num", type: "number", step: "any", min: "0" })),
    h("label", {}, "alert on", h("input", { name: "alert_on", class: "num", type: "number", step: "any", min: "0", max: "1" })),
    h("label", {}, "alert off", h("input", { name: "alert_off", class: "num", type: "number", step: "any", min: "0", max: "1" })),
    h("button", { type: "submit" }, "Add stream"),
    h("span", { class: "error-text", id: "add-error" }));
  levelSelect.addEventListener("change", () => {
    const point = (levels.get(modelSelect.value || defaultModel) || [])[Number(levelSelect.value)];
    $("input[name=alert_on]", form).value = point && levelSelect.value !== "" ? String(point.alert_on) : "";
    $("input[name=alert_off]", form).value = point && levelSelect.value !== "" ? String(point.alert_off) : "";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { url: data.url, name: data.name };
    if (data.model) body.model = data.model;
    for (const k of ["fps_cap", "alert_on", "alert_off"]) if (data[k] !== "") body[k] = Number(data[k]);
    try {
      await api("/api/streams", { method: "POST", json: body });
      form.reset();
      showLevels();
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
