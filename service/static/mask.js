// A stream's mask (GET/PUT /api/streams/{id}/mask): the areas its score ignores, drawn on the live picture.
// Polygons are fractions of the frame, as the API takes them: a click's place over the canvas's shown size.
import { ApiError, api } from "./api.js";
import { h } from "./dom.js";

const percent = (x) => `${Math.round(x * 100)} %`;

// The stream view's mask panel. `canvas`: the live picture, where clicks add corners while drawing;
// `draw(ctx)` paints the mask over it (the saved one, or the one being drawn).
export function maskPanel(id, canvas) {
  const path = `/api/streams/${encodeURIComponent(id)}/mask`;
  let saved = { polygons: [], watched: 1 };
  let editing = null; // polygons being drawn (closed ones), while drawing
  let corners = []; // the open polygon's corners
  const detail = h("span", { class: "muted grow", id: "mask-detail" });
  const message = h("div", { class: "error-text", id: "mask-error", role: "alert" });
  const button = (label, onclick, attrs = {}) => h("button", { type: "button", onclick, ...attrs }, label);
  const edit = button("Mask", () => start(), { id: "mask-edit", title: "draw areas the score should ignore" });
  const close = button("Close shape", () => closeShape(), { id: "mask-close" });
  const undo = button("Undo", () => { if (corners.length) corners.pop(); else if (editing.length) editing.pop(); render(); },
    { id: "mask-undo" });
  const clear = button("Clear all", () => { editing = []; corners = []; render(); }, { id: "mask-clear" });
  const save = button("Save", () => submit(), { id: "mask-save" });
  const cancel = button("Cancel", () => { editing = null; corners = []; message.textContent = ""; render(); }, { id: "mask-cancel" });
  const tools = h("span", { class: "inline" }, close, undo, clear, save, cancel);
  const el = h("div", { class: "panel mask-panel", id: "mask" },
    h("div", { class: "row" }, h("b", {}, "Mask"), detail, edit, tools), message);

  function render() {
    const drawing = editing !== null;
    el.dataset.state = drawing ? "drawing" : saved.polygons.length ? "masked" : "none";
    el.dataset.polygons = String(saved.polygons.length);
    edit.hidden = drawing;
    tools.hidden = !drawing;
    close.disabled = corners.length < 3;
    canvas.classList.toggle("drawing", drawing);
    detail.textContent = drawing
      ? `click the corners of an area on the picture, then Close shape; ${editing.length} closed, ${corners.length} corners open`
      : saved.polygons.length
        ? `${saved.polygons.length} area${saved.polygons.length > 1 ? "s" : ""} ignored: the score looks at ${percent(saved.watched)} of the frame`
        : "none: the score looks at the whole frame (mask a clock, a road or a tree it should ignore)";
  }
  function start() {
    editing = saved.polygons.map((p) => p.map(([x, y]) => [x, y]));
    corners = [];
    message.textContent = "";
    render();
  }
  function closeShape() {
    if (corners.length < 3) return;
    editing.push(corners);
    corners = [];
    render();
  }
  async function submit() {
    const polygons = corners.length >= 3 ? [...editing, corners] : editing;
    save.disabled = true;
    try {
      saved = await api(path, { method: "PUT", json: { polygons } });
      editing = null;
      corners = [];
      message.textContent = "";
    } catch (e) {
      message.textContent = e instanceof ApiError ? `Mask: ${e.message} (HTTP ${e.status})`
        : `Mask: the service could not be reached (${e.message})`;
    }
    save.disabled = false;
    render();
  }
  canvas.addEventListener("click", (event) => {
    if (editing === null) return;
    const box = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, Math.round(v * 1e4) / 1e4));
    corners.push([clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)]);
    render();
  });

  function draw(ctx) {
    const { width, height } = ctx.canvas;
    const shapes = editing === null ? saved.polygons : editing;
    ctx.save();
    ctx.lineWidth = 2;
    ctx.fillStyle = "rgba(20, 20, 30, 0.55)";
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    for (const polygon of shapes) {
      ctx.beginPath();
      polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x * width, y * height) : ctx.moveTo(x * width, y * height)));
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
    if (corners.length) {
      ctx.strokeStyle = "#ffd54f";
      ctx.fillStyle = "#ffd54f";
      ctx.beginPath();
      corners.forEach(([x, y], i) => (i ? ctx.lineTo(x * width, y * height) : ctx.moveTo(x * width, y * height)));
      ctx.stroke();
      for (const [x, y] of corners) ctx.fillRect(x * width - 3, y * height - 3, 6, 6);
    }
    ctx.restore();
  }

  render();
  return {
    el,
    draw,
    // the stream's mask as GET /api/streams/{id} or a "mask" message has it (another operator may change it)
    update: (mask) => { saved = { polygons: mask.polygons, watched: mask.watched }; render(); },
  };
}
