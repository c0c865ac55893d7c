"""Issue 15 through the real binary: TLS (boto3, the AWS CLI, clavis admin; reload on SIGHUP;
mutual TLS), plain HTTP refused off loopback, SigV4 signed-header rules, re-wrap needing
re-encrypt permission, operator endpoint checks, data directory modes, the first request
after unseal, and log formats."""

import datetime
import hashlib
import hmac
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import AKID, REGION, SECRET, Server, error_code, free_port
from harness import run_aws, run_clavis
from test_lifecycle import rewrap_client
from test_root_of_trust import operator, start_sealed, wait_until, http_status


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert(d, name, ca=None):
    """A certificate for localhost/127.0.0.1 (self-signed, or signed by `ca`)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    if ca is None:
        openssl("x509", "-req", "-in", f"{name}.csr", "-signkey", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                "-extfile", ext.name, cwd=d)
    else:
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.pem"


def tls_server(tmp_path, name, cert, key, extra=()):
    s = Server(tmp_path / name, args=["--tls-cert", str(cert), "--tls-key", str(key), *extra])
    s.endpoint = f"https://localhost:{s.port}"
    s.start(wait=False)
    return s


def wait_tls(s, ca, client_cert=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    if client_cert:
        ctx.load_cert_chain(*map(str, client_cert))
    deadline = time.time() + 20
    while time.time() < deadline:
        assert s.proc.poll() is None, s.log_path.read_text()
        try:
            with urllib.request.urlopen(s.endpoint + "/healthz", timeout=1, context=ctx) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("TLS server did not become ready")


def peer_cert_serial(port, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def test_tls_with_boto3_cli_and_admin_and_reload(tmp_path):
    cert, key = make_cert(tmp_path, "server")
    s = tls_server(tmp_path, "tls", cert, key)
    try:
        wait_tls(s, cert)
        kms = boto3.client("kms", endpoint_url=s.endpoint, region_name=REGION, aws_access_key_id=AKID,
                           aws_secret_access_key=SECRET, verify=str(cert), config=Config(retries={"max_attempts": 1}))
        kid = kms.create_key(Description="over tls")["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=kid, Plaintext=b"secret over tls")["CiphertextBlob"]
        # The AWS CLI with AWS_CA_BUNDLE.
        p = run_aws("kms", "describe-key", "--key-id", kid, endpoint=s.endpoint, home=tmp_path, env={"AWS_CA_BUNDLE": str(cert)},
                    check=False)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["KeyMetadata"]["Description"] == "over tls"
        # clavis admin over https, trusting AWS_CA_BUNDLE.
        p = s.clavis("admin", "user", "list", env={"AWS_CA_BUNDLE": str(cert)}, check=False)
        assert p.returncode == 0, p.stderr
        # clavis bench and clavis operator over https, trusting AWS_CA_BUNDLE.
        p = s.clavis("bench", "--duration", "1", "--connections", "2", "--json", env={"AWS_CA_BUNDLE": str(cert)}, check=False)
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout)
        assert result["endpoint"].startswith("https://") and result["results"][0]["requests"] > 0, result
        p = s.clavis("operator", "status", env={"AWS_CA_BUNDLE": str(cert)}, check=False)
        assert p.returncode == 0 and json.loads(p.stdout)["Sealed"] is False, p.stderr
        # Without the CA the client refuses the certificate; plain HTTP is not served.
        with pytest.raises(Exception):
            boto3.client("kms", endpoint_url=s.endpoint, region_name=REGION, aws_access_key_id=AKID,
                         aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0})).list_keys()
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{s.port}/healthz", timeout=3).read()

        # Reload while serving: new files, SIGHUP, new handshakes get the new certificate, the
        # server keeps its state (no restart, no re-unseal).
        before = peer_cert_serial(s.port, cert)
        os.rename(cert, tmp_path / "old.pem")
        cert2, key2 = make_cert(tmp_path, "server")
        assert cert2 == cert
        s.proc.send_signal(signal.SIGHUP)
        def serves_new_certificate():
            try:
                return peer_cert_serial(s.port, cert2) != before
            except ssl.SSLError:  # still the old certificate, which the new file does not trust
                return False

        wait_until(serves_new_certificate)
        kms2 = boto3.client("kms", endpoint_url=s.endpoint, region_name=REGION, aws_access_key_id=AKID,
                            aws_secret_access_key=SECRET, verify=str(cert2))
        assert kms2.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret over tls"
        # A broken pair on reload keeps the current certificate.
        key2.write_text("not a key")
        s.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert kms2.describe_key(KeyId=kid)["KeyMetadata"]["KeyId"] == kid
    finally:
        s.stop()


def test_mutual_tls(tmp_path):
    make_ca(tmp_path, "clientca")
    client = make_cert(tmp_path, "client", ca="clientca")
    cert, key = make_cert(tmp_path, "server")
    s = tls_server(tmp_path, "mtls", cert, key, ["--tls-client-ca", str(tmp_path / "clientca.pem")])
    try:
        wait_tls(s, cert, client_cert=client)
        good = boto3.client("kms", endpoint_url=s.endpoint, region_name=REGION, aws_access_key_id=AKID, aws_secret_access_key=SECRET,
                            verify=str(cert), config=Config(client_cert=tuple(map(str, client)), retries={"max_attempts": 0}))
        assert "Keys" in good.list_keys()
        bad = boto3.client("kms", endpoint_url=s.endpoint, region_name=REGION, aws_access_key_id=AKID, aws_secret_access_key=SECRET,
                           verify=str(cert), config=Config(retries={"max_attempts": 0}))
        with pytest.raises(Exception):
            bad.list_keys()
    finally:
        s.stop()


def test_plain_http_refused_off_loopback(tmp_path):
    port = free_port()
    p = run_clavis("serve", "--data-dir", tmp_path / "d", "--listen", f"0.0.0.0:{port}", timeout=30, check=False,
                   env={"CLAVIS_ROOT_ACCESS_KEY_ID": AKID, "CLAVIS_ROOT_SECRET_ACCESS_KEY": SECRET})
    assert p.returncode != 0 and "--tls-cert" in p.stderr and "--insecure-http" in p.stderr
    assert not (tmp_path / "d").exists(), "refused before anything was created"
    s = Server(tmp_path / "insecure", args=["--insecure-http"], host="0.0.0.0")
    try:
        s.start()
    finally:
        s.stop()


def sign_v4(endpoint, target, body, signed, amz_date=None, send_target=None):
    """A SigV4 signature over exactly the headers in `signed` (lower-case names)."""
    host = endpoint.split("://", 1)[1]
    amz_date = amz_date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": host, "x-amz-date": amz_date, "x-amz-target": target, "content-type": "application/x-amz-json-1.1"}
    canonical_headers = "".join(f"{h}:{headers[h]}\n" for h in sorted(signed))
    signed_list = ";".join(sorted(signed))
    creq = "\n".join(["POST", "/", "", canonical_headers, signed_list, hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/{REGION}/kms/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + SECRET).encode()
    for part in (amz_date[:8], REGION, "kms", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={signed_list}, Signature={sig}"
    headers["x-amz-target"] = send_target or target
    return headers


def post(endpoint, headers, body):
    req = urllib.request.Request(endpoint + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_signature_must_cover_target_and_date(server, kms):
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    body = json.dumps({"KeyId": kid}).encode()
    # Signed over host alone, replayed with another target: refused, and the key unchanged.
    h = sign_v4(server.endpoint, "TrentService.DescribeKey", body, ["host"], send_target="TrentService.DisableKey")
    status, reply = post(server.endpoint, h, body)
    assert status == 400 and reply["__type"] == "IncompleteSignatureException", reply
    assert "x-amz-date" in reply["message"]
    h = sign_v4(server.endpoint, "TrentService.DescribeKey", body, ["host", "x-amz-date"], send_target="TrentService.ScheduleKeyDeletion")
    status, reply = post(server.endpoint, h, body)
    assert status == 400 and reply["__type"] == "IncompleteSignatureException" and "x-amz-target" in reply["message"], reply
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"
    # Covering all three works.
    h = sign_v4(server.endpoint, "TrentService.DescribeKey", body, ["host", "x-amz-date", "x-amz-target"])
    assert post(server.endpoint, h, body)[0] == 200


def test_rewrap_needs_permission_to_encrypt(fresh_server):
    from test_access_control import policy, user, ROOT_ONLY
    s = fresh_server.start()
    root = s.client()
    app, app_kms = user(s, "unwrapper", "reader")
    kid = root.create_key()["KeyMetadata"]["KeyId"]
    blob = root.encrypt(KeyId=kid, Plaintext=b"old version", EncryptionContext={"f": "a"})["CiphertextBlob"]
    root.rotate_key_on_demand(KeyId=kid)
    root.put_key_policy(
        KeyId=kid,
        PolicyName="default",
        Policy=policy(
            ROOT_ONLY,
            {"Sid": "decrypt-only", "Effect": "Allow", "Principal": {"AWS": app["Arn"]}, "Action": "kms:Decrypt", "Resource": "*"},
            {
                "Sid": "no-wrap",
                "Effect": "Deny",
                "Principal": {"AWS": app["Arn"]},
                "Action": ["kms:Encrypt", "kms:ReEncrypt*"],
                "Resource": "*",
            },
        ),
    )
    assert app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"f": "a"})["Plaintext"] == b"old version"
    rk = rewrap_client(s, akid=app["AccessKeyId"], secret=app["SecretAccessKey"])
    with pytest.raises(ClientError) as e:
        rk.decrypt(CiphertextBlob=blob, EncryptionContext={"f": "a"})
    assert error_code(e) == "AccessDeniedException" and "re-wrap" in e.value.response["Error"]["Message"]
    # The administrator may encrypt: the re-wrapped blob comes back.
    out = rewrap_client(s).decrypt(CiphertextBlob=blob, EncryptionContext={"f": "a"})
    assert "ClavisRewrappedCiphertextBlob" in out


def operator_post(s, path, body, headers):
    req = urllib.request.Request(s.endpoint + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_operator_endpoints_refuse_cross_site_requests(tmp_path):
    s = Server(tmp_path / "opx", args=["--root-of-trust", "shamir"], env={"CLAVIS_INIT_TOKEN": "init-token-123"})
    try:
        start_sealed(s)
        body = json.dumps({"Shares": 3, "Threshold": 2}).encode()
        # A text/plain POST (what any web page can send without a preflight) is refused.
        status, reply = operator_post(s, "/operator/init", body, {"Content-Type": "text/plain"})
        assert status == 400 and "application/json" in reply["message"]
        # A Host that is not this server's (DNS rebinding) is refused.
        status, reply = operator_post(s, "/operator/init", body, {"Content-Type": "application/json", "Host": "evil.example:80"})
        assert status == 400 and reply["__type"] == "AccessDeniedException", reply
        # Without the init token: refused. Nothing was initialised by any of these.
        status, reply = operator_post(s, "/operator/init", body, {"Content-Type": "application/json"})
        assert status == 400 and reply["__type"] == "AccessDeniedException"
        assert operator(s, "status", creds=False)["Initialized"] is False
        # The operator CLI sends CLAVIS_INIT_TOKEN from its environment.
        env = {"AWS_ENDPOINT_URL": s.endpoint, "CLAVIS_INIT_TOKEN": "init-token-123"}
        p = run_clavis("operator", "init", "--shares", "3", "--threshold", "2", env=env, check=False)
        assert p.returncode == 0, p.stderr
        assert len(json.loads(p.stdout)["Shares"]) == 3
    finally:
        s.stop()


def test_operator_failures_are_rate_limited(tmp_path):
    s = Server(tmp_path / "oprl", args=["--root-of-trust", "shamir"])
    try:
        start_sealed(s)
        codes = []
        for _ in range(25):
            status, reply = operator_post(
                s, "/operator/unseal", json.dumps({"Share": "junk"}).encode(), {"Content-Type": "application/json"}
            )
            codes.append(reply["__type"])
        assert codes[:20] == ["ValidationException"] * 20 and codes[20:] == ["ThrottlingException"] * 5, codes
    finally:
        s.stop()


def test_first_request_after_unseal_succeeds(tmp_path):
    s = Server(tmp_path / "first", args=["--root-of-trust", "shamir"])
    try:
        start_sealed(s)
        shares = operator(s, "init", "--shares", "5", "--threshold", "3")["Shares"]
        wait_until(lambda: http_status(s, "/readyz") == 200)
        kid = s.client().create_key()["KeyMetadata"]["KeyId"]
        blob = s.client().encrypt(KeyId=kid, Plaintext=b"after unseal")["CiphertextBlob"]
        for _ in range(3):
            s.stop()
            start_sealed(s)
            for share in shares[:3]:
                st = operator(s, "unseal", stdin=share, creds=False)
            assert st["Sealed"] is False
            assert s.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"after unseal"
    finally:
        s.stop()


def test_data_directory_is_private(tmp_path):
    d = tmp_path / "open-dir"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    s = Server(d).start()
    try:
        s.client().create_key()
        assert os.stat(d).st_mode & 0o777 == 0o700
        for name in ("clavis.db", "clavis.db-wal", "clavis.db-shm"):
            p = d / name
            if p.exists():
                assert os.stat(p).st_mode & 0o777 == 0o600, name
        assert (d / "clavis.db").exists()
    finally:
        s.stop()
    # An existing database left readable by others is made private at the next start.
    os.chmod(d / "clavis.db", 0o644)
    os.chmod(d, 0o750)
    s.start()
    try:
        assert os.stat(d).st_mode & 0o777 == 0o700 and os.stat(d / "clavis.db").st_mode & 0o777 == 0o600
    finally:
        s.stop()


def test_logs_are_plain_off_a_terminal_and_json_on_request(tmp_path):
    s = Server(tmp_path / "logs").start()
    s.client().list_keys()
    s.stop()
    text = s.log_path.read_text()
    assert "clavis serving" in text and "\x1b[" not in text
    j = Server(tmp_path / "jlogs", args=["--log-format", "json"]).start()
    j.client().list_keys()
    j.stop()
    lines = [ln for ln in j.log_path.read_text().splitlines() if ln.strip()]
    parsed = [json.loads(ln) for ln in lines]
    assert any(p.get("fields", {}).get("message") == "clavis serving" for p in parsed)


def test_junk_share_cannot_spoil_an_unseal_in_progress(tmp_path):
    """Item 6: junk shares from anyone reset the operators' unseal. Now later shares need the
    nonce returned with the first one."""
    s = Server(tmp_path / "nonce", args=["--root-of-trust", "shamir"])
    try:
        start_sealed(s)
        shares = operator(s, "init", "--shares", "3", "--threshold", "2")["Shares"]
        wait_until(lambda: http_status(s, "/readyz") == 200)
        s.stop()
        start_sealed(s)
        # A stranger's junk share cannot even start an unseal (the review found that a junk
        # first share took the session, and its nonce, for 10 minutes): each share is checked
        # alone against shamir.conf's digests before it joins.
        status, reply = operator_post(s, "/operator/unseal", json.dumps({"Share": "02-" + "00" * 32}).encode(),
                                      {"Content-Type": "application/json"})
        assert status == 400 and "not an unseal share" in reply["message"] and "Nonce" not in reply, reply
        assert operator(s, "status", creds=False)["Progress"] == 0
        first = operator(s, "unseal", stdin=shares[0], creds=False)
        assert first["Sealed"] and first["Progress"] == 1 and len(first["Nonce"]) == 32
        # The public status does not reveal the nonce.
        assert "Nonce" not in operator(s, "status", creds=False)
        # A nonce of another form (a stranger's padding, which a sealed server would hold in
        # memory with the attempt's record) is refused; the progress is kept.
        status, reply = operator_post(s, "/operator/unseal", json.dumps({"Share": shares[1], "Nonce": "x" * 5000}).encode(),
                                      {"Content-Type": "application/json"})
        assert status == 400 and "32 hexadecimal digits" in reply["message"], reply
        assert operator(s, "status", creds=False)["Progress"] == 1
        # A stranger without the nonce: refused, and the operators' progress is kept.
        status, reply = operator_post(s, "/operator/unseal", json.dumps({"Share": "01-" + "00" * 32}).encode(),
                                      {"Content-Type": "application/json"})
        assert status == 400 and "Nonce" in reply["message"], reply
        assert operator(s, "status", creds=False)["Progress"] == 1
        status, reply = operator_post(s, "/operator/unseal", json.dumps({"Share": "01-" + "00" * 32, "Nonce": "0" * 32}).encode(),
                                      {"Content-Type": "application/json"})
        assert status == 400 and operator(s, "status", creds=False)["Progress"] == 1
        assert operator(s, "unseal", stdin=shares[2], creds=False)["Sealed"] is False
    finally:
        s.stop()


def test_stalled_tls_handshakes_are_evicted(tmp_path):
    """Review of item 6: connections stalled in the TLS handshake kept their descriptors after
    eviction, so a flood of them exhausted the server."""
    cert, key = make_cert(tmp_path, "server")
    s = tls_server(tmp_path, "tlsflood", cert, key, ["--max-connections", "20"])
    socks = []
    try:
        wait_tls(s, cert)
        for _ in range(60):
            socks.append(socket.create_connection(("127.0.0.1", s.port)))
        time.sleep(0.3)
        kms = boto3.client("kms", endpoint_url=s.endpoint, region_name=REGION, aws_access_key_id=AKID,
                           aws_secret_access_key=SECRET, verify=str(cert), config=Config(retries={"max_attempts": 0}))
        started = time.time()
        assert "Keys" in kms.list_keys()
        assert time.time() - started < 5
        fds = len(os.listdir(f"/proc/{s.proc.pid}/fd"))
        assert fds < 20 + 20 // 8 + 8 + 64, fds
    finally:
        for c in socks:
            c.close()
        s.stop()


def test_rewrap_respects_reencrypt_on_same_key(fresh_server):
    """Review of item 5: a Deny on kms:ReEncrypt* with kms:ReEncryptOnSameKey did not stop a
    re-wrap."""
    from test_access_control import policy, user, ROOT_ONLY
    s = fresh_server.start()
    root = s.client()
    app, app_kms = user(s, "samekey", "writer")
    kid = root.create_key()["KeyMetadata"]["KeyId"]
    blob = root.encrypt(KeyId=kid, Plaintext=b"v1")["CiphertextBlob"]
    root.rotate_key_on_demand(KeyId=kid)
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=policy(ROOT_ONLY,
        {"Sid": "use", "Effect": "Allow", "Principal": {"AWS": app["Arn"]}, "Action": ["kms:Decrypt", "kms:ReEncrypt*"], "Resource": "*"},
        {"Sid": "no-encrypt", "Effect": "Deny", "Principal": {"AWS": app["Arn"]}, "Action": "kms:Encrypt", "Resource": "*"},
        {"Sid": "no-same-key", "Effect": "Deny", "Principal": {"AWS": app["Arn"]}, "Action": "kms:ReEncrypt*", "Resource": "*",
         "Condition": {"Bool": {"kms:ReEncryptOnSameKey": "true"}}}))
    with pytest.raises(ClientError) as e:
        rewrap_client(s, akid=app["AccessKeyId"], secret=app["SecretAccessKey"]).decrypt(CiphertextBlob=blob)
    assert error_code(e) == "AccessDeniedException"
