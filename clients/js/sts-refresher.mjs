// sts-refresher.mjs — a `refreshSTSToken` for `@aliyun-sls/web-sts-plugin` that fetches STS
// credentials from stsvend's `GET /get_sts_token` and fixes the plugin's refresh pitfalls.
// Dependency-free ES module. See clients/js/README.md.
//
// The mini-program copy (sts-refresher.mini.js, CommonJS) is GENERATED from the "shared core"
// block below by build-mini.mjs. Edit this file, then run `node clients/js/build-mini.mjs`.
// Keep the core block free of `import`/`export`, `?.`, `??` and numeric separators (it also
// runs in mini-program JS engines).

// >>> SHARED CORE BEGIN >>>
var STS_FIELDS = ['AccessKeyId', 'AccessKeySecret', 'SecurityToken', 'Expiration'];

function stsCheckNumber(name, value, min) {
  if (typeof value !== 'number' || !isFinite(value) || value < min) {
    throw new TypeError('createStsRefresher: `' + name + '` must be a number >= ' + min);
  }
}

// Rejects when `promise` has not settled after `ms` (0 = no limit). Uses the real timer on
// purpose: the injectable `sleep` is only for the backoff between attempts.
function stsWithTimeout(promise, ms, onTimeout) {
  if (!ms) return promise;
  var timer;
  var timeout = new Promise(function (_resolve, reject) {
    timer = setTimeout(function () {
      if (onTimeout) onTimeout();
      reject(new Error('token service did not answer within ' + ms + ' ms'));
    }, ms);
  });
  return Promise.race([promise, timeout]).then(
    function (value) { clearTimeout(timer); return value; },
    function (error) { clearTimeout(timer); throw error; }
  );
}

// Validates the token JSON (`{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`, the STS
// `Credentials` object). Throws unless all four are non-empty strings and Expiration parses.
function stsParseCredentials(body) {
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch (e) {
      throw new Error('token service answered a body that is not JSON');
    }
  }
  if (body === null || typeof body !== 'object') {
    throw new Error('token service answered JSON that is not an object');
  }
  for (var i = 0; i < STS_FIELDS.length; i++) {
    var v = body[STS_FIELDS[i]];
    if (typeof v !== 'string' || v === '') {
      throw new Error('token service answer lacks a non-empty string `' + STS_FIELDS[i] + '`');
    }
  }
  var expiresAt = Date.parse(body.Expiration);
  if (!isFinite(expiresAt)) {
    throw new Error('token service answered an unparsable Expiration: ' + body.Expiration);
  }
  return {
    accessKeyId: body.AccessKeyId,
    accessKeySecret: body.AccessKeySecret,
    securityToken: body.SecurityToken,
    expiration: body.Expiration,
    expiresAt: expiresAt,
  };
}

// `o.load(url, headers, setAbort)` -> Promise<{ ok, status, body() -> Promise<any>, date }>:
// the transport (fetch in the ES module, a `request` adapter in the mini copy).
function createStsCore(o) {
  if (typeof o.url !== 'string' || o.url === '') {
    throw new TypeError('createStsRefresher: `url` must be a non-empty string');
  }
  if (o.headers !== undefined && o.headers !== null &&
      typeof o.headers !== 'object' && typeof o.headers !== 'function') {
    throw new TypeError('createStsRefresher: `headers` must be an object or a function');
  }
  stsCheckNumber('retries', o.retries, 0);
  stsCheckNumber('backoffMs', o.backoffMs, 0);
  stsCheckNumber('maxBackoffMs', o.maxBackoffMs, 0);
  stsCheckNumber('earlyRefreshMs', o.earlyRefreshMs, 0);
  stsCheckNumber('minIntervalMs', o.minIntervalMs, 1);
  stsCheckNumber('maxIntervalMs', o.maxIntervalMs, o.minIntervalMs);
  stsCheckNumber('timeoutMs', o.timeoutMs, 0);
  var retries = Math.floor(o.retries);

  function currentHeaders() {
    var h = typeof o.headers === 'function' ? o.headers() : o.headers;
    return Promise.resolve(h).then(function (value) {
      var out = {};
      if (value) {
        for (var k in value) {
          if (Object.prototype.hasOwnProperty.call(value, k) && value[k] !== undefined && value[k] !== null) {
            out[k] = String(value[k]);
          }
        }
      }
      return out;
    });
  }

  function attempt() {
    var abort = null;
    var work = currentHeaders()
      .then(function (headers) {
        return o.load(o.url, headers, function (fn) { abort = fn; });
      })
      .then(function (res) {
        if (!res || !res.ok) {
          var err = new Error('token service answered HTTP ' + (res ? res.status : '(no response)'));
          err.status = res ? res.status : undefined;
          throw err;
        }
        return Promise.resolve()
          .then(function () { return res.body(); })
          .then(null, function () { throw new Error('token service answered a body that is not JSON'); })
          .then(function (body) {
            var creds = stsParseCredentials(body);
            // Lifetime measured against the server's clock when its Date header is readable
            // (client clocks are often wrong), else against the local clock.
            var serverNow = res.date ? Date.parse(res.date) : NaN;
            creds.remainingMs = creds.expiresAt - (isFinite(serverNow) ? serverNow : o.now());
            return creds;
          });
      });
    return stsWithTimeout(work, o.timeoutMs, function () { if (abort) abort(); });
  }

  // One fetch, retried `retries` times with exponential backoff (backoffMs, 2x, 4x, … capped at
  // maxBackoffMs). Resolves to validated credentials or rejects with the last error.
  function fetchCredentials() {
    var n = 0;
    function next() {
      return attempt().then(null, function (error) {
        if (n >= retries) {
          var e = new Error('STS token refresh failed after ' + (n + 1) + ' attempt(s): ' +
            (error && error.message ? error.message : String(error)));
          e.cause = error;
          e.attempts = n + 1;
          throw e;
        }
        var delay = Math.min(o.backoffMs * Math.pow(2, n), o.maxBackoffMs);
        n += 1;
        return Promise.resolve(o.sleep(delay)).then(next);
      });
    }
    return next();
  }

  // The function to install as `stsOpt.refreshSTSToken`. It ASSIGNS the three fields on `stsOpt`
  // (the plugin ignores the resolved value), then schedules the plugin's next refresh before
  // `Expiration - earlyRefreshMs` via `refreshSTSTokenInterval` + `stsTokenFreshTime`.
  function forOptions(stsOpt) {
    if (stsOpt === null || typeof stsOpt !== 'object') {
      throw new TypeError('refresher.for(stsOpt): pass the options object given to createStsPlugin');
    }
    var inflight = null;

    function refreshSTSToken() {
      // Concurrent callers (a priming call and the plugin's first send) share one fetch.
      if (inflight) return inflight;
      inflight = fetchCredentials().then(
        function (creds) {
          stsOpt.accessKeyId = creds.accessKeyId;
          stsOpt.accessKeySecret = creds.accessKeySecret;
          stsOpt.securityToken = creds.securityToken;
          var wanted = creds.remainingMs - o.earlyRefreshMs;
          // The plugin replaces a falsy interval with 300000, so never write 0.
          stsOpt.refreshSTSTokenInterval = Math.max(o.minIntervalMs, Math.min(wanted, o.maxIntervalMs));
          // Count the interval from now (not from when the plugin called us, before the fetch);
          // this also lets a priming call count as the first refresh.
          stsOpt.stsTokenFreshTime = new Date(o.now());
          inflight = null;
          if (o.onRefresh) o.onRefresh({ expiration: creds.expiration, intervalMs: stsOpt.refreshSTSTokenInterval });
          return undefined;
        },
        function (error) {
          // Previous credentials stay in place; ask the plugin to try again soon instead of
          // after its full interval.
          stsOpt.refreshSTSTokenInterval = o.minIntervalMs;
          inflight = null;
          throw error;
        }
      );
      return inflight;
    }
    return refreshSTSToken;
  }

  return { for: forOptions, fetchCredentials: fetchCredentials };
}

function stsCoreOptions(opts, defaults) {
  var out = {};
  for (var k in defaults) out[k] = defaults[k];
  for (var j in opts) if (opts[j] !== undefined) out[j] = opts[j];
  return out;
}

var STS_DEFAULTS = {
  url: undefined,
  headers: undefined,
  retries: 3,
  backoffMs: 500,
  maxBackoffMs: 8000,
  earlyRefreshMs: 60000,
  minIntervalMs: 10000,
  maxIntervalMs: 300000,
  timeoutMs: 10000,
  onRefresh: undefined,
  now: function () { return Date.now(); },
  sleep: function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); },
};
// <<< SHARED CORE END <<<

/**
 * Creates an STS credential refresher for `@aliyun-sls/web-sts-plugin` (browser / Node).
 *
 * @param {object} options
 * @param {string} options.url  the token endpoint, e.g. `https://sts.example.com/get_sts_token`
 * @param {Function} [options.fetchImpl]  defaults to the global `fetch`
 * @param {object} [options.fetchInit]  extra fetch init, e.g. `{ credentials: 'include' }`
 * @param {object|Function} [options.headers]  request headers, or a (possibly async) function
 *   returning them, called before every attempt (e.g. a JWT `Authorization: Bearer …`)
 * @param {number} [options.retries=3]  extra attempts after a failed one
 * @param {number} [options.backoffMs=500]  first backoff delay; doubles per retry
 * @param {number} [options.maxBackoffMs=8000]
 * @param {number} [options.earlyRefreshMs=60000]  refresh this long before `Expiration`
 * @param {number} [options.minIntervalMs=10000]  floor for `refreshSTSTokenInterval`
 * @param {number} [options.maxIntervalMs=300000]  ceiling (the plugin's default interval)
 * @param {number} [options.timeoutMs=10000]  per-attempt timeout, 0 = none
 * @param {Function} [options.onRefresh]  called with `{expiration, intervalMs}` after a refresh
 * @param {Function} [options.now]  clock (ms), for tests
 * @param {Function} [options.sleep]  backoff sleep, for tests
 * @returns {{ for(stsOpt: object): () => Promise<void>, fetchCredentials(): Promise<object> }}
 */
export function createStsRefresher(options = {}) {
  const { fetchImpl, fetchInit = {}, ...rest } = options;
  const doFetch = fetchImpl === undefined
    ? (url, init) => globalThis.fetch(url, init)
    // Called with `this = globalThis`: a detached `window.fetch` would throw "Illegal invocation".
    : (url, init) => fetchImpl.call(globalThis, url, init);
  if (fetchImpl !== undefined && typeof fetchImpl !== 'function') {
    throw new TypeError('createStsRefresher: `fetchImpl` must be a function');
  }
  const o = stsCoreOptions(rest, STS_DEFAULTS);
  o.load = async (url, headers, setAbort) => {
    const init = { method: 'GET', ...fetchInit, headers: { ...(fetchInit.headers || {}), ...headers } };
    if (typeof AbortController === 'function' && !init.signal) {
      const ac = new AbortController();
      init.signal = ac.signal;
      setAbort(() => ac.abort());
    }
    const res = await doFetch(url, init);
    return {
      ok: !!res && res.ok === true,
      status: res ? res.status : undefined,
      body: () => res.json(),
      date: res && res.headers && typeof res.headers.get === 'function' ? res.headers.get('date') : null,
    };
  };
  return createStsCore(o);
}

export default createStsRefresher;
