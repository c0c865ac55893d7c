"""The scheduler's changes are on record: every change the server makes on its own (a key
destroyed at the end of its deletion window, automatic rotation, expired imported material
erased, a secret destroyed at the end of its recovery window, a scheduled secret rotation) has
a CloudTrail `AwsServiceEvent` record under AWS's event name, in the same MACed chain as the
requests' records: `clavis audit export` shows it, LookupEvents finds it for the key's owner,
`clavis audit verify` passes (docs/formats.md, "Service events")."""

import json
import os
import time

from conftest import ACCOUNT, REGION, Server
from harness import run_clavis
from test_byok import external_key, import_material
from test_secrets import LAMBDA, name, rotation_server

DAY = 86_400
# Long enough that only AdvanceTestClock's own scheduler pass does the work: the counts it
# returns, and the records, come from one pass.
QUIET_SCHEDULER = ["--dangerous-test-clock", "--scheduler-interval-ms", "3600000"]


def advance(server, seconds):
    status, body, _ = server.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": int(seconds)}))
    assert status == 200, body
    return body


def exported(server):
    out = run_clavis("audit", "export", "--data-dir", server.data_dir).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def service_events(server, event_name):
    return [e for e in exported(server) if e["eventType"] == "AwsServiceEvent" and e["eventName"] == event_name]


def lookup(server, key, value):
    query = {"LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]}
    status, body, _ = server.raw("ClavisAdmin.LookupEvents", json.dumps(query))
    assert status == 200, body
    return body["Events"]


def assert_service_event(e, source, invoked_by, arn):
    """The shape CloudTrail gives a service event: the service's identity on the owner's
    account, no request parameters, the resource, the owner as recipient."""
    assert e["eventSource"] == source
    assert e["userIdentity"] == {"accountId": ACCOUNT, "invokedBy": invoked_by}
    assert e["sourceIPAddress"] == invoked_by and e["userAgent"] == invoked_by
    assert e["requestParameters"] is None
    assert e["readOnly"] is False and e["managementEvent"] is True
    assert e["awsRegion"] == REGION and e["recipientAccountId"] == ACCOUNT
    resource_type = "AWS::KMS::Key" if source == "kms.amazonaws.com" else "AWS::SecretsManager::Secret"
    assert e["resources"] == [{"ARN": arn, "accountId": ACCOUNT, "type": resource_type}]
    assert "errorCode" not in e and "errorMessage" not in e


def test_scheduler_changes_are_recorded_as_aws_service_events(tmp_root, request):
    s = Server(tmp_root / f"svc-{request.node.name}", args=QUIET_SCHEDULER).start()
    try:
        kms, sm = s.client(), s.client(service="secretsmanager")
        rotating = kms.create_key()["KeyMetadata"]
        kms.enable_key_rotation(KeyId=rotating["KeyId"], RotationPeriodInDays=90)
        doomed = kms.create_key()["KeyMetadata"]
        kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)
        imported = external_key(kms)
        imported_arn = kms.describe_key(KeyId=imported)["KeyMetadata"]["Arn"]
        import_material(kms, imported, os.urandom(32), ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=advance(s, 0)["Now"] + 3 * DAY)
        secret = sm.create_secret(Name=name(), SecretString="short-lived")["ARN"]
        sm.delete_secret(SecretId=secret, RecoveryWindowInDays=7)

        done = advance(s, 8 * DAY)
        assert (done["Destroyed"], done["Expired"], done["Rotated"]) == (1, 1, 0)
        done = advance(s, 83 * DAY)
        assert (done["Destroyed"], done["Expired"], done["Rotated"]) == (0, 0, 1)

        cases = [
            ("DeleteKey", "kms.amazonaws.com", "AWS Internal", doomed["Arn"]),
            ("RotateKey", "kms.amazonaws.com", "AWS Internal", rotating["Arn"]),
            ("DeleteExpiredKeyMaterial", "kms.amazonaws.com", "AWS Internal", imported_arn),
            ("EndSecretVersionDelete", "secretsmanager.amazonaws.com", "secretsmanager.amazonaws.com", secret),
        ]
        for event_name, source, invoked_by, arn in cases:
            records = service_events(s, event_name)
            assert len(records) == 1, (event_name, records)
            assert_service_event(records[0], source, invoked_by, arn)
        deleted, rotated, expired, gone = (service_events(s, c[0])[0] for c in cases)
        assert rotated["serviceEventDetails"] == {"rotationType": "AUTOMATIC", "keyId": rotating["KeyId"]}
        assert expired["serviceEventDetails"] == {"keyId": imported}
        assert deleted["responseElements"] == {"keyId": doomed["Arn"]}
        assert gone["additionalEventData"] == {"SecretId": secret}

        # The key's owner finds them with LookupEvents, by the key id and by the event name.
        for event_name, _, _, arn in cases:
            by_name = [e for e in lookup(s, "EventName", event_name) if e["Resources"][0]["ResourceName"] == arn]
            assert len(by_name) == 1, event_name
            resource = arn.rsplit("/", 1)[-1] if ":key/" in arn else arn
            by_resource = [e for e in lookup(s, "ResourceName", resource) if e["EventName"] == event_name]
            assert [e["EventId"] for e in by_resource] == [e["EventId"] for e in by_name]
            assert json.loads(by_name[0]["CloudTrailEvent"])["eventType"] == "AwsServiceEvent"

        # The records are in the chain like any other.
        verified = run_clavis("audit", "verify", "--data-dir", s.data_dir, check=False)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        s.stop()


def test_scheduled_secret_rotation_is_recorded(tmp_root, request):
    s = rotation_server(tmp_root, request, QUIET_SCHEDULER).start()
    try:
        sm = s.client(service="secretsmanager")
        arn = sm.create_secret(Name=name(), SecretString="v0")["ARN"]
        rules = {"ScheduleExpression": "rate(10 days)"}
        sm.rotate_secret(SecretId=arn, RotationLambdaARN=LAMBDA, RotationRules=rules, RotateImmediately=False)
        advance(s, 11 * DAY)
        deadline = time.time() + 20
        while time.time() < deadline and not service_events(s, "RotationSucceeded"):
            time.sleep(0.1)
        assert sm.get_secret_value(SecretId=arn)["SecretString"] != "v0"
        started, succeeded = service_events(s, "RotationStarted"), service_events(s, "RotationSucceeded")
        assert len(started) == 1 and len(succeeded) == 1 and service_events(s, "RotationFailed") == []
        for e in started + succeeded:
            assert_service_event(e, "secretsmanager.amazonaws.com", "secretsmanager.amazonaws.com", arn)
        # One rotation's records share a request id, as on AWS; the start is on record first.
        assert started[0]["requestID"] == succeeded[0]["requestID"] and started[0]["requestID"].startswith(f"Rotation-{arn}-")
        ids = [e["eventID"] for e in exported(s)]
        assert ids.index(started[0]["eventID"]) < ids.index(succeeded[0]["eventID"])
        verified = run_clavis("audit", "verify", "--data-dir", s.data_dir, check=False)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        s.stop()
