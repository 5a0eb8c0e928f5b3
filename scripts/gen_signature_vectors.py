#!/usr/bin/env python3
"""Generate Alibaba Cloud RPC signature V1 (HMAC-SHA1) test vectors with the official SDK.

Every case is signed by the official PyPI package ``alibabacloud_openapi_util``
(``Client.get_rpcsignature``). The intermediate stages written to the fixture (canonical
query string and string-to-sign) are built with the SDK's own percent-encoder
(``Client.get_encode_param``) exactly the way ``get_rpcsignature`` builds them, and the script
asserts that HMAC-SHA1 (key ``secret + "&"``) + Base64 over that string-to-sign gives exactly the
signature the SDK returned. Cases documented in shared PROTOCOL.md §2.3 are also checked against
their published signatures (V0 and V0b are Alibaba's own documentation examples).

Output: ``tests/fixtures/rpc_signature_vectors.json`` (path resolved from this script's location),
consumed by the Rust tests under ``tests/``. ``params`` are raw (decoded) values, listed in a
deliberately unsorted order for most cases so that the consumer has to sort them itself.

Usage, from the repository root:
    pip install -r scripts/requirements.txt
    python3 scripts/gen_signature_vectors.py           # (re)write the fixture
    python3 scripts/gen_signature_vectors.py --check   # fail if the committed fixture differs
The output is deterministic: fixed nonces and timestamps, no randomness.
"""

import base64
import hashlib
import hmac
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote_plus

from alibabacloud_openapi_util.client import Client, get_canonical_query_string

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "rpc_signature_vectors.json"
SDK = "alibabacloud_openapi_util"
# A two-string JSON array as json.dumps(indent=2) lays it out, to put each [name, value] on one line.
PAIR = re.compile(r'\[\n\s*("(?:[^"\\]|\\.)*"),\n\s*("(?:[^"\\]|\\.)*")\n\s*\]')

# The SDK's encoder: urllib.parse.quote(s, safe="~", encoding="utf-8"), i.e. everything except
# A-Z a-z 0-9 - _ . ~ becomes %XY (upper-case hex), space is %20, "/" is %2F.
encode = Client.get_encode_param


def common(key_id, action, nonce, timestamp, version_, fmt="JSON", ts_key="Timestamp"):
    return {"AccessKeyId": key_id, "Action": action, "Format": fmt,
            "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce,
            "SignatureVersion": "1.0", ts_key: timestamp, "Version": version_}


def sts(nonce, timestamp="2024-01-02T03:04:05Z", key_id="testid", **action_params):
    return {**common(key_id, "AssumeRole", nonce, timestamp, "2015-04-01"), **action_params}


ROLE = "acs:ram::1234567890123456:role/sls-web-tracking"
POLICY_V1 = ('{"Version":"1","Statement":[{"Effect":"Allow","Action":["log:PostLogStoreLogs"],'
             '"Resource":["acs:log:cn-shanghai:1234567890123456:project/my-proj/logstore/web-*"]}]}')
POLICY_V3 = ('{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs",'
             '"Resource":"*","Condition":{"IpAddress":{"acs:SourceIp":"203.0.113.7/32"}}}]}')
POLICY_E = ('{"Version":"1","Statement":[{"Effect":"Allow","Action":["log:PostLogStoreLogs"],'
            '"Resource":["acs:log:*:*:project/p/logstore/l"]}]}')
POLICY_SVC = ('{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs",'
              '"Resource":["acs:log:*:*:project/my-proj/logstore/web-log"]}]}')

DOC_NONCE, DOC_TIME = "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "2016-02-23T12:46:24Z"
V1_PARAMS = sts("c1b3d0e2-7f44-4b0a-9a51-2d6c1f0e8a11", DurationSeconds="900", Policy=POLICY_V1,
                RoleArn=ROLE, RoleSessionName="mini-user_01.a@b")
E_PARAMS = dict(DurationSeconds="900", Policy=POLICY_E, RoleArn=ROLE, RoleSessionName="alice")
SVC_PARAMS = sts("5d0f3a9e-8c2b-4e71-b6a4-0f9e8d7c6b5a", "2026-11-26T12:00:00Z",
                 key_id="LTAI5tStsvendTestKeyId01", DurationSeconds="3600", Policy=POLICY_SVC,
                 RoleArn=ROLE, RoleSessionName="stsvend")
SVC_SECRET = "stsvendTestSecret0123456789abcdef"
SVC_TOKEN = ("CAIS+AF1q6Ft5B2yfSjIr5fkLtTjp+dx0YWOZWD9kHUcZel+3Lfhijz2IHhMe3lsAu8ds/4wnmlX7P4al"
             "qF/SpJUQkHfNZMst0pm01T3A+rMy66mm1Iu3Q==")

# (id, description, method, secret, params, expected signature from PROTOCOL.md or None)
CASES = [
    ("V0", "Alibaba doc example: ECS DescribeRegions (key testsecret&)", "GET", "testsecret",
     common("testid", "DescribeRegions", DOC_NONCE, DOC_TIME, "2014-05-26", "XML"),
     "OLeaidS1JvxuMvnyHOwuJ+uX5qY="),
    ("V0b", "Older Alibaba doc text: same request with the key spelled TimeStamp", "GET",
     "testsecret",
     common("testid", "DescribeRegions", DOC_NONCE, DOC_TIME, "2014-05-26", "XML", "TimeStamp"),
     "CT9X0VtwR86fNWSnsc6v8YGOjuE="),
    ("V0c", "Alibaba SMS SendSms doc example: CJK value and JSON value", "GET", "testSecret",
     {**common("testId", "SendSms", "45e25e9b-0a6f-4070-8c85-2956eda1b466",
               "2017-07-12T02:42:19Z", "2017-05-25", "XML"),
      "OutId": "123", "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou",
      "SignName": "阿里云短信测试专用", "TemplateCode": "SMS_71390007",
      "TemplateParam": '{"customer":"test"}'},
     "zJDF+Lrzhj/ThnlvIToysFRq6t4="),
    ("V1", "AssumeRole POST with a minified JSON session Policy (* : / , \" { [) and @",
     "POST", "testsecret", V1_PARAMS, "GIjREnmmUraSTWPisiRWuHZ2zpc="),
    ("V1g", "V1 parameters signed for GET: the method is part of the string-to-sign",
     "GET", "testsecret", V1_PARAMS, "GBXuNL26MJew9o7+kpo+xrLEiBw="),
    ("V2", "space * ~ + / = , @ : in values; SecurityToken; secret containing ~ * &",
     "POST", "test~secret*&",
     sts("nonce-~*+ /", key_id="STS.testid", ExternalId="abc=,.@:/-_",
         RoleArn="acs:ram::1234567890123456:role/r", RoleSessionName="a b*c~d+e",
         SecurityToken="CAIS+abc/def=="),
     "GnMBkFT/qo5vRD+fVBfh64zgOPk="),
    ("V3", "2-, 3- and 4-byte UTF-8 (ü, 用户, 😀) and a Condition policy (signing-only)",
     "GET", "testsecret",
     sts("11111111-2222-3333-4444-555555555555", Policy=POLICY_V3,
         RoleArn="acs:ram::1234567890123456:role/r", RoleSessionName="用户-ü-😀"),
     "QXaI5SJWATL0t7TNsuDF0Ww3OQg="),
    ("E1", "Captured alibabacloud_tea_openapi 0.4.6 AssumeRole (POST, Format=json)", "POST",
     "testsecret",
     sts("35ad5ebc2662e39c157f03b617dbb07c", "2026-11-26T11:58:59Z", Format="json", **E_PARAMS),
     "u7ULRjzfMYsVZodkPuv1QZT2RIw="),
    ("E2", "Captured aliyun-python-sdk-core 2.16.1 AssumeRole: RegionId and empty SignatureType",
     "POST", "testsecret",
     sts("e53e815b5b0a9787a0935ba50903d2ff", "2026-11-26T11:58:59Z", RegionId="cn-hangzhou",
         SignatureType="", **E_PARAMS),
     "hOk3pO7wZqz2XpUNvS+NBCLh/c4="),
    ("S1", "stsvend AssumeRole as the service sends it (POST, long-term AccessKey)", "POST",
     SVC_SECRET, SVC_PARAMS, None),
    ("S1g", "S1 parameters signed for GET", "GET", SVC_SECRET, SVC_PARAMS, None),
    ("S2", "stsvend AssumeRole signed with STS credentials: SecurityToken, secret with & / + =",
     "POST", "sts/Secret+With&Amp=",
     {**SVC_PARAMS, "AccessKeyId": "STS.NTestChainedKeyId01", "SecurityToken": SVC_TOKEN}, None),
    ("X1", "& % = ? inside values (a&b%20c=d, a URL) and a lower-case name that sorts last",
     "POST", "testsecret",
     sts("a1a2a3a4-b1b2-c1c2-d1d2-e1e2e3e4e5e6", ExternalId="a&b%20c=d", RoleArn=ROLE,
         RoleSessionName="alice", callback="https://example.com/cb?x=1&y=2#f"),
     None),
    ("X2", "values that already look percent-encoded (%2F, %7E, %25) and a trailing %", "GET",
     "testsecret",
     sts("f0f1f2f3-0000-4000-8000-000000000001", ExternalId="100%", RoleArn=ROLE,
         RoleSessionName="pre%2Fencoded%7E%25", Policy='{"Resource":"project/a%2Fb"}'),
     None),
    ("U1", "é (2-byte), 阿里云 (3-byte), 😀 (4-byte) in separate values; empty values k=",
     "GET", "testsecret",
     sts("0a0b0c0d-1e1f-4a4b-8c8d-9e9f00112233", ExternalId="阿里云", RoleArn=ROLE,
         RoleSessionName="é", SourceIdentity="😀", RegionId="", empty=""),
     None),
]


def canonical_query(params):
    """Canonical query exactly as get_rpcsignature builds it: sort by raw name (code point
    order, case-sensitive), skip None values, encode name and value, join k=v with "&"."""
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items())
                    if v is not None)


def string_to_sign(method, canonical):
    """As get_rpcsignature: METHOD&%2F&quote_plus(canonical, safe="~"). The canonical string
    contains no spaces, so quote_plus here is the same plain percent-encoding as `encode`."""
    sts_ = f"{method}&%2F&{quote_plus(canonical, safe='~', encoding='utf-8')}"
    assert sts_ == f"{method}&{encode('/')}&{encode(canonical)}"
    return sts_


def hmac_sha1_base64(secret, message):
    digest = hmac.new((secret + "&").encode("utf-8"), message.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def unsorted_order(params):
    """A fixed, deliberately unsorted order: odd positions reversed, then even positions."""
    items = sorted(params.items())
    return items[1::2][::-1] + items[0::2]


def build_case(case_id, description, method, secret, params, expected):
    assert "Signature" not in params and all(isinstance(v, str) for v in params.values())
    sdk_signature = Client.get_rpcsignature(dict(params), method, secret)
    canonical = canonical_query(params)
    # The SDK's ACS3 helper builds the same k=v string (it does not encode names, which are
    # all unreserved here): a second SDK code path agreeing on the canonical form.
    assert get_canonical_query_string(dict(params)) == canonical, case_id
    to_sign = string_to_sign(method, canonical)
    signature = hmac_sha1_base64(secret, to_sign)
    assert signature == sdk_signature, f"{case_id}: stages give {signature}, SDK {sdk_signature}"
    if expected is not None:
        assert sdk_signature == expected, f"{case_id}: SDK {sdk_signature}, doc {expected}"
    # V0/V0b keep the documentation's (sorted) order; every other case is stored unsorted.
    pairs = list(params.items()) if case_id in ("V0", "V0b") else unsorted_order(params)
    assert case_id in ("V0", "V0b") or pairs != sorted(pairs), case_id
    return {
        "id": case_id,
        "description": description,
        "method": method,
        "secret": secret,
        "params": [[k, v] for k, v in pairs],
        "canonical_query": canonical,
        "string_to_sign": to_sign,
        "signature": sdk_signature,
    }


def main():
    sdk_version = version(SDK)
    cases = [build_case(*case) for case in CASES]
    assert len({c["id"] for c in cases}) == len(cases)
    fixture = {
        "generator": "scripts/gen_signature_vectors.py",
        "sdk": f"{SDK}=={sdk_version}",
        "cases": cases,
    }
    text = PAIR.sub(r"[\1, \2]", json.dumps(fixture, indent=2, ensure_ascii=False))
    assert json.loads(text) == fixture
    if "--check" in sys.argv[1:]:
        committed = FIXTURE.read_text(encoding="utf-8") if FIXTURE.exists() else ""
        if committed != text + "\n":
            sys.exit(f"{FIXTURE.relative_to(REPO_ROOT)} differs from what {SDK}=={sdk_version} "
                     "produces; run scripts/gen_signature_vectors.py and commit the result")
        print(f"{len(cases)} cases: {FIXTURE.relative_to(REPO_ROOT)} matches {SDK}=={sdk_version}")
        return
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text + "\n", encoding="utf-8")
    for case in cases:
        print(f"{case['id']:<4} {case['signature']}")
    documented = sum(1 for case in CASES if case[-1] is not None)
    print(f"{len(cases)} cases OK ({documented} match PROTOCOL.md), all equal to "
          f"{SDK}=={sdk_version} get_rpcsignature; wrote {FIXTURE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
