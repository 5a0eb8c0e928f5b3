#!/usr/bin/env python3
"""Record which credential source the official Python default chain picks, scenario by scenario.

For each scenario (environment variables, files in a fake HOME, whether an ECS metadata server is
reachable) the official PyPI package ``alibabacloud_credentials`` is asked for credentials through
its default chain (``Client()`` without a config, i.e. ``DefaultCredentialsProvider``: env → OIDC →
CLI profile → INI file → ECS RAM role → credentials URI). The provider it reports and the
AccessKeyId it returns (or the error it raises) are written to
``tests/fixtures/credential_chain_decisions.json`` (path resolved from this script's location);
the Rust tests replay the same scenarios against stsvend's chain and assert the same source.

Usage, from the repository root:
    python3 -m venv /tmp/chainvenv && /tmp/chainvenv/bin/pip install -r scripts/requirements-chain.txt
    /tmp/chainvenv/bin/python3 scripts/gen_chain_decisions.py           # (re)write the fixture
    /tmp/chainvenv/bin/python3 scripts/gen_chain_decisions.py --check   # fail if the fixture differs
Output is deterministic: fixed key ids, no timestamps (the mocks' Expiration, now + 6 h, is not
written), temp paths and mock ports replaced by placeholders.

Isolation: every scenario runs in a fresh subprocess (``--one``) whose environment is exactly the
scenario's variables plus HOME (a fresh temp dir holding the scenario's files) and PATH, so the
SDK's module-level reads of ``os.environ`` (``utils/auth_util.py``, ``utils/auth_constant.HOME``)
and its caches cannot leak between scenarios.

Mock servers (plain HTTP on 127.0.0.1, started here in threads): ECS metadata (hardened mode: PUT
/latest/api/token needs the TTL header; GETs with a wrong token get 401, GETs without one are
served as IMDSv1), credentials URI (GET /creds), and STS (AssumeRoleWithOIDC / AssumeRole, params
read from query and form body, no signature check). Scenarios without a metadata server point the
ECS host at a bound but never-listening loopback port, so it is refused at once, as off-cloud.

Monkeypatch (one, inside the ``--one`` subprocess only): every provider of the SDK makes its HTTP
calls through ``Tea.core.TeaCore.do_action(request, runtime_options)`` with the host in
``request.headers['host']`` hard-coded (ECS ``100.100.100.200`` in ecs_ram_role.py; STS
``sts[-vpc][.<region>].aliyuncs.com`` over https in oidc.py and ram_role_arn.py). The wrapper
records the original request (method, host, path, Action, token header) and rewrites only the
destination: ECS host → 127.0.0.1:<ecs port>; STS host → http://127.0.0.1:<sts port>. Request
building, signing, parsing and the chain logic are the SDK's own. The URI provider needs no patch
(its URL is the mock's). Only the sync path (``get_credential``) is exercised.

Error strings: first line of the exception message; the temp HOME → ``{HOME}``, the URI → ``{URI}``,
mock/closed ports → ``{ECS_PORT}`` / ``{STS_PORT}``, ``object at 0x…`` addresses dropped. In the
ECS connection error the host reads 127.0.0.1 (the redirect), not 100.100.100.200.

provider_name → stsvend source (the first component after ``default/``):
    env → environment          oidc_role_arn → oidc         cli_profile → cli_profile
    profile → credentials_file  ecs_ram_role → ecs_ram_role  credential_uri → credentials_uri
    (the chain raised) → none
``sts_host`` is the STS host the SDK addressed for the chosen source's own call (AssumeRoleWithOIDC, a
RamRoleArn profile's AssumeRole; ``sts[-vpc].<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com``, else
``sts.aliyuncs.com``), read from the request before the redirect; null when it called no STS.
``fell_through`` names the stsvend source that was at least partly configured but failed, which
Python silently went past (stsvend stops the chain with that source's error instead); else null.
"""

import base64
import difflib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "credential_chain_decisions.json"
SDK = "alibabacloud_credentials"
MARK = "@@RESULT@@ "
ECS_ROLE, ECS_TOKEN, URI_PATH = "EcsTestRole", "ecs-hardened-token-1", "/creds"
MOCKS = {"ecs_access_key_id": "STS.FromEcs", "uri_access_key_id": "STS.FromUri",
         "oidc_access_key_id": "STS.FromOidc", "ram_role_arn_access_key_id": "STS.FromRamRoleArn",
         "ecs_role_name": ECS_ROLE, "uri_path": URI_PATH}
SOURCE_OF = {"env": "environment", "oidc_role_arn": "oidc", "cli_profile": "cli_profile",
             "profile": "credentials_file", "ecs_ram_role": "ecs_ram_role",
             "credential_uri": "credentials_uri"}
ECS_HOST = "100.100.100.200"
STS_HOST = re.compile(r"sts(-vpc)?(\.[a-z0-9-]+)?\.aliyuncs\.com")


# ----------------------------------------------------------------------------- mock servers
def expiration():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))


def sts_creds(key_id, secret, token):
    return {"AccessKeyId": key_id, "AccessKeySecret": secret, "SecurityToken": token,
            "Expiration": expiration()}


class Mock(BaseHTTPRequestHandler):
    kind = ""  # set per server subclass: ecs | uri | sts

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="application/json"):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.kind == "ecs" and self.path == "/latest/api/token" \
                and self.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds"):
            return self.reply(200, ECS_TOKEN, "text/plain")
        self.reply(400, {"Code": "BadRequest"})

    def do_GET(self):
        path = urlsplit(self.path).path
        if self.kind == "ecs":
            token = self.headers.get("X-aliyun-ecs-metadata-token")
            base = "/latest/meta-data/ram/security-credentials/"
            if token is not None and token != ECS_TOKEN:
                return self.reply(401, "bad metadata token", "text/plain")
            if path == base:
                return self.reply(200, ECS_ROLE, "text/plain")
            if path == base + ECS_ROLE:
                body = {"Code": "Success", **sts_creds("STS.FromEcs", "ecs-secret", "ecs-token"),
                        "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                return self.reply(200, body)
            return self.reply(404, "Not Found", "text/plain")
        if self.kind == "uri" and path == URI_PATH:
            return self.reply(200, {"Code": "Success", **sts_creds("STS.FromUri", "uri-secret", "uri-token")})
        if self.kind == "sts":
            return self.sts()
        self.reply(404, "Not Found", "text/plain")

    def do_POST(self):
        self.sts() if self.kind == "sts" else self.reply(404, "Not Found", "text/plain")

    def sts(self):
        params = dict(parse_qsl(urlsplit(self.path).query))
        length = int(self.headers.get("Content-Length") or 0)
        params.update(parse_qsl(self.rfile.read(length).decode()) if length else [])
        action = params.get("Action")
        if action == "AssumeRoleWithOIDC" and all(params.get(k) for k in ("RoleArn", "OIDCProviderArn", "OIDCToken")):
            creds = sts_creds("STS.FromOidc", "oidc-secret", "oidc-token")
        elif action == "AssumeRole" and all(params.get(k) for k in ("RoleArn", "AccessKeyId", "Signature")):
            creds = sts_creds("STS.FromRamRoleArn", "rra-secret", "rra-token")
        else:
            return self.reply(400, {"Code": "MissingParameter", "Message": f"bad request for {action}"})
        self.reply(200, {"RequestId": "00000000-0000-0000-0000-000000000000", "Credentials": creds,
                         "AssumedRoleUser": {"Arn": params["RoleArn"] + "/session", "AssumedRoleId": "300:session"}})


def start(kind):
    server = ThreadingHTTPServer(("127.0.0.1", 0), type(f"Mock_{kind}", (Mock,), {"kind": kind}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ----------------------------------------------------------------------------- scenarios
ACCOUNT = "1234567890123456"
ROLE_ARN = f"acs:ram::{ACCOUNT}:role/stsvend-base"


def _b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


JWT = ".".join([_b64({"alg": "RS256", "kid": "test"}),
                _b64({"iss": "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c123",
                      "sub": "system:serviceaccount:default:stsvend", "aud": ["sts.aliyuncs.com"],
                      "exp": 4102444800, "iat": 1700000000}),
                "c2lnbmF0dXJlLW5vdC1jaGVja2Vk"])
OIDC = {"ALIBABA_CLOUD_ROLE_ARN": f"acs:ram::{ACCOUNT}:role/rrsa-role",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": f"acs:ram::{ACCOUNT}:oidc-provider/ack-rrsa-c123",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "{HOME}/oidc/token"}
TOKEN_FILE = {"oidc/token": JWT}
ENV_AK = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}
URI = {"ALIBABA_CLOUD_CREDENTIALS_URI": "{URI}"}


def profile(name, mode, **fields):
    return {"name": name, "mode": mode, **fields, "region_id": "cn-hangzhou", "output_format": "json",
            "language": "en"}


AK_DEFAULT = profile("default", "AK", access_key_id="LTAI-cli", access_key_secret="cli-secret")
AK_OTHER = profile("other", "AK", access_key_id="LTAI-cli-other", access_key_secret="cli-other-secret")


def cli(current, *profiles):
    text = json.dumps({"current": current, "profiles": list(profiles), "meta_path": ""}, indent=4)
    return {".aliyun/config.json": text + "\n"}


def ini(section="default", key_id="LTAI-ini", path=".alibabacloud/credentials.ini"):
    return {path: f"[{section}]\ntype = access_key\naccess_key_id = {key_id}\naccess_key_secret = ini-secret\n"}


def ini_text(text, path=".alibabacloud/credentials.ini"):
    return {path: text}


REGION = {"ALIBABA_CLOUD_STS_REGION": "cn-beijing"}
VPC = {"ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"}
INI_OIDC = (f"[default]\ntype = oidc_role_arn\nrole_arn = {OIDC['ALIBABA_CLOUD_ROLE_ARN']}\n"
            f"oidc_provider_arn = {OIDC['ALIBABA_CLOUD_OIDC_PROVIDER_ARN']}\n"
            "oidc_token_file_path = {HOME}/oidc/token\nrole_session_name = ini-oidc\n")


def S(name, source, key_id, env=None, files=None, ecs=False, fell_through=None, check=None):
    return {"name": name, "env": env or {}, "files": files or {}, "ecs_metadata": ecs,
            "expect": (source, key_id), "fell_through": fell_through, "check": check}


def hardened(trail):  # every metadata GET carried the token obtained by a PUT with a TTL header
    ecs = [t for t in trail if t["host"] == ECS_HOST]
    return ecs and ecs[0]["method"] == "PUT" and all(t["token"] for t in ecs if t["method"] == "GET")


def no_role_discovery(trail):
    return hardened(trail) and not any(t["path"].endswith("security-credentials/") for t in trail)


def no_sts(trail):
    return not any(STS_HOST.fullmatch(t["host"]) for t in trail)


def sts_hosts(trail):  # the STS hosts the SDK addressed (before the redirect to the mock)
    return [t["host"] for t in trail if STS_HOST.fullmatch(t["host"])]


def sts_at(host):
    return lambda trail: sts_hosts(trail) == [host]


SCENARIOS = [
    S("Environment AccessKey pair only", "environment", "LTAI-env", env=ENV_AK, check=no_sts),
    S("Environment AccessKey pair plus ALIBABA_CLOUD_SECURITY_TOKEN", "environment", "STS.env-token",
      env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.env-token", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret",
           "ALIBABA_CLOUD_SECURITY_TOKEN": "env-security-token"}),
    S("Environment has only ALIBABA_CLOUD_ACCESS_KEY_ID (no secret), nothing else configured", "none", None,
      env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env"}, fell_through="environment"),
    S("Environment has only ALIBABA_CLOUD_ACCESS_KEY_ID (no secret) and a CLI AK profile exists",
      "cli_profile", "LTAI-cli", env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env"},
      files=cli("default", AK_DEFAULT), fell_through="environment"),
    S("OIDC (RRSA) only: the three variables and a token file under HOME", "oidc", "STS.FromOidc",
      env=OIDC, files=TOKEN_FILE),
    S("Environment AccessKey and OIDC both configured: environment comes first", "environment", "LTAI-env",
      env={**ENV_AK, **OIDC}, files=TOKEN_FILE, check=no_sts),
    S("OIDC configured but its token file does not exist; ECS metadata reachable", "ecs_ram_role",
      "STS.FromEcs", env={**OIDC, "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "{HOME}/oidc/missing-token"},
      ecs=True, fell_through="oidc"),
    S("OIDC only partly configured (no ALIBABA_CLOUD_OIDC_PROVIDER_ARN); ECS metadata reachable",
      "ecs_ram_role", "STS.FromEcs",
      env={k: v for k, v in OIDC.items() if k != "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"}, files=TOKEN_FILE,
      ecs=True, fell_through="oidc", check=no_sts),
    S("CLI config.json, current profile in mode AK", "cli_profile", "LTAI-cli", files=cli("default", AK_DEFAULT)),
    S("CLI config.json, current profile in mode StsToken", "cli_profile", "STS.cli-sts",
      files=cli("sts", profile("sts", "StsToken", access_key_id="STS.cli-sts", access_key_secret="cli-sts-secret",
                               sts_token="cli-sts-token"))),
    S("CLI config.json, current profile in mode RamRoleArn (AssumeRole at STS)", "cli_profile",
      "STS.FromRamRoleArn",
      files=cli("rra", profile("rra", "RamRoleArn", access_key_id="LTAI-cli-rra", access_key_secret="rra-base-secret",
                               ram_role_arn=ROLE_ARN, ram_session_name="cli-session", expired_seconds=3600))),
    S("CLI config.json, current profile in mode EcsRamRole; ECS metadata reachable", "cli_profile",
      "STS.FromEcs", files=cli("ecs", profile("ecs", "EcsRamRole", ram_role_name=ECS_ROLE)), ecs=True,
      check=no_role_discovery),
    S("CLI config.json: ALIBABA_CLOUD_PROFILE selects a profile that is not current", "cli_profile",
      "LTAI-cli-other", env={"ALIBABA_CLOUD_PROFILE": "other"}, files=cli("default", AK_DEFAULT, AK_OTHER)),
    S("CLI config.json without ALIBABA_CLOUD_PROFILE: the profile named by \"current\" is used",
      "cli_profile", "LTAI-cli-other", files=cli("other", AK_DEFAULT, AK_OTHER)),
    S("ALIBABA_CLOUD_PROFILE names a profile missing from config.json; the INI file has that section",
      "credentials_file", "LTAI-ini-missing", env={"ALIBABA_CLOUD_PROFILE": "missing"},
      files={**cli("default", AK_DEFAULT), **ini("missing", "LTAI-ini-missing")}, fell_through="cli_profile"),
    S("Malformed CLI config.json; an INI file is present", "credentials_file", "LTAI-ini",
      files={".aliyun/config.json": '{"current": "default", "profiles": [\n', **ini()}, fell_through="cli_profile"),
    S("ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true skips config.json; the INI file is used", "credentials_file",
      "LTAI-ini", env={"ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"}, files={**cli("default", AK_DEFAULT), **ini()}),
    S("INI file at the default path ~/.alibabacloud/credentials.ini, type = access_key", "credentials_file",
      "LTAI-ini", files=ini()),
    S("INI file at a path given by ALIBABA_CLOUD_CREDENTIALS_FILE", "credentials_file", "LTAI-ini-custom",
      env={"ALIBABA_CLOUD_CREDENTIALS_FILE": "{HOME}/custom/creds.ini"},
      files={**ini(key_id="LTAI-ini-custom", path="custom/creds.ini"), **ini(key_id="LTAI-ini-default")}),
    S("INI file only at ~/.alibabacloud/credentials (no .ini suffix), nothing else", "none", None,
      files=ini(key_id="LTAI-ini-noext", path=".alibabacloud/credentials")),
    S("CLI config.json and INI file both present: the CLI profile comes first", "cli_profile", "LTAI-cli",
      files={**cli("default", AK_DEFAULT), **ini()}),
    S("ECS metadata only (hardened mode, role name discovered)", "ecs_ram_role", "STS.FromEcs", ecs=True,
      check=hardened),
    S("ECS metadata with ALIBABA_CLOUD_ECS_METADATA naming the role", "ecs_ram_role", "STS.FromEcs",
      env={"ALIBABA_CLOUD_ECS_METADATA": ECS_ROLE}, ecs=True, check=no_role_discovery),
    S("ECS metadata with ALIBABA_CLOUD_IMDSV1_DISABLED=true (hardened mode works)", "ecs_ram_role",
      "STS.FromEcs", env={"ALIBABA_CLOUD_IMDSV1_DISABLED": "true"}, ecs=True, check=hardened),
    S("ALIBABA_CLOUD_ECS_METADATA names a role the metadata service does not know; URI configured",
      "credentials_uri", "STS.FromUri", env={"ALIBABA_CLOUD_ECS_METADATA": "NoSuchRole", **URI}, ecs=True,
      fell_through="ecs_ram_role"),
    S("ECS metadata and credentials URI both available: ECS comes first", "ecs_ram_role", "STS.FromEcs",
      env=URI, ecs=True),
    S("ALIBABA_CLOUD_ECS_METADATA_DISABLED=true with metadata reachable; credentials URI configured",
      "credentials_uri", "STS.FromUri", env={"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", **URI}, ecs=True,
      check=lambda trail: not any(t["host"] == ECS_HOST for t in trail)),
    S("Credentials URI only (off-cloud: metadata refused)", "credentials_uri", "STS.FromUri", env=URI),
    S("Nothing configured (off-cloud: metadata refused)", "none", None),
    # --- issue 17: the SDKs' STS endpoint settings, for the base credentials' own STS calls
    S("OIDC with ALIBABA_CLOUD_STS_REGION: AssumeRoleWithOIDC at sts.<region>.aliyuncs.com", "oidc",
      "STS.FromOidc", env={**OIDC, **REGION}, files=TOKEN_FILE, check=sts_at("sts.cn-beijing.aliyuncs.com")),
    S("OIDC with ALIBABA_CLOUD_STS_REGION and ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true: sts-vpc.<region>", "oidc",
      "STS.FromOidc", env={**OIDC, **REGION, **VPC}, files=TOKEN_FILE,
      check=sts_at("sts-vpc.cn-beijing.aliyuncs.com")),
    S("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=TRUE counts in any case", "oidc", "STS.FromOidc",
      env={**OIDC, **REGION, "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "TRUE"}, files=TOKEN_FILE,
      check=sts_at("sts-vpc.cn-beijing.aliyuncs.com")),
    S("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=1 is not true: the public regional endpoint", "oidc", "STS.FromOidc",
      env={**OIDC, **REGION, "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "1"}, files=TOKEN_FILE,
      check=sts_at("sts.cn-beijing.aliyuncs.com")),
    S("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true without a region: the SDK calls sts.aliyuncs.com", "oidc",
      "STS.FromOidc", env={**OIDC, **VPC}, files=TOKEN_FILE, check=sts_at("sts.aliyuncs.com")),
    S("CLI RamRoleArn profile with ALIBABA_CLOUD_STS_REGION and the VPC switch", "cli_profile",
      "STS.FromRamRoleArn", env={"ALIBABA_CLOUD_STS_REGION": "cn-hangzhou", **VPC},
      files=cli("rra", profile("rra", "RamRoleArn", access_key_id="LTAI-cli-rra", access_key_secret="rra-base-secret",
                               ram_role_arn=ROLE_ARN, ram_session_name="cli-session", expired_seconds=3600)),
      check=sts_at("sts-vpc.cn-hangzhou.aliyuncs.com")),
    S("INI ram_role_arn section with ALIBABA_CLOUD_STS_REGION", "credentials_file", "STS.FromRamRoleArn",
      env={"ALIBABA_CLOUD_STS_REGION": "ap-southeast-1"},
      files=ini_text(f"[default]\ntype = ram_role_arn\naccess_key_id = LTAI-ini-rra\naccess_key_secret = s\n"
                     f"role_arn = {ROLE_ARN}\nrole_session_name = ini-session\n"),
      check=sts_at("sts.ap-southeast-1.aliyuncs.com")),
    S("An unknown ALIBABA_CLOUD_ name (a typo of ALIBABA_CLOUD_STS_REGION) is ignored", "environment", "LTAI-env",
      env={**ENV_AK, "ALIBABA_CLOUD_STS_REGON": "cn-beijing"}, check=no_sts),
    # --- issue 17: the credentials file's oidc_role_arn type and its syntax, as the SDK's configparser reads it
    S("INI oidc_role_arn section (AssumeRoleWithOIDC with the section's role, provider and token file)",
      "credentials_file", "STS.FromOidc", files={**TOKEN_FILE, **ini_text(INI_OIDC)}, check=sts_at("sts.aliyuncs.com")),
    S("INI oidc_role_arn section with ALIBABA_CLOUD_STS_REGION and the VPC switch", "credentials_file",
      "STS.FromOidc", env={"ALIBABA_CLOUD_STS_REGION": "cn-shenzhen", **VPC},
      files={**TOKEN_FILE, **ini_text(INI_OIDC)}, check=sts_at("sts-vpc.cn-shenzhen.aliyuncs.com")),
    S("INI: quotes are part of the value", "credentials_file", '"LTAI-quoted"',
      files=ini_text('[default]\ntype = access_key\naccess_key_id = "LTAI-quoted"\naccess_key_secret = \'s\'\n')),
    S("INI: '#' and ';' comment lines, a '#' later in a line ends the value, a ';' does not",
      "credentials_file", "LTAI-ini;semi",
      files=ini_text("# a comment\n; another\n[default]\n  # indented comment\ntype = access_key # the type\n"
                     "access_key_id = LTAI-ini;semi#tail\naccess_key_secret = s ; t\n")),
    S("INI: ':' as delimiter, upper-case keys, indented lines, CRLF line ends", "credentials_file", "LTAI-ini-colon",
      files=ini_text("  [default]\r\n  Type: access_key\r\n  ACCESS_KEY_ID :LTAI-ini-colon\r\n"
                     "  Access_Key_Secret= s\r\n")),
    S("INI: '%%' is a percent sign, '%(key)s' another key's value, [DEFAULT] is inherited", "credentials_file",
      "LTAI-100%-interp",
      files=ini_text("[DEFAULT]\ntype = access_key\nprefix = LTAI-100%%\n[default]\n"
                     "access_key_id = %(PREFIX)s-interp\naccess_key_secret = s\n")),
    S("INI: a lone '%' in another section spoils the whole file; ECS metadata reachable", "ecs_ram_role",
      "STS.FromEcs", files=ini_text("[default]\ntype = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = s\n"
                                    "[other]\naccess_key_secret = 100%\n"), ecs=True, fell_through="credentials_file"),
    S("INI: a key twice in a section spoils the file; ECS metadata reachable", "ecs_ram_role", "STS.FromEcs",
      files=ini_text("[default]\ntype = access_key\naccess_key_id = LTAI-a\nAccess_Key_Id = LTAI-b\n"
                     "access_key_secret = s\n"), ecs=True, fell_through="credentials_file"),
    S("INI: '[ default ]' is the section ' default ', not 'default'; ECS metadata reachable", "ecs_ram_role",
      "STS.FromEcs", files=ini_text("[ default ]\ntype = access_key\naccess_key_id = LTAI-ini\naccess_key_secret = s\n"),
      ecs=True, fell_through="credentials_file"),
    S("INI: a line indented under a key continues its value (the type becomes unknown); ECS metadata reachable",
      "ecs_ram_role", "STS.FromEcs",
      files=ini_text("[default]\ntype = access_key\n    access_key_id = LTAI-ini\naccess_key_secret = s\n"),
      ecs=True, fell_through="credentials_file"),
    S("INI: a UTF-8 byte order mark is text before the first section; ECS metadata reachable", "ecs_ram_role",
      "STS.FromEcs", files=ini_text("\ufeff[default]\ntype = access_key\naccess_key_id = LTAI-ini\n"
                                    "access_key_secret = s\n"), ecs=True, fell_through="credentials_file"),
    S("INI: 'enable = false' is not looked at by the SDK", "credentials_file", "LTAI-ini-enabled",
      files=ini_text("[default]\nenable = false\ntype = access_key\naccess_key_id = LTAI-ini-enabled\n"
                     "access_key_secret = s\n")),
]


# ----------------------------------------------------------------------------- one scenario (child)
def run_one(payload):
    """Runs in a fresh process whose os.environ is exactly the scenario's; prints one result line."""
    from Tea.core import TeaCore
    real_do_action, trail = TeaCore.do_action, []

    def redirected(request, runtime_option=None):  # the single monkeypatch: see the module docstring
        host = request.headers.get("host", "")
        trail.append({"method": request.method, "host": host, "path": request.pathname,
                      "action": (request.query or {}).get("Action"),
                      "token": "X-aliyun-ecs-metadata-token" in request.headers})
        if host == ECS_HOST:
            request.headers["host"], request.port = "127.0.0.1", payload["ecs_port"]
        elif STS_HOST.fullmatch(host):
            request.protocol, request.headers["host"], request.port = "http", "127.0.0.1", payload["sts_port"]
        return real_do_action(request, runtime_option)

    TeaCore.do_action = staticmethod(redirected)
    from alibabacloud_credentials.client import Client
    try:
        credential = Client().get_credential()
        result = {"provider_name": credential.get_provider_name(), "access_key_id": credential.get_access_key_id()}
    except Exception as e:  # the chain's own error (CredentialException)
        result = {"error": (str(e) or type(e).__name__).splitlines()[0]}
    print(MARK + json.dumps({"python": result, "trail": trail}), flush=True)


# ----------------------------------------------------------------------------- driver (parent)
def normalize(text, home, uri, ports):
    text = text.replace(home, "{HOME}").replace(uri, "{URI}")
    for port, label in ports.items():
        text = re.sub(rf"(port=|127\.0\.0\.1:){port}\b", rf"\g<1>{label}", text)
    return re.sub(r" object at 0x[0-9a-fA-F]+", " object", text)


def decide(scenario, mocks):
    home = tempfile.mkdtemp(prefix="chainhome-")
    uri = f"http://127.0.0.1:{mocks['uri'].server_port}{URI_PATH}"
    sub = lambda s: s.replace("{HOME}", home).replace("{URI}", uri)  # noqa: E731
    for rel, text in scenario["files"].items():
        path = Path(home, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sub(text))
    env = {k: sub(v) for k, v in scenario["env"].items()}
    env.update(HOME=home, PATH=os.environ.get("PATH", "/usr/bin:/bin"))
    ecs_port = mocks["ecs"].server_port if scenario["ecs_metadata"] else mocks["closed"].getsockname()[1]
    payload = {"ecs_port": ecs_port, "sts_port": mocks["sts"].server_port}
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(payload)],
                              env=env, cwd=home, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or len(lines) != 1:
        sys.exit(f"scenario {scenario['name']!r}: child failed (rc={proc.returncode})\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(lines[0][len(MARK):])
    ports = {mocks["ecs"].server_port: "{ECS_PORT}", mocks["closed"].getsockname()[1]: "{ECS_PORT}",
             mocks["sts"].server_port: "{STS_PORT}"}
    python = {k: normalize(v, home, uri, ports) for k, v in out["python"].items()}
    return python, out["trail"]


def generate():
    from importlib.metadata import version
    mocks = {kind: start(kind) for kind in ("ecs", "uri", "sts")}
    mocks["closed"] = socket.socket()  # bound, never listening: connections are refused at once
    mocks["closed"].bind(("127.0.0.1", 0))
    records, problems = [], []
    for i, sc in enumerate(SCENARIOS, 1):
        python, trail = decide(sc, mocks)
        if "error" in python:
            source = "none"
        else:
            first = python["provider_name"].split("/")[1] if python["provider_name"].startswith("default/") else ""
            source = SOURCE_OF.get(first, f"UNMAPPED:{python['provider_name']}")
        got = (source, python.get("access_key_id"))
        shown = f"{python['provider_name']}, {python['access_key_id']}" if "error" not in python else \
            "error, failed: " + ", ".join(re.findall(r"'(\w+)CredentialsProvider: ", python["error"]))
        print(f"{i:2}. {sc['name']}\n      → {shown}")
        if got != sc["expect"]:
            problems.append(f"{sc['name']}: expected {sc['expect']}, Python gave {got}")
        if sc["check"] and not sc["check"](trail):
            problems.append(f"{sc['name']}: request trail check failed: {trail}")
        hosts = sts_hosts(trail)
        records.append({"name": sc["name"], "env": sc["env"], "files": sc["files"],
                        "ecs_metadata": sc["ecs_metadata"], "python": python, "source": source,
                        "sts_host": hosts[0] if hosts else None, "fell_through": sc["fell_through"]})
    for server in (mocks["ecs"], mocks["uri"], mocks["sts"]):
        server.shutdown()
    mocks["closed"].close()
    if problems:
        sys.exit("sanity checks failed:\n  " + "\n  ".join(problems))
    counts = {}
    for r in records:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    print(f"{len(records)} scenarios, all as expected; by source: "
          + ", ".join(f"{k}={v}" for k, v in counts.items())
          + f"; Python fell through a configured source in {sum(1 for r in records if r['fell_through'])}")
    doc = {"generator": "scripts/gen_chain_decisions.py", "sdk": f"{SDK}=={version(SDK)}", "mocks": MOCKS,
           "scenarios": records}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv):
    if len(argv) == 3 and argv[1] == "--one":
        return run_one(json.loads(argv[2]))
    if argv[1:] not in ([], ["--check"]):
        sys.exit(f"usage: {argv[0]} [--check]")
    try:
        import alibabacloud_credentials  # noqa: F401  (only the children use it; fail early and clearly)
    except ImportError:
        sys.exit("alibabacloud_credentials is not installed: python3 -m venv /tmp/chainvenv && "
                 "/tmp/chainvenv/bin/pip install -r scripts/requirements-chain.txt, then run with "
                 "/tmp/chainvenv/bin/python3")
    text = generate()
    if argv[1:] == ["--check"]:
        current = FIXTURE.read_text() if FIXTURE.exists() else ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "committed", "generated", lineterm="")
            sys.exit(f"{FIXTURE.relative_to(REPO_ROOT)} is out of date; rerun scripts/gen_chain_decisions.py\n"
                     + "\n".join(list(diff)[:60]))
        print(f"{FIXTURE.relative_to(REPO_ROOT)} is up to date")
        return
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text)
    print(f"wrote {FIXTURE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main(sys.argv)
