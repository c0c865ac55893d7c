"""The AWS JSON 1.1 protocol and SigV4 authentication, tested with botocore's own signer and
boto3 clients: every refusal must carry the error code AWS uses."""

import base64
import datetime
import json
import urllib.request
from unittest import mock

import botocore.auth
import pytest
from botocore.exceptions import ClientError

from conftest import AKID, REGION, SECRET, Server, error_code


def test_every_response_has_a_request_id(server):
    status, body, headers = server.raw("TrentService.ListKeys", "{}")
    assert status == 200 and "Keys" in body
    assert headers.get("x-amzn-requestid")
    status, body, headers = server.raw("TrentService.ListKeys", "{}", sign=False)
    assert headers.get("x-amzn-requestid")
    with urllib.request.urlopen(server.endpoint + "/healthz") as r:
        assert r.status == 200 and r.headers.get("x-amzn-requestid")


def test_boto3_exposes_request_id(kms):
    assert kms.list_keys()["ResponseMetadata"]["RequestId"]


def test_unknown_operation(server):
    status, body, _ = server.raw("TrentService.LaunchRockets", "{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body, _ = server.raw("SomeOtherService.ListKeys", "{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")


def test_malformed_json_and_wrong_types(server):
    for payload in ["{not json", '{"KeyId": 5, "Plaintext": "eA=="}', "[1,2]", '{"Limit": "ten"}']:
        target = "TrentService.ListKeys" if "Limit" in payload or payload.startswith("[") else "TrentService.Encrypt"
        status, body, _ = server.raw(target, payload)
        assert (status, body["__type"]) == (400, "SerializationException"), payload
        assert body["message"]


def test_bad_base64(server, kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    status, body, _ = server.raw("TrentService.Encrypt", json.dumps({"KeyId": key, "Plaintext": "@@not base64@@"}))
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body, _ = server.raw("TrentService.Decrypt", json.dumps({"CiphertextBlob": "!!!"}))
    assert (status, body["__type"]) == (400, "SerializationException")


def test_missing_required_member_is_validation(server):
    status, body, _ = server.raw("TrentService.Encrypt", json.dumps({"Plaintext": base64.b64encode(b"x").decode()}))
    assert (status, body["__type"]) == (400, "ValidationException")
    assert body["message"] == "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"


def test_body_limit(server):
    status, body, _ = server.raw("TrentService.ListKeys", "{" + " " * (300 * 1024) + "}")
    assert (status, body["__type"]) == (413, "RequestEntityTooLargeException")


def test_missing_authentication(server):
    status, body, _ = server.raw("TrentService.ListKeys", "{}", sign=False)
    assert (status, body["__type"]) == (403, "MissingAuthenticationTokenException")


def test_wrong_secret_is_invalid_signature(server):
    bad = server.client(secret="definitely-not-the-secret-000000000000")
    with pytest.raises(ClientError) as e:
        bad.list_keys()
    assert error_code(e) == "InvalidSignatureException"
    assert "signature we calculated does not match" in e.value.response["Error"]["Message"]


def test_tampered_signature_and_body(server):
    # A correctly signed request whose body is changed after signing.
    import botocore.awsrequest
    import botocore.credentials

    req = botocore.awsrequest.AWSRequest(
        method="POST", url=server.endpoint + "/", data=b"{}",
        headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(AKID, SECRET), "kms", REGION).add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=b'{"Limit": 1}', headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r)
    assert json.loads(e.value.read())["__type"] == "InvalidSignatureException"
    # A signature with one hex digit changed.
    headers = dict(prepared.headers)
    auth = headers["Authorization"]
    headers["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    r = urllib.request.Request(prepared.url, data=prepared.body, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r)
    assert json.loads(e.value.read())["__type"] == "InvalidSignatureException"


def test_unknown_access_key(server):
    with pytest.raises(ClientError) as e:
        server.client(akid="AKIAUNKNOWNUNKNOWN00").list_keys()
    assert error_code(e) == "UnrecognizedClientException"


def test_session_token_is_not_accepted(server):
    status, body, _ = server.raw("TrentService.ListKeys", "{}", headers={"X-Amz-Security-Token": "token"})
    assert body["__type"] == "UnrecognizedClientException"


@pytest.mark.parametrize("minutes,fragment", [(-16, "Signature expired"), (16, "Signature not yet current")])
def test_clock_skew(server, minutes, fragment):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        with pytest.raises(ClientError) as e:
            server.client().list_keys()
    assert error_code(e) == "InvalidSignatureException"
    assert fragment in e.value.response["Error"]["Message"]


def test_small_skew_is_accepted(server):
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        assert "Keys" in server.client().list_keys()


def test_wrong_service_in_scope(server):
    status, body, _ = server.raw("TrentService.ListKeys", "{}", service="s3")
    assert body["__type"] == "InvalidSignatureException"
    assert "correct service" in body["message"]


def test_keys_live_in_the_region_of_the_request(server):
    east = server.client(region="us-east-1")
    west = server.client(region="eu-west-1")
    k = east.create_key()["KeyMetadata"]
    blob = east.encrypt(KeyId=k["KeyId"], Plaintext=b"regional")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        west.describe_key(KeyId=k["KeyId"])
    assert error_code(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:
        west.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        west.describe_key(KeyId=k["Arn"])
    assert error_code(e) == "NotFoundException"
    wk = west.create_key()["KeyMetadata"]
    assert wk["Arn"].startswith("arn:aws:kms:eu-west-1:")
    assert k["KeyId"] not in [x["KeyId"] for x in west.list_keys()["Keys"]]
    assert wk["KeyId"] not in [x["KeyId"] for x in east.list_keys()["Keys"]]


def test_allowed_regions_setting(tmp_root):
    s = Server(tmp_root / "regions", args=["--allowed-regions", "eu-central-1,us-west-2"]).start()
    try:
        assert "Keys" in s.client(region="eu-central-1").list_keys()
        with pytest.raises(ClientError) as e:
            s.client(region="us-east-1").list_keys()
        assert error_code(e) == "InvalidSignatureException"
        assert "valid region" in e.value.response["Error"]["Message"]
    finally:
        s.stop()
