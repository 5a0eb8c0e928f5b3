// Alipay mini program: SLS web tracking with STS credentials from stsvend.
//
// - credentials: clients/js/sts-refresher.mini.js (copied to utils/, see README) fetches
//   GET <stsvend>/get_sts_token with my.request and fills the plugin's options object;
// - signing: the real @aliyun-sls/web-sts-plugin (npm) — createStsPlugin(stsOpt);
// - sending: utils/sls-mini-tracker.js posts each signed batch with my.request, because the npm
//   registry's @aliyun-sls/web-track-mini 0.0.2 has no useStsPlugin().

const createStsPlugin = require('@aliyun-sls/web-sts-plugin');
const { createStsRefresher, myRequest } = require('./utils/sts-refresher.mini.js');
const { createMiniTracker, myPost } = require('./utils/sls-mini-tracker.js');

// Local development with `stsvend dev` (simulator, "do not check request domains" ticked).
// Production: stsvendTokenUrl 'https://sts.example.com/get_sts_token',
//             slsHost 'cn-hangzhou.log.aliyuncs.com' (the region endpoint of your project).
const CONFIG = {
  stsvendTokenUrl: 'http://127.0.0.1:8080/get_sts_token',
  slsHost: 'http://127.0.0.1:8080/sls/dev-project', // http(s)://… → POST <host>/logstores/<logstore>
  project: 'dev-project',
  logstore: 'dev-logstore',
};

function initSlsTracker(onResult) {
  // The plugin reads the keys from THIS object at every send; the refresher assigns them.
  const stsOpt = { accessKeyId: '', accessKeySecret: '', securityToken: '' };
  stsOpt.refreshSTSToken = createStsRefresher({
    url: CONFIG.stsvendTokenUrl,
    request: myRequest(my),
    // headers: () => ({ Authorization: 'Bearer ' + getApp().globalData.jwt }),  // if stsvend wants a JWT
  }).for(stsOpt);
  const stsPlugin = createStsPlugin(stsOpt);

  const tracker = createMiniTracker({
    host: CONFIG.slsHost,
    project: CONFIG.project,
    logstore: CONFIG.logstore,
    time: 3, // seconds to batch events
    count: 10,
    topic: 'todo-app',
    source: 'alipay-miniprogram',
    tags: { platform: 'alipay' },
    stsPlugin,
    post: myPost(my),
    onResult,
  });

  // Prime: fetch the first token before the first batch is signed.
  const primed = stsOpt.refreshSTSToken().catch((err) => console.error('STS token not loaded yet:', err));
  return {
    send: (event) => primed.then(() => tracker.send(event)),
    flush: () => primed.then(() => tracker.flush()),
  };
}

App({
  globalData: { lastSend: null },
  onLaunch() {
    this.sls = initSlsTracker((result) => {
      this.globalData.lastSend = result;
      if (typeof this.onSlsResult === 'function') this.onSlsResult(result);
    });
  },
  onHide() {
    // Do not lose a pending batch when the user leaves.
    if (this.sls) this.sls.flush();
  },
});
