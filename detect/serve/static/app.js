// The page of `detect serve`: pick or drop an image, see the detections drawn over it.
// One request per image, at a low score floor; the score slider and the class toggles filter the
// answer here, without asking the server again.
"use strict";

const SCORE_FLOOR = 0.05;
const state = { classes: [], detections: [], image: null, hidden: new Set(), requests: 0 };

const $ = (id) => document.getElementById(id);

function classColour(label) {
  const hue = (label * 137.508) % 360; // golden-angle steps: neighbouring labels get distant hues
  return `hsl(${hue}, 85%, 45%)`;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function errorText(answer) {
  try {
    const body = await answer.json();
    return `${answer.status}: ${body.error || answer.statusText}`;
  } catch {
    return `${answer.status}: ${answer.statusText}`;
  }
}

async function loadModel() {
  const answer = await fetch("/v1/model", { headers: authHeaders() });
  if (!answer.ok) {
    $("model").textContent = "Model: unknown until the server accepts the API key.";
    setStatus(answer.status === 401 ? "This server needs an API key: enter it below." : await errorText(answer), true);
    return;
  }
  const info = await answer.json();
  state.classes = info.classes;
  $("model").textContent = `${info.name}: ${info.arch} (${info.backbone}) on ${info.device}; ` +
    `${info.classes.length} classes: ${info.classes.join(", ")}`;
  buildClassToggles(info.classes);
  if (!state.image) setStatus("No image yet.");
}

function buildClassToggles(classes) {
  const fieldset = $("classes");
  fieldset.querySelectorAll("label").forEach((label) => label.remove());
  classes.forEach((name, index) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = !state.hidden.has(name);
    box.dataset.class = name;
    box.addEventListener("change", () => {
      if (box.checked) state.hidden.delete(name); else state.hidden.add(name);
      render();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classColour(index + 1);
    label.append(box, swatch, document.createTextNode(name));
    fieldset.append(label);
  });
}

async function detect(file) {
  setStatus(`Detecting objects in ${file.name}...`);
  const form = new FormData();
  form.append("files", file, file.name);
  state.requests += 1;
  document.body.dataset.requests = String(state.requests);
  let answer;
  try {
    answer = await fetch(`/v1/detect?score_threshold=${SCORE_FLOOR}`,
      { method: "POST", body: form, headers: authHeaders() });
  } catch (error) {
    setStatus(`The server did not answer: ${error}`, true);
    return;
  }
  if (!answer.ok) {
    setStatus(await errorText(answer), true);
    return;
  }
  const record = (await answer.json()).images[0];
  state.image = await storedPixels(file);
  state.detections = record.detections;
  state.file = record.file;
  render();
}

// The server's boxes are in the image's stored pixels, as the model saw them. Chromium and Firefox
// turn a JPEG by its EXIF orientation whenever they decode it (createImageBitmap's imageOrientation
// "none" and CSS image-orientation no longer stop them), so the page decodes a copy whose orientation
// tag says "as stored".
async function storedPixels(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  clearJpegOrientation(new DataView(bytes.buffer));
  return createImageBitmap(new Blob([bytes], { type: file.type }));
}

// Sets the orientation tag (0x0112) of a JPEG's EXIF block to 1 ("as stored"), in place; other files
// and JPEGs without the tag are left as they are.
function clearJpegOrientation(view) {
  if (view.byteLength < 4 || view.getUint16(0) !== 0xffd8) return;
  let offset = 2;
  while (offset + 10 <= view.byteLength) {
    const marker = view.getUint16(offset);
    if ((marker & 0xff00) !== 0xff00 || marker === 0xffda) return; // the image data starts: no more metadata
    const end = Math.min(offset + 2 + view.getUint16(offset + 2), view.byteLength);
    if (marker === 0xffe1 && view.getUint32(offset + 4) === 0x45786966) { // APP1 "Exif"
      clearTiffOrientation(view, offset + 10, end);
    }
    offset = end;
  }
}

// The EXIF block is a TIFF header (byte order, 42, offset of the first directory) and directories of
// 12-byte entries (tag, type, count, value); the orientation is a SHORT of the first directory.
function clearTiffOrientation(view, tiff, end) {
  if (tiff + 8 > end) return;
  const little = view.getUint16(tiff) === 0x4949; // "II": little-endian
  const directory = tiff + view.getUint32(tiff + 4, little);
  if (directory + 2 > end) return;
  const entries = view.getUint16(directory, little);
  for (let entry = directory + 2; entry + 12 <= end && entry < directory + 2 + 12 * entries; entry += 12) {
    if (view.getUint16(entry, little) === 0x0112) view.setUint16(entry + 8, 1, little);
  }
}

function visibleDetections() {
  const minScore = Number($("score").value);
  return state.detections.filter((d) => d.score >= minScore && !state.hidden.has(d.class_name));
}

function render() {
  $("score-value").textContent = Number($("score").value).toFixed(2);
  if (!state.image) return;
  const shown = visibleDetections();
  drawCanvas(shown);
  fillTable(shown);
  setStatus(`${state.file}: showing ${shown.length} of ${state.detections.length} detections ` +
    `(scores from ${SCORE_FLOOR}).`);
}

function drawCanvas(shown) {
  const canvas = $("view");
  const image = state.image;
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const line = Math.max(2, Math.round(Math.max(image.width, image.height) / 300));
  context.lineWidth = line;
  context.font = `${6 * line + 6}px system-ui, sans-serif`;
  context.textBaseline = "bottom";
  for (const d of shown) {
    const [x1, y1, x2, y2] = d.box;
    const colour = classColour(d.label);
    context.strokeStyle = colour;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.class_name} ${d.score.toFixed(2)}`;
    const width = context.measureText(text).width + 2 * line;
    const height = 6 * line + 10;
    const top = y1 - height >= 0 ? y1 - height : y1;
    context.fillStyle = colour;
    context.fillRect(x1 - line / 2, top, width, height);
    context.fillStyle = "#fff";
    context.fillText(text, x1 + line / 2, top + height - 2);
  }
  canvas.dataset.drawn = String(shown.length);
}

function fillTable(shown) {
  const body = $("detections").querySelector("tbody");
  body.replaceChildren(...shown.map((d, index) => {
    const row = document.createElement("tr");
    const cells = [index + 1, d.class_name, d.score.toFixed(3), ...d.box.map((v) => v.toFixed(1))];
    cells.forEach((value) => {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    });
    return row;
  }));
}

function pickFirstImage(files) {
  const file = Array.from(files || []).find((f) => f.type.startsWith("image/") || f.type === "");
  if (file) detect(file); else setStatus("That is not an image file.", true);
}

function wireEvents() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => pickFirstImage(event.target.files));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    pickFirstImage(event.dataTransfer.files);
  });
  $("score").addEventListener("input", render);
  $("api-key").addEventListener("change", loadModel);
}

wireEvents();
loadModel();
