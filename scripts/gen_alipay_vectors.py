#!/usr/bin/env python3
"""Generate Alipay RSA2 signing and answer-verification vectors with Alipay's official Python SDK.

Everything in the fixture comes out of the official PyPI package ``alipay-sdk-python``:
- signing content and signatures: ``alipay.aop.api.util.SignatureUtils.get_sign_content`` and
  ``sign_with_rsa2``;
- request layouts: the SDK's own ``DefaultAlipayClient.execute`` for
  ``AlipaySystemOauthTokenRequest``, with its clock fixed (it reads ``datetime.now()``, local
  time: we hand it Beijing wall time) and its HTTP helper ``do_post`` replaced by a stand-in that
  records the query string and form body (built with the SDK's ``url_encode``, as ``do_post``
  does) and hands back a canned answer. No network, and the helper's port-dropping bug
  (``url += port`` with an int) is never reached;
- answers: bodies signed with ``sign_with_rsa2`` over the member text by the test "Alipay" key,
  then fed through the same ``execute``: ``sdk_accepts`` says whether the SDK believed the answer,
  ``sdk_content`` is the text it verified. Tampered bodies must be refused.

The keys under ``tests/fixtures/alipay/`` are test-only key pairs generated once with openssl for
these vectors (an "app" pair and an "alipay" pair); they protect nothing.

Output: ``tests/fixtures/alipay_sign_vectors.json`` (path resolved from this script's location),
consumed by the unit tests in ``src/login/alipay_sign_vectors.rs`` and by
``scripts/alipay-node/check_vectors.mjs`` (the official npm ``alipay-sdk``).

Usage, from the repository root:
    python3 -m venv /tmp/alipayvenv && /tmp/alipayvenv/bin/pip install -r scripts/requirements-alipay.txt
    /tmp/alipayvenv/bin/python3 scripts/gen_alipay_vectors.py           # (re)write the fixture
    /tmp/alipayvenv/bin/python3 scripts/gen_alipay_vectors.py --check   # fail if it differs
The output is deterministic: fixed keys, timestamps and bodies; PKCS#1 v1.5 signatures are
deterministic.
"""

import datetime as real_datetime
import json
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import parse_qsl

import alipay.aop.api.DefaultAlipayClient as client_module
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.exception.Exception import ResponseException
from alipay.aop.api.request.AlipaySystemOauthTokenRequest import AlipaySystemOauthTokenRequest
from alipay.aop.api.util.SignatureUtils import (get_sign_content, sign_with_rsa, sign_with_rsa2,
                                                verify_with_rsa)
from alipay.aop.api.util.WebUtils import url_encode

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "alipay_sign_vectors.json"
KEYS = REPO_ROOT / "tests" / "fixtures" / "alipay"
SDK = "alipay-sdk-python"
APP_ID = "2021000000000001"
GATEWAY = "https://openapi.alipay.com/gateway.do"
BEIJING = real_datetime.timezone(real_datetime.timedelta(hours=8))
MEMBER = "alipay_system_oauth_token_response"


def bare(pem_name):
    """A PEM file's base64 body on one line: the form Alipay's key tools hand out."""
    lines = (KEYS / pem_name).read_text(encoding="ascii").strip().splitlines()
    assert lines[0].startswith("-----BEGIN ") and lines[-1].startswith("-----END ")
    return "".join(lines[1:-1])


APP_PRIVATE = bare("app_private_pkcs1.pem")      # the SDK loads PKCS#1 only
APP_PUBLIC = bare("app_public.pem")
ALIPAY_PRIVATE = bare("alipay_private_pkcs1.pem")
ALIPAY_PUBLIC = bare("alipay_public.pem")

# Parameter sets for the signing content, in a deliberately unsorted order.
SIGN_CASES = [
    ("S1", "the login request's parameters",
     [("timestamp", "2024-01-02 11:04:05"), ("method", "alipay.system.oauth.token"),
      ("app_id", APP_ID), ("sign_type", "RSA2"), ("charset", "utf-8"), ("version", "1.0"),
      ("format", "json"), ("grant_type", "authorization_code"),
      ("code", "4b203fe6c11548bcabd8da5bb087a83b")]),
    ("S2", "unicode values (CJK, accents, an emoji outside the BMP)",
     [("subject", "支付宝登录 ü é"), ("app_id", APP_ID), ("emoji", "😀 ok"),
      ("body", "阿里巴巴")]),
    ("S3", "& = + % and spaces inside values are signed raw, not encoded",
     [("q", "a=b&c=d"), ("b", "x+y %20 z"), ("a", "&"), ("eq", "="),
      ("json", '{"k":"v","n":[1,2]}')]),
    ("S4", "empty values: the SDK keeps them as 'k=' (it skips nothing)",
     [("z", "last"), ("empty", ""), ("a", "first"), ("also_empty", "")]),
    ("S5", "names sort by code point: upper case, then '_', then lower case",
     [("b", "2"), ("B", "1"), ("_x", "3"), ("a_b", "4"), ("a", "5"), ("aB", "6")]),
    ("S6", "newline, tab, quotes and backslash in values",
     [("text", 'line1\nline2\t"q" \\ end'), ("app_id", APP_ID)]),
    ("S7", "a long value", [("long", "x" * 1500 + "末"), ("a", "1")]),
]

# Login requests: the instant (UTC) and the Beijing wall time the SDK is handed.
REQUEST_CASES = [
    ("R1", "2024-01-02T03:04:05Z", "4b203fe6c11548bcabd8da5bb087a83b"),
    ("R2", "2024-12-31T20:00:00Z", "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"),
    ("R3", "2026-11-26T11:58:59Z", "odd code: a+b/c=d&e ~*%"),
]


def signed_body(member_name, member_text, key=ALIPAY_PRIVATE, signer=sign_with_rsa2, pre="{",
                between=",", post="}"):
    sign = signer(key, member_text, "utf-8")
    return f'{pre}"{member_name}":{member_text}{between}"sign":"{sign}"{post}', sign


def answers():
    ok_open_id = ('{"code":"10000","msg":"Success","access_token":"authusrB1234","auth_start":'
                  '"2024-01-02 11:04:05","expires_in":1209600,"open_id":'
                  '"074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5","re_expires_in":2592000,'
                  '"refresh_token":"authusrB5678"}')
    # Odd spacing, escaped quotes and braces inside strings, \/ and \u escapes, a nested object.
    ok_user_id = ('{ "access_token" : "a\\"}{\\\\" ,\n\t"nested": {"x": {"y": "}"}, "z": []},'
                  '\n "user_id":"2088102150477652", "alipay_user_id" : "20880011\\/22",'
                  ' "note":"\\u4e2d\\u6587 {", "expires_in" : 300 }')
    bad_code = ('{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid",'
                '"sub_msg":"授权码code无效"}')
    bad_sig = ('{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature",'
               '"sub_msg":"验签出错"}')
    busy = '{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error"}'
    ok = {"outcome": "ok"}

    a1, a1_sign = signed_body(MEMBER, ok_open_id)
    a2, _ = signed_body(MEMBER, ok_user_id, pre='{\n  ', between=' ,\n  ', post='\n}\n')
    a3, _ = signed_body("error_response", bad_code)
    a4, _ = signed_body("error_response", bad_sig, pre="{ ", between=", ")
    a5, _ = signed_body("error_response", busy)
    a6, _ = signed_body(MEMBER, ok_open_id, post=',"alipay_cert_sn":"abc123"}')
    return [
        ("A1", "success with open_id, compact", a1,
         {**ok, "user_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"}, None),
        ("A2", "success with user_id; odd spacing, escapes and braces inside strings", a2,
         {**ok, "user_id": "2088102150477652"}, None),
        ("A3", "error_response isv.code-invalid (raw UTF-8 sub_msg)", a3,
         {"outcome": "error", "code": "40002", "sub_code": "isv.code-invalid",
          "msg": "Invalid Arguments", "class": "invalid_code"}, None),
        ("A4", "error_response isv.invalid-signature (our key or config is wrong)", a4,
         {"outcome": "error", "code": "40002", "sub_code": "isv.invalid-signature",
          "msg": "Invalid Arguments", "class": "misconfigured"}, None),
        ("A5", "error_response 20000 service unavailable", a5,
         {"outcome": "error", "code": "20000", "sub_code": "isp.unknow-error",
          "msg": "Service Currently Unavailable", "class": "unavailable"}, None),
        ("A6", "success followed by an alipay_cert_sn member after the sign", a6,
         {**ok, "user_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"}, None),
        ("T1", "tampered: open_id changed after signing",
         a1.replace("074a1CcTG1", "074a1CcTG2"), {"outcome": "bad_signature"}, None),
        ("T2", "tampered: the member re-serialised (a space added)",
         a1.replace('"code":"10000"', '"code": "10000"'), {"outcome": "bad_signature"}, None),
        ("T3", "tampered: error sub_code changed",
         a3.replace("isv.code-invalid", "isv.code-invalie"), {"outcome": "bad_signature"}, None),
        ("T4", "tampered: signature bytes changed",
         a1.replace(a1_sign, ("A" if a1_sign[0] != "A" else "B") + a1_sign[1:]),
         {"outcome": "bad_signature"}, None),
        ("T5", "no sign member", '{"%s":%s}' % (MEMBER, ok_open_id),
         {"outcome": "missing_signature"}, None),
        ("T6", "signed with the wrong key (the app's own)",
         signed_body(MEMBER, ok_open_id, key=APP_PRIVATE)[0], {"outcome": "bad_signature"}, None),
        ("D1", "signed RSA (SHA-1) instead of RSA2",
         signed_body(MEMBER, ok_open_id, signer=sign_with_rsa)[0], {"outcome": "bad_signature"},
         "the SDK's verify_with_rsa is rsa.verify, which takes the hash named inside the "
         "signature, so it accepts SHA-1; stsvend sent sign_type=RSA2 and accepts SHA-256 only"),
        ("D2", "a correctly signed answer of another method",
         signed_body("alipay_user_info_share_response", ok_open_id)[0],
         {"outcome": "no_member"},
         "the SDK verifies the first *_response member whatever its name; stsvend takes only "
         "alipay_system_oauth_token_response or error_response"),
    ]


class FixedDatetime(real_datetime.datetime):
    """Stands in for datetime.datetime inside DefaultAlipayClient: now() is the fixed time."""
    fixed = None

    @classmethod
    def now(cls, tz=None):
        return cls.fixed


class Exchange:
    """Replaces WebUtils.do_post for DefaultAlipayClient: records the request, returns `answer`."""

    def __init__(self):
        self.answer = b""
        self.seen = None

    def __call__(self, url, query_string=None, headers=None, params=None, charset="utf-8",
                 timeout=15):
        body = url_encode(params, charset) if params else None  # what do_post sends
        self.seen = {"url": url, "query": query_string, "body": body, "headers": headers}
        return self.answer


def make_client(exchange):
    config = AlipayClientConfig()
    config.server_url = GATEWAY
    config.app_id = APP_ID
    config.app_private_key = APP_PRIVATE
    config.alipay_public_key = ALIPAY_PUBLIC
    client_module.do_post = exchange
    client_module.datetime = type("datetime_module", (), {"datetime": FixedDatetime})
    return DefaultAlipayClient(config)


def sdk_execute(client, exchange, code, answer):
    """One login call through the SDK: (recorded request, verified content or None)."""
    request = AlipaySystemOauthTokenRequest()
    request.grant_type = "authorization_code"
    request.code = code
    exchange.answer = answer.encode("utf-8")
    try:
        content = client.execute(request)
    except ResponseException:
        content = None
    return exchange.seen, content


def build_sign_case(case_id, description, pairs):
    params = dict(pairs)
    content = get_sign_content(params)
    signature = sign_with_rsa2(APP_PRIVATE, content, "utf-8")
    assert verify_with_rsa(APP_PUBLIC, content.encode("utf-8"), signature)
    return {"id": case_id, "description": description, "params": [list(p) for p in pairs],
            "content": content, "signature": signature}


def build_request_case(client, exchange, case_id, instant, code):
    utc = real_datetime.datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=real_datetime.timezone.utc)
    FixedDatetime.fixed = utc.astimezone(BEIJING).replace(tzinfo=None)
    seen, content = sdk_execute(client, exchange, code, answers()[0][2])
    assert content is not None, "the SDK refused the canned success answer"
    assert seen["url"] == GATEWAY
    params = dict(parse_qsl(seen["query"], keep_blank_values=True))
    params.update(parse_qsl(seen["body"], keep_blank_values=True))
    sign = params.pop("sign")
    sign_content = get_sign_content(params)
    assert sign_with_rsa2(APP_PRIVATE, sign_content, "utf-8") == sign
    return {"id": case_id, "app_id": APP_ID, "code": code, "timestamp_utc": instant,
            "timestamp": params["timestamp"], "content": sign_content, "signature": sign,
            "query": seen["query"], "body": seen["body"],
            "content_type": seen["headers"]["Content-type"]}


def build_answer_case(client, exchange, case_id, description, body, expect, divergence):
    _, content = sdk_execute(client, exchange, "4b203fe6c11548bcabd8da5bb087a83b", body)
    sdk_accepts = content is not None
    stsvend_accepts = expect["outcome"] in ("ok", "error")
    if divergence is None:
        assert sdk_accepts == stsvend_accepts, f"{case_id}: the SDK disagrees with the expectation"
    else:
        assert sdk_accepts != stsvend_accepts, f"{case_id}: the documented divergence is gone"
    case = {"id": case_id, "description": description, "body": body, "sdk_accepts": sdk_accepts,
            "sdk_content": content, "expect": expect}
    if divergence is not None:
        case["divergence"] = divergence
    return case


def build_fixture():
    exchange = Exchange()
    client = make_client(exchange)
    sign_cases = [build_sign_case(*case) for case in SIGN_CASES]
    requests = [build_request_case(client, exchange, *case) for case in REQUEST_CASES]
    answer_cases = [build_answer_case(client, exchange, *case) for case in answers()]
    ids = [c["id"] for c in sign_cases + requests + answer_cases]
    assert len(set(ids)) == len(ids)
    return {
        "generator": "scripts/gen_alipay_vectors.py",
        "sdk": f"{SDK}=={version(SDK)}",
        "keys": {
            "note": "test-only key pairs generated once for these vectors; see tests/fixtures/alipay/",
            "app_private_pkcs1_pem": "tests/fixtures/alipay/app_private_pkcs1.pem",
            "app_private_pkcs8_pem": "tests/fixtures/alipay/app_private_pkcs8.pem",
            "app_public_pem": "tests/fixtures/alipay/app_public.pem",
            "alipay_private_pkcs1_pem": "tests/fixtures/alipay/alipay_private_pkcs1.pem",
            "alipay_public_pem": "tests/fixtures/alipay/alipay_public.pem",
            "app_private_pkcs1_bare": APP_PRIVATE,
            "app_private_pkcs8_bare": bare("app_private_pkcs8.pem"),
            "alipay_public_bare": ALIPAY_PUBLIC,
        },
        "gateway": GATEWAY,
        "sign_cases": sign_cases,
        "requests": requests,
        "answers": answer_cases,
    }


def main():
    fixture = build_fixture()
    text = json.dumps(fixture, indent=2, ensure_ascii=False)
    assert json.loads(text) == fixture
    name = FIXTURE.relative_to(REPO_ROOT)
    counts = (f"{len(fixture['sign_cases'])} signing, {len(fixture['requests'])} request and "
              f"{len(fixture['answers'])} answer cases")
    if "--check" in sys.argv[1:]:
        committed = FIXTURE.read_text(encoding="utf-8") if FIXTURE.exists() else ""
        if committed != text + "\n":
            sys.exit(f"{name} differs from what {fixture['sdk']} produces; "
                     "run scripts/gen_alipay_vectors.py and commit the result")
        print(f"{counts}: {name} matches {fixture['sdk']}")
        return
    FIXTURE.write_text(text + "\n", encoding="utf-8")
    print(f"{counts}, all from {fixture['sdk']}; wrote {name}")


if __name__ == "__main__":
    main()
