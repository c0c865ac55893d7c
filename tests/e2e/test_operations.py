"""Operating Clavis (issue #20): Prometheus metrics scraped and parsed with prometheus_client,
a configuration file (`serve --config`, `config check`), request quotas against boto3's retry
modes, and GetKeyLastUsage through boto3, all against the real binary."""

import json
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import ACCOUNT, AKID, REGION, SECRET, error_code, free_port


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def samples(text):
    """{(sample name, frozenset(labels)): value} from an OpenMetrics exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text, name, **labels):
    return samples(text).get((name, frozenset(labels.items())), 0)


def test_metrics_move_with_real_requests(fresh_server):
    s = fresh_server.start()
    kms = s.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    ctype, before = scrape(s.endpoint + "/metrics")
    assert ctype.startswith("application/openmetrics-text"), ctype
    for _ in range(5):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    with pytest.raises(ClientError):
        kms.describe_key(KeyId="alias/does-not-exist")
    _, after = scrape(s.endpoint + "/metrics")
    ok = ("clavis_requests_total", {"operation": "Encrypt", "code": "ok"})
    assert value(after, ok[0], **ok[1]) - value(before, ok[0], **ok[1]) == 5
    assert value(after, "clavis_requests_total", operation="DescribeKey", code="NotFoundException") >= 1
    assert value(after, "clavis_request_duration_seconds_count", operation="Encrypt") >= 5
    assert value(after, "clavis_audit_written_bytes_total") > value(before, "clavis_audit_written_bytes_total")
    assert value(after, "clavis_audit_batch_records_count") > 0
    assert value(after, "clavis_cache_hits_total", cache="key") > value(before, "clavis_cache_hits_total", cache="key")
    assert value(after, "clavis_connections_open") >= 1
    assert value(after, "clavis_sealed") == 0
    assert value(after, "clavis_master_key_version") >= 1
    # No key id, principal, access key or account in any label or value name.
    for needle in [key, AKID, ACCOUNT, "alias/does-not-exist"]:
        assert needle not in after


def test_metrics_listen_elsewhere_or_off(fresh_server, tmp_path):
    port = free_port()
    s = fresh_server
    s.args = ["--metrics-listen", f"127.0.0.1:{port}"]
    s.start()
    s.client().list_keys()
    _, text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(text, "clavis_requests_total", operation="ListKeys", code="ok") >= 1
    # The API listener no longer serves them (its answer to an unknown path).
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(s.endpoint + "/metrics")
    assert b"clavis_requests" not in e.value.read()
    s.stop()
    s.args = ["--metrics-listen", "off"]
    s.start()
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(s.endpoint + "/metrics")
    assert b"clavis_requests" not in e.value.read()


def test_metrics_listener_is_bounded_like_the_api(fresh_server):
    """Review: the --metrics-listen port had no header timeout and no connection cap, so half-sent
    requests there held descriptors until the whole server stopped answering."""
    import socket

    from test_audit_hardening import closed_within

    port = free_port()
    s = fresh_server
    s.args = ["--metrics-listen", f"127.0.0.1:{port}", "--header-read-timeout-secs", "2"]
    s.start()
    half = []
    try:
        for _ in range(40):  # more than its cap of 16
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            half.append(c)
        time.sleep(0.3)
        # A scrape still gets through (the oldest idle connections make room) ...
        _, text = scrape(f"http://127.0.0.1:{port}/metrics")
        assert "clavis_sealed" in text and text.endswith("# EOF\n")
        # ... and the half-sent ones are closed by the header-read timeout.
        assert all(closed_within(c, 8) for c in half[-10:])
        assert "Keys" in s.client().list_keys()
    finally:
        for c in half:
            c.close()


def write(path, text):
    path.write_text(text)
    return path


def test_config_file_sets_flags_and_check_names_bad_keys(fresh_server, tmp_path):
    metrics_port = free_port()
    good = write(
        tmp_path / "clavis.toml",
        f"""# every serve flag can live here
scheduler_interval_ms = 500
[audit]
durability = "write"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[limits]
account_requests_per_second = 10000
""",
    )
    p = fresh_server.clavis("config", "check", str(good), creds=False, check=False)
    assert p.returncode == 0, p.stderr
    assert "OK" in p.stdout
    s = fresh_server
    s.args = ["--config", str(good)]
    s.start()
    s.client().list_keys()
    # The file moved the metrics to their own port.
    _, text = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert value(text, "clavis_requests_total", operation="ListKeys", code="ok") >= 1
    s.stop()
    # The command line overrides the file.
    s.args = ["--config", str(good), "--metrics-listen", "main"]
    s.start()
    scrape(s.endpoint + "/metrics")
    s.stop()
    for text, needle in [
        ("listne = '127.0.0.1:1'\n", "listne"),
        ("[audit]\ndurabilty = 'write'\n", "audit.durabilty"),
        ("[audit]\ndurability = 'sometimes'\n", "sometimes"),
        ("insecure_http = 'yes'\n", "insecure_http"),
        ("listen = \n", "clavis.toml"),
    ]:
        bad = write(tmp_path / "clavis.toml", text)
        p = fresh_server.clavis("config", "check", str(bad), creds=False, check=False)
        assert p.returncode != 0 and needle in p.stderr, (text, p.stderr)
        # `serve` refuses the same file before it starts anything.
        p = fresh_server.clavis("serve", "--config", str(bad), "--data-dir", str(tmp_path / "never"), creds=False, check=False, timeout=30)
        assert p.returncode != 0 and needle in p.stderr, (text, p.stderr)
        assert not (tmp_path / "never").exists()


def test_documented_example_config_checks(fresh_server, tmp_path):
    from conftest import ROOT

    text = (ROOT / "docs" / "operations.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    p = fresh_server.clavis("config", "check", str(write(tmp_path / "clavis.toml", example)), creds=False, check=False)
    assert p.returncode == 0, p.stderr
    assert "OK (" in p.stdout


def test_account_quota_throttles_and_boto3_retries_through_it(fresh_server):
    s = fresh_server
    # One request a second after a burst of three: sequential calls outrun it however slow the
    # machine is.
    s.args = ["--account-requests-per-second", "1", "--limits-burst", "3"]
    s.start()
    kms = s.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    codes = []
    for _ in range(12):
        try:
            kms.encrypt(KeyId=key, Plaintext=b"x")
            codes.append("ok")
        except ClientError as e:
            codes.append(e.response["Error"]["Code"])
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            message = e.response["Error"]["Message"]
            assert message == "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
    assert "ThrottlingException" in codes and codes[0] == "ok", codes
    # Management operations have no quota by default.
    for _ in range(20):
        kms.list_keys()
    # boto3's standard retry mode backs off and gets every request through.
    patient = boto3.client(
        "kms",
        endpoint_url=s.endpoint,
        region_name=REGION,
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"mode": "standard", "max_attempts": 10}),
    )
    for _ in range(4):
        patient.encrypt(KeyId=key, Plaintext=b"x")
    _, text = scrape(s.endpoint + "/metrics")
    assert value(text, "clavis_throttled_requests_total", quota="account") >= 1


def test_access_key_quota_leaves_other_keys_alone(fresh_server):
    s = fresh_server
    s.args = ["--account-requests-per-second", "0", "--access-key-requests-per-second", "0.5", "--limits-burst", "3"]
    s.start()
    p = s.clavis("admin", "user", "create", "worker", "--role", "manager", timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    other = json.loads(p.stdout)
    root = s.client()
    codes = []
    for _ in range(8):
        try:
            root.list_keys()
            codes.append("ok")
        except ClientError as e:
            codes.append(e.response["Error"]["Code"])
    # The root key spent one of its three on creating the user.
    assert codes[:2] == ["ok"] * 2 and "ThrottlingException" in codes, codes
    # The other access key has a bucket of its own.
    mine = s.client(akid=other["AccessKeyId"], secret=other["SecretAccessKey"])
    mine.list_keys()
    mine.list_keys()


def test_get_key_last_usage(fresh_server):
    s = fresh_server
    s.args = ["--scheduler-interval-ms", "200"]
    s.start()
    kms = s.client()
    meta = kms.create_key()["KeyMetadata"]
    key = meta["KeyId"]
    unused = kms.get_key_last_usage(KeyId=key)
    assert unused["KeyId"] == key
    assert unused["KeyLastUsage"] == {}
    assert unused["KeyCreationDate"] == meta["CreationDate"]
    assert unused["TrackingStartDate"] >= unused["KeyCreationDate"]
    # Non-cryptographic operations are not usage.
    kms.describe_key(KeyId=key)
    assert kms.get_key_last_usage(KeyId=meta["Arn"])["KeyLastUsage"] == {}
    enc = kms.encrypt(KeyId=key, Plaintext=b"x")
    time.sleep(0.01)
    dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"])
    used = kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]
    assert used["Operation"] == "Decrypt"
    assert used["KmsRequestId"] == dec["ResponseMetadata"]["RequestId"]
    # The CloudTrail event id is the audit record's.
    status, body, _ = s.raw(
        "ClavisAdmin.LookupEvents",
        json.dumps({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}], "MaxResults": 1}),
    )
    assert status == 200, body
    assert body["Events"][0]["EventId"] == used["CloudTrailEventId"]
    # A failed use is not usage.
    with pytest.raises(ClientError):
        kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext={"wrong": "context"})
    assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]["KmsRequestId"] == used["KmsRequestId"]
    # Aliases are not accepted, as on AWS.
    kms.create_alias(AliasName="alias/lu", TargetKeyId=key)
    with pytest.raises(ClientError) as e:
        kms.get_key_last_usage(KeyId="alias/lu")
    assert error_code(e) in ("NotFoundException", "ValidationException")
    # Written by the scheduler (at most once per key per minute): it survives a restart.
    time.sleep(1)
    s.stop()
    s.start()
    again = s.client().get_key_last_usage(KeyId=key)["KeyLastUsage"]
    assert again == used
