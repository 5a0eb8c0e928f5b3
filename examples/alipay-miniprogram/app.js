// Alipay mini program: SLS web tracking with STS credentials from stsvend.
//
// - credentials: clients/js/sts-refresher.mini.js (copied to utils/, see README). With
//   CONFIG.login the app logs in with my.getAuthCode() at stsvend's POST /session (a profile in
//   `alipay` mode) and refreshes its own token with the session; without it, it fetches
//   GET <stsvend>/get_sts_token from a profile in `none` mode. Either way the helper fills the
//   plugin's options object;
// - signing: the real @aliyun-sls/web-sts-plugin (npm) — createStsPlugin(stsOpt);
// - sending: utils/sls-mini-tracker.js posts each signed batch with my.request, because the npm
//   registry's @aliyun-sls/web-track-mini 0.0.2 has no useStsPlugin().

const createStsPlugin = require('@aliyun-sls/web-sts-plugin');
const { createMiniLogin, createStsRefresher, myAdapter, myRequest } = require('./utils/sts-refresher.mini.js');
const { createMiniTracker, myPost } = require('./utils/sls-mini-tracker.js');

// Local development with `stsvend dev` (simulator, "do not check request domains" ticked).
// Production: stsvendBase 'https://sts.example.com', devUser '',
//             slsHost 'cn-hangzhou.log.aliyuncs.com' (the region endpoint of your project).
const CONFIG = {
  stsvendBase: 'http://127.0.0.1:8080',
  profile: 'mini', // `stsvend dev`'s login profile; '' = the default profile; 'NAME' → /session/NAME and /get_sts_token/NAME
  login: true, // true: the profile's STSVEND_AUTH includes `alipay`; false: a `none` profile, no login
  // `stsvend dev` emulates Alipay: the code `dev:<name>:<nonce>` logs in as the user dev-<name>, once.
  // With devUser set, the app logs in as that user at launch and the page shows "Log in as".
  devUser: 'alice',
  slsHost: 'http://127.0.0.1:8080/sls/dev-project', // http(s)://… → POST <host>/logstores/<logstore>
  project: 'dev-project',
  logstore: 'dev-logstore',
};

function initSlsTracker(onResult) {
  // The plugin reads the keys from THIS object at every send; the helper assigns them.
  const stsOpt = { accessKeyId: '', accessKeySecret: '', securityToken: '' };
  let login = null;
  let devUser = CONFIG.devUser || null; // the next login sends dev:<devUser> (with a fresh nonce) instead of my.getAuthCode's code
  if (CONFIG.login) {
    const adapter = myAdapter(my);
    login = createMiniLogin({
      base: CONFIG.stsvendBase,
      profile: CONFIG.profile || undefined,
      adapter,
      getCode: () => {
        if (!devUser) return adapter.getCode(); // my.getAuthCode({ scopes: 'auth_base' })
        // A fresh code per login, as the platform gives: each is single use.
        return 'dev:' + devUser + ':' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
      },
      // Keep the session across launches (my.setStorageSync); not while trying dev users.
      persist: !CONFIG.devUser,
    });
    stsOpt.refreshSTSToken = login.for(stsOpt);
  } else {
    const suffix = CONFIG.profile ? '/' + CONFIG.profile : '';
    stsOpt.refreshSTSToken = createStsRefresher({
      url: CONFIG.stsvendBase + '/get_sts_token' + suffix,
      request: myRequest(my),
      // headers: () => ({ Authorization: 'Bearer ' + getApp().globalData.jwt }),  // a `jwt` profile: your own login
    }).for(stsOpt);
  }
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

  // Prime: log in (or reuse the stored session) before the first batch is signed.
  const primed = stsOpt.refreshSTSToken().catch((err) => console.error('STS token not loaded yet:', err.message));
  return {
    send: (event) => primed.then(() => tracker.send(event)),
    flush: () => primed.then(() => tracker.flush()),
    // Dev only: log in again as another stsvend dev user; later batches carry that user's token.
    logInAs: (name) => {
      if (!login) return Promise.reject(new Error('CONFIG.login is off: this profile has no users'));
      return tracker.flush().then(() => {
        devUser = name;
        login.logout();
        return stsOpt.refreshSTSToken();
      }).then(() => 'dev-' + name);
    },
  };
}

App({
  globalData: { lastSend: null },
  config: CONFIG,
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
