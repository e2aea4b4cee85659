// Calibration on the camera's own normal footage (POST/GET/DELETE /api/streams/{id}/calibration):
// the state pill of the streams list and the stream view's panel.
import { ApiError, api } from "./api.js";
import { confirmButton, h, stamp } from "./dom.js";

// c: the GET body or a "calibrated" message; on the streams list only the state is known (`calibration`).
function calibrationText(c) {
  if (c.state === "collecting") return c.progress === undefined ? "calibrating…" : `calibrating ${Math.floor(c.progress * 100)} %`;
  return c.state === "fitted" ? "calibrated on this camera" : "checkpoint's calibration";
}

export function calibrationPill(c, attrs = {}) {
  const kind = c.state === "fitted" ? "ok" : c.state === "collecting" ? "warn" : "";
  return h("span", { class: `pill calibration ${kind}`, ...attrs }, calibrationText(c));
}

// The stream view's calibration panel: state, progress while collecting, Calibrate and Reset.
// onChange runs when the calibration in force changes (the alert thresholds may have moved).
export function calibrationPanel(id, onChange) {
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
