// sls-mini-tracker.js — a minimal SLS web-tracking sender for mini programs that signs every batch
// with the REAL @aliyun-sls/web-sts-plugin and posts it with wx.request / my.request.
//
// Why: the npm registry's @aliyun-sls/web-track-mini (0.0.2) has no useStsPlugin(), so it cannot
// send with STS credentials. This file does what the newer mini tracker does in STS mode
// (../../../shared/PROTOCOL.md §7.4–7.5): build the same JSON body as the trackers
// ({__logs__, __tags__, __topic__, __source__}), let the plugin convert each event
// (plugin.transString) and sign the batch (plugin.process(url, body) → {data, header}), then POST
// `data` with `header` to https://<project>.<host>/logstores/<logstore> (or <host>/logstores/…
// when host starts with http:// or https://, e.g. stsvend dev's local sink).
//
// Identical in examples/alipay-miniprogram and examples/wechat-miniprogram. ES5 + Promise, so it
// runs with "ES6 → ES5" on old base libraries.

function createMiniTracker(opt) {
  if (!opt || !opt.stsPlugin || typeof opt.stsPlugin.process !== 'function') {
    throw new TypeError('createMiniTracker: `stsPlugin` (createStsPlugin(stsOpt)) is required');
  }
  if (typeof opt.post !== 'function') {
    throw new TypeError('createMiniTracker: `post` (wxPost(wx) or myPost(my)) is required');
  }
  var url = /^https?:\/\//.test(opt.host)
    ? opt.host.replace(/\/+$/, '') + '/logstores/' + opt.logstore
    : 'https://' + opt.project + '.' + opt.host + '/logstores/' + opt.logstore;
  var time = typeof opt.time === 'number' ? opt.time : 10; // seconds; <= 0 sends every event at once
  var count = typeof opt.count === 'number' ? opt.count : 10;
  var onResult = typeof opt.onResult === 'function' ? opt.onResult : function () {};
  var queue = [];
  var timer = null;

  function flush() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (!queue.length) return Promise.resolve(null);
    var payload = { __logs__: queue };
    queue = [];
    if (opt.tags) payload.__tags__ = opt.tags;
    if (opt.topic) payload.__topic__ = opt.topic;
    if (opt.source) payload.__source__ = opt.source;
    var body = JSON.stringify(payload);
    return Promise.resolve(opt.stsPlugin.process(url, body))
      .then(function (signed) {
        return opt.post({ url: url, data: signed.data, header: signed.header });
      })
      .then(function (res) {
        // SLS answers 200 with an empty body; errors carry {errorCode, errorMessage}.
        var result = { ok: res.status === 200, status: res.status, body: res.data, logs: payload.__logs__.length };
        if (!result.ok) console.error('SLS rejected a batch: HTTP ' + res.status, res.data);
        onResult(result);
        return result;
      }, function (err) {
        var result = { ok: false, status: 0, error: String(err && err.message ? err.message : err), logs: payload.__logs__.length };
        console.error('SLS batch not sent: ' + result.error);
        onResult(result);
        return result;
      });
  }

  function send(event) {
    // transString: values become strings (objects → JSON text); a numeric `time` becomes __time__.
    queue.push(opt.stsPlugin.transString(event));
    if (time <= 0 || queue.length >= count) return flush();
    if (!timer) timer = setTimeout(flush, time * 1000);
    return Promise.resolve(null);
  }

  return { send: send, flush: flush, url: url };
}

// POST adapters → Promise<{status, data}>. `data` is the signed body STRING: it must be sent
// byte-for-byte (Content-MD5 and the signature cover it), so no JSON re-encoding.
function wxPost(wx) {
  return function (req) {
    return new Promise(function (resolve, reject) {
      wx.request({
        url: req.url,
        method: 'POST',
        data: req.data,
        header: req.header,
        dataType: 'text', // anything but 'json': do not parse the (empty) answer
        responseType: 'text',
        success: function (res) {
          resolve({ status: res.statusCode, data: res.data });
        },
        fail: function (err) {
          reject(new Error('wx.request failed: ' + (err && err.errMsg ? err.errMsg : String(err))));
        },
      });
    });
  };
}

function myPost(my) {
  return function (req) {
    return new Promise(function (resolve, reject) {
      my.request({
        url: req.url,
        method: 'POST',
        data: req.data, // a string is sent as is
        headers: req.header, // Alipay's key is `headers`
        dataType: 'text',
        success: function (res) {
          resolve({ status: res.status, data: res.data });
        },
        fail: function (err) {
          // Alipay calls `fail` for HTTP errors too (error 19); the status is on the error.
          if (err && typeof err.status === 'number') {
            resolve({ status: err.status, data: err.data });
            return;
          }
          reject(new Error('my.request failed: ' + (err && err.errorMessage ? err.errorMessage : JSON.stringify(err))));
        },
      });
    });
  };
}

module.exports = { createMiniTracker: createMiniTracker, wxPost: wxPost, myPost: myPost };
