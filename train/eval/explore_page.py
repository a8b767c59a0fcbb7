"""The one page `dcign-explore` serves: HTML, CSS and a small script, self-contained (no font,
script or style fetched from anywhere), talking JSON to `train/eval/explore.py`.

The browser holds the state (the image's code, the slider values); every request carries
what it needs, so the server keeps none. A slider sends at most one request at a time and, if
moved meanwhile, the newest values when that one returns. Each output image records what it
shows in data-* attributes, which the browser test reads.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>dcign-explore</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; max-width: 1100px; }
h1 { font-size: 18px; margin: 0 0 4px; }
.sub { color: #666; margin-bottom: 12px; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; text-align: center; }
figure img { width: 192px; height: 192px; image-rendering: pixelated; background: #eee;
             border: 1px solid #ccc; display: block; }
figcaption { font-size: 12px; color: #555; margin-top: 4px; }
fieldset { border: 1px solid #ddd; border-radius: 6px; margin: 12px 0; padding: 8px 12px; }
legend { font-weight: 600; }
.slider { display: grid; grid-template-columns: 200px 320px 70px; gap: 8px;
          align-items: center; margin: 4px 0; }
.slider output { font-family: monospace; }
#error { color: #b00020; font-weight: 600; min-height: 1.2em; }
textarea { width: 100%; font-family: monospace; font-size: 12px; }
#latents { font-family: monospace; font-size: 12px; color: #333; }
.hidden { display: none; }
</style></head>
<body>
<h1>dcign-explore</h1>
<div class="sub" id="about"></div>
<div id="error" role="alert"></div>
<fieldset><legend>Image</legend>
  <label>held-out image <input type="number" id="held-out" min="0" value="0" style="width:6em">
  </label> <span id="held-out-count"></span> <button id="pick">show</button>
  &nbsp; or upload <input type="file" id="upload" accept="image/*">
</fieldset>
<div class="row">
  <figure><img id="input" alt="input"><figcaption>input, as the network reads it
  </figcaption></figure>
  <figure><img id="recon" alt="reconstruction"><figcaption>reconstruction</figcaption></figure>
  <figure><img id="render" alt="re-render"><figcaption id="render-caption">re-render</figcaption>
  </figure>
  <figure id="baseline-figure" class="hidden"><img id="baseline-render" alt="baseline">
    <figcaption id="baseline-caption">baseline, same edit</figcaption></figure>
</div>
<fieldset><legend>Factors</legend><div id="sliders"></div>
  <button id="reset">back to the image's code</button>
  <div id="latents"></div></fieldset>
<fieldset><legend>The same edit with dcign-rerender</legend>
  <textarea id="command" rows="3" readonly></textarea>
  <button id="copy">copy</button></fieldset>
<fieldset><legend>Interpolate to a second image</legend>
  <label>held-out image <input type="number" id="held-out-b" min="0" value="1"
   style="width:6em"></label> <button id="pick-b">show</button>
  &nbsp; or upload <input type="file" id="upload-b" accept="image/*">
  <div class="row" style="margin-top:8px">
    <figure><img id="image-b" alt="second image"><figcaption>second image</figcaption></figure>
    <figure><img id="between" alt="interpolation"><figcaption id="between-caption">
      t = 0.5</figcaption></figure>
  </div>
  <div class="slider"><span>t (first → second)</span>
    <input type="range" id="t" min="0" max="1" step="0.05" value="0.5"><output id="t-value">
    0.5</output></div>
</fieldset>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let info = null, image = null, second = null, values = [];
let busy = false, pending = false, betweenBusy = false, betweenPending = false;

function fail(message) { $("error").textContent = message; }
async function call(path, body, raw) {
  const response = await fetch(path, {method: "POST", body: raw ? body : JSON.stringify(body),
    headers: {"Content-Type": raw ? "application/octet-stream" : "application/json"}});
  let answer;
  try { answer = await response.json(); } catch (e) { answer = {error: "no answer"}; }
  if (!response.ok || answer.error) throw new Error(answer.error || response.statusText);
  return answer;
}
function show(id, url, data) {
  const img = $(id); img.src = url;
  for (const [k, v] of Object.entries(data || {})) img.dataset[k] = v;
}
function buildSliders() {
  const box = $("sliders"); box.innerHTML = "";
  info.sliders.forEach((s, k) => {
    const row = document.createElement("div"); row.className = "slider";
    row.innerHTML = `<label for="slider-${k}">${s.label}</label>` +
      `<input type="range" id="slider-${k}" min="${s.low}" max="${s.high}" step="${s.step}">` +
      `<output id="slider-${k}-value"></output>`;
    box.appendChild(row);
    row.querySelector("input").addEventListener("input", (e) => {
      values[k] = parseFloat(e.target.value); showValues(); render();
    });
  });
}
function showValues() {
  info.sliders.forEach((s, k) => {
    $(`slider-${k}`).value = values[k];
    $(`slider-${k}-value`).textContent = values[k].toFixed(s.angle ? 0 : 2);
  });
}
async function load(request, raw) {
  fail("");
  try {
    const path = raw ? "/api/upload" : "/api/image";
    image = await call(path, request, raw);
  } catch (e) { fail(e.message); return; }
  show("input", image.input, {id: image.id});
  show("recon", image.recon, {id: image.id});
  values = image.values.slice();
  showValues();
  await render();
  if (second) await between();
}
async function render() {
  if (!image) return;
  if (busy) { pending = true; return; }
  busy = true;
  const sent = values.slice();
  try {
    const r = await call("/api/render", {id: image.id, code: image.code,
      baseline_code: image.baseline_code, values: sent});
    const data = {values: JSON.stringify(sent), id: image.id, ms: r.ms};
    show("render", r.render, data);
    if (r.baseline_render) show("baseline-render", r.baseline_render, data);
    $("latents").textContent = r.latents;
    $("command").value = r.command;
    $("render-caption").textContent = `re-render (${r.ms} ms)`;
    fail("");
  } catch (e) { fail(e.message); }
  busy = false;
  if (pending) { pending = false; await render(); }
}
async function pickSecond(upload) {
  fail("");
  try {
    second = upload ? await call("/api/upload", upload, true)
      : await call("/api/image", {held_out: parseInt($("held-out-b").value)});
  } catch (e) { fail(e.message); return; }
  show("image-b", second.input, {id: second.id});
  await between();
}
async function between() {
  if (!image || !second) return;
  if (betweenBusy) { betweenPending = true; return; }
  betweenBusy = true;
  const t = parseFloat($("t").value);
  try {
    const r = await call("/api/interpolate", {a: image.code, b: second.code, t: t});
    show("between", r.render, {t: t});
    $("between-caption").textContent = `t = ${t}`;
  } catch (e) { fail(e.message); }
  betweenBusy = false;
  if (betweenPending) { betweenPending = false; await between(); }
}
async function start() {
  try { info = await (await fetch("/api/info")).json(); } catch (e) { fail(e.message); return; }
  $("about").textContent = info.about;
  if (info.baseline) {
    $("baseline-figure").classList.remove("hidden");
    $("baseline-caption").textContent = `${info.baseline}, same edit`;
  }
  $("held-out-count").textContent = info.held_out ? `of ${info.held_out} (0–${info.held_out - 1})`
    : "(no --store given)";
  $("held-out").max = $("held-out-b").max = Math.max(0, info.held_out - 1);
  buildSliders();
  $("pick").onclick = () => load({held_out: parseInt($("held-out").value)});
  $("upload").onchange = async (e) => {
    const file = e.target.files[0];
    if (file) await load(await file.arrayBuffer(), true);
  };
  $("reset").onclick = () => { values = image.values.slice(); showValues(); render(); };
  $("copy").onclick = () => navigator.clipboard.writeText($("command").value);
  $("pick-b").onclick = () => pickSecond();
  $("upload-b").onchange = async (e) => {
    const file = e.target.files[0];
    if (file) await pickSecond(await file.arrayBuffer());
  };
  $("t").addEventListener("input", (e) => { $("t-value").textContent = e.target.value;
                                             between(); });
  if (info.held_out) {
    await load({held_out: 0});
    if (info.held_out > 1) await pickSecond();
  }
  document.body.dataset.ready = "1";
}
start();
</script>
</body></html>
"""
