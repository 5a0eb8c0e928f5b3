// examples/browser/app.js — the real @aliyun-sls/web-track-browser + @aliyun-sls/web-sts-plugin,
// with credentials from stsvend's GET /get_sts_token and events posted to the local SLS sink of
// `stsvend dev` (POST /sls/{project}/logstores/{logstore}). Served by `stsvend dev` at /dev/example/.
//
// Loaded as an ES module after the two classic <script>s in index.html, which define
// window.SLS_Tracker (web-track-browser) and window.stsPlugin (web-sts-plugin's createStsPlugin).
// The refresher is this repo's clients/js/sts-refresher.mjs, copied into vendor/ by vendor.sh.
//
// Query parameters (all optional): ?project=…&logstore=…&token_url=…&sts=… — e.g. `?logstore=other`
// shows how the sink rejects a logstore outside the token's session policy. `?sts=<stsvend base
// URL>` (e.g. `?sts=http://127.0.0.1:8080`) points both the token fetch and the sink at a stsvend on
// another origin (needs that stsvend's STSVEND_CORS_ORIGINS to list this page's origin); the
// default is this page's own origin.

// Imported dynamically so that, before vendor.sh has run, the page can say so instead of failing
// silently on a missing module.
const { createStsRefresher } = await import('./vendor/sts-refresher.mjs').catch(() => ({}));

const params = new URLSearchParams(location.search);
const PROJECT = params.get('project') || 'dev-project';
const LOGSTORE = params.get('logstore') || 'dev-logstore';
// stsvend's origin: this page's own unless ?sts=<base URL> names another one.
const STS_BASE = params.get('sts') ? new URL(params.get('sts'), location.href).origin : location.origin;
const TOKEN_URL = params.get('token_url') || new URL('/get_sts_token', STS_BASE).href;
// A host starting with http(s):// makes the tracker post to `<host>/logstores/<logstore>`.
const HOST = `${STS_BASE}/sls/${encodeURIComponent(PROJECT)}`;
// Identifies this page load in every event, so you (and tests/browser) can find them at /dev/logs.
const RUN_ID = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const $ = (id) => document.getElementById(id);
const state = {
  runId: RUN_ID,
  ready: false,
  error: null,
  sent: [], // every event object handed to tracker.send(), in order
  responses: [], // {status, body, url} of every request to the sink
  okCount: 0,
};
window.__example = state; // read by tests/browser; handy in DevTools too

function show(id, text, st) {
  const el = $(id);
  el.textContent = text;
  if (st) el.dataset.state = st;
}

// --- Observe what the tracker sends -------------------------------------------------------------
// web-track-browser (STS mode) posts each batch with `new window.XMLHttpRequest()` and only
// console.error()s a non-200 answer. To show the status on the page, wrap XMLHttpRequest for
// requests to `/logstores/`. This changes nothing about what is sent.
const NativeXHR = window.XMLHttpRequest;
class ObservedXHR extends NativeXHR {
  open(method, url, ...rest) {
    this.__url = String(url);
    return super.open(method, url, ...rest);
  }
  send(body) {
    if (this.__url && this.__url.includes('/logstores/')) {
      show('send-status', 'sending…', 'pending');
      this.addEventListener('loadend', () => onSinkResponse(this));
    }
    return super.send(body);
  }
}
window.XMLHttpRequest = ObservedXHR;

function onSinkResponse(xhr) {
  const entry = { status: xhr.status, body: xhr.responseText, url: xhr.__url };
  state.responses.push(entry);
  let detail = xhr.responseText || '(empty body)';
  try {
    detail = JSON.stringify(JSON.parse(xhr.responseText), null, 2);
  } catch {
    /* not JSON: show as is */
  }
  const reqId = xhr.getResponseHeader('x-log-requestid');
  $('send-detail').textContent = `HTTP ${xhr.status || '(network error)'}${reqId ? `  x-log-requestid: ${reqId}` : ''}\n${detail}`;
  if (xhr.status === 200) {
    state.okCount += 1;
    $('ok-count').textContent = String(state.okCount);
    show('send-status', `HTTP 200 — accepted at ${new Date().toLocaleTimeString()}`, 'ok');
  } else {
    let code = '';
    try {
      const b = JSON.parse(xhr.responseText);
      code = b.errorCode ? ` ${b.errorCode}: ${b.errorMessage}` : '';
    } catch {
      /* ignore */
    }
    show('send-status', `HTTP ${xhr.status || 'network error'}${code}`, 'error');
  }
}

// --- Tracker + STS plugin -----------------------------------------------------------------------
function start() {
  if (
    typeof window.SLS_Tracker !== 'function' ||
    typeof window.stsPlugin !== 'function' ||
    typeof createStsRefresher !== 'function'
  ) {
    throw new Error(
      'The files in vendor/ (the SLS packages and the refresher) did not load. ' +
        'Run examples/browser/vendor.sh once (see examples/browser/README.md).',
    );
  }

  // The plugin reads accessKeyId/accessKeySecret/securityToken from THIS object; the refresher
  // assigns them (and a refresh interval derived from Expiration) on it.
  const stsOpt = { accessKeyId: '', accessKeySecret: '', securityToken: '' };
  stsOpt.refreshSTSToken = createStsRefresher({
    url: TOKEN_URL,
    fetchImpl: window.fetch,
    onRefresh: ({ expiration, intervalMs }) =>
      show('token-status', `ok — expires ${expiration}, next refresh in ${Math.round(intervalMs / 1000)} s`, 'ok'),
  }).for(stsOpt);

  const tracker = new window.SLS_Tracker({
    host: HOST,
    project: PROJECT,
    logstore: LOGSTORE,
    time: 0, // send every event at once (default: batch for 10 s)
    count: 1,
    topic: 'stsvend-example',
    source: 'browser',
    tags: { example: 'browser', run: RUN_ID },
  });
  tracker.useStsPlugin(window.stsPlugin(stsOpt));
  $('config').textContent = `${HOST}/logstores/${LOGSTORE}`;
  $('run-id').textContent = RUN_ID;
  return { tracker, stsOpt };
}

const EVENTS = {
  'send-ascii': () => ({ event: 'click', kind: 'ascii', message: 'hello from the browser', page: location.pathname }),
  'send-cjk': () => ({ event: 'click', kind: 'cjk', message: '你好，日志服务！', city: '杭州' }),
  'send-emoji': () => ({ event: 'click', kind: 'emoji', message: '🚀 sent 👍🏽 ✅ 🇨🇳' }),
  // Nested values arrive as JSON strings (the plugin JSON.stringify()s object fields).
  'send-nested': () => ({
    event: 'click',
    kind: 'nested',
    user: { id: 42, name: '张三', roles: ['admin', 'dev'], prefs: { lang: 'zh-CN', dark: true } },
  }),
  // A numeric `time` (seconds) becomes the log's __time__ instead of a field.
  'send-time': () => ({ event: 'click', kind: 'time', message: 'numeric time', time: Math.floor(Date.now() / 1000) - 60 }),
};

async function main() {
  const { tracker, stsOpt } = start();
  // Prime once before the first send: the plugin 0.3.9 signs a concurrent first batch with empty
  // keys otherwise (clients/js/README.md, pitfall 5).
  await stsOpt.refreshSTSToken();
  for (const [id, make] of Object.entries(EVENTS)) {
    const button = $(id);
    button.disabled = false;
    button.addEventListener('click', () => {
      const ev = { ...make(), run: RUN_ID, seq: state.sent.length + 1 };
      state.sent.push(JSON.parse(JSON.stringify(ev)));
      $('sent-count').textContent = String(state.sent.length);
      tracker.send(ev);
    });
  }
  state.ready = true;
}

main().catch((err) => {
  state.error = String(err && err.message ? err.message : err);
  show('token-status', `error — ${state.error}`, 'error');
  console.error(err);
});
