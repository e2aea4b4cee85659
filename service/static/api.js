// API client: bearer token from localStorage, as a header (REST) or a subprotocol (WebSocket);
// every request of the dashboard goes through here (the documented API: REST under /api, WebSockets under /ws).
import { needToken } from "./dom.js";

export const TOKEN_KEY = "mnad.token";
export const token = () => localStorage.getItem(TOKEN_KEY) || "";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function api(path, options = {}) {
  const response = await apiResponse(path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

// The raw response (for headers), after the same token and error handling as api().
export async function apiResponse(path, options = {}) {
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

export function setImage(img, path) {
  return apiImage(path).then((url) => {
    if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
    img.dataset.objectUrl = url;
    img.src = url;
    return img;
  });
}

// Object URLs keep their blobs alive until revoked: release those of images about to be dropped.
export function releaseImages(root) {
  for (const img of root.querySelectorAll("img[data-object-url]")) URL.revokeObjectURL(img.dataset.objectUrl);
}

function b64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// A WebSocket that reconnects with backoff until closed; onopen runs on every (re)connect.
export function socket(path, { onmessage, onopen, onclose } = {}) {
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

// stream: score the video as that stream would (its model, calibration, thresholds and mask), or "" for none.
export function uploadFile(file, onProgress, stream = "") {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", stream ? `/api/clips?stream=${encodeURIComponent(stream)}` : "/api/clips");
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

// Resolves once the service has loaded its models (endpoints that need them answer 503 before);
// app.js's health watch calls markReady.
let ready;
export const serviceReady = new Promise((resolve) => { ready = resolve; });
export const markReady = () => ready();
