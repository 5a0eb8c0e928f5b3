// sts-refresher.mjs — a `refreshSTSToken` for `@aliyun-sls/web-sts-plugin` that fetches STS
// credentials from stsvend's `GET /get_sts_token` and fixes the plugin's refresh pitfalls; and
// `createMiniLogin`, the same refresher logging in with a WeChat / Alipay code at `POST /session`.
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

// Milliseconds a `Retry-After` header asks us to wait: delta-seconds or an HTTP date (measured
// against the server's clock when known). 0 when absent or unreadable; at most a day.
function stsRetryAfterMs(value, nowMs) {
  if (value === undefined || value === null || value === '') return 0;
  var s = String(value).replace(/^\s+|\s+$/g, '');
  var ms = /^\d+$/.test(s) ? Number(s) * 1000 : Date.parse(s) - nowMs;
  return isFinite(ms) ? Math.max(0, Math.min(ms, 86400000)) : 0;
}

// The server's clock from its `Date` header when readable (client clocks are often wrong), else
// the local clock.
function stsServerNow(res, now) {
  var serverNow = res && res.date ? Date.parse(res.date) : NaN;
  return isFinite(serverNow) ? serverNow : now();
}

// Evaluates the `headers` option (an object, or a possibly async function) into a plain object
// of string values, dropping undefined and null ones.
function stsHeaders(option) {
  var h = typeof option === 'function' ? option() : option;
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

  function attempt() {
    var abort = null;
    var work = stsHeaders(o.headers)
      .then(function (headers) {
        return o.load(o.url, headers, function (fn) { abort = fn; });
      })
      .then(function (res) {
        if (!res || !res.ok) {
          var err = new Error('token service answered HTTP ' + (res ? res.status : '(no response)'));
          err.status = res ? res.status : undefined;
          err.retryAfterMs = res ? stsRetryAfterMs(res.retryAfter, stsServerNow(res, o.now)) : 0;
          throw err;
        }
        return Promise.resolve()
          .then(function () { return res.body(); })
          .then(null, function () { throw new Error('token service answered a body that is not JSON'); })
          .then(function (body) {
            var creds = stsParseCredentials(body);
            // Lifetime measured against the server's clock when its Date header is readable
            // (client clocks are often wrong), else against the local clock.
            creds.remainingMs = creds.expiresAt - stsServerNow(res, o.now);
            return creds;
          });
      });
    return stsWithTimeout(work, o.timeoutMs, function () { if (abort) abort(); });
  }

  // One fetch, retried `retries` times with exponential backoff (backoffMs, 2x, 4x, … capped at
  // maxBackoffMs). A `Retry-After` longer than the backoff stretches the wait; one longer than
  // maxBackoffMs ends the retries at once (the plugin awaits us before it signs a batch), and
  // the error's `retryAfterMs` tells `for()` when the plugin should call again. An error marked
  // `retryable = false` (the login helper's refused codes) is not retried either. Resolves to
  // validated credentials or rejects with the last error.
  function fetchCredentials() {
    var n = 0;
    function next() {
      return attempt().then(null, function (error) {
        var delay = Math.min(o.backoffMs * Math.pow(2, n), o.maxBackoffMs);
        var retryAfterMs = error && error.retryAfterMs > 0 ? error.retryAfterMs : 0;
        if (n >= retries || retryAfterMs > o.maxBackoffMs || (error && error.retryable === false)) {
          var e = new Error('STS token refresh failed after ' + (n + 1) + ' attempt(s): ' +
            (error && error.message ? error.message : String(error)));
          e.cause = error;
          e.attempts = n + 1;
          e.status = error ? error.status : undefined;
          e.retryAfterMs = retryAfterMs;
          throw e;
        }
        delay = Math.max(delay, retryAfterMs);
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
          // after its full interval (but not before the server's Retry-After).
          var after = error && error.retryAfterMs > 0 ? error.retryAfterMs : 0;
          stsOpt.refreshSTSTokenInterval = Math.max(o.minIntervalMs, Math.min(after, o.maxIntervalMs));
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

// ------------------------------------------------------------------------------------------
// Mini program login (stsvend's `wechat` / `alipay` modes): a platform code (wx.login /
// my.getAuthCode) → POST {base}/session → a session token kept here → GET /get_sts_token with
// `Authorization: Bearer <session>`. The session token and the credentials are never logged and
// never put into an error message.
// ------------------------------------------------------------------------------------------
var LOGIN_PLATFORMS = { wechat: true, alipay: true };

// A session this close to its expiry is not used: logging in again is cheaper than a 401.
var LOGIN_SESSION_MARGIN_MS = 60000;

function loginCheck(ok, message) {
  if (!ok) throw new TypeError('createMiniLogin: ' + message);
}

function loginJson(res, what) {
  return Promise.resolve()
    .then(function () { return res.body(); })
    .then(function (body) { return typeof body === 'string' ? JSON.parse(body) : body; })
    .then(null, function () { throw new Error('stsvend ' + what + ' answered a body that is not JSON'); });
}

// The error of a refused POST /session. `retryable` is false for the 4xx answers that asking
// again cannot fix (a refused code, a blocked user, an unknown profile); 408, 429 and 5xx are
// retried by the refresher's backoff, which also honours `Retry-After`.
function loginError(res, now) {
  var status = res ? res.status : undefined;
  return loginJson(res, '/session').then(null, function () { return null; }).then(function (body) {
    var code = body && body.error && typeof body.error.code === 'string' ? body.error.code : '';
    var err = new Error('stsvend /session answered HTTP ' + (res ? status : '(no response)') + (code ? ' ' + code : ''));
    err.status = status;
    err.code = code;
    err.retryAfterMs = res ? stsRetryAfterMs(res.retryAfter, stsServerNow(res, now)) : 0;
    err.retryable = !(status >= 400 && status < 500 && status !== 408 && status !== 429);
    throw err;
  });
}

// `o`: the refresher's options plus `base`, `profile`, `platform`, `getCode`, `storage`,
// `persist`, `storageKey`, and the transport `o.load(url, headers, setAbort, method, data)`.
// Returns `{ for(stsOpt), fetchCredentials(), logout() }`.
function createLoginCore(o) {
  loginCheck(typeof o.base === 'string' && /^https?:\/\/[^/]/.test(o.base),
    '`base` must be the stsvend URL, e.g. https://sts.example.com');
  loginCheck(o.profile === undefined || o.profile === null || (typeof o.profile === 'string' && o.profile !== ''),
    '`profile` must be a non-empty string (or left out for the default profile)');
  loginCheck(LOGIN_PLATFORMS[o.platform] === true, "`platform` must be 'wechat' or 'alipay'");
  loginCheck(typeof o.getCode === 'function', '`getCode` must be a function that resolves to a login code');
  loginCheck(!o.persist || (o.storage && typeof o.storage.get === 'function' &&
    typeof o.storage.set === 'function' && typeof o.storage.remove === 'function'),
    '`persist` needs a `storage` with get/set/remove, e.g. wxStorage(wx)');
  var base = o.base.replace(/\/+$/, '');
  var suffix = o.profile ? '/' + encodeURIComponent(o.profile) : '';
  var sessionUrl = base + '/session' + suffix;
  var tokenUrl = base + '/get_sts_token' + suffix;
  var storageKey = o.storageKey || ('stsvend-session ' + o.platform + ' ' + sessionUrl);

  var session = restore(); // { token, expiresAt (local clock, ms) } or null
  var loginInflight = null;

  function restore() {
    if (!o.persist) return null;
    try {
      var v = o.storage.get(storageKey);
      var s = typeof v === 'string' && v !== '' ? JSON.parse(v) : v;
      if (s && typeof s.token === 'string' && s.token !== '' && typeof s.expiresAt === 'number') {
        return { token: s.token, expiresAt: s.expiresAt };
      }
    } catch (e) {
      // Unreadable storage: log in again.
    }
    return null;
  }

  function save(s) {
    if (!o.persist) return;
    try {
      if (s) o.storage.set(storageKey, JSON.stringify(s));
      else o.storage.remove(storageKey);
    } catch (e) {
      // Storage full or unavailable: the session lives in memory only.
    }
  }

  // One fresh code, one POST /session. Resolves to { token, expiresAt, credentials, offsetMs }.
  function exchange(headers, setAbort) {
    var work = Promise.resolve()
      .then(function () { return o.getCode(); })
      .then(function (code) {
        if (typeof code !== 'string' || code === '') throw new Error('getCode() gave no login code');
        var h = { 'Content-Type': 'application/json' };
        for (var k in headers) h[k] = headers[k];
        return o.load(sessionUrl, h, setAbort, 'POST', JSON.stringify({ platform: o.platform, code: code }));
      })
      .then(function (res) {
        if (!res || !res.ok) return loginError(res, o.now);
        return loginJson(res, '/session').then(function (body) {
          if (body === null || typeof body !== 'object' || typeof body.SessionToken !== 'string' || body.SessionToken === '') {
            throw new Error('stsvend /session answer lacks a non-empty string `SessionToken`');
          }
          var expiresAt = Date.parse(body.SessionExpiration);
          if (!isFinite(expiresAt)) throw new Error('stsvend /session answered an unparsable SessionExpiration');
          stsParseCredentials(body.Credentials);
          // Kept on the local clock, corrected by the server's Date (a wrong phone clock would
          // otherwise make every session look expired, or never).
          var offsetMs = stsServerNow(res, o.now) - o.now();
          return { token: body.SessionToken, expiresAt: expiresAt - offsetMs, credentials: body.Credentials, offsetMs: offsetMs };
        });
      });
    // Bounded on its own: a login shared by several callers must settle even if getCode hangs.
    return stsWithTimeout(work, o.timeoutMs);
  }

  // Concurrent callers share one login. Codes are single use and short-lived, so a code the
  // server calls invalid gets exactly one more try, with a fresh code.
  function login(headers, setAbort) {
    if (loginInflight) return loginInflight;
    loginInflight = exchange(headers, setAbort)
      .then(null, function (error) {
        if (error && error.status === 401 && error.code === 'invalid_login_code') return exchange(headers, setAbort);
        throw error;
      })
      .then(function (result) {
        loginInflight = null;
        session = { token: result.token, expiresAt: result.expiresAt };
        save(session);
        return result;
      }, function (error) {
        loginInflight = null;
        throw error;
      });
    return loginInflight;
  }

  // The login's credentials, in the shape of a token response: the first token comes with the
  // login, so no GET follows it.
  function asResponse(result) {
    return {
      ok: true,
      status: 200,
      body: function () { return result.credentials; },
      date: new Date(o.now() + result.offsetMs).toUTCString(),
      retryAfter: null,
    };
  }

  // The refresher's transport: log in when there is no usable session; otherwise GET with the
  // bearer, and on 401 (expired or refused session) log in once more and use that login's token.
  function loadToken(_url, headers, setAbort) {
    if (!session || session.expiresAt - LOGIN_SESSION_MARGIN_MS <= o.now()) {
      return login(headers, setAbort).then(asResponse);
    }
    var used = session.token;
    var h = {};
    for (var k in headers) h[k] = headers[k];
    h.Authorization = 'Bearer ' + used;
    return Promise.resolve(o.load(tokenUrl, h, setAbort, 'GET')).then(function (res) {
      if (!res || res.status !== 401) return res;
      // Forget it only if no concurrent login has replaced it meanwhile.
      if (session && session.token === used) {
        session = null;
        save(null);
      }
      // One login; a refused one rejects as not retryable (loginError), so this never loops.
      return login(headers, setAbort).then(asResponse);
    });
  }

  var coreOptions = {};
  for (var key in o) coreOptions[key] = o[key];
  coreOptions.url = tokenUrl;
  coreOptions.load = loadToken;
  var core = createStsCore(coreOptions);
  return {
    for: core.for,
    fetchCredentials: core.fetchCredentials,
    // Forget the session (memory and storage), e.g. when the user logs out or switches
    // accounts; the next refresh logs in with a fresh code.
    logout: function () {
      session = null;
      save(null);
    },
  };
}

// Code getters and storage for the two platforms (adapters pass the `wx` / `my` object).
function wxLoginCode(sdk) {
  if (!sdk || typeof sdk.login !== 'function') throw new TypeError('wxLoginCode(wx): pass the wx object');
  return function () {
    return new Promise(function (resolve, reject) {
      sdk.login({
        success: function (res) {
          if (res && typeof res.code === 'string' && res.code !== '') resolve(res.code);
          else reject(new Error('wx.login gave no code' + (res && res.errMsg ? ': ' + res.errMsg : '')));
        },
        fail: function (err) { reject(new Error('wx.login failed: ' + (err && err.errMsg ? err.errMsg : String(err)))); },
      });
    });
  };
}

function myAuthCode(sdk) {
  if (!sdk || typeof sdk.getAuthCode !== 'function') throw new TypeError('myAuthCode(my): pass the my object');
  return function () {
    return new Promise(function (resolve, reject) {
      sdk.getAuthCode({
        scopes: 'auth_base', // silent: only the user id
        success: function (res) {
          if (res && typeof res.authCode === 'string' && res.authCode !== '') resolve(res.authCode);
          else reject(new Error('my.getAuthCode gave no authCode'));
        },
        fail: function (err) {
          reject(new Error('my.getAuthCode failed: ' + (err && (err.errorMessage || err.errMsg) ? (err.errorMessage || err.errMsg) : String(err))));
        },
      });
    });
  };
}

// wx.getStorageSync(key) answers '' for a missing key.
function wxStorage(sdk) {
  return {
    get: function (key) { return sdk.getStorageSync(key); },
    set: function (key, value) { sdk.setStorageSync(key, value); },
    remove: function (key) { sdk.removeStorageSync(key); },
  };
}

// my.getStorageSync({key}) answers {data}.
function myStorage(sdk) {
  return {
    get: function (key) { var r = sdk.getStorageSync({ key: key }); return r ? r.data : null; },
    set: function (key, value) { sdk.setStorageSync({ key: key, data: value }); },
    remove: function (key) { sdk.removeStorageSync({ key: key }); },
  };
}

var LOGIN_DEFAULTS = {
  base: undefined,
  profile: undefined,
  platform: undefined,
  getCode: undefined,
  storage: undefined,
  persist: false,
  storageKey: undefined,
};

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
  o.load = fetchLoad(doFetch, fetchInit);
  return createStsCore(o);
}

// The fetch transport behind both helpers: `load(url, headers, setAbort, method, data)`.
function fetchLoad(doFetch, fetchInit) {
  return async (url, headers, setAbort, method, data) => {
    const init = { ...fetchInit, method: method || 'GET', headers: { ...(fetchInit.headers || {}), ...headers } };
    if (data !== undefined) init.body = data;
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
      date: header(res, 'date'),
      retryAfter: header(res, 'retry-after'),
    };
  };
}

function header(res, name) {
  return res && res.headers && typeof res.headers.get === 'function' ? res.headers.get(name) : null;
}

/**
 * Creates a refresher that logs in with a mini program platform code instead of a URL you
 * already hold a token for (stsvend's `wechat` / `alipay` auth modes). Same result shape as
 * `createStsRefresher` — `{ for(stsOpt), fetchCredentials() }` — plus `logout()`.
 *
 * @param {object} options  every `createStsRefresher` option except `url`, plus:
 * @param {string} options.base  stsvend's base URL, e.g. `https://sts.example.com`
 * @param {string} [options.profile]  profile name: `/session/NAME` and `/get_sts_token/NAME`
 * @param {'wechat'|'alipay'} options.platform
 * @param {Function} options.getCode  () => (Promise of) a fresh single-use platform code
 * @param {boolean} [options.persist=false]  keep the session in `storage` across launches
 * @param {{get, set, remove}} [options.storage]  synchronous key/value storage for `persist`
 * @param {string} [options.storageKey]  defaults to one derived from platform and URL
 */
export function createMiniLogin(options = {}) {
  const { fetchImpl, fetchInit = {}, url, ...rest } = options;
  if (url !== undefined) throw new TypeError('createMiniLogin: pass `base` (and `profile`), not `url`');
  if (fetchImpl !== undefined && typeof fetchImpl !== 'function') {
    throw new TypeError('createMiniLogin: `fetchImpl` must be a function');
  }
  const doFetch = fetchImpl === undefined
    ? (u, init) => globalThis.fetch(u, init)
    : (u, init) => fetchImpl.call(globalThis, u, init);
  const o = stsCoreOptions(rest, { ...STS_DEFAULTS, ...LOGIN_DEFAULTS });
  o.load = fetchLoad(doFetch, fetchInit);
  return createLoginCore(o);
}

export { wxLoginCode, myAuthCode, wxStorage, myStorage };

export default createStsRefresher;
