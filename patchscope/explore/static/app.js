// patchscope explore: the page's state lives here; every request names its model, image and patch.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  options: null,
  model: "",
  size: 32,
  classes: [],         // the data's classes
  modelClasses: [],
  labels: [],          // the data's labels, one per image
  byClass: new Map(),  // class id -> data indices
  image: "data:0",
  patch: "blank",
  patchInfo: null,     // {side, row, col, source, target}
  patchImg: null,
  sourceImg: null,
  place: { row: 0.5, col: 0.5, scale: 1, rotation: 0 },  // row, col: fractions of the image side
  camera: { rotation: 0, yaw: 0, distance: 1, brightness: 1, blur: 0 },
  lookSeq: 0,
  looks: 0,
  job: null,
  optimised: 0,
};

// ---------------------------------------------------------------- requests and messages

async function api(path, body, method) {
  const init = body === undefined ? { method: method || "GET" } : {
    method: method || "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
  return data;
}

function showMessage(text) {
  $("message-text").textContent = text;
  $("message").hidden = false;
}
function clearMessage() { $("message").hidden = true; }
$("message-close").onclick = clearMessage;

function q(params) { return new URLSearchParams(params).toString(); }

function sceneBody() {
  return { model: state.model, image: state.image, patch: state.patch, placement: { ...state.place }, camera: { ...state.camera } };
}

// ---------------------------------------------------------------- the scene canvas

const canvas = $("scene");
const ctx = canvas.getContext("2d");
const HANDLE = 9;

function px() { return canvas.width / state.size; }           // canvas pixels per image pixel
function half() { return (state.patchInfo ? state.patchInfo.side : 0) * state.place.scale / 2; }  // image px
function centre() { return { x: state.place.col * canvas.width, y: state.place.row * canvas.height }; }

function draw() {
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.sourceImg) ctx.drawImage(state.sourceImg, 0, 0, canvas.width, canvas.height);
  if (!state.patchImg || !state.patchInfo) return;
  const c = centre(), h = half() * px();
  ctx.save();
  ctx.translate(c.x, c.y);
  ctx.rotate(state.place.rotation * Math.PI / 180);
  ctx.drawImage(state.patchImg, -h, -h, 2 * h, 2 * h);
  ctx.strokeStyle = "rgba(255,255,255,.8)";
  ctx.setLineDash([4, 3]);
  ctx.strokeRect(-h, -h, 2 * h, 2 * h);
  ctx.setLineDash([]);
  ctx.fillStyle = "#fff";
  ctx.strokeStyle = "#000";
  ctx.beginPath(); ctx.rect(h - HANDLE / 2, h - HANDLE / 2, HANDLE, HANDLE); ctx.fill(); ctx.stroke();
  ctx.beginPath(); ctx.moveTo(0, -h); ctx.lineTo(0, -h - 18); ctx.strokeStyle = "#fff"; ctx.stroke();
  ctx.beginPath(); ctx.arc(0, -h - 18, HANDLE / 2 + 1, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
  ctx.strokeStyle = "#000"; ctx.stroke();
  ctx.restore();
}

function local(ev) {  // the pointer in canvas pixels, and in the patch's own (unrotated) frame around its centre
  const r = canvas.getBoundingClientRect();
  const x = (ev.clientX - r.left) * canvas.width / r.width, y = (ev.clientY - r.top) * canvas.height / r.height;
  const c = centre(), a = -state.place.rotation * Math.PI / 180;
  const dx = x - c.x, dy = y - c.y;
  return { x, y, dx, dy, lx: dx * Math.cos(a) - dy * Math.sin(a), ly: dx * Math.sin(a) + dy * Math.cos(a) };
}

function hit(p) {
  const h = half() * px();
  if (Math.hypot(p.lx, p.ly + h + 18) <= HANDLE) return "rotate";
  if (Math.abs(p.lx - h) <= HANDLE && Math.abs(p.ly - h) <= HANDLE) return "scale";
  if (Math.abs(p.lx) <= h && Math.abs(p.ly) <= h) return "move";
  return null;
}

function snapped() {  // the patch's top-left corner on whole image pixels, when asked
  if (!$("snap").checked || !state.patchInfo) return;
  const s = state.size, h = half();
  state.place.row = (Math.round(state.place.row * s - h) + h) / s;
  state.place.col = (Math.round(state.place.col * s - h) + h) / s;
}

function setScale(v) { state.place.scale = Math.min(8, Math.max(0.1, v)); }
function setRotation(v) { state.place.rotation = ((v + 540) % 360) - 180; }

let drag = null;
canvas.addEventListener("pointerdown", (ev) => {
  const p = local(ev), what = hit(p);
  if (!what) return;
  canvas.setPointerCapture(ev.pointerId);
  drag = { what, start: p, place: { ...state.place } };
  canvas.focus();
});
canvas.addEventListener("pointermove", (ev) => {
  const p = local(ev);
  if (!drag) { canvas.style.cursor = hit(p) ? (hit(p) === "move" ? "grab" : "pointer") : "default"; return; }
  if (drag.what === "move") {
    state.place.row = drag.place.row + (p.y - drag.start.y) / canvas.height;
    state.place.col = drag.place.col + (p.x - drag.start.x) / canvas.width;
    snapped();
  } else if (drag.what === "scale") {
    setScale(Math.hypot(p.dx, p.dy) / (Math.SQRT2 * state.patchInfo.side / 2 * px()));
  } else {
    let deg = Math.atan2(p.dx, -p.dy) * 180 / Math.PI;
    if (ev.shiftKey) deg = Math.round(deg / 15) * 15;
    setRotation(deg);
  }
  changed();
});
canvas.addEventListener("pointerup", () => { drag = null; });
canvas.addEventListener("wheel", (ev) => {
  ev.preventDefault();
  setScale(state.place.scale * (ev.deltaY < 0 ? 1.05 : 1 / 1.05));
  changed();
}, { passive: false });
canvas.addEventListener("keydown", (ev) => {
  const step = (ev.shiftKey ? 5 : 1) / state.size;
  const moves = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] };
  if (moves[ev.key]) { state.place.row += moves[ev.key][0]; state.place.col += moves[ev.key][1]; }
  else if (ev.key === "+" || ev.key === "=") setScale(state.place.scale * 1.05);
  else if (ev.key === "-") setScale(state.place.scale / 1.05);
  else if (ev.key === "]") setRotation(state.place.rotation + 5);
  else if (ev.key === "[") setRotation(state.place.rotation - 5);
  else return;
  ev.preventDefault();
  changed();
});

// ---------------------------------------------------------------- sliders

function syncSliders() {
  $("scale").value = state.place.scale; $("scale-out").textContent = state.place.scale.toFixed(2) + "x";
  $("rotation").value = state.place.rotation; $("rotation-out").textContent = Math.round(state.place.rotation) + "°";
  for (const input of document.querySelectorAll("[data-camera]")) {
    const key = input.dataset.camera, v = state.camera[key];
    input.value = v;
    input.nextElementSibling.textContent = key === "rotation" || key === "yaw" ? `${v}°` : key === "blur" ? `${v} px` : `${v}x`;
  }
}
$("scale").addEventListener("input", (ev) => { setScale(+ev.target.value); changed(); });
$("rotation").addEventListener("input", (ev) => { setRotation(+ev.target.value); changed(); });
for (const input of document.querySelectorAll("[data-camera]")) {
  input.addEventListener("input", () => { state.camera[input.dataset.camera] = +input.value; changed(); });
}
$("reset-camera").onclick = () => { state.camera = { rotation: 0, yaw: 0, distance: 1, brightness: 1, blur: 0 }; changed(); };
$("reset-place").onclick = () => { placeAtHome(); changed(); };

// ---------------------------------------------------------------- updates: the view now, the certificate when idle

let lookBusy = false, lookDirty = false;
function changed() {
  syncSliders();
  draw();
  lookDirty = true;
  pumpLook();
  scheduleCertify();
}

async function pumpLook() {
  if (lookBusy || !lookDirty || !state.patchInfo || !state.sourceImg) return;
  lookDirty = false;
  lookBusy = true;
  try {
    showLook(await api("/api/look", sceneBody()));
  } catch (e) {
    showMessage(e.message);
  } finally {
    lookBusy = false;
    if (lookDirty) pumpLook();
  }
}

function name(c) { return c ? c.name : "?"; }

function fillTop(table, top) {
  const body = table.querySelector("tbody");
  body.innerHTML = "";
  top.forEach((g, i) => {
    const tr = document.createElement("tr");
    if (i === 0) tr.className = "first";
    tr.innerHTML = `<td></td><td>${(100 * g.prob).toFixed(1)}%</td><td class="bar"><div style="width:${(100 * g.prob).toFixed(1)}%"></div></td>`;
    tr.firstChild.textContent = `${g.name} (${g.id})`;
    tr.firstChild.title = tr.firstChild.textContent;
    body.appendChild(tr);
  });
}

function showLook(r) {
  $("clean-img").src = r.clean; $("patched-img").src = r.patched;
  $("clean-heat").src = r.clean_heat; $("patched-heat").src = r.patched_heat;
  const method = r.heatmap === "rollout" ? "attention rollout" : "Grad-CAM";
  $("clean-heat-cap").textContent = `${method}, clean (${(100 * r.heat_on_patch[0]).toFixed(0)}% on the patch)`;
  $("patched-heat-cap").textContent = `${method}, patched (${(100 * r.heat_on_patch[1]).toFixed(0)}% on the patch)`;
  $("clean-top1").textContent = r.clean_top[0].name;
  $("patched-top1").textContent = r.patched_top[0].name;
  $("verdict").classList.toggle("flipped", r.flipped);
  fillTop($("clean-top"), r.clean_top);
  fillTop($("patched-top"), r.patched_top);
  const layers = $("layers");
  layers.innerHTML = "";
  for (const l of r.layers) {
    const share = l.share === null ? 0 : l.share;
    const row = document.createElement("div");
    row.className = "row";
    row.innerHTML = `<span></span><div class="track"><div class="fill" style="width:${Math.min(100, 100 * share).toFixed(1)}%"></div></div><span>${l.share === null ? "-" : (100 * share).toFixed(1) + "%"}</span>`;
    row.firstChild.textContent = `${l.name} ${l.grid[0]}x${l.grid[1]}`;
    layers.appendChild(row);
  }
  $("look-ms").textContent = `${r.ms} ms on the server`;
  state.looks += 1;
  document.body.dataset.looks = String(state.looks);
}

let certTimer = null, certBusy = false, certWanted = false;
function scheduleCertify() {
  certWanted = true;
  $("cert-state").textContent = "certifying when you stop moving…";
  clearTimeout(certTimer);
  certTimer = setTimeout(runCertify, 400);
}

async function runCertify() {
  if (certBusy || !certWanted || !state.patchInfo) return;
  certWanted = false;
  certBusy = true;
  $("cert-state").textContent = "certifying…";
  try {
    const r = await api("/api/certify", { ...sceneBody(), k: +$("k").value });
    if (!certWanted) showCertificate(r);
  } catch (e) {
    $("cert-state").textContent = "";
    showMessage(e.message);
  } finally {
    certBusy = false;
    if (certWanted) runCertify();
  }
}
$("k").addEventListener("change", scheduleCertify);

function drawMasks(canvasEl, imgEl, boxes, colour) {
  const c = canvasEl.getContext("2d"), f = canvasEl.width / state.size;
  c.imageSmoothingEnabled = false;
  c.clearRect(0, 0, canvasEl.width, canvasEl.height);
  if (imgEl.complete && imgEl.naturalWidth) c.drawImage(imgEl, 0, 0, canvasEl.width, canvasEl.height);
  c.lineWidth = 2;
  for (const b of boxes) {
    c.fillStyle = colour + "55"; c.strokeStyle = colour;
    c.fillRect(b.left * f, b.top * f, b.side * f, b.side * f);
    c.strokeRect(b.left * f + 1, b.top * f + 1, b.side * f - 2, b.side * f - 2);
  }
}

function showCertificate(r) {
  const label = name(r.label), side = `${r.patch_side}x${r.patch_side} px`;
  $("cert-state").innerHTML = r.certified
    ? `<span class="ok">certified</span> for ${label} against any patch up to ${side}`
    : `<span class="bad">not certified</span> for ${label} against a ${side} patch`;
  drawMasks($("cert-clean"), $("clean-img"), r.broken_by || [], "#c0392b");
  drawMasks($("cert-patched"), $("patched-img"), r.deciding ? [r.deciding] : [], "#1e8449");
  const how = {
    "agree": "every single mask gives the same answer",
    "one mask": "one mask (drawn) disagrees with the rest and every second mask agrees with it",
    "majority": "no mask settles it: the majority of the single masks",
  }[r.case];
  const broken = r.broken_by ? ` Under the mask${r.broken_by[0].top === r.broken_by[1].top && r.broken_by[0].left === r.broken_by[1].left ? "" : "s"} drawn on the clean view it reads another class.` : "";
  $("cert-text").textContent = `${r.masks} masks of ${r.mask_side} px.${broken} On the patched view PatchCleanser answers ${name(r.defended)}` +
    ` (${r.recovered ? "right" : "wrong"}): ${how}. ${r.passes} forward passes, ${r.ms} ms` +
    (r.kept ? " (the clean view's certificate was kept from before)." : ".");
  document.body.dataset.certified = String(r.certified);
}

// ---------------------------------------------------------------- model, image, patch

function placeAtHome() {
  if (!state.patchInfo) return;
  state.place = { row: state.patchInfo.row, col: state.patchInfo.col, scale: 1, rotation: 0 };
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the picture could not be loaded"));
    img.src = src;
  });
}

async function fetchImageBlob(path) {
  const r = await fetch(path);
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return loadImage(URL.createObjectURL(await r.blob()));
}

async function setSource() {
  state.sourceImg = await fetchImageBlob(`/api/source?${q({ model: state.model, image: state.image })}`);
  draw();
}

async function setPatch(ref, home) {
  const info = await api(`/api/patch?${q({ model: state.model, patch: ref })}`);
  state.patch = ref;
  state.patchInfo = info;
  state.patchImg = await loadImage(info.png);
  if (home) placeAtHome();
  setTarget(info.target);
}

function setTarget(name) {
  const select = $("target");
  const wanted = [...select.options].find((o) => o.dataset.name === name);
  if (wanted) select.value = wanted.value;
}

function fillClasses(r) {
  state.size = r.size;
  state.classes = r.classes;
  state.modelClasses = r.model_classes;
  state.labels = r.labels;
  state.byClass = new Map();
  r.labels.forEach((c, i) => { if (!state.byClass.has(c)) state.byClass.set(c, []); state.byClass.get(c).push(i); });
  const select = $("image-class"), before = select.value;
  select.innerHTML = "";
  for (const [c, list] of [...state.byClass.entries()].sort((a, b) => a[0] - b[0])) {
    const o = new Option(`${r.classes[c]} (${list.length})`, String(c));
    select.add(o);
  }
  const stop = r.classes.indexOf("stop");
  select.value = before && state.byClass.has(+before) ? before : String(stop >= 0 && state.byClass.has(stop) ? stop : [...state.byClass.keys()][0]);
  const target = $("target");
  target.innerHTML = "";
  target.add(new Option("any other class (untargeted)", ""));
  r.model_classes.forEach((n, i) => { const o = new Option(`${n} (${i})`, String(i)); o.dataset.name = n; target.add(o); });
  $("data-note").textContent = `data: ${state.options.data}` + (r.labels_are_model_classes ? "" : " (its labels are not this model's classes)");
}

function chooseImage() {
  const list = state.byClass.get(+$("image-class").value) || [];
  const n = Math.max(0, Math.min(list.length - 1, +$("image-n").value || 0));
  $("image-n").value = n;
  $("image-n").max = Math.max(0, list.length - 1);
  if (list.length) state.image = `data:${list[n]}`;
}

function patchOptions() {
  const select = $("patch"), model = state.model, before = select.value;
  const keep = [...select.options].filter((o) => o.value.startsWith("upload:") || o.value.startsWith("job:"));
  select.innerHTML = "";
  select.add(new Option("blank (grey square)", "blank"));
  if (state.options.given) select.add(new Option(`${state.options.given} (given)`, "given"));
  const own = state.options.patches.filter((p) => p.startsWith(model + "/"));
  const other = state.options.patches.filter((p) => !p.startsWith(model + "/"));
  for (const [label, list] of [["zoo, this model", own], ["zoo, other models", other]]) {
    if (!list.length) continue;
    const g = document.createElement("optgroup");
    g.label = label;
    for (const p of list) g.appendChild(new Option(p, `zoo:${p}`));
    select.appendChild(g);
  }
  for (const o of keep) select.add(o);
  const first = state.options.given ? "given" : ["stop-yield-small", "stop-yield"].map((n) => `zoo:${model}/${n}`)
    .find((v) => [...select.options].some((o) => o.value === v)) || (own.length ? `zoo:${own[0]}` : "blank");
  select.value = [...select.options].some((o) => o.value === before) && before ? before : first;
}

async function setModel(name) {
  clearMessage();
  const r = await api(`/api/images?${q({ model: name })}`);
  state.model = name;
  $("model").value = name;
  fillClasses(r);
  const fresh = state.patch === "blank" || !$("patch").value;
  patchOptions();
  if (!state.image.startsWith("upload:")) chooseImage();
  await setSource();
  await setPatch($("patch").value, fresh);
  changed();
}

async function guarded(fn) {
  try { await fn(); } catch (e) { showMessage(e.message); }
}

$("model").addEventListener("change", () => guarded(() => setModel($("model").value.trim())));
$("image-class").addEventListener("change", () => { $("image-n").value = 0; guarded(pickImage); });
$("image-n").addEventListener("change", () => guarded(pickImage));
$("image-prev").onclick = () => { $("image-n").value = +$("image-n").value - 1; guarded(pickImage); };
$("image-next").onclick = () => { $("image-n").value = +$("image-n").value + 1; guarded(pickImage); };
async function pickImage() { chooseImage(); await setSource(); changed(); }
$("patch").addEventListener("change", () => guarded(async () => { await setPatch($("patch").value, true); changed(); }));

async function upload(input, kind) {
  const file = input.files[0];
  input.value = "";
  if (!file) return;
  const limit = state.options.max_upload_mb;
  const form = new FormData();
  form.append("file", file);
  const r = await fetch(`/api/upload/${kind}`, { method: "POST", body: form });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) throw new Error((data && data.error) || `the upload failed (${r.status}; at most ${limit} MB)`);
  clearMessage();
  if (kind === "image") {
    state.image = data.ref;
    await setSource();
  } else {
    $("patch").add(new Option(`uploaded: ${file.name}`, data.ref));
    $("patch").value = data.ref;
    await setPatch(data.ref, true);
  }
  changed();
}
$("upload-image").addEventListener("change", (ev) => guarded(() => upload(ev.target, "image")));
$("upload-patch").addEventListener("change", (ev) => guarded(() => upload(ev.target, "patch")));

// ---------------------------------------------------------------- optimise here

async function pollJob() {
  if (!state.job) return;
  let r;
  try { r = await api(`/api/optimise/${state.job}`); } catch (e) { showMessage(e.message); return; }
  const done = r.step || 0;
  $("opt-progress").max = r.steps; $("opt-progress").value = done;
  const success = r.success === undefined ? "" : `, ${(100 * r.success).toFixed(0)}% of the views won`;
  $("opt-state").textContent = `${r.state}: step ${done} of ${r.steps}${r.loss === undefined || r.loss === null ? "" : `, loss ${r.loss.toFixed(3)}`}${success}`;
  if (r.state === "running") { setTimeout(pollJob, 300); return; }
  $("optimise").disabled = false; $("stop").disabled = true;
  if (r.state === "failed") { showMessage(r.error); return; }
  const tgt = r.targeted_success === null ? "" : `target ${(100 * r.targeted_success).toFixed(0)}%, `;
  $("opt-state").textContent = `${r.state} after ${r.step} steps: on this image over 33 viewing conditions, ${tgt}any other class ${(100 * r.untargeted_success).toFixed(0)}%`;
  state.optimised += 1;
  $("patch").add(new Option(`optimised #${state.optimised} (${r.step} steps)`, r.patch));
  $("patch").value = r.patch;
  await setPatch(r.patch, true);
  $("save").disabled = false;
  document.body.dataset.optimised = String(state.optimised);
  changed();
}

$("optimise").onclick = () => guarded(async () => {
  const target = $("target").value === "" ? null : +$("target").value;
  const body = { ...sceneBody(), target, steps: +$("steps").value, eot: $("eot").checked };
  const r = await api("/api/optimise", body);
  state.job = r.job;
  $("optimise").disabled = true; $("stop").disabled = false; $("save").disabled = true;
  $("reproduce").hidden = true;
  pollJob();
});
$("stop").onclick = () => guarded(() => api(`/api/optimise/${state.job}/stop`, {}));
$("save").onclick = () => guarded(async () => {
  const r = await api(`/api/optimise/${state.job}/save`, {});
  $("reproduce").hidden = false;
  $("reproduce").textContent = `saved as run ${r.run} in ${r.folder}\n` + r.commands.join("\n");
  $("save").disabled = true;
});

// ---------------------------------------------------------------- start

async function start() {
  state.options = await api("/api/options");
  const list = $("models");
  for (const m of state.options.models) list.appendChild(new Option(m, m));
  for (const input of document.querySelectorAll("[data-camera]")) {
    const [lo, hi] = state.options.camera_limits[input.dataset.camera];
    input.min = lo; input.max = hi;
  }
  syncSliders();
  await setModel(state.options.model);
  document.body.dataset.ready = "true";
}
guarded(start);
