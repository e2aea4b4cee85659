// #/clips: upload a video (with progress) and the list of recent uploads.
import { api, uploadFile } from "./api.js";
import { h, stamp } from "./dom.js";

export async function clipsView(root) {
  const input = h("input", { type: "file", accept: "video/*", hidden: true, id: "clip-file" });
  const bar = h("progress", { max: 1, value: 0, hidden: true, id: "upload-progress" });
  const message = h("div", { class: "muted", id: "upload-message" });
  // a recording of one of the cameras: scored with that stream's calibration, thresholds and mask
  const asStream = h("select", { id: "clip-stream" }, h("option", { value: "" }, "the model's calibration, whole frame"));
  const drop = h("div", { class: "drop", id: "drop-zone" }, h("p", {}, "Drop a video here (MP4, MKV, AVI, WebM), or click to choose one."),
    h("p", { class: "hint" }, "It is scored frame by frame like a live camera; its timeline follows."));
  const send = async (file) => {
    if (!file) return;
    bar.hidden = false; bar.value = 0;
    message.className = "muted";
    message.textContent = `Uploading ${file.name}…`;
    try {
      const created = await uploadFile(file, (p) => { bar.value = p; message.textContent = `Uploading ${file.name}: ${Math.round(p * 100)} %`; },
        asStream.value);
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
  root.append(h("h1", {}, "Clips"), h("label", { class: "muted" }, "Score as ", asStream), drop, input, bar, message,
    h("h2", {}, "Recent uploads"), recent);
  try {
    for (const s of await api("/api/streams")) asStream.append(h("option", { value: s.id }, `stream ${s.name}: its calibration and mask`));
  } catch (_) { /* the model's, then */ }
  try {
    const clips = await api("/api/clips?limit=20");
    recent.replaceChildren(clips.length ? h("table", {}, h("thead", {}, h("tr", {}, ["File", "Uploaded", "Status", "Model"].map((t) => h("th", {}, t)))),
      h("tbody", {}, clips.map((c) => h("tr", {}, h("td", {}, h("a", { href: `#/clips/${c.id}` }, c.original_name || c.id)),
        h("td", {}, stamp(c.created)), h("td", {}, h("span", { class: `pill ${c.status === "done" ? "ok" : c.status === "failed" ? "bad" : "warn"}` }, c.status)),
        h("td", {}, c.model))))) : h("div", { class: "empty" }, "No uploads yet."));
  } catch (_) { /* list is optional */ }
  return () => {};
}
