// Drives the built page in headless Chromium over the DevTools protocol (no packages: Node's
// WebSocket, behind --experimental-websocket on Node 20) and prints one JSON line.
//
//   node --experimental-websocket tools/web/check.mjs DEVTOOLS_PORT PAGE_URL NATIVE_CSV SCREENSHOT
//
// It classifies an embedded record, compares every beat with the native engine's CSV for the
// same record, feeds the page bad files and reads the messages it shows, trains the tiny
// network, and records every request the page made (all must stay on the page's origin).
import { readFileSync, writeFileSync } from 'node:fs';

const [port, pageUrl, nativeCsv, screenshot] = process.argv.slice(2);
const RECORD = '208';

async function devtools() {
  for (let i = 0; i < 100; i++) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
      const page = list.find((t) => t.type === 'page');
      if (page) return page.webSocketDebuggerUrl;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('Chromium did not open its DevTools port');
}

const ws = new WebSocket(await devtools());
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let nextId = 1;
const pending = new Map();
const requests = [];
const consoleErrors = [];
ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.id && pending.has(msg.id)) {
    const { resolve, reject } = pending.get(msg.id);
    pending.delete(msg.id);
    msg.error ? reject(new Error(JSON.stringify(msg.error))) : resolve(msg.result);
  } else if (msg.method === 'Network.requestWillBeSent') {
    requests.push(msg.params.request.url);
  } else if (msg.method === 'Runtime.exceptionThrown') {
    consoleErrors.push(msg.params.exceptionDetails.text);
  }
};
const send = (method, params = {}) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, { resolve, reject });
  ws.send(JSON.stringify({ id, method, params }));
});
// Evaluates an expression in the page, awaiting a promise, and returns its value.
async function evaluate(expression) {
  const r = await send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
  if (r.exceptionDetails) {
    const d = r.exceptionDetails;
    throw new Error(`in the page: ${d.exception?.description || d.exception?.value || d.text}`);
  }
  return r.result.value;
}

await send('Network.enable');
await send('DOM.enable');
await send('Runtime.enable');
await send('Page.enable');
await send('Emulation.setDeviceMetricsOverride', { width: 1300, height: 1500, deviceScaleFactor: 1, mobile: false });
const navigated = Date.now();
// Opens the page (with URL parameters `query`) and waits for its engine.
async function open(query = '') {
  await send('Page.navigate', { url: pageUrl + query });
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      const ready = await evaluate('window.ecgwgpu ? window.ecgwgpu.ready : null');
      if (ready) return ready;
    } catch (e) {
      const shown = await evaluate("document.getElementById('message')?.textContent || ''").catch(() => '');
      throw new Error(`the page did not start: ${shown || e.message}`);
    }
  }
  throw new Error('the page did not start within 60 s');
}
const lines = readFileSync(nativeCsv, 'utf8').trim().split('\n');
const head = lines[0].split(',');
const probCols = head.map((h, i) => [h, i]).filter(([h]) => h.startsWith('p_')).map(([, i]) => i);
const confidenceCol = head.indexOf('confidence');
const native = lines.slice(1).map((l) => l.split(','));
// The page's beats against the native CSV: the largest probability difference, the fraction
// of beats with the same decision.
function compare(page) {
  // the downloadable CSV: the native columns, bar the probabilities' last digit and the
  // confidence's (a difference of probabilities, written to 4 decimals)
  const csv = page.csv.trim().split('\n').map((l) => l.split(','));
  const sameCsv = csv.length === lines.length
    && csv.every((row, i) => i === 0 ? row.join() === head.join()
      : row.every((v, c) => probCols.includes(c) || v === native[i - 1][c]
        || (c === confidenceCol && Math.abs(Number(v) - Number(native[i - 1][c])) <= 2e-4)));
  const k = page.class_names.length;
  let maxDiff = native.length === page.samples.length ? 0 : Infinity;
  let same = 0;
  for (let b = 0; b < Math.min(native.length, page.samples.length); b++) {
    const row = native[b];
    if (Number(row[0]) !== page.samples[b]) { maxDiff = Infinity; break; }
    probCols.forEach((c, j) => {
      maxDiff = Math.max(maxDiff, Math.abs(Number(row[c]) - page.probabilities[b * k + j]));
    });
    if (row[2] === page.class_names[page.classes[b]]) same += 1;
  }
  return {
    max_prob_diff: maxDiff,
    same_decisions: same / Math.max(native.length, page.samples.length, 1),
    csv_matches_native: sameCsv,
  };
}

// The kernel variants a real GPU gets (workgroup-memory tiles), on WebGPU's default limits:
// classify, and one short epoch through every backward kernel.
const variants = {};
for (const kernels of ['gpu', 'tiled']) {
  const ready = await open(`?kernels=${kernels}`);
  const page = await evaluate(`ecgwgpu.classifyEmbedded('${RECORD}')`);
  const trained = await evaluate('ecgwgpu.trainEmbedded(1, 512, 1)');
  variants[kernels] = {
    kernels: ready.kernels,
    ...compare(page),
    classify_ms: Math.round(page.classify_ms),
    train_loss: trained.epoch_loss[0],
  };
}

// A browser without WebGPU: the page must say so.
const hide = await send('Page.addScriptToEvaluateOnNewDocument', {
  source: "Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });",
});
await send('Page.navigate', { url: pageUrl });
let noWebGpu = '';
for (let i = 0; i < 100 && !noWebGpu; i++) {
  await new Promise((r) => setTimeout(r, 100));
  noWebGpu = await evaluate("document.getElementById('message')?.textContent || ''").catch(() => '');
}
await send('Page.removeScriptToEvaluateOnNewDocument', { identifier: hide.identifier });

// The default page, as a user opens it.
const ready = await open();
// Bad input: each must end as a message on the page, not a blank page or a console error.
const badInputs = {
  truncated_dat: `(async () => { const f = await ecgwgpu.embeddedFiles('${RECORD}');
      const dat = f.find((x) => x.name.endsWith('.dat')); dat.bytes = dat.bytes.slice(0, 1000);
      return f; })()`,
  lying_header: `(async () => { const f = await ecgwgpu.embeddedFiles('${RECORD}');
      const hea = f.find((x) => x.name.endsWith('.hea'));
      const text = new TextDecoder().decode(hea.bytes).replace(/^(\\S+ \\d+ \\d+) (\\d+)/, (m, a, n) => a + ' ' + (2 * Number(n)));
      hea.bytes = new TextEncoder().encode(text); return f; })()`,
  // an EDF+ file whose one signal is its annotations
  edf_without_ecg: `(async () => {
      const field = (s, n) => s.padEnd(n, ' ').slice(0, n);
      const head = field('0', 8) + field('X X X X', 80) + field('Startdate 01-JAN-2001 X X X', 80)
        + field('01.01.01', 8) + field('00.00.00', 8) + field('512', 8) + field('EDF+C', 44)
        + field('1', 8) + field('1', 8) + field('1', 4)
        + field('EDF Annotations', 16) + field('', 80) + field('', 8) + field('-1', 8) + field('1', 8)
        + field('-32768', 8) + field('32767', 8) + field('', 80) + field('30', 8) + field('', 32);
      const bytes = new Uint8Array(512 + 60);
      bytes.set(new TextEncoder().encode(head));
      bytes.set([43, 48, 20, 20, 0], 512);
      return [{ name: 'annotations-only.edf', bytes }]; })()`,
  header_only: `(async () => { const f = await ecgwgpu.embeddedFiles('${RECORD}');
      return f.filter((x) => x.name.endsWith('.hea')); })()`,
};
const bad = {};
for (const [name, files] of Object.entries(badInputs)) {
  bad[name] = await evaluate(`(async () => { const files = await ${files};
      try { await ecgwgpu.classifyFiles(files); return 'accepted'; }
      catch { return document.getElementById('message').textContent; } })()`);
}

// A user's own files through the page's file input (as if chosen or dropped): a WFDB record,
// then an EDF+ file. `files` are paths on this machine.
async function chooseFiles(files) {
  const { root } = await send('DOM.getDocument');
  const { nodeId } = await send('DOM.querySelector', { nodeId: root.nodeId, selector: '#files' });
  await evaluate("document.getElementById('summary').textContent = ''");
  await send('DOM.setFileInputFiles', { nodeId, files });
  // the shipped model is fifteen networks: a recording takes about a minute on SwiftShader
  for (let i = 0; i < 3000; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const shown = await evaluate(`({ summary: document.getElementById('summary').textContent,
      message: document.getElementById('message').hidden ? '' : document.getElementById('message').textContent })`);
    if (shown.summary || shown.message.startsWith('Could not')) return shown;
  }
  return { summary: '', message: 'timed out' };
}
const here = process.cwd();
const ownFiles = {
  wfdb: await chooseFiles(['hea', 'dat', 'atr'].map((e) => `${here}/data/mitdb/209.${e}`)),
  edf: await chooseFiles([`${here}/data/edf/208-10s-pyedflib.edf`]),
};

// Training: a few epochs of the tiny network on the embedded records, then classifying with it.
const trained = await evaluate('ecgwgpu.trainEmbedded(2, 3000, 1)');
const withTrained = await evaluate(`(async () => {
    document.getElementById('use-trained').checked = true;
    const r = await ecgwgpu.classifyEmbedded('${RECORD}');
    return { model: r.model, beats: r.samples.length, accuracy: r.accuracy }; })()`);

// The record with the shipped model: the page's probabilities against the native CSV.
await evaluate("document.getElementById('use-trained').checked = false");
const page = await evaluate(`ecgwgpu.classifyEmbedded('${RECORD}')`);
const shot = await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
writeFileSync(screenshot, Buffer.from(shot.data, 'base64'));

const origin = new URL(pageUrl).origin;
const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:'));
const result = {
  adapter: ready.adapter,
  beats: page.samples.length,
  native_beats: native.length,
  kernels: ready.kernels,
  ...compare(page),
  train_loss_first: trained.epoch_loss[0],
  train_loss_last: trained.epoch_loss[trained.epoch_loss.length - 1],
  train_beats: trained.beats,
  trained_classified: withTrained,
  load_ms: Math.round(ready.load_ms),
  classify_ms: Math.round(page.classify_ms),
  train_ms: Math.round(trained.train_ms),
  own_files: ownFiles,
  bad_input: bad,
  no_webgpu_message: noWebGpu,
  variants,
  foreign_requests: foreign,
  page_exceptions: consoleErrors,
  check_ms: Date.now() - navigated,
};
console.log(JSON.stringify(result));
ws.close();
