"""Several stateless nodes on one real PostgreSQL database (issue #9): a throwaway cluster
(initdb into a temporary directory, a free port, no system service) started by
scripts/pg-cluster.sh, three `clavis serve --database-url` processes on loopback, real boto3
clients."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import CACHE_WAIT_SECONDS, Server, error_code
from harness import Postgres, start_nodes

# The scheduler period the rotation test gives every node, and how long it then waits for
# every node's scheduler to have run many more times after the first rotation appeared.
SCHEDULER_INTERVAL_MS = 50
SCHEDULER_RUNS_AFTER = 20
# How long writers load a node before it is killed (enough for a few dozen acknowledged keys).
LOAD_SECONDS = 1.5


@pytest.fixture(scope="module")
def pg():
    p = Postgres().start()
    yield p
    p.cleanup()


@pytest.fixture()
def three_nodes(pg, tmp_path, request):
    url = pg.database(f"ha_{request.node.name.lower()}"[:60])
    nodes = start_nodes(tmp_path, url)
    yield nodes
    for n in nodes:
        n.stop()


def refused(call):
    with pytest.raises(ClientError) as e:
        call()
    return error_code(e)


def test_three_nodes_serve_one_database(three_nodes):
    a, b, c = (n.client() for n in three_nodes)
    key = a.create_key(Description="made on A")["KeyMetadata"]["KeyId"]
    a.create_alias(AliasName="alias/shared", TargetKeyId=key)
    # Created on A, used at once on B and C (a new key or alias is never served stale).
    blob = b.encrypt(KeyId="alias/shared", Plaintext=b"across nodes")["CiphertextBlob"]
    assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across nodes"
    assert c.describe_key(KeyId=key)["KeyMetadata"]["Description"] == "made on A"
    assert {k["KeyId"] for k in b.list_keys()["Keys"]} == {k["KeyId"] for k in a.list_keys()["Keys"]}

    # Disable on A: refused on B within one second (the key cache lasts at most one second).
    a.disable_key(KeyId=key)
    time.sleep(CACHE_WAIT_SECONDS)
    assert refused(lambda: b.encrypt(KeyId=key, Plaintext=b"x")) == "DisabledException"
    assert refused(lambda: c.decrypt(CiphertextBlob=blob)) == "DisabledException"
    c.enable_key(KeyId=key)
    time.sleep(CACHE_WAIT_SECONDS)
    assert a.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across nodes"

    # Rotation on B: A decrypts the new version's ciphertexts at once (a newer version in a blob
    # makes a node reread the key) and old ones still decrypt everywhere.
    b.rotate_key_on_demand(KeyId=key)
    new_blob = b.encrypt(KeyId=key, Plaintext=b"v2")["CiphertextBlob"]
    assert a.decrypt(CiphertextBlob=new_blob)["Plaintext"] == b"v2"
    assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across nodes"

    # A key policy change on C: in force on A within one second.
    policy = json.loads(a.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    policy["Statement"].append({"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*"})
    c.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    time.sleep(CACHE_WAIT_SECONDS)
    assert refused(lambda: a.encrypt(KeyId=key, Plaintext=b"x")) == "AccessDeniedException"

    # A grant made on A works on B at once (grants are never cached).
    user = three_nodes[0].raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "app", "Role": "reader"}))[1]
    app_on_b = three_nodes[1].client(akid=user["AccessKey"]["AccessKeyId"], secret=user["AccessKey"]["SecretAccessKey"])
    k2 = a.create_key(Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:root"}}}]}))["KeyMetadata"]["KeyId"]
    blob2 = a.encrypt(KeyId=k2, Plaintext=b"granted")["CiphertextBlob"]
    assert refused(lambda: app_on_b.decrypt(CiphertextBlob=blob2)) == "AccessDeniedException"
    grant = a.create_grant(KeyId=k2, GranteePrincipal=user["User"]["Arn"], Operations=["Decrypt"])
    assert app_on_b.decrypt(CiphertextBlob=blob2)["Plaintext"] == b"granted"
    c.revoke_grant(KeyId=k2, GrantId=grant["GrantId"])
    assert refused(lambda: app_on_b.decrypt(CiphertextBlob=blob2)) == "AccessDeniedException"

    # Access key deactivation on A: refused on B within one second.
    three_nodes[0].raw("ClavisAdmin.UpdateAccessKey", json.dumps({"AccessKeyId": user["AccessKey"]["AccessKeyId"], "Status": "Inactive"}))
    time.sleep(CACHE_WAIT_SECONDS)
    assert refused(lambda: app_on_b.list_keys()) == "UnrecognizedClientException"

    # Deletion scheduled on C is seen on A; cancelled on B.
    c.schedule_key_deletion(KeyId=k2, PendingWindowInDays=7)
    time.sleep(CACHE_WAIT_SECONDS)
    assert a.describe_key(KeyId=k2)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    b.cancel_key_deletion(KeyId=k2)


def test_background_rotation_runs_once_across_nodes(pg, tmp_path):
    url = pg.database("ha_rotation_once")
    nodes = start_nodes(tmp_path, url, args=["--dangerous-test-clock", "--scheduler-interval-ms", str(SCHEDULER_INTERVAL_MS)])
    try:
        a = nodes[0].client()
        key = a.create_key()["KeyMetadata"]["KeyId"]
        a.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
        # Every node's clock passes the rotation date; every node's scheduler then competes for it.
        for n in nodes:
            status, body, _ = n.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 91 * 86400, "RunScheduler": False}))
            assert status == 200, body
        deadline = time.time() + 20
        while time.time() < deadline and not a.list_key_rotations(KeyId=key)["Rotations"]:
            time.sleep(0.1)
        time.sleep(SCHEDULER_RUNS_AFTER * SCHEDULER_INTERVAL_MS / 1000)  # every scheduler has run many more times by now
        rotations = a.list_key_rotations(KeyId=key)["Rotations"]
        assert len(rotations) == 1 and rotations[0]["RotationType"] == "AUTOMATIC", rotations
    finally:
        for n in nodes:
            n.stop()


def test_node_killed_under_load_loses_no_acknowledged_write(three_nodes):
    a_node, b_node, c_node = three_nodes
    acknowledged, blobs, stop = [], [], threading.Event()

    def load(node):
        client = node.client()
        while not stop.is_set():
            try:
                kid = client.create_key()["KeyMetadata"]["KeyId"]
                acknowledged.append(kid)
                blobs.append((client.encrypt(KeyId=kid, Plaintext=kid.encode())["CiphertextBlob"], kid))
            except Exception:  # the node died mid-request: that request was never acknowledged
                if node.proc.poll() is not None:
                    return

    workers = [threading.Thread(target=load, args=(a_node,)) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(LOAD_SECONDS)
    a_node.kill9()
    stop.set()
    for w in workers:
        w.join()
    assert len(acknowledged) > 10
    b, c = b_node.client(), c_node.client()
    for kid in acknowledged:
        assert b.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"
    for blob, kid in blobs:
        assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == kid.encode()


def test_a_node_with_another_master_key_refuses_to_start(pg, tmp_path):
    url = pg.database("ha_wrong_master")
    first = start_nodes(tmp_path, url, n=1)[0]
    try:
        stranger = Server(tmp_path / "stranger", args=["--database-url", url])
        stranger.start(wait=False)
        assert stranger.proc.wait(timeout=30) != 0
        assert "master key does not match the database" in stranger.log_path.read_text()
        assert first.client().list_keys()["Keys"] == []
    finally:
        first.stop()


def readyz(node):
    try:
        with urllib.request.urlopen(node.endpoint + "/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_postgres_restart_is_survived(tmp_path):
    own = Postgres().start()  # a cluster of its own: this test stops it
    try:
        url = own.database("ha_restart")
        nodes = start_nodes(tmp_path, url, n=2)
        a, b = nodes[0].client(), nodes[1].client()
        key = a.create_key()["KeyMetadata"]["KeyId"]
        blob = a.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
        own.stop()
        # Unreachable database: a clear, retryable error, never a wrong answer; not ready.
        assert refused(lambda: a.create_key()) == "DependencyTimeoutException"
        assert refused(lambda: b.list_keys()) == "DependencyTimeoutException"
        assert readyz(nodes[0]) == 503
        own.start()
        # Nodes recover by themselves once the database is back.
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                b.list_keys()
                break
            except ClientError:
                time.sleep(0.2)
        assert readyz(nodes[0]) == 200
        assert b.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
        assert a.describe_key(KeyId=a.create_key()["KeyMetadata"]["KeyId"])["KeyMetadata"]["Enabled"]
        for n in nodes:
            n.stop()
    finally:
        own.cleanup()


def test_secrets_across_nodes_and_deletion_runs_once(pg, tmp_path):
    url = pg.database("ha_secrets")
    nodes = start_nodes(tmp_path, url, args=["--dangerous-test-clock", "--scheduler-interval-ms", str(SCHEDULER_INTERVAL_MS)])
    try:
        a, b, c = (n.client(service="secretsmanager") for n in nodes)
        arn = a.create_secret(Name="shared/secret", SecretString="written on A")["ARN"]
        # Written on A, read at once on B and C (values are not cached).
        assert b.get_secret_value(SecretId="shared/secret")["SecretString"] == "written on A"
        b.put_secret_value(SecretId=arn, SecretString="written on B")
        assert c.get_secret_value(SecretId=arn)["SecretString"] == "written on B"
        assert c.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"] == "written on A"
        a.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
        assert refused(lambda: b.get_secret_value(SecretId=arn)) == "InvalidRequestException"
        # Every node's clock passes the deletion date; every scheduler competes for it.
        for n in nodes:
            status, body, _ = n.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 8 * 86400, "RunScheduler": False}))
            assert status == 200, body
        def gone():
            try:
                c.describe_secret(SecretId=arn)
                return False
            except ClientError as e:
                return e.response["Error"]["Code"] == "ResourceNotFoundException"

        deadline = time.time() + 20
        while time.time() < deadline and not gone():
            time.sleep(0.1)
        time.sleep(SCHEDULER_RUNS_AFTER * SCHEDULER_INTERVAL_MS / 1000)
        assert refused(lambda: a.describe_secret(SecretId=arn)) == "ResourceNotFoundException"
        destroyed = sum(n.log_path.read_text().count("secret destroyed at the end of its recovery window") for n in nodes)
        assert destroyed == 1, destroyed
        # The name is free again.
        assert b.create_secret(Name="shared/secret", SecretString="again")["ARN"] != arn
    finally:
        for n in nodes:
            n.stop()
