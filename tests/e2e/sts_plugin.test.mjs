// End-to-end check: the JSON served by stsvend's `GET /get_sts_token` works with the REAL
// `@aliyun-sls/web-sts-plugin` 0.3.9 (+ `@aliyun-sls/web-track-browser` 0.3.9), wired exactly as
// the official sample does. See tests/e2e/README.md and docs PROTOCOL §7 / §8.
//
// Run via tests/e2e/run.sh (starts `stsvend dev` and sets STSVEND_URL), or by hand:
//   STSVEND_URL=http://127.0.0.1:8080 node --test tests/e2e/
//
// Only Node 20 built-ins: node:test, node:assert, node:crypto, global fetch.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';

const BASE = process.env.STSVEND_URL;
const TOKEN_URL = `${BASE}/get_sts_token`;

// ---------------------------------------------------------------------------------------------
// Minimal browser stubs.
//
// `@aliyun-sls/web-sts-plugin` (CJS build, `module.exports = createStsPlugin`) needs no globals.
// `@aliyun-sls/web-track-browser` (CJS build) touches `window` when it is *loaded*
// (`defineGlobal(window, "SLS_Tracker", …)`), calls `window.addEventListener("beforeunload", …)`
// in its constructor, and in STS mode sends each batch with `new window.XMLHttpRequest()`
// (`open`, `setRequestHeader` per header, `onreadystatechange`, `send(body)`).
// The fake XHR below never touches the network: it records the request the tracker would have
// sent to SLS and answers 200. Installed before the packages are imported (dynamic import).
// ---------------------------------------------------------------------------------------------
const xhrRequests = []; // every request the tracker "sent"
const xhrWaiters = []; // resolvers waiting for the next request

class FakeXMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.headers = {};
    this.onreadystatechange = null;
  }
  open(method, url, async) {
    this.method = method;
    this.url = url;
    this.async = async;
    this.readyState = 1;
  }
  setRequestHeader(name, value) {
    this.headers[name] = value;
  }
  send(body) {
    const req = { method: this.method, url: this.url, headers: { ...this.headers }, body };
    xhrRequests.push(req);
    const waiter = xhrWaiters.shift();
    if (waiter) waiter(req);
    setImmediate(() => {
      this.readyState = 4;
      this.status = 200;
      if (typeof this.onreadystatechange === 'function') this.onreadystatechange();
    });
  }
}

globalThis.window = globalThis.window ?? {
  XMLHttpRequest: FakeXMLHttpRequest,
  addEventListener() {}, // tracker installs a "beforeunload" flush hook; never fired here
  console,
};

const { default: createStsPlugin } = await import('@aliyun-sls/web-sts-plugin');
const { default: SlsTracker } = await import('@aliyun-sls/web-track-browser');

function nextXhrRequest(ms = 10_000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tracker sent no request within ${ms} ms`)), ms);
    xhrWaiters.push((req) => {
      clearTimeout(t);
      resolve(req);
    });
  });
}

// Record every /get_sts_token response any code in this file receives (including the README
// snippet's own fetch), so assertions can compare against the exact JSON stsvend handed out.
const realFetch = globalThis.fetch;
const stsResponses = [];
before(() => {
  globalThis.fetch = async (input, init) => {
    const r = await realFetch(input, { signal: AbortSignal.timeout(10_000), ...init });
    if (String(input).startsWith(TOKEN_URL)) stsResponses.push(await r.clone().json());
    return r;
  };
});
after(() => {
  globalThis.fetch = realFetch;
});

// ---------------------------------------------------------------------------------------------
// README snippet. The block between the markers is quoted VERBATIM in the project README
// (browser integration). Keep them identical. Note: the plugin IGNORES the value returned by
// refreshSTSToken; the function must ASSIGN the three fields on the same `stsOpt` object.
// ---------------------------------------------------------------------------------------------
function readmeSnippet(STS_TOKEN_URL) {
  // >>> README SNIPPET BEGIN >>>
  const stsOpt = {
    accessKeyId: '',
    accessKeySecret: '',
    securityToken: '',
    // The plugin ignores what this resolves to: assign the three fields on stsOpt.
    refreshSTSToken: async () => {
      const response = await fetch(STS_TOKEN_URL)
      if (!response.ok) {
        // Keep the current credentials; the plugin logs the error and tries again later.
        throw new Error(`token service answered ${response.status}`)
      }
      const credentials = await response.json()
      stsOpt.accessKeyId = credentials.AccessKeyId
      stsOpt.accessKeySecret = credentials.AccessKeySecret
      stsOpt.securityToken = credentials.SecurityToken
    },
  }
  const stsPlugin = createStsPlugin(stsOpt)
  // <<< README SNIPPET END <<<
  return { stsOpt, stsPlugin };
}

// ---------------------------------------------------------------------------------------------
// Independent LOG signature v1 verifier (PROTOCOL §8.2), node:crypto only.
// ---------------------------------------------------------------------------------------------
function md5HexUpper(body) {
  return createHash('md5').update(body, 'utf8').digest('hex').toUpperCase();
}

/**
 * StringToSign for LOG v1 on a POST without query string.
 * `headers`: every header sent (any case). Canonical headers = lowercase names starting with
 * `x-log-` or `x-acs-`, excluding `x-log-date` (it is the DATE line) and `x-log-meta-*`,
 * values trimmed, sorted by name (byte order), each `name:value\n`.
 */
function logV1StringToSign({ method, headers, resource }) {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
  const canon = Object.entries(lower)
    .filter(([k]) => (k.startsWith('x-log-') || k.startsWith('x-acs-')) && k !== 'x-log-date' && !k.startsWith('x-log-meta-'))
    .map(([k, v]) => [k, v.trim()])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}:${v}\n`)
    .join('');
  const date = lower['x-log-date'] ?? lower['date'] ?? '';
  return `${method}\n${lower['content-md5'] ?? ''}\n${lower['content-type'] ?? ''}\n${date}\n${canon}${resource}`;
}

function logV1Signature(accessKeySecret, stringToSign) {
  // Key is the AccessKeySecret as-is: no trailing '&' (unlike ACS/RPC signatures).
  return createHmac('sha1', accessKeySecret).update(stringToSign, 'utf8').digest('base64');
}

/** Full check of one signed request against credentials; returns the parsed Authorization. */
function assertSignedWith(req, creds, { resource }) {
  const h = req.headers;
  assert.equal(h['Content-Type'], 'application/json');
  assert.equal(h['Content-MD5'], md5HexUpper(req.body), 'Content-MD5 = uppercase hex MD5 of UTF-8 body');
  assert.equal(h['x-log-bodyrawsize'], String(req.body.length));
  assert.equal(h['x-log-apiversion'], '0.6.0');
  assert.equal(h['x-log-signaturemethod'], 'hmac-sha1');
  assert.equal(h['x-acs-security-token'], creds.SecurityToken, 'x-acs-security-token = SecurityToken from stsvend');
  const skewMs = Math.abs(Date.parse(h['x-log-date']) - Date.now());
  assert.ok(skewMs < 5 * 60_000, `x-log-date ${h['x-log-date']} close to now`);
  assert.equal(new Date(Date.parse(h['x-log-date'])).toUTCString(), h['x-log-date'], 'x-log-date is RFC1123 GMT');

  const m = /^LOG ([^:]*):(.+)$/.exec(h['Authorization']);
  assert.ok(m, `Authorization has LOG form: ${h['Authorization']}`);
  assert.equal(m[1], creds.AccessKeyId, 'Authorization key id = AccessKeyId from stsvend');
  const expected = logV1Signature(creds.AccessKeySecret, logV1StringToSign({ method: 'POST', headers: h, resource }));
  assert.equal(m[2], expected, 'signature verifies with the AccessKeySecret from stsvend');
  return { keyId: m[1], signature: m[2] };
}

// ---------------------------------------------------------------------------------------------
// 0. Prove the verifier on PROTOCOL §8.3 vectors (no server needed).
// ---------------------------------------------------------------------------------------------
const S1 = {
  accessKeyId: 'STS.NTestAccessKeyId',
  accessKeySecret: 'testAccessKeySecret',
  securityToken: 'CAIS+test/token==',
  url: 'https://my-project.cn-shanghai.log.aliyuncs.com/logstores/web-log',
  resource: '/logstores/web-log',
  date: 'Tue, 02 Jan 2024 03:04:05 GMT',
  epoch: 1704164645,
  body: '{"__logs__":[{"event":"login","user":"alice","n":"3","obj":"{\\"a\\":1}","__time__":1704164645}],"__topic__":"topic","__source__":"source","__tags__":{"app":"mini"}}',
  md5: '2CBB4028AED12D21F9A6E25C7CDDFB55',
  stringToSign:
    'POST\n2CBB4028AED12D21F9A6E25C7CDDFB55\napplication/json\nTue, 02 Jan 2024 03:04:05 GMT\n' +
    'x-acs-security-token:CAIS+test/token==\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:163\n' +
    'x-log-signaturemethod:hmac-sha1\n/logstores/web-log',
  authorization: 'LOG STS.NTestAccessKeyId:e3Z11DhlTbhVrw3TYcbNXtD84jU=',
};

test('verifier: LOG v1 recomputation matches PROTOCOL §8.3 vector S1 (and S2)', () => {
  assert.equal(Buffer.byteLength(S1.body, 'utf8'), 163);
  assert.equal(md5HexUpper(S1.body), S1.md5);
  const headers = {
    'Content-Type': 'application/json',
    'Content-MD5': S1.md5,
    'x-log-bodyrawsize': '163',
    'x-acs-security-token': S1.securityToken,
    'x-log-apiversion': '0.6.0',
    'x-log-signaturemethod': 'hmac-sha1',
    Authorization: S1.authorization, // must be ignored by the verifier
    'x-log-date': S1.date, // DATE line, not a canonical header
  };
  const sts = logV1StringToSign({ method: 'POST', headers, resource: S1.resource });
  assert.equal(sts, S1.stringToSign);
  assert.equal(`LOG ${S1.accessKeyId}:${logV1Signature(S1.accessKeySecret, sts)}`, S1.authorization);
  // A '&'-suffixed key (ACS style) must NOT verify: guards against the classic mistake.
  assert.notEqual(logV1Signature(S1.accessKeySecret + '&', sts), 'e3Z11DhlTbhVrw3TYcbNXtD84jU=');

  // S2: no token, non-ASCII body; x-log-bodyrawsize is the JS string length (55), not bytes (59).
  const s2body = '{"__logs__":[{"msg":"你好 world","__time__":1704164645}]}';
  assert.equal(Buffer.byteLength(s2body, 'utf8'), 59);
  assert.equal(md5HexUpper(s2body), 'DD4F443DD3C7752013D6F770DC18DB5C');
  const s2 = logV1StringToSign({
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Content-MD5': 'DD4F443DD3C7752013D6F770DC18DB5C',
      'x-log-bodyrawsize': String(s2body.length),
      'x-log-apiversion': '0.6.0',
      'x-log-signaturemethod': 'hmac-sha1',
      'x-log-date': S1.date,
    },
    resource: '/logstores/web-log',
  });
  assert.equal(logV1Signature('testAccessKeySecret', s2), 'hl7ojqlTLSLw1Mwg5Dxy4f1Wwf4=');
});

test('verifier agrees with the real plugin on vector S1 (fixed creds, fixed date)', async () => {
  let refreshed = 0;
  const opt = {
    accessKeyId: S1.accessKeyId,
    accessKeySecret: S1.accessKeySecret,
    securityToken: S1.securityToken,
    refreshSTSToken: async () => {
      refreshed += 1; // keeps the fixed creds
    },
  };
  const plugin = createStsPlugin(opt);
  const body = JSON.stringify({
    __logs__: [plugin.transString({ event: 'login', user: 'alice', n: 3, obj: { a: 1 }, time: S1.epoch })],
    __topic__: 'topic',
    __source__: 'source',
    __tags__: { app: 'mini' },
  });
  assert.equal(body, S1.body);
  // Third argument = server time (s); web-track-browser never passes it, used here to pin the date.
  const { data, header } = await plugin.process(S1.url, body, S1.epoch);
  assert.equal(refreshed, 1);
  assert.equal(data, S1.body);
  assert.equal(header['x-log-date'], S1.date);
  assert.equal(header.Authorization, S1.authorization);
  assert.equal(header['Content-MD5'], S1.md5);
});

// ---------------------------------------------------------------------------------------------
// 1–3. Against the running stsvend.
// ---------------------------------------------------------------------------------------------
test('GET /get_sts_token returns the STS Credentials object (PascalCase)', async () => {
  const r = await fetch(TOKEN_URL);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  const c = await r.json();
  for (const k of ['AccessKeyId', 'AccessKeySecret', 'SecurityToken', 'Expiration']) {
    assert.equal(typeof c[k], 'string', `${k} is a string`);
    assert.ok(c[k].length > 0, `${k} is non-empty`);
  }
  assert.match(c.AccessKeyId, /^STS\./);
  assert.match(c.Expiration, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  assert.ok(Date.parse(c.Expiration) > Date.now(), 'Expiration is in the future');
});

test('README snippet + real plugin: process() signs with the stsvend credentials', async () => {
  const { stsOpt, stsPlugin } = readmeSnippet(TOKEN_URL);
  const n0 = stsResponses.length;
  const url = 'https://e2e-project.cn-hangzhou.log.aliyuncs.com/logstores/e2e-logstore';
  const body = JSON.stringify({ __logs__: [stsPlugin.transString({ event: 'e2e', n: 1 })] });

  const { data, header } = await stsPlugin.process(url, body);
  assert.equal(stsResponses.length, n0 + 1, 'first process() fetched exactly one token');
  const creds = stsResponses[n0];
  assert.equal(stsOpt.accessKeyId, creds.AccessKeyId, 'snippet assigned AccessKeyId');
  assert.equal(data, body);
  assertSignedWith({ headers: header, body: data }, creds, { resource: '/logstores/e2e-logstore' });
  assert.ok(header.Authorization.startsWith(`LOG ${creds.AccessKeyId}:`));

  // Second batch inside refreshSTSTokenInterval (default 300000 ms): no refetch, same creds.
  const again = await stsPlugin.process(url, body);
  assert.equal(stsResponses.length, n0 + 1, 'no refetch within refreshSTSTokenInterval');
  assert.equal(stsOpt.refreshSTSTokenInterval, 300000, 'plugin wrote its default interval onto stsOpt');
  assertSignedWith({ headers: again.header, body: again.data }, creds, { resource: '/logstores/e2e-logstore' });
});

test('README snippet + real web-track-browser tracker: the XHR it sends to SLS is correctly signed', async () => {
  const { stsPlugin } = readmeSnippet(TOKEN_URL);
  const tracker = new SlsTracker({
    host: 'cn-hangzhou.log.aliyuncs.com',
    project: 'e2e-project',
    logstore: 'e2e-browser',
    time: 10,
    count: 10,
    topic: 'e2e-topic',
    source: 'e2e-source',
    tags: { app: 'stsvend-e2e' },
  });
  tracker.useStsPlugin(stsPlugin);
  const n0 = stsResponses.length;
  const sent = nextXhrRequest();
  tracker.sendImmediate({ event: 'login', user: 'alice', n: 3, obj: { a: 1 }, time: 1704164645 });
  const req = await sent;

  assert.equal(stsResponses.length, n0 + 1, 'tracker triggered exactly one token fetch');
  const creds = stsResponses[n0];
  assert.equal(req.method, 'POST');
  // STS mode: tracker URL minus "/track", no query string (PROTOCOL §7.4).
  assert.equal(req.url, 'https://e2e-project.cn-hangzhou.log.aliyuncs.com/logstores/e2e-browser');
  const payload = JSON.parse(req.body);
  assert.deepEqual(payload.__logs__, [{ event: 'login', user: 'alice', n: '3', obj: '{"a":1}', __time__: 1704164645 }]);
  assert.equal(payload.__topic__, 'e2e-topic');
  assertSignedWith(req, creds, { resource: '/logstores/e2e-browser' });
});

// ---------------------------------------------------------------------------------------------
// 4. The "assign, don't return" trap: why the README snippet assigns onto stsOpt.
// ---------------------------------------------------------------------------------------------
test('trap: a refreshSTSToken that only RETURNS the credentials is ignored by the plugin', async () => {
  const url = 'https://e2e-project.cn-hangzhou.log.aliyuncs.com/logstores/e2e-logstore';
  const body = JSON.stringify({ __logs__: [{ event: 'trap', __time__: 1704164645 }] });

  for (const initial of [
    { accessKeyId: '', accessKeySecret: '', securityToken: '' }, // page just loaded
    { accessKeyId: 'STS.stale-id', accessKeySecret: 'stale-secret', securityToken: 'stale-token' }, // old creds
  ]) {
    let returned;
    const opt = {
      ...initial,
      refreshSTSToken: async () => {
        const r = await fetch(TOKEN_URL);
        const c = await r.json();
        returned = { accessKeyId: c.AccessKeyId, accessKeySecret: c.AccessKeySecret, securityToken: c.SecurityToken };
        return returned; // WRONG: the plugin awaits this promise but discards its value
      },
    };
    const { header } = await createStsPlugin(opt).process(url, body);
    assert.ok(returned && returned.accessKeyId.startsWith('STS.'), 'refresher did fetch real creds');
    assert.ok(!header.Authorization.includes(returned.accessKeyId), `Authorization "${header.Authorization}" must not carry the stsvend key id`);
    assert.equal(header.Authorization.slice(0, header.Authorization.indexOf(':')), `LOG ${initial.accessKeyId}`);
    assert.equal(opt.accessKeyId, initial.accessKeyId, 'opt left untouched');
    if (initial.securityToken) {
      assert.equal(header['x-acs-security-token'], initial.securityToken);
    } else {
      assert.ok(!('x-acs-security-token' in header), 'no token header when securityToken is empty');
    }
    // It is signed with the (empty/stale) secret, i.e. SLS would reject it.
    const sig = header.Authorization.split(':')[1];
    assert.equal(sig, logV1Signature(initial.accessKeySecret, logV1StringToSign({ method: 'POST', headers: header, resource: '/logstores/e2e-logstore' })));
  }
});

test('the README quotes the snippet above verbatim', async () => {
  const { readFile } = await import('node:fs/promises');
  const self = await readFile(new URL(import.meta.url), 'utf8');
  const begin = self.indexOf('// >>> README SNIPPET BEGIN >>>\n');
  const end = self.indexOf('  // <<< README SNIPPET END <<<');
  const snippet = self
    .slice(self.indexOf('\n', begin) + 1, end)
    .split('\n')
    .map((line) => line.replace(/^ {2}/, ''))
    .join('\n');
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(snippet), `README.md must contain:\n${snippet}`);
});

test('a failed refresh keeps the current credentials instead of signing with undefined', async () => {
  // An unknown profile answers 404 with a JSON error body.
  const { stsOpt, stsPlugin } = readmeSnippet(`${BASE}/get_sts_token/no-such-profile`);
  stsOpt.accessKeyId = 'STS.previous';
  stsOpt.accessKeySecret = 'previous-secret';
  stsOpt.securityToken = 'previous-token';
  const url = 'https://e2e-project.cn-hangzhou.log.aliyuncs.com/logstores/e2e-logstore';
  const body = JSON.stringify({ __logs__: [{ event: 'kept', __time__: 1704164645 }] });
  const originalError = console.error;
  console.error = () => {}; // the plugin reports the thrown error here
  let result;
  try {
    result = await stsPlugin.process(url, body);
  } finally {
    console.error = originalError;
  }
  const { header } = result;
  assert.match(header.Authorization, /^LOG STS\.previous:/);
  assert.equal(header['x-acs-security-token'], 'previous-token');
});
