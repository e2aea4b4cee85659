// #/alerts: alert episodes filtered by stream, time and review, with their peak frames and heatmaps, and the
// operator's verdict on each. alertTable is shared with the stream view.
import { ApiError, api, releaseImages, setImage, socket } from "./api.js";
import { duration, fmt, h, stamp } from "./dom.js";

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
    h("td", { class: "num" }, `${a.start_frame}–${open ? "…" : a.end_frame} (peak ${a.peak_frame})`),
    h("td", {}, review(a)));
}

const VERDICTS = { false_alarm: "False alarm", confirmed: "Confirmed" };

// An operator's verdict (PATCH /api/alerts/{id}): two toggles; clicking the one in force takes it back.
function review(a) {
  const cell = h("div", { class: "review", dataset: { verdict: a.verdict || "" } });
  const message = h("span", { class: "error-text" });
  const render = () => cell.replaceChildren(...Object.entries(VERDICTS).map(([verdict, label]) =>
    h("button", { type: "button", class: a.verdict === verdict ? `verdict on ${verdict}` : "verdict", "aria-pressed": String(a.verdict === verdict),
      title: a.verdict === verdict ? "take the verdict back" : `mark this alert: ${label.toLowerCase()}`,
      onclick: () => judge(a.verdict === verdict ? null : verdict) }, label)), message);
  async function judge(verdict) {
    message.textContent = "";
    try {
      Object.assign(a, await api(`/api/alerts/${a.id}`, { method: "PATCH", json: { verdict } }));
      cell.dataset.verdict = a.verdict || "";
      render();
    } catch (e) {
      render();
      message.textContent = e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : `not saved: ${e.message}`;
    }
  }
  render();
  return cell;
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

export function alertTable(rows, names) {
  return h("table", { class: "alerts" },
    h("thead", {}, h("tr", {}, ["Peak frame / heatmap", "Stream", "Started", "Duration", "Peak score", "Frames", "Review"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((a) => alertRow(a, names))));
}

function toUnix(value) {
  return value ? new Date(value).getTime() / 1000 : null;
}

export async function alertsView(root, params) {
  const LIMIT = 25;
  let offset = Number(params.get("offset") || 0);
  const streams = await api("/api/streams").catch(() => []);
  const names = Object.fromEntries(streams.map((s) => [s.id, s.name]));
  const streamSelect = h("select", { name: "stream", id: "filter-stream" }, h("option", { value: "" }, "all streams"),
    streams.map((s) => h("option", { value: s.id, selected: params.get("stream") === s.id }, s.name)));
  const since = h("input", { type: "datetime-local", name: "since", value: params.get("since") || "" });
  const until = h("input", { type: "datetime-local", name: "until", value: params.get("until") || "" });
  const verdict = h("select", { name: "verdict", id: "filter-verdict" }, h("option", { value: "" }, "any"),
    Object.entries({ unreviewed: "not reviewed", ...VERDICTS }).map(([v, label]) => h("option", { value: v, selected: params.get("verdict") === v }, label)));
  const list = h("div", { id: "alert-list" });
  const pager = h("div", { class: "pager" });
  const form = h("form", { class: "filters" },
    h("label", {}, "Stream", streamSelect), h("label", {}, "Since", since), h("label", {}, "Until", until), h("label", {}, "Review", verdict),
    h("button", { type: "submit" }, "Filter"), h("button", { type: "button", onclick: () => { location.hash = "#/alerts"; } }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (streamSelect.value) q.set("stream", streamSelect.value);
    if (since.value) q.set("since", since.value);
    if (until.value) q.set("until", until.value);
    if (verdict.value) q.set("verdict", verdict.value);
    location.hash = `#/alerts?${q}`;
  });
  root.append(h("h1", {}, "Alerts"), form, list, pager);

  async function load() {
    const q = new URLSearchParams({ limit: LIMIT, offset });
    if (params.get("stream")) q.set("stream", params.get("stream"));
    if (toUnix(params.get("since"))) q.set("since", toUnix(params.get("since")));
    if (toUnix(params.get("until"))) q.set("until", toUnix(params.get("until")));
    if (params.get("verdict")) q.set("verdict", params.get("verdict"));
    let page;
    try { page = await api(`/api/alerts?${q}`); } catch (e) { list.replaceChildren(h("p", { class: "error-text" }, e.message)); return; }
    list.dataset.count = String(page.total);
    list.dataset.stream = params.get("stream") || ""; // which filter the rows shown answer (tests wait on it)
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
