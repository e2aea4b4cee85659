// Dashboard for the anomaly detection service: plain JS + canvas as ES modules, no build step, no
// outside requests. This entry module routes between the views (one module each) and watches health.
import { TOKEN_KEY, markReady, releaseImages, token } from "./api.js";
import { $, banner, h, sleep } from "./dom.js";
import { alertsView } from "./view-alerts.js";
import { clipView } from "./view-clip.js";
import { clipsView } from "./view-clips.js";
import { streamView } from "./view-stream.js";
import { streamsView } from "./view-streams.js";

// Each view module's view function fills the root it is given and returns a cleanup function, run
// when the route changes.
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
