"""AWS KMS's External Key Store proxy API served by Clavis (issue #22, part 2), driven as AWS
KMS drives it: JSON POSTs signed with SigV4 for the service `kms-xks-proxy`, sent both by curl
(`--aws-sigv4`, as the specification's appendix D does) and by Python with botocore's signer,
against the real binary (over HTTPS too). Every case of the specification: the four calls, AAD,
metadata and integrity value, tampering, unknown and disabled keys, credentials, URI prefix,
GET, sizes; and that XKS and KMS credentials never cross over."""

import base64
import hashlib
import json
import subprocess
import urllib.error
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from conftest import ACCOUNT, REGION, Server

B64 = base64.b64encode


def b64(data):
    return B64(data).decode()


def unb64(text):
    return base64.b64decode(text)


def meta(op="Encrypt", key_arn="arn:aws:kms:us-east-1:111122223333:key/x"):
    return {
        "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
        "kmsKeyArn": key_arn,
        "kmsOperation": op,
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "kmsViaService": "ebs",
        "someFutureField": "accepted",
    }


def post(endpoint, path, body, akid, secret, *, method="POST", raw=None, context=None, region=REGION):
    """Signs with botocore as AWS KMS signs XKS calls; returns (status, json)."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = botocore.awsrequest.AWSRequest(method=method, url=endpoint + path, data=data, headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(akid, secret), "kms-xks-proxy", region).add_auth(req)
    prepared = req.prepare()
    payload = prepared.body if method == "POST" else None
    r = urllib.request.Request(prepared.url, data=payload, headers=dict(prepared.headers), method=method)
    try:
        with urllib.request.urlopen(r, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text or b"{}")
        except ValueError:
            return e.code, {"raw": text.decode(errors="replace")}


class Xks:
    """A server, a key, and an XKS credential for its account."""

    def __init__(self, server, prefix=""):
        self.s, self.prefix = server, prefix
        self.kms = server.client()
        self.key = self.kms.create_key()["KeyMetadata"]
        p = server.clavis("admin", "xks-credential", "create", "--xks-path-prefix", prefix, timeout=30, check=False)
        assert p.returncode == 0, p.stderr
        self.config = json.loads(p.stdout)
        cred = self.config["XksProxyAuthenticationCredential"]
        self.akid, self.secret = cred["AccessKeyId"], cred["RawSecretAccessKey"]

    def call(self, path, body, **kw):
        akid, secret = kw.pop("akid", self.akid), kw.pop("secret", self.secret)
        return post(self.s.endpoint, f"{self.prefix}/kms/xks/v1/{path}", body, akid, secret, **kw)

    def encrypt(self, plaintext, aad=None, key=None, cdiv=False):
        body = {"requestMetadata": meta(), "plaintext": b64(plaintext), "encryptionAlgorithm": "AES_GCM"}
        if aad is not None:
            body["additionalAuthenticatedData"] = b64(aad)
        if cdiv:
            body["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256"
        return self.call(f"keys/{key or self.key['KeyId']}/encrypt", body)

    def decrypt(self, enc, aad=None, key=None, **changes):
        body = {
            "requestMetadata": meta("Decrypt"),
            "ciphertext": enc["ciphertext"],
            "ciphertextMetadata": enc.get("ciphertextMetadata"),
            "initializationVector": enc["initializationVector"],
            "authenticationTag": enc["authenticationTag"],
            "encryptionAlgorithm": "AES_GCM",
        }
        if body["ciphertextMetadata"] is None:
            del body["ciphertextMetadata"]
        if aad is not None:
            body["additionalAuthenticatedData"] = b64(aad)
        body.update(changes)
        return self.call(f"keys/{key or self.key['KeyId']}/decrypt", body)


@pytest.fixture()
def xks(fresh_server):
    fresh_server.start()
    return Xks(fresh_server)


def test_console_config_file_and_credential_format(xks):
    assert xks.config["XksProxyUriPath"] == "/kms/xks/v1"
    assert 20 <= len(xks.akid) <= 30 and set(xks.akid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert 43 <= len(xks.secret) <= 64
    assert xks.config["Arn"].startswith(f"arn:aws:iam::{ACCOUNT}:user/xks/")


def test_round_trips_with_and_without_aad_and_the_integrity_value(xks):
    for aad in [None, b"project=nile,department=marketing", b"", bytes(8192)]:
        status, enc = xks.encrypt(b"Hello World!", aad=aad, cdiv=True)
        assert status == 200, enc
        assert len(unb64(enc["ciphertext"])) == 12
        assert len(unb64(enc["initializationVector"])) == 12 and len(unb64(enc["authenticationTag"])) == 16
        assert len(unb64(enc["ciphertextMetadata"])) <= 20
        parts = [aad or b"", unb64(enc["ciphertextMetadata"]), unb64(enc["initializationVector"]), unb64(enc["ciphertext"]),
                 unb64(enc["authenticationTag"])]
        assert unb64(enc["ciphertextDataIntegrityValue"]) == hashlib.sha256(b"".join(parts)).digest()
        status, dec = xks.decrypt(enc, aad=aad)
        assert status == 200, dec
        assert unb64(dec["plaintext"]) == b"Hello World!"
    # Without the integrity algorithm there is no integrity value.
    status, enc = xks.encrypt(b"x")
    assert status == 200 and "ciphertextDataIntegrityValue" not in enc


def test_tampering_is_invalid_ciphertext(xks):
    status, enc = xks.encrypt(b"secret data", aad=b"aad")
    assert status == 200

    def flip(field):
        raw = bytearray(unb64(enc[field]))
        raw[0] ^= 1
        return b64(bytes(raw))

    cases = [
        {"aad": b"aaD"},
        {"aad": None},
        {"ciphertext": flip("ciphertext")},
        {"ciphertextMetadata": flip("ciphertextMetadata")},
        {"initializationVector": flip("initializationVector")},
        {"authenticationTag": flip("authenticationTag")},
        {"initializationVector": b64(bytes(16))},
    ]
    for case in cases:
        aad = case.pop("aad", b"aad")
        status, body = xks.decrypt(enc, aad=aad, **case)
        assert (status, body.get("errorName")) == (400, "InvalidCiphertextException"), (case, body)
    # Metadata moved into the AAD does not decrypt (the lengths are bound).
    status, body = xks.decrypt({**enc, "ciphertextMetadata": None}, aad=b"aad" + unb64(enc["ciphertextMetadata"]))
    assert body.get("errorName") == "InvalidCiphertextException", body


def test_metadata_disabled_unknown_and_rotation(xks):
    key_id = xks.key["KeyId"]
    status, body = xks.call(f"keys/{key_id}/metadata", {"requestMetadata": meta("DescribeKey")})
    assert (status, body) == (200, {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"})
    status, old = xks.encrypt(b"before rotation")
    xks.kms.rotate_key_on_demand(KeyId=key_id)
    status, new = xks.encrypt(b"after rotation")
    assert new["ciphertextMetadata"] != old["ciphertextMetadata"]
    assert unb64(xks.decrypt(old)[1]["plaintext"]) == b"before rotation"
    assert unb64(xks.decrypt(new)[1]["plaintext"]) == b"after rotation"
    xks.kms.disable_key(KeyId=key_id)
    status, body = xks.call(f"keys/{key_id}/metadata", {"requestMetadata": meta("DescribeKey")})
    assert (status, body["keyStatus"]) == (200, "DISABLED")
    status, body = xks.encrypt(b"x")
    assert (status, body["errorName"]) == (400, "InvalidStateException")
    status, body = xks.decrypt(old)
    assert (status, body["errorName"]) == (400, "InvalidStateException")
    xks.kms.enable_key(KeyId=key_id)
    for unknown in ["00000000-0000-4000-8000-000000000000", "not-a-key"]:
        status, body = xks.encrypt(b"x", key=unknown)
        assert (status, body["errorName"]) == (404, "KeyNotFoundException"), body
    # An asymmetric key is not an XKS key.
    rsa = xks.kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    status, body = xks.encrypt(b"x", key=rsa)
    assert (status, body["errorName"]) == (400, "InvalidKeyUsageException")


def test_another_accounts_key_is_not_found(xks):
    p = xks.s.clavis("admin", "account", "create", "--name", "other", timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    other = json.loads(p.stdout)
    theirs = xks.s.client(akid=other["AccessKeyId"], secret=other["SecretAccessKey"]).create_key()["KeyMetadata"]["KeyId"]
    status, body = xks.encrypt(b"x", key=theirs)
    assert (status, body["errorName"]) == (404, "KeyNotFoundException"), body


def test_credentials_never_cross_between_xks_and_kms(xks):
    from conftest import AKID, SECRET

    status, body = xks.call("health", {"requestMetadata": {"kmsRequestId": "r", "kmsOperation": "KmsHealthCheck"}}, secret="x" * 44)
    assert (status, body["errorName"]) == (401, "AuthenticationFailedException")
    # A KMS access key cannot sign XKS calls...
    status, body = xks.call("health", {}, akid=AKID, secret=SECRET)
    assert (status, body["errorName"]) == (401, "AuthenticationFailedException")
    # ...nor an XKS credential KMS calls.
    with pytest.raises(Exception) as e:
        xks.s.client(akid=xks.akid, secret=xks.secret).list_keys()
    assert "UnrecognizedClientException" in str(e.value)
    # Signed for another service: refused.
    req = botocore.awsrequest.AWSRequest(method="POST", url=xks.s.endpoint + "/kms/xks/v1/health", data=b"{}")
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(xks.akid, xks.secret), "kms", REGION).add_auth(req)
    p = req.prepare()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(p.url, data=p.body, headers=dict(p.headers), method="POST"), timeout=10)
    assert e.value.code == 401


def test_health_get_sizes_and_validation(xks):
    for body in [{"requestMetadata": {"kmsRequestId": "r", "kmsOperation": "KmsHealthCheck"}}, None]:
        status, health = xks.call("health", body, raw=b"" if body is None else None)
        assert status == 200, health
        assert health["xksProxyFleetSize"] >= 1 and health["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"
    status, _ = xks.call("health", None, method="GET", raw=b"")
    assert status == 405
    status, enc = xks.encrypt(bytes(4300))
    assert status == 200 and len(unb64(enc["ciphertext"])) == 4300
    status, body = xks.encrypt(bytes(4301))
    assert (status, body["errorName"]) == (400, "ValidationException")
    status, body = xks.encrypt(b"x", aad=bytes(8193))
    assert (status, body["errorName"]) == (400, "ValidationException")
    key = xks.key["KeyId"]
    for bad in [
        {"requestMetadata": meta(), "plaintext": "not base64!", "encryptionAlgorithm": "AES_GCM"},
        {"requestMetadata": meta(), "encryptionAlgorithm": "AES_GCM"},
        {"plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"},
        {"requestMetadata": {"kmsOperation": "Encrypt"}, "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"},
        {"requestMetadata": meta(), "plaintext": b64(b"x")},
        {"requestMetadata": meta(), "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM",
         "ciphertextDataIntegrityValueAlgorithm": "MD5"},
    ]:
        status, body = xks.call(f"keys/{key}/encrypt", bad)
        assert (status, body["errorName"]) == (400, "ValidationException"), (bad, body)
    status, body = xks.call(f"keys/{key}/encrypt", None, raw=b"{not json")
    assert (status, body["errorName"]) == (400, "ValidationException")
    status, body = xks.call(f"keys/{key}/encrypt", {"requestMetadata": meta(), "plaintext": b64(b"x"), "encryptionAlgorithm": "RSA"})
    assert (status, body["errorName"]) == (501, "UnsupportedOperationException")
    status, body = xks.call(f"keys/{key}/sign", {"requestMetadata": meta()})
    assert (status, body["errorName"]) == (404, "InvalidUriPathException")


def test_requests_are_audited_with_the_request_metadata(xks):
    status, _ = xks.encrypt(b"x")
    assert status == 200
    status, body, _ = xks.s.raw(
        "ClavisAdmin.LookupEvents",
        json.dumps({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "XksEncrypt"}], "MaxResults": 1}),
    )
    assert status == 200, body
    record = json.loads(body["Events"][0]["CloudTrailEvent"])
    assert record["userIdentity"]["arn"] == xks.config["Arn"]
    params = record["requestParameters"]
    assert params["requestMetadata"]["awsPrincipalArn"] == "arn:aws:iam::123456789012:user/Alice"
    assert params["requestMetadata"]["kmsRequestId"] == "4112f4d6-db54-4af4-ae30-c55a22a8dfae"
    assert params["externalKeyId"] == xks.key["KeyId"]
    assert "plaintext" not in json.dumps(record).lower().replace("plaintext\":", "")
    assert record["resources"][0]["ARN"] == xks.key["Arn"]


def test_curl_sigv4_with_a_path_prefix(tmp_path):
    s = Server(tmp_path / "prefixed", args=["--xks-path-prefix", "/keystores/ks-1"]).start()
    try:
        x = Xks(s, prefix="/keystores/ks-1")
        assert x.config["XksProxyUriPath"] == "/keystores/ks-1/kms/xks/v1"
        request = {"requestMetadata": meta(), "plaintext": b64(b"Hello World!"), "encryptionAlgorithm": "AES_GCM"}
        (tmp_path / "enc.json").write_text(json.dumps(request))

        def curl(path, data_file):
            p = subprocess.run(
                ["curl", "-sS", "--aws-sigv4", f"aws:amz:{REGION}:kms-xks-proxy", "--user", f"{x.akid}:{x.secret}",
                 "-X", "POST", "-H", "Content-Type: application/json", "--data", f"@{data_file}", "-w", "\n%{http_code}",
                 s.endpoint + path],
                capture_output=True, text=True, timeout=30, check=True,
            )
            body, code = p.stdout.rsplit("\n", 1)
            return int(code), json.loads(body)

        code, enc = curl(f"/keystores/ks-1/kms/xks/v1/keys/{x.key['KeyId']}/encrypt", tmp_path / "enc.json")
        assert code == 200, enc
        dec_req = {"requestMetadata": meta("Decrypt"), "encryptionAlgorithm": "AES_GCM",
                   **{k: enc[k] for k in ["ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"]}}
        (tmp_path / "dec.json").write_text(json.dumps(dec_req))
        code, dec = curl(f"/keystores/ks-1/kms/xks/v1/keys/{x.key['KeyId']}/decrypt", tmp_path / "dec.json")
        assert (code, unb64(dec["plaintext"])) == (200, b"Hello World!")
        # The wrong prefix, or none, is InvalidUriPathException.
        for wrong in ["/kms/xks/v1/health", "/keystores/ks-2/kms/xks/v1/health"]:
            code, body = curl(wrong, tmp_path / "enc.json")
            assert (code, body["errorName"]) == (404, "InvalidUriPathException"), (wrong, body)
    finally:
        s.stop()


def test_over_tls(tmp_path, monkeypatch):
    import ssl

    from test_transport_hardening import make_ca, make_cert, tls_server, wait_tls

    ca = make_ca(tmp_path, "ca")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    cert, key = make_cert(tmp_path, "server", ca="ca")
    s = tls_server(tmp_path, "tls", cert, key)
    try:
        wait_tls(s, ca)
        x = Xks(s)
        ctx = ssl.create_default_context(cafile=str(ca))
        request = {"requestMetadata": meta(), "plaintext": b64(b"tls"), "encryptionAlgorithm": "AES_GCM"}
        status, enc = post(s.endpoint, f"/kms/xks/v1/keys/{x.key['KeyId']}/encrypt", request, x.akid, x.secret, context=ctx)
        assert status == 200, enc
    finally:
        s.stop()


def lookup(s, name, max_results=50):
    """The newest `max_results` records named `name`, newest first (pages of at most 50)."""
    out, token = [], None
    while len(out) < max_results:
        attribute = {"AttributeKey": "EventName", "AttributeValue": name}
        request = {"LookupAttributes": [attribute], "MaxResults": min(50, max_results - len(out))}
        if token:
            request["NextToken"] = token
        status, body, _ = s.raw("ClavisAdmin.LookupEvents", json.dumps(request))
        assert status == 200, body
        out += [json.loads(e["CloudTrailEvent"]) for e in body["Events"]]
        token = body.get("NextToken")
        if not token:
            break
    return out


def test_unauthenticated_floods_do_not_each_write_a_record(xks):
    sent = 120
    for _ in range(sent):
        req = urllib.request.Request(xks.s.endpoint + "/kms/xks/v1/health", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=10)
    records = lookup(xks.s, "XksGetHealthStatus", max_results=200)
    # The failed-authentication limiter (10/s, bursts of 50) refuses the rest without records of
    # their own; the records that are written count them.
    assert 0 < len(records) < sent, len(records)


def test_quotas_apply_and_use_is_tracked(fresh_server):
    s = fresh_server
    s.args = ["--account-requests-per-second", "1", "--limits-burst", "2"]
    s.start()
    x = Xks(s)
    codes = [x.encrypt(b"x")[0] for _ in range(8)]
    assert codes[0] == 200 and 429 in codes, codes
    status, body = x.encrypt(b"x")
    if status == 429:
        assert body["errorName"] == "ThrottlingException"
    # AWS KMS using the key through the external key store is use of the key.
    s.stop()
    s.args = []
    s.start()
    x.kms = s.client()
    status, _ = x.encrypt(b"used by AWS")
    assert status == 200
    last = x.kms.get_key_last_usage(KeyId=x.key["KeyId"])["KeyLastUsage"]
    assert last["Operation"] == "Encrypt"
    assert last["KmsRequestId"] == lookup(s, "XksEncrypt", 1)[0]["requestID"]


def test_unknown_metadata_cannot_crowd_out_the_known(xks):
    body = {"requestMetadata": {**meta(), **{f"a{i:02}": "x" * 1000 for i in range(40)}}, "plaintext": b64(b"x"),
            "encryptionAlgorithm": "AES_GCM"}
    status, _ = xks.call(f"keys/{xks.key['KeyId']}/encrypt", body)
    assert status == 200
    record = lookup(xks.s, "XksEncrypt", 1)[0]
    params = record["requestParameters"]
    assert params["requestMetadata"]["awsPrincipalArn"] == "arn:aws:iam::123456789012:user/Alice"
    assert params["externalKeyId"] == xks.key["KeyId"]
    assert sum(k.startswith("a") and k[1:].isdigit() for k in params["requestMetadata"]) <= 8


def test_the_credential_secret_is_not_in_the_audit_log(xks):
    records = lookup(xks.s, "CreateXksCredential", 5)
    assert records, "CreateXksCredential was not recorded"
    text = json.dumps(records)
    assert xks.secret not in text and xks.akid in text
