// Charts on canvas: the score chart (stream and clip views) and the sparklines (streams list).
export const COLORS = { line: "#4aa3ff", on: "#ff5a4f", off: "#ffb020", span: "rgba(255,90,79,0.18)",
  grid: "#2a3540", text: "#8a97a5", high: "#ff5a4f", marker: "#ffffff" };

function sizeCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const hh = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== hh) { canvas.width = w; canvas.height = hh; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, canvas.clientWidth, canvas.clientHeight];
}

// xs/ys: data; x0..x1: visible range; on/off: thresholds; spans: [[start, end]] shaded (alert episodes).
export function drawChart(canvas, { xs, ys, x0, x1, on, off, spans = [], xLabel = (x) => x, marker = null }) {
  const [ctx, W, H] = sizeCanvas(canvas);
  const pad = { l: 36, r: 8, t: 8, b: 22 };
  const pw = W - pad.l - pad.r;
  const ph = H - pad.t - pad.b;
  if (!(x1 > x0)) x1 = x0 + 1;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y) => pad.t + (1 - Math.max(0, Math.min(1, y))) * ph;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = COLORS.span;
  for (const [s, e] of spans) {
    const a = Math.max(X(s), pad.l);
    const b = Math.min(X(e), pad.l + pw);
    if (b > a) ctx.fillRect(a, pad.t, Math.max(2, b - a), ph);
  }
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.text;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const y of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(y) + 0.5);
    ctx.lineTo(pad.l + pw, Y(y) + 0.5);
    ctx.stroke();
    ctx.fillText(y.toFixed(2), pad.l - 4, Y(y));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(xLabel(x), Math.min(Math.max(X(x), pad.l + 20), W - 30), pad.t + ph + 5);
  }
  for (const [value, color] of [[off, COLORS.off], [on, COLORS.on]]) {
    if (value === null || value === undefined) continue;
    ctx.strokeStyle = color;
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(value));
    ctx.lineTo(pad.l + pw, Y(value));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = COLORS.line;
  ctx.beginPath();
  let started = false;
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] < x0) continue;
    const px = X(xs[i]);
    const py = Y(ys[i]);
    if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
  }
  ctx.stroke();
  if (on !== null && on !== undefined) { // points above the alert threshold
    ctx.fillStyle = COLORS.high;
    for (let i = 0; i < xs.length; i++) if (xs[i] >= x0 && ys[i] >= on) ctx.fillRect(X(xs[i]) - 1.5, Y(ys[i]) - 1.5, 3, 3);
  }
  if (marker !== null) {
    ctx.strokeStyle = COLORS.marker;
    ctx.beginPath();
    ctx.moveTo(X(marker) + 0.5, pad.t);
    ctx.lineTo(X(marker) + 0.5, pad.t + ph);
    ctx.stroke();
  }
  canvas.dataset.points = String(xs.length);
  canvas.dataset.on = on ?? ""; // the thresholds drawn, for tests
  canvas.dataset.off = off ?? "";
  return { toX: (px) => x0 + ((px - pad.l) / pw) * (x1 - x0) };
}

export function drawSpark(canvas, ys, on) {
  const [ctx, W, H] = sizeCanvas(canvas);
  ctx.clearRect(0, 0, W, H);
  if (on !== null && on !== undefined) {
    ctx.strokeStyle = "rgba(255,90,79,0.6)";
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(0, H - on * H);
    ctx.lineTo(W, H - on * H);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = COLORS.line;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  const n = ys.length;
  ys.forEach((y, i) => {
    const px = n > 1 ? (i / (n - 1)) * W : W;
    const py = H - 2 - Math.max(0, Math.min(1, y)) * (H - 4);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.stroke();
  canvas.dataset.points = String(n);
}
