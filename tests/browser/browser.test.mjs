// Browser end-to-end: Debian's headless Chromium (driven by playwright-core, never a downloaded
// browser) opens examples/browser at `stsvend dev`'s /dev/example/, clicks every send button, and
// checks that each event reaches the local SLS sink (/dev/logs.json) with its fields intact.
// Also: the page with ?logstore=not-in-policy gets SLS's error body (errorCode/errorMessage).
// Saves screenshots to target/browser-artifacts/ (dev-logs.png = the /dev/logs page).
// Cross-origin (when STSVEND_CORS_URL and STATIC_PORT are set): examples/browser/ served by a plain
// static server on another port, the page opened with ?sts=<stsvend base URL>:
//   CORS on  (STSVEND_CORS_URL, STSVEND_CORS_ORIGINS lists the static origin): a click's event
//            reaches that stsvend's /dev/logs.json;
//   CORS off (STSVEND_URL, no STSVEND_CORS_ORIGINS): the browser blocks the token fetch, the page
//            shows a token error, and no event of that run reaches /dev/logs.json (3 s wait).
//
// Run through tests/browser/run.sh (builds and starts stsvend). By hand:
//   STSVEND_URL=http://127.0.0.1:8080 node tests/browser/browser.test.mjs
// Env:
//   STSVEND_URL        base URL of a running `stsvend dev` (required, loopback; must NOT have
//                      STSVEND_CORS_ORIGINS set — it is the CORS-off case of the cross-origin check)
//   STSVEND_CORS_URL   base URL of a second `stsvend dev` with
//                      STSVEND_CORS_ORIGINS=http://127.0.0.1:$STATIC_PORT (cross-origin check)
//   STATIC_PORT        loopback port for the test's static server of examples/browser/
//   CHROMIUM_PATH      default /usr/bin/chromium
//   ARTIFACT_DIR       default <repo>/target/browser-artifacts
//   EXAMPLE_PROXY=1    development aid: serve examples/browser/ at /dev/example/ from a local
//                      proxy in front of stsvend (for a stsvend that does not serve it yet)

import { chromium } from 'playwright-core';
import { createServer, request as httpRequest } from 'node:http';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const STSVEND_URL = (process.env.STSVEND_URL || '').replace(/\/+$/, '');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACT_DIR = process.env.ARTIFACT_DIR || path.join(REPO_ROOT, 'target', 'browser-artifacts');
const PROJECT = 'dev-project';
const LOGSTORE = 'dev-logstore';
const BUTTONS = ['send-ascii', 'send-cjk', 'send-emoji', 'send-nested', 'send-time'];
const OVERALL_TIMEOUT_MS = 90_000;
const LOGS_POLL_MS = 20_000;
const STSVEND_CORS_URL = (process.env.STSVEND_CORS_URL || '').replace(/\/+$/, '');
const STATIC_PORT = process.env.STATIC_PORT ? Number(process.env.STATIC_PORT) : null;
const NO_EVENT_WAIT_MS = 3_000;

function fail(msg) {
  throw new Error(msg);
}

if (!STSVEND_URL) fail('STSVEND_URL is not set (use tests/browser/run.sh)');
{
  const host = new URL(STSVEND_URL).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) fail(`STSVEND_URL must be loopback, got ${host}`);
}
if (STSVEND_CORS_URL) {
  if (new URL(STSVEND_CORS_URL).hostname !== '127.0.0.1') fail('STSVEND_CORS_URL must be http://127.0.0.1:<port>');
  if (!STATIC_PORT) fail('STSVEND_CORS_URL needs STATIC_PORT');
}

// Hard stop, whatever hangs.
const killer = setTimeout(() => {
  console.error(`browser test: FAILED — overall timeout ${OVERALL_TIMEOUT_MS} ms`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
killer.unref();

// --- optional dev proxy ---------------------------------------------------------------------------
const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.md': 'text/plain; charset=utf-8', '.txt': 'text/plain; charset=utf-8' };

async function startExampleProxy(upstream) {
  const root = path.join(REPO_ROOT, 'examples', 'browser');
  const up = new URL(upstream);
  const server = createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname.startsWith('/dev/example/')) {
      let rel = decodeURIComponent(u.pathname.slice('/dev/example/'.length)) || 'index.html';
      const file = path.resolve(root, rel);
      if (!file.startsWith(root + path.sep)) return res.writeHead(403).end();
      try {
        const body = await readFile(file);
        res.writeHead(200, { 'content-type': MIME[path.extname(file)] || 'application/octet-stream' }).end(body);
      } catch {
        res.writeHead(404).end('not found');
      }
      return;
    }
    const preq = httpRequest(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      (pres) => {
        res.writeHead(pres.statusCode, pres.headers);
        pres.pipe(res);
      },
    );
    preq.on('error', (e) => res.writeHead(502).end(String(e)));
    req.pipe(preq);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

// A plain static file server for examples/browser/ (the cross-origin page), loopback only.
async function startStaticServer(port) {
  const root = path.join(REPO_ROOT, 'examples', 'browser');
  const server = createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    let rel = decodeURIComponent(u.pathname.replace(/^\/+/, '')) || 'index.html';
    const file = path.resolve(root, rel);
    if (!file.startsWith(root + path.sep)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' }).end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

// Opens `${pageUrl}` (served by the static server) and waits until the page is ready or failed.
async function openExample(context, pageUrl, consoleLines, tag) {
  const p = await context.newPage();
  p.setDefaultTimeout(15_000);
  p.on('console', (m) => consoleLines.push(`[${tag} ${m.type()}] ${m.text()}`));
  p.on('pageerror', (e) => consoleLines.push(`[${tag} pageerror] ${e.message}`));
  const resp = await p.goto(pageUrl, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) fail(`${tag}: GET ${pageUrl} answered ${resp ? resp.status() : 'nothing'}`);
  // The refresher retries a failed token fetch 3 times (0.5 + 1 + 2 s backoff) before giving up.
  await p.waitForFunction(() => window.__example && (window.__example.ready || window.__example.error), null, { timeout: 20_000 });
  return p;
}

async function crossOrigin(context, staticUrl, consoleLines) {
  // (a) CORS on: the page on the static origin, stsvend on another origin that allows it.
  const on = await openExample(context, `${staticUrl}/?sts=${encodeURIComponent(STSVEND_CORS_URL)}`, consoleLines, 'cors-on');
  const onBoot = await on.evaluate(() => ({ ready: window.__example.ready, error: window.__example.error, runId: window.__example.runId }));
  if (!onBoot.ready) fail(`cross-origin, CORS on: page did not get a token: ${onBoot.error}`);
  const tokenText = await on.textContent('#token-status');
  if (!/^ok/.test(tokenText)) fail(`cross-origin, CORS on: token status ${JSON.stringify(tokenText)}`);
  await on.click('#send-ascii');
  await on.waitForFunction(() => window.__example.responses.length >= 1, null, { timeout: 10_000 });
  const r = await on.evaluate(() => window.__example.responses[0]);
  if (r.status !== 200) fail(`cross-origin, CORS on: sink answered HTTP ${r.status} ${r.body}`);
  if (!r.url.startsWith(`${STSVEND_CORS_URL}/sls/`)) fail(`cross-origin, CORS on: sent to ${r.url}, not to ${STSVEND_CORS_URL}`);
  const deadline = Date.now() + LOGS_POLL_MS;
  let mine = [];
  for (;;) {
    mine = (await getLogs(STSVEND_CORS_URL)).filter((l) => l && l.fields && l.fields.run === onBoot.runId);
    if (mine.length >= 1) break;
    if (Date.now() > deadline) fail(`cross-origin, CORS on: event of run ${onBoot.runId} not at ${STSVEND_CORS_URL}/dev/logs.json after ${LOGS_POLL_MS} ms`);
    await new Promise((res) => setTimeout(res, 250));
  }
  if (mine.length !== 1 || mine[0].fields.kind !== 'ascii') fail(`cross-origin, CORS on: unexpected logs ${JSON.stringify(mine)}`);
  console.log(`browser test: cross-origin ${staticUrl} -> ${STSVEND_CORS_URL} with CORS on: token ok, event at /dev/logs.json`);
  await on.screenshot({ path: path.join(ARTIFACT_DIR, 'example-cors-on.png'), fullPage: true });
  await on.close();

  // (b) CORS off: the same page against the stsvend without STSVEND_CORS_ORIGINS.
  const off = await openExample(context, `${staticUrl}/?sts=${encodeURIComponent(STSVEND_URL)}`, consoleLines, 'cors-off');
  const offBoot = await off.evaluate(() => ({ ready: window.__example.ready, error: window.__example.error, runId: window.__example.runId }));
  if (offBoot.ready || !offBoot.error) fail(`cross-origin, CORS off: page got a token (ready=${offBoot.ready}); the browser should have blocked it`);
  const offText = await off.textContent('#token-status');
  const offState = await off.getAttribute('#token-status', 'data-state');
  if (!/^error/.test(offText) || offState !== 'error') fail(`cross-origin, CORS off: token status ${JSON.stringify(offText)} (${offState})`);
  if (!(await off.isDisabled('#send-ascii'))) fail('cross-origin, CORS off: send buttons enabled without a token');
  // The reason is the browser's CORS check, not a dead server: Chromium says so on the console.
  if (!consoleLines.some((l) => l.startsWith('[cors-off') && /CORS policy/.test(l) && l.includes('/get_sts_token'))) {
    fail('cross-origin, CORS off: no "blocked by CORS policy" console message for /get_sts_token');
  }
  // Even a forced click (buttons are disabled without a token) must not get an event through.
  await off.click('#send-ascii', { force: true, timeout: 2_000 }).catch(() => {});
  await off.waitForTimeout(NO_EVENT_WAIT_MS);
  const leaked = (await getLogs(STSVEND_URL)).filter((l) => l && l.fields && l.fields.run === offBoot.runId);
  if (leaked.length) fail(`cross-origin, CORS off: ${leaked.length} event(s) of run ${offBoot.runId} reached /dev/logs.json`);
  console.log(`browser test: cross-origin ${staticUrl} -> ${STSVEND_URL} with CORS off: token fetch blocked (${offText.slice(0, 80)}), no event in ${NO_EVENT_WAIT_MS} ms`);
  await off.screenshot({ path: path.join(ARTIFACT_DIR, 'example-cors-off.png'), fullPage: true });
  await off.close();
}

// --- expectations ----------------------------------------------------------------------------------
// What web-sts-plugin's transString does to an event: a numeric `time`/`__time__` becomes the log
// time, objects are JSON.stringify()d, everything else String()ed.
function expectedFields(ev) {
  const fields = {};
  let time = null;
  for (const [k, v] of Object.entries(ev)) {
    if ((k === 'time' || k === '__time__') && typeof v === 'number') {
      time = v;
      continue;
    }
    fields[k] = typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return { fields, time };
}

function logTime(log) {
  for (const v of [log.fields && log.fields.__time__, log.time, log.__time__]) {
    if (v !== undefined && v !== null && v !== '') return Number(v);
  }
  return null;
}

async function getLogs(base) {
  const res = await fetch(`${base}/dev/logs.json?project=${PROJECT}&logstore=${LOGSTORE}`, {
    signal: AbortSignal.timeout(3000),
  });
  if (!res.ok) fail(`GET /dev/logs.json answered ${res.status}`);
  const body = await res.json();
  if (!body || !Array.isArray(body.logs)) fail('GET /dev/logs.json: no `logs` array');
  return body.logs;
}

// --- main ------------------------------------------------------------------------------------------
async function main() {
  await mkdir(ARTIFACT_DIR, { recursive: true });
  let proxy = null;
  let base = STSVEND_URL;
  if (process.env.EXAMPLE_PROXY === '1') {
    proxy = await startExampleProxy(STSVEND_URL);
    base = proxy.url;
    console.log(`browser test: EXAMPLE_PROXY=1 — serving examples/browser via ${base}/dev/example/`);
  }
  let staticSrv = null;
  if (STSVEND_CORS_URL) {
    staticSrv = await startStaticServer(STATIC_PORT);
    console.log(`browser test: static server for examples/browser/ at ${staticSrv.url}`);
  } else {
    console.log('browser test: STSVEND_CORS_URL not set — skipping the cross-origin checks');
  }

  // Loopback only, for every context: all traffic except to 127.0.0.1 goes to a dead proxy
  // (127.0.0.1:9), so nothing leaves the machine. The cross-origin context relies on this alone, because a context.route()
  // makes Playwright answer every CORS preflight itself (allow-all), which would hide the real
  // preflight answers of stsvend's sink.
  const allowedOrigins = new Set([new URL(base).origin, new URL(STSVEND_URL).origin]);
  if (STSVEND_CORS_URL) allowedOrigins.add(new URL(STSVEND_CORS_URL).origin);
  if (staticSrv) allowedOrigins.add(staticSrv.url);
  const browser = await chromium.launch({
    proxy: { server: 'http://127.0.0.1:9', bypass: '127.0.0.1' },
    executablePath: CHROMIUM_PATH,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
  const consoleLines = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    // Loopback only: abort anything that is not one of our servers (on top of the proxy above).
    await context.route('**/*', (route) =>
      allowedOrigins.has(new URL(route.request().url()).origin) ? route.continue() : route.abort('blockedbyclient'),
    );
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));

    const resp = await page.goto(`${base}/dev/example/`, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) fail(`GET /dev/example/ answered ${resp ? resp.status() : 'nothing'}`);
    await page.waitForFunction(() => window.__example && (window.__example.ready || window.__example.error), null, { timeout: 15_000 });
    const boot = await page.evaluate(() => ({ ready: window.__example.ready, error: window.__example.error, runId: window.__example.runId }));
    if (!boot.ready) fail(`example page did not start: ${boot.error}`);
    const runId = boot.runId;
    console.log(`browser test: page ready, run id ${runId}`);

    // Click each button; wait for the sink's answer to that send before the next click.
    for (const [i, id] of BUTTONS.entries()) {
      await page.click(`#${id}`);
      await page.waitForFunction((n) => window.__example.responses.length >= n, i + 1, { timeout: 10_000 });
      const r = await page.evaluate((n) => window.__example.responses[n], i);
      console.log(`browser test: #${id} -> HTTP ${r.status}${r.status === 200 ? '' : ` ${r.body}`}`);
      if (r.status !== 200) fail(`sink rejected the ${id} event: HTTP ${r.status} ${r.body}`);
    }
    const statusText = await page.textContent('#send-status');
    if (!/HTTP 200/.test(statusText)) fail(`page's last-send status is not HTTP 200: ${statusText}`);
    const sent = await page.evaluate(() => window.__example.sent);
    await page.screenshot({ path: path.join(ARTIFACT_DIR, 'example.png'), fullPage: true });

    // Poll the sink until every event of this run is there.
    const deadline = Date.now() + LOGS_POLL_MS;
    let mine = [];
    for (;;) {
      mine = (await getLogs(base)).filter((l) => l && l.fields && l.fields.run === runId);
      if (mine.length >= sent.length) break;
      if (Date.now() > deadline) fail(`only ${mine.length} of ${sent.length} events at /dev/logs.json after ${LOGS_POLL_MS} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
    if (mine.length !== sent.length) fail(`expected ${sent.length} events for run ${runId}, found ${mine.length}`);

    const problems = [];
    for (const ev of sent) {
      const log = mine.find((l) => l.fields.seq === String(ev.seq));
      if (!log) {
        problems.push(`seq ${ev.seq} (${ev.kind}) missing`);
        continue;
      }
      if (log.project !== PROJECT || log.logstore !== LOGSTORE) problems.push(`seq ${ev.seq}: project/logstore ${log.project}/${log.logstore}`);
      if (log.topic !== 'stsvend-example') problems.push(`seq ${ev.seq}: topic ${JSON.stringify(log.topic)}`);
      if (log.source !== 'browser') problems.push(`seq ${ev.seq}: source ${JSON.stringify(log.source)}`);
      if (!log.tags || log.tags.example !== 'browser' || log.tags.run !== runId) problems.push(`seq ${ev.seq}: tags ${JSON.stringify(log.tags)}`);
      const { fields, time } = expectedFields(ev);
      for (const [k, v] of Object.entries(fields)) {
        if (log.fields[k] !== v) problems.push(`seq ${ev.seq} (${ev.kind}): field ${k} = ${JSON.stringify(log.fields[k])}, expected ${JSON.stringify(v)}`);
      }
      const extra = Object.keys(log.fields).filter((k) => !(k in fields) && k !== '__time__');
      if (extra.length) problems.push(`seq ${ev.seq} (${ev.kind}): unexpected fields ${extra.join(', ')}`);
      if (time !== null) {
        if ('time' in log.fields) problems.push(`seq ${ev.seq}: numeric time arrived as a field, not as the log time`);
        const t = logTime(log);
        if (t === null) console.log(`browser test: note — the sink's JSON shows no __time__; numeric time ${time} not compared`);
        else if (t !== time) problems.push(`seq ${ev.seq}: log time ${t}, expected ${time}`);
      }
    }
    if (problems.length) fail(`events arrived altered:\n  ${problems.join('\n  ')}`);
    console.log(`browser test: all ${sent.length} events at /dev/logs.json with intact fields`);

    // Negative case: a logstore outside the token's session policy is rejected with SLS's error body.
    const denied = await context.newPage();
    denied.on('console', (m) => consoleLines.push(`[denied ${m.type()}] ${m.text()}`));
    await denied.goto(`${base}/dev/example/?logstore=not-in-policy`, { waitUntil: 'load' });
    await denied.waitForFunction(() => window.__example && (window.__example.ready || window.__example.error), null, { timeout: 15_000 });
    await denied.click('#send-ascii');
    await denied.waitForFunction(() => window.__example.responses.length >= 1, null, { timeout: 10_000 });
    const dr = await denied.evaluate(() => window.__example.responses[0]);
    let dbody = null;
    try {
      dbody = JSON.parse(dr.body);
    } catch {
      /* checked below */
    }
    if (dr.status < 400 || !dbody || typeof dbody.errorCode !== 'string' || typeof dbody.errorMessage !== 'string') {
      fail(`logstore outside the policy: expected an SLS error, got HTTP ${dr.status} ${dr.body}`);
    }
    const dstatus = await denied.textContent('#send-status');
    if (!dstatus.includes(dbody.errorCode)) fail(`page does not show the rejection: ${dstatus}`);
    console.log(`browser test: logstore outside the policy -> HTTP ${dr.status} ${dbody.errorCode} (page shows it)`);
    await denied.screenshot({ path: path.join(ARTIFACT_DIR, 'example-denied.png'), fullPage: true });
    await denied.close();

    // Screenshot of the local "Consumption Preview".
    const logsPage = await context.newPage();
    const lr = await logsPage.goto(`${base}/dev/logs`, { waitUntil: 'load' });
    if (!lr || lr.status() !== 200) fail(`GET /dev/logs answered ${lr ? lr.status() : 'nothing'}`);
    await logsPage.waitForTimeout(300);
    const shot = path.join(ARTIFACT_DIR, 'dev-logs.png');
    await logsPage.screenshot({ path: shot, fullPage: true });
    const html = await logsPage.content();
    if (!html.includes(runId)) console.log('browser test: note — /dev/logs does not show this run id (page layout?)');
    console.log(`browser test: screenshot ${path.relative(REPO_ROOT, shot)}`);

    if (staticSrv) {
      // A fresh context without route(): real CORS preflights reach stsvend (see the proxy above).
      const xcontext = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      await crossOrigin(xcontext, staticSrv.url, consoleLines);
      await xcontext.close();
    }
  } catch (err) {
    if (page) await page.screenshot({ path: path.join(ARTIFACT_DIR, 'failure.png'), fullPage: true }).catch(() => {});
    if (consoleLines.length) console.error(`browser console:\n  ${consoleLines.join('\n  ')}`);
    throw err;
  } finally {
    await browser.close().catch(() => {});
    if (proxy) proxy.server.close();
    if (staticSrv) staticSrv.server.close();
  }
}

main().then(
  () => {
    console.log('browser test: PASSED');
    process.exit(0);
  },
  (err) => {
    console.error(`browser test: FAILED — ${err && err.message ? err.message : err}`);
    process.exit(1);
  },
);
