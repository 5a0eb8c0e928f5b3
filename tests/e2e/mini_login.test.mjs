// End to end, mini program login (issue 16): `clients/js`'s createMiniLogin logs in to
// `stsvend dev`'s profile `mini` through the emulated WeChat and Alipay (`dev:<name>:<nonce>`
// codes), and the REAL `@aliyun-sls/web-sts-plugin` with the REAL tracker uploads to the dev SLS
// sink with the credentials that came with the login; the sink records which user's
// credentials signed each upload. Then the session refreshes the token, a replayed code is
// refused, and a session is refused by another profile.
//
// Run via tests/e2e/run.sh (it starts `stsvend dev` and sets STSVEND_URL).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { createMiniLogin } from '../../clients/js/sts-refresher.mjs';

const BASE = process.env.STSVEND_URL;
const PROFILE = 'mini';
const PROJECT = 'dev-project';
const LOGSTORE = 'dev-logstore';


import './forwarding-xhr.mjs';

const { default: createStsPlugin } = await import('@aliyun-sls/web-sts-plugin');
const { default: SlsTracker } = await import('@aliyun-sls/web-track-browser');

async function logsWith(marker, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const response = await fetch(`${BASE}/dev/logs.json?project=${PROJECT}&logstore=${LOGSTORE}`);
    const { logs } = await response.json();
    const mine = logs.filter((log) => log.fields.marker === marker);
    if (mine.length > 0 || Date.now() > deadline) return mine;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function uploadAs(platform, name) {
  let logins = 0;
  const login = createMiniLogin({
    base: BASE,
    profile: PROFILE,
    platform,
    // A fresh code per login, as wx.login() / my.getAuthCode() give.
    getCode: () => {
      logins += 1;
      return `dev:${name}:${randomUUID().slice(0, 8)}`;
    },
  });
  const stsOpt = { accessKeyId: '', accessKeySecret: '', securityToken: '' };
  stsOpt.refreshSTSToken = login.for(stsOpt);
  const tracker = new SlsTracker({
    host: `${BASE}/sls/${PROJECT}`,
    project: PROJECT,
    logstore: LOGSTORE,
    time: 0,
    count: 1,
  });
  tracker.useStsPlugin(createStsPlugin(stsOpt));
  await stsOpt.refreshSTSToken(); // log in; the credentials come with the login
  assert.equal(logins, 1);
  assert.ok(stsOpt.accessKeyId.startsWith('STS.'), 'credentials assigned by the login');
  const marker = `${platform}-${randomUUID()}`;
  tracker.sendImmediate({ marker, platform });
  const arrived = await logsWith(marker);
  assert.equal(arrived.length, 1, `the ${platform} user's upload reached the sink`);
  assert.equal(arrived[0].role_session_name, `dev-${name}`, 'signed with the user\'s own token');
  return { login, stsOpt, logins: () => logins };
}

test('a WeChat login gives the real plugin a token the SLS sink accepts, as the user', async () => {
  const { login, logins } = await uploadAs('wechat', 'wendy');
  const again = await login.fetchCredentials(); // a refresh with the session
  assert.ok(again.accessKeyId.startsWith('STS.'));
  assert.equal(logins(), 1, 'the refresh used the session, no second login');
});

test('an Alipay login gives the real plugin a token the SLS sink accepts, as the user', async () => {
  await uploadAs('alipay', 'ali');
});

test('a replayed dev code is refused, as the platforms do', async () => {
  const code = `dev:replay:${randomUUID().slice(0, 8)}`;
  const body = JSON.stringify({ platform: 'wechat', code });
  const post = () =>
    fetch(`${BASE}/session/${PROFILE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
  const first = await post();
  assert.equal(first.status, 200);
  const { SessionToken } = await first.json();
  const second = await post();
  assert.equal(second.status, 401);
  assert.equal((await second.json()).error.code, 'invalid_login_code');
  const elsewhere = await fetch(`${BASE}/get_sts_token`, {
    headers: { authorization: `Bearer ${SessionToken}` },
  });
  assert.equal(elsewhere.status, 200, 'the default profile (auth none) ignores the header');
  const own = await fetch(`${BASE}/get_sts_token/${PROFILE}`, {
    headers: { authorization: `Bearer ${SessionToken}` },
  });
  assert.equal(own.status, 200);
  const none = await fetch(`${BASE}/get_sts_token/${PROFILE}`);
  assert.equal(none.status, 401, 'no session, no token');
});
