// The page: loads the wasm engine, fetches or reads the recording's files, and draws what the
// engine returns. All classification and training happen in the engine (the ecgwgpu library on
// WebGPU); this file only moves bytes in and draws JSON out.
import init, { Engine } from './pkg/ecgwgpu_web.js';

const COLORS = { N: '#7a8494', S: '#e08a00', V: '#d62728', F: '#8e44ad', Q: '#1597a8' };
const WINDOW_S = 10;
const $ = (id) => document.getElementById(id);

let engine = null;
let shown = null; // the last classification: JSON from the engine, plus its signal
let busy = false;

// Every failure ends up here, on the page: never only in the console.
function showMessage(text, kind = 'error') {
  const m = $('message');
  m.textContent = text;
  m.className = kind === 'error' ? 'message' : 'message info';
  m.hidden = false;
}
function clearMessage() { $('message').hidden = true; $('message').textContent = ''; }
function setStatus(text) { $('status').textContent = text; }
function errorText(e) { return e instanceof Error ? e.message : String(e); }

window.addEventListener('error', (e) => showMessage(`Error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => showMessage(`Error: ${errorText(e.reason)}`));

function setBusy(on) {
  busy = on;
  $('classify').disabled = on || !engine;
  $('train').disabled = on || !engine;
  $('files').disabled = on || !engine;
}

async function start() {
  if (!navigator.gpu) {
    throw new Error('This browser has no WebGPU, which ecgwgpu needs to run its kernels on the '
      + 'GPU. Use a browser with WebGPU enabled: Chrome or Edge 113 or newer, Safari 26, '
      + 'or Firefox 141 or newer on Windows.');
  }
  const t0 = performance.now();
  await init();
  // ?kernels=cpu|gpu|tiled forces a kernel variant (default: by adapter type)
  const kernels = new URLSearchParams(location.search).get('kernels') || '';
  try {
    engine = await Engine.open(kernels);
  } catch (e) {
    throw new Error(`WebGPU is present but no device could be opened: ${errorText(e)}`);
  }
  const loadMs = performance.now();
  setStatus(`GPU: ${engine.adapter()}, ${engine.kernels()} kernels · ready in ${Math.round(loadMs - t0)} ms`);
  const list = await fetch('records/RECORDS');
  const names = list.ok ? (await list.text()).split(/\s+/).filter(Boolean) : [];
  const select = $('record');
  for (const n of names) select.add(new Option(`MIT-BIH ${n}`, n));
  if (!names.length) select.add(new Option('(no embedded records)', ''));
  setBusy(false);
  return { adapter: engine.adapter(), kernels: engine.kernels(), load_ms: loadMs, records: names };
}

// The files of an embedded record, fetched from this page's own folder.
async function embeddedFiles(name) {
  const files = [];
  for (const ext of ['hea', 'dat', 'atr']) {
    const r = await fetch(`records/${name}.${ext}`);
    if (!r.ok) {
      if (ext === 'atr') continue;
      throw new Error(`records/${name}.${ext}: ${r.status} ${r.statusText}`);
    }
    files.push({ name: `${name}.${ext}`, bytes: new Uint8Array(await r.arrayBuffer()) });
  }
  return files;
}

async function classifyFiles(files, record = '') {
  if (!engine) throw new Error('the GPU engine is not ready');
  if (busy) throw new Error('busy: wait for the running task');
  setBusy(true);
  clearMessage();
  setStatus(`GPU: ${engine.adapter()} · classifying…`);
  try {
    const t0 = performance.now();
    const trained = $('use-trained').checked;
    const json = await engine.classify(files.map((f) => f.name), files.map((f) => f.bytes),
      record, trained);
    const result = JSON.parse(json);
    result.classify_ms = performance.now() - t0;
    shown = { ...result, signal: engine.signal() };
    render();
    setStatus(`GPU: ${engine.adapter()} · ${result.samples.length} beats classified in `
      + `${Math.round(result.classify_ms)} ms`);
    if (result.warnings.length) showMessage(result.warnings.join('\n'), 'info');
    return result;
  } catch (e) {
    setStatus(`GPU: ${engine.adapter()}`);
    showMessage(`Could not classify: ${errorText(e)}`);
    throw e;
  } finally {
    setBusy(false);
  }
}

async function classifyEmbedded(name) {
  $('record').value = name;
  return classifyFiles(await embeddedFiles(name), name);
}

// ---- drawing ----------------------------------------------------------------------------

function render() {
  const r = shown;
  $('result').hidden = false;
  const acc = r.accuracy == null ? '' : `, ${(100 * r.accuracy).toFixed(1)} % agree with the reference`;
  const source = r.annotated ? 'at the annotated R peaks' : 'at R peaks found by the QRS detector';
  $('summary').textContent = `${r.record}, lead ${r.lead} (${r.fs} Hz): ${r.samples.length} beats `
    + `${source}${acc}, ${r.low_confidence} of them near ties (confidence below 0.5). Model: ${r.model}.`
    + (r.not_cut ? ` ${r.not_cut} beats too close to an edge were not classified.` : '');
  const secs = r.signal.length / r.fs;
  const scroll = $('scroll');
  scroll.max = String(Math.max(0, Math.ceil(secs - WINDOW_S)));
  scroll.value = '0';
  drawTrace();
  fillCounts();
  fillConfusion();
  const blob = new Blob([r.csv], { type: 'text/csv' });
  const link = $('download');
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = `${r.record}_pred.csv`;
}

function drawTrace() {
  const r = shown;
  const canvas = $('trace');
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  const from = Math.floor(Number($('scroll').value) * r.fs);
  const to = Math.min(r.signal.length, from + Math.floor(WINDOW_S * r.fs));
  $('window-label').textContent = `${fmtTime(from / r.fs)} – ${fmtTime(to / r.fs)}`;
  if (to <= from) return;
  let lo = Infinity, hi = -Infinity;
  for (let i = from; i < to; i++) { lo = Math.min(lo, r.signal[i]); hi = Math.max(hi, r.signal[i]); }
  if (!(hi > lo)) { hi = lo + 1; }
  // a left margin holds the row labels, so that no beat's letter is covered
  const top = 38, bottom = h - 24, margin = 70;
  const x = (i) => margin + ((i - from) / (WINDOW_S * r.fs)) * (w - margin);
  const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  // one-second grid
  g.strokeStyle = '#eef0f3'; g.lineWidth = 1;
  for (let s = Math.ceil(from / r.fs); s * r.fs < to; s++) {
    g.beginPath(); g.moveTo(x(s * r.fs), 0); g.lineTo(x(s * r.fs), h); g.stroke();
  }
  g.strokeStyle = '#1d2430'; g.lineWidth = 1.2; g.beginPath();
  for (let i = from; i < to; i++) { i === from ? g.moveTo(x(i), y(r.signal[i])) : g.lineTo(x(i), y(r.signal[i])); }
  g.stroke();
  g.font = 'bold 15px system-ui, sans-serif'; g.textAlign = 'center';
  for (let k = 0; k < r.samples.length; k++) {
    const s = r.samples[k];
    if (s < from || s >= to) continue;
    const name = r.class_names[r.classes[k]];
    const color = COLORS[name] || '#333';
    g.fillStyle = color; g.globalAlpha = 0.15;
    g.fillRect(x(s) - 3, top - 6, 6, bottom - top + 6);
    g.globalAlpha = 1;
    g.fillText(name, x(s), 20);
    if (r.references[k] >= 0) {
      const ref = r.class_names[r.references[k]];
      g.fillStyle = ref === name ? '#9aa3b0' : '#a11b1b';
      g.font = '12px system-ui, sans-serif';
      g.fillText(ref, x(s), h - 6);
      g.font = 'bold 15px system-ui, sans-serif';
    }
  }
  g.textAlign = 'left'; g.fillStyle = '#5b6575'; g.font = '12px system-ui, sans-serif';
  g.fillText('decided', 4, 20);
  if (r.annotated) g.fillText('reference', 4, h - 6);
}

function fmtTime(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(1).padStart(4, '0')}`;
}

function fillCounts() {
  const r = shown;
  const rows = r.class_names.map((n, k) =>
    `<tr><th><span class="swatch" style="background:${COLORS[n] || '#333'}"></span>${n}</th>`
    + `<td>${r.counts[k]}</td></tr>`);
  $('counts').innerHTML = `<tr><th>class</th><th>beats</th></tr>${rows.join('')}`;
}

function fillConfusion() {
  const r = shown;
  $('confusion-box').hidden = !r.confusion;
  if (!r.confusion) return;
  const head = r.class_names.map((n) => `<th>${n}</th>`).join('');
  const rows = r.confusion.map((row, t) =>
    `<tr><th>${r.class_names[t]}</th>${row.map((c, p) =>
      `<td style="${t === p ? 'font-weight:600' : (c ? 'color:#a11b1b' : '')}">${c}</td>`).join('')}</tr>`);
  $('confusion').innerHTML = `<tr><th></th>${head}</tr>${rows.join('')}`;
}

$('scroll').addEventListener('input', () => shown && drawTrace());
$('next-abnormal').addEventListener('click', () => {
  if (!shown) return;
  const from = (Number($('scroll').value) + WINDOW_S) * shown.fs;
  const k = shown.samples.findIndex((s, i) => s >= from && shown.class_names[shown.classes[i]] !== 'N');
  if (k < 0) { showMessage('No non-N beat after this window.', 'info'); return; }
  $('scroll').value = String(Math.max(0, Math.floor(shown.samples[k] / shown.fs - 1)));
  drawTrace();
});

// ---- training -----------------------------------------------------------------------------

function drawLoss(points, total) {
  const canvas = $('loss');
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 34;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#d9dde4'; g.strokeRect(pad, 8, w - pad - 8, h - pad - 8);
  g.fillStyle = '#5b6575'; g.font = '12px system-ui, sans-serif';
  g.fillText('training loss (per step)', pad + 6, 22);
  g.fillText('beats seen', w - 80, h - 8);
  if (!points.length) return;
  const max = Math.max(...points.map((p) => p[1]).filter(Number.isFinite), 1e-6);
  g.fillText(max.toPrecision(3), 2, 16);
  g.fillText('0', 20, h - pad);
  const x = (b) => pad + (b / total) * (w - pad - 8);
  const y = (l) => h - pad - (l / max) * (h - pad - 16);
  g.strokeStyle = '#2458c6'; g.lineWidth = 1.5; g.beginPath();
  points.forEach(([b, l], i) => (i ? g.lineTo(x(b), y(l)) : g.moveTo(x(b), y(l))));
  g.stroke();
}

async function trainEmbedded(epochs, maxBeats, seed = 1) {
  if (!engine) throw new Error('the GPU engine is not ready');
  if (busy) throw new Error('busy: wait for the running task');
  setBusy(true);
  clearMessage();
  try {
    const names = [...$('record').options].map((o) => o.value).filter(Boolean);
    const files = [];
    for (const n of names) files.push(...await embeddedFiles(n));
    const points = [];
    let total = 1;
    const t0 = performance.now();
    const json = await engine.train(files.map((f) => f.name), files.map((f) => f.bytes), names,
      epochs, maxBeats, seed, (epoch, done, loss) => {
        points.push([done, loss]);
        total = Math.max(total, done);
        const perEpoch = epoch ? done / (epoch + 1) : done;
        drawLoss(points, Math.max(total, perEpoch * epochs));
        setStatus(`GPU: ${engine.adapter()} · training: epoch ${epoch + 1} of ${epochs}, loss ${loss.toFixed(4)}`);
      });
    const result = JSON.parse(json);
    result.train_ms = performance.now() - t0;
    const steps = result.step_loss;
    drawLoss(steps.map((l, i) => [((i + 1) / steps.length) * result.beats * epochs, l]),
      result.beats * epochs);
    $('train-summary').textContent = `Trained on ${result.beats} beats of ${result.records.join(', ')} `
      + `for ${epochs} epoch${epochs === 1 ? '' : 's'} in ${(result.train_ms / 1000).toFixed(1)} s: `
      + `mean loss ${result.epoch_loss.map((l) => l.toFixed(4)).join(' → ')}.`;
    $('use-trained').disabled = false;
    $('use-trained').checked = true;
    setStatus(`GPU: ${engine.adapter()} · trained`);
    return result;
  } catch (e) {
    showMessage(`Could not train: ${errorText(e)}`);
    throw e;
  } finally {
    setBusy(false);
  }
}

// ---- controls -----------------------------------------------------------------------------

$('classify').addEventListener('click', () => classifyEmbedded($('record').value).catch(() => {}));
$('train').addEventListener('click', () =>
  trainEmbedded(Number($('epochs').value) || 1, Number($('max-beats').value) || 0).catch(() => {}));

async function readDropped(list) {
  const files = [];
  for (const f of list) files.push({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) });
  return files;
}
$('files').addEventListener('change', async (e) => {
  if (!e.target.files.length) return;
  classifyFiles(await readDropped(e.target.files)).catch(() => {});
  e.target.value = '';
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', async (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  classifyFiles(await readDropped(e.dataTransfer.files)).catch(() => {});
});

// The page's own API, for scripts (tools/web/check.sh drives it through this).
const ready = start();
ready.catch((e) => {
  setStatus('Not running');
  showMessage(errorText(e));
});
window.ecgwgpu = { ready, classifyEmbedded, classifyFiles, embeddedFiles, trainEmbedded };
