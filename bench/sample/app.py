"""The baseline: Alibaba's sample token server for SLS web tracking, as its guide ships it.

Every `GET /get_sts_token` builds an STS client from the environment's AccessKey (through
`alibabacloud_credentials`' default chain) and calls `AssumeRole` with the role ARN and a fixed
session name (no policy, no duration), returning the `Credentials` map as JSON. No cache, no
caller check, no limit.

The only change from the guide: `BENCH_STS_ENDPOINT` (host:port, plain HTTP) points it at the
benchmark's mock STS instead of `sts.cn-hangzhou.aliyuncs.com`.

    flask --app app run            # what the guide does (the Flask development server)
    gunicorn -k gthread ... app:app  # a fairer peer
"""

import os

from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.models import Config
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/get_sts_token", methods=["GET"])
def get_sts_token():
    config = Config(credential=CredentialClient(), region_id="cn-hangzhou")
    config.endpoint = os.environ.get("BENCH_STS_ENDPOINT", "sts.cn-hangzhou.aliyuncs.com")
    config.protocol = "http" if "BENCH_STS_ENDPOINT" in os.environ else "https"
    client = StsClient(config)
    request = sts_models.AssumeRoleRequest(
        role_arn=os.environ["ALIBABA_CLOUD_ROLE_ARN"],
        role_session_name="sls-web-track",
    )
    response = client.assume_role(request)
    return jsonify(response.body.credentials.to_map())
