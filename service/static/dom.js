// Small DOM and formatting helpers shared by the views.
export const $ = (sel, root = document) => root.querySelector(sel);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function h(tag, attrs = {}, ...children) {
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

export const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
export const clock = (t) => new Date(t * 1000).toLocaleTimeString();
export const stamp = (t) => new Date(t * 1000).toLocaleString();
export function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - 60 * m)} s`;
}

export function banner(text) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
}

export function needToken() {
  banner("This service needs an API token: enter it with the Token button.");
  $("#token-form").hidden = false;
}

// Two clicks to delete, no modal dialog.
export function confirmButton(label, action) {
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
export function throttled(fn, ms = 150) {
  let timer = null;
  const run = () => { timer = null; fn(); };
  const schedule = () => { if (timer === null) timer = setTimeout(run, ms); };
  schedule.cancel = () => { clearTimeout(timer); timer = null; };
  return schedule;
}
