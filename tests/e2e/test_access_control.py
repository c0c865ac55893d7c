"""Key policies, grants, accounts and cross-account use, end to end with boto3 and `clavis admin`
under several identities (issue #5's deny matrix). Roles alone are covered in test_identity.py."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, error_code

ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"


def admin_cli(server, *args, akid=None, secret=None, check=True):
    p = server.clavis(*args, akid=akid, secret=secret, timeout=30, check=False)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def user(server, name, role, **kw):
    out = admin_cli(server, "admin", "user", "create", name, "--role", role, **kw)
    return out, server.client(akid=out["AccessKeyId"], secret=out["SecretAccessKey"])


def denied(call, action, code="AccessDeniedException"):
    with pytest.raises(ClientError) as e:
        call()
    assert error_code(e) == code, (action, e.value.response)
    if code == "AccessDeniedException":
        msg = e.value.response["Error"]["Message"]
        assert "is not authorized to perform" in msg and action in msg, msg
    return e.value.response["Error"]["Message"]


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# The root principal keeps full control; naming it in a statement with a PrincipalArn condition
# keeps the account's other principals out (a bare account root principal would delegate to them).
ROOT_ONLY = {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:PrincipalArn": ROOT_ARN}}}


def test_policy_conditions_explicit_deny_and_put_key_policy(fresh_server):
    s = fresh_server.start()
    root = s.client()
    app, app_kms = user(s, "app", "reader")
    _, manager = user(s, "ops", "manager")
    key = root.create_key()["KeyMetadata"]
    kid, arn = key["KeyId"], key["Arn"]

    # The default policy delegates to roles: the reader uses the key, but cannot change its policy.
    blob = app_kms.encrypt(KeyId=kid, Plaintext=b"v", EncryptionContext={"Department": "IT"})["CiphertextBlob"]
    denied(lambda: app_kms.put_key_policy(KeyId=kid, PolicyName="default", Policy=policy(ROOT_ONLY)), "kms:PutKeyPolicy")
    denied(lambda: app_kms.disable_key(KeyId=kid), "kms:DisableKey")
    denied(lambda: app_kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7), "kms:ScheduleKeyDeletion")

    # A policy condition on the encryption context.
    finance_only = policy(ROOT_ONLY, {
        "Sid": "app-finance", "Effect": "Allow", "Principal": {"AWS": app["Arn"]},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:Department": "Finance"}}})
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=finance_only)
    assert json.loads(root.get_key_policy(KeyId=kid, PolicyName="default")["Policy"]) == json.loads(finance_only)
    ok = app_kms.encrypt(KeyId=kid, Plaintext=b"f", EncryptionContext={"Department": "Finance"})
    assert app_kms.decrypt(CiphertextBlob=ok["CiphertextBlob"], EncryptionContext={"Department": "Finance"})["Plaintext"] == b"f"
    msg = denied(lambda: app_kms.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"Department": "IT"}), "kms:Encrypt")
    assert app["Arn"] in msg and arn in msg and "no resource-based policy allows" in msg
    denied(lambda: app_kms.encrypt(KeyId=kid, Plaintext=b"x"), "kms:Encrypt")
    denied(lambda: app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"Department": "IT"}), "kms:Decrypt")
    denied(lambda: app_kms.describe_key(KeyId=kid), "kms:DescribeKey")
    # The manager is not named: its role alone is not enough.
    denied(lambda: manager.disable_key(KeyId=kid), "kms:DisableKey")

    # An explicit Deny beats a role and an Allow.
    other = root.create_key()["KeyMetadata"]["KeyId"]
    root.put_key_policy(KeyId=other, PolicyName="default", Policy=policy(
        {"Sid": "account", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "no-disable", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["kms:Disable*", "kms:ScheduleKeyDeletion"],
         "Resource": "*", "Condition": {"StringNotEquals": {"aws:PrincipalArn": ROOT_ARN}}}))
    msg = denied(lambda: manager.disable_key(KeyId=other), "kms:DisableKey")
    assert "explicit deny" in msg
    denied(lambda: manager.schedule_key_deletion(KeyId=other, PendingWindowInDays=7), "kms:ScheduleKeyDeletion")
    manager.tag_resource(KeyId=other, Tags=[{"TagKey": "still", "TagValue": "allowed"}])
    root.disable_key(KeyId=other)

    # An alias cannot be moved off (or deleted from) a key whose policy denies the caller: the
    # key's policy would otherwise be escaped by pointing its alias at the caller's own key.
    root.create_alias(AliasName="alias/guarded", TargetKeyId=other)
    own = manager.create_key()["KeyMetadata"]["KeyId"]
    root.put_key_policy(KeyId=other, PolicyName="default", Policy=policy(
        {"Sid": "account", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "no-alias-moves", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["kms:UpdateAlias", "kms:DeleteAlias"],
         "Resource": "*", "Condition": {"StringNotEquals": {"aws:PrincipalArn": ROOT_ARN}}}))
    denied(lambda: manager.update_alias(AliasName="alias/guarded", TargetKeyId=own), "kms:UpdateAlias")
    denied(lambda: manager.delete_alias(AliasName="alias/guarded"), "kms:DeleteAlias")
    assert [a["TargetKeyId"] for a in root.list_aliases(KeyId=other)["Aliases"]] == [other]

    # Malformed and lock-out policies are refused; the lock-out check can be bypassed.
    for bad in ["not json", "{}", json.dumps({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}),
                policy({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::12:root"}, "Action": "kms:*", "Resource": "*"}),
                policy({"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
                        "Condition": {"StringSometimes": {"kms:CallerAccount": ACCOUNT}}})]:
        denied(lambda: root.put_key_policy(KeyId=other, PolicyName="default", Policy=bad), "", "MalformedPolicyDocumentException")
    lockout = policy({"Effect": "Allow", "Principal": {"AWS": app["Arn"]}, "Action": "kms:*", "Resource": "*"})
    msg = denied(lambda: root.put_key_policy(KeyId=other, PolicyName="default", Policy=lockout), "", "MalformedPolicyDocumentException")
    assert "will not allow you to update the key policy" in msg
    denied(lambda: root.create_key(Policy=lockout), "", "MalformedPolicyDocumentException")
    locked = root.create_key(Policy=lockout, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]
    denied(lambda: root.describe_key(KeyId=locked), "kms:DescribeKey")
    assert root.list_key_policies(KeyId=kid)["PolicyNames"] == ["default"]
    denied(lambda: root.get_key_policy(KeyId=kid, PolicyName="other"), "", "NotFoundException")


def test_grants(fresh_server):
    s = fresh_server.start()
    root = s.client()
    app, app_kms = user(s, "app", "reader")
    _, ops_kms = user(s, "ops", "manager")
    kid = root.create_key(Policy=policy(ROOT_ONLY))["KeyMetadata"]["KeyId"]
    blob = root.encrypt(KeyId=kid, Plaintext=b"granted", EncryptionContext={"tenant": "a"})["CiphertextBlob"]
    denied(lambda: app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"}), "kms:Decrypt")

    g = root.create_grant(KeyId=kid, GranteePrincipal=app["Arn"], Operations=["Decrypt", "RetireGrant"], Name="app-decrypt",
                          Constraints={"EncryptionContextSubset": {"tenant": "a"}})
    assert len(g["GrantId"]) == 64
    # Same name and parameters: the same grant.
    again = root.create_grant(KeyId=kid, GranteePrincipal=app["Arn"], Operations=["RetireGrant", "Decrypt"], Name="app-decrypt",
                              Constraints={"EncryptionContextSubset": {"tenant": "a"}})
    assert again["GrantId"] == g["GrantId"]
    # The grant works at once, with its token or without.
    out = app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"}, GrantTokens=[g["GrantToken"]])
    assert out["Plaintext"] == b"granted"
    assert app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"})["Plaintext"] == b"granted"
    # Only what it grants, under its constraints.
    denied(lambda: app_kms.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"tenant": "a"}), "kms:Encrypt")
    other_ctx = root.encrypt(KeyId=kid, Plaintext=b"b", EncryptionContext={"tenant": "b"})["CiphertextBlob"]
    denied(lambda: app_kms.decrypt(CiphertextBlob=other_ctx, EncryptionContext={"tenant": "b"}), "kms:Decrypt")
    denied(lambda: app_kms.decrypt(CiphertextBlob=blob, GrantTokens=["bm90LWEtdG9rZW4"]), "", "InvalidGrantTokenException")

    listed = root.list_grants(KeyId=kid)["Grants"]
    assert [x["GrantId"] for x in listed] == [g["GrantId"]]
    assert listed[0]["GranteePrincipal"] == app["Arn"] and sorted(listed[0]["Operations"]) == ["Decrypt", "RetireGrant"]
    assert listed[0]["Constraints"] == {"EncryptionContextSubset": {"tenant": "a"}}
    assert listed[0]["IssuingAccount"] == ROOT_ARN and listed[0]["Name"] == "app-decrypt"

    # Retired by its grantee (RetireGrant is among its operations): refused again at once.
    app_kms.retire_grant(GrantToken=g["GrantToken"])
    denied(lambda: app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"}), "kms:Decrypt")
    assert root.list_grants(KeyId=kid)["Grants"] == []
    denied(lambda: app_kms.retire_grant(GrantToken=g["GrantToken"]), "", "InvalidGrantTokenException")

    # Revoked by a key manager with a grant naming it retiring principal; revocation needs permission.
    g2 = root.create_grant(KeyId=kid, GranteePrincipal=app["Arn"], Operations=["Decrypt"],
                           RetiringPrincipal=f"arn:aws:iam::{ACCOUNT}:user/ops")
    assert app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"})["Plaintext"] == b"granted"
    retirable = ops_kms.list_retirable_grants(RetiringPrincipal=f"arn:aws:iam::{ACCOUNT}:user/ops")["Grants"]
    assert [x["GrantId"] for x in retirable] == [g2["GrantId"]]
    denied(lambda: app_kms.retire_grant(KeyId=kid, GrantId=g2["GrantId"]), "kms:RetireGrant")
    denied(lambda: ops_kms.revoke_grant(KeyId=kid, GrantId=g2["GrantId"]), "kms:RevokeGrant")  # not in the key policy
    root.revoke_grant(KeyId=kid, GrantId=g2["GrantId"])
    denied(lambda: app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"}), "kms:Decrypt")
    denied(lambda: root.revoke_grant(KeyId=kid, GrantId=g2["GrantId"]), "", "NotFoundException")

    # Validation: operations, principals, grant ids.
    for kwargs in [{"Operations": ["Fly"]}, {"Operations": []}, {"GranteePrincipal": "bob"},
                   {"Constraints": {"EncryptionContextEquals": {"a": "b"}, "EncryptionContextSubset": {"a": "b"}}}]:
        args = {"KeyId": kid, "GranteePrincipal": app["Arn"], "Operations": ["Decrypt"], **kwargs}
        denied(lambda: root.create_grant(**args), "", "ValidationException")
    denied(lambda: root.revoke_grant(KeyId=kid, GrantId="nope"), "", "InvalidGrantIdException")
    # A reader's role does not include CreateGrant.
    denied(lambda: app_kms.create_grant(KeyId=kid, GranteePrincipal=app["Arn"], Operations=["Decrypt"]), "kms:CreateGrant")


def test_accounts_and_cross_account_use(fresh_server):
    s = fresh_server.start()
    root = s.client()
    tenant = admin_cli(s, "admin", "account", "create", "--name", "tenant-b")
    b_account = tenant["AccountId"]
    assert len(b_account) == 12 and b_account != ACCOUNT and tenant["Arn"] == f"arn:aws:iam::{b_account}:root"
    listed = admin_cli(s, "admin", "account", "list")
    assert {a["AccountId"] for a in listed} == {ACCOUNT, b_account}
    b_root = s.client(akid=tenant["AccessKeyId"], secret=tenant["SecretAccessKey"])
    # The tenant's root administers its own account, and creates nothing in others.
    b_user, b_app = user(s, "svc", "reader", akid=tenant["AccessKeyId"], secret=tenant["SecretAccessKey"])
    assert b_user["Arn"] == f"arn:aws:iam::{b_account}:user/svc"
    p = admin_cli(s, "admin", "account", "create", akid=tenant["AccessKeyId"], secret=tenant["SecretAccessKey"], check=False)
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr
    # The operator's administrator can create a user in the tenant's account.
    made = admin_cli(s, "admin", "user", "create", "ops", "--role", "manager", "--account", b_account)
    assert made["Arn"] == f"arn:aws:iam::{b_account}:user/ops"
    assert admin_cli(s, "admin", "account", "create", "--account-id", b_account, check=False).returncode != 0

    key = root.create_key()["KeyMetadata"]
    kid, arn = key["KeyId"], key["Arn"]
    blob = root.encrypt(KeyId=kid, Plaintext=b"cross")["CiphertextBlob"]
    # Another account sees nothing by key id, and is refused by ARN until the policy allows it.
    denied(lambda: b_root.describe_key(KeyId=kid), "", "NotFoundException")
    denied(lambda: b_root.encrypt(KeyId=arn, Plaintext=b"x"), "kms:Encrypt")
    denied(lambda: b_root.decrypt(CiphertextBlob=blob), "kms:Decrypt")
    assert kid not in [k["KeyId"] for k in b_root.list_keys()["Keys"]]

    shared = json.loads(root.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])
    shared["Statement"].append({"Sid": "tenant-b-use", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{b_account}:root"},
                                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"})
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=json.dumps(shared))
    assert b_root.decrypt(CiphertextBlob=blob)["Plaintext"] == b"cross"
    assert b_app.decrypt(CiphertextBlob=b_root.encrypt(KeyId=arn, Plaintext=b"y")["CiphertextBlob"])["Plaintext"] == b"y"
    assert b_root.describe_key(KeyId=arn)["KeyMetadata"]["Arn"] == arn
    # Management stays with the owner: not a cross-account operation.
    denied(lambda: b_root.disable_key(KeyId=arn), "", "NotFoundException")
    denied(lambda: b_root.generate_data_key(KeyId=arn, KeySpec="AES_256"), "kms:GenerateDataKey")

    # The key owner's audit lookup shows the other account's use of its key (as CloudTrail
    # delivers cross-account events to both accounts); the other account sees its own.
    status, body, _ = s.raw(
        "ClavisAdmin.LookupEvents", json.dumps({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}]})
    )
    assert status == 200
    assert any(json.loads(ev["CloudTrailEvent"])["recipientAccountId"] == b_account for ev in body["Events"])
    status, body, _ = s.raw("ClavisAdmin.LookupEvents", "{}", akid=tenant["AccessKeyId"], secret=tenant["SecretAccessKey"])
    assert status == 200 and body["Events"]
    assert all(json.loads(ev["CloudTrailEvent"]).get("recipientAccountId") == b_account for ev in body["Events"])

    # A grant to another account's principal works the same way.
    k2 = root.create_key()["KeyMetadata"]
    denied(lambda: b_app.generate_data_key(KeyId=k2["Arn"], KeySpec="AES_256"), "kms:GenerateDataKey")
    g = root.create_grant(KeyId=k2["KeyId"], GranteePrincipal=b_user["Arn"], Operations=["GenerateDataKey", "Decrypt"])
    dk = b_app.generate_data_key(KeyId=k2["Arn"], KeySpec="AES_256")
    assert b_app.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    root.revoke_grant(KeyId=k2["KeyId"], GrantId=g["GrantId"])
    denied(lambda: b_app.generate_data_key(KeyId=k2["Arn"], KeySpec="AES_256"), "kms:GenerateDataKey")


def roleless_user(server, name):
    """A user made without --role: least privilege, role `none` (issue #15)."""
    out = admin_cli(server, "admin", "user", "create", name)
    assert out["Role"] == "none", out
    return out, server.client(akid=out["AccessKeyId"], secret=out["SecretAccessKey"])


def test_issue15_least_privilege_and_aws_evaluation_logic(fresh_server):
    """Issue #15, item 3: a user created without a role has no permissions of its own; a key
    policy naming a principal is enough on its own, one naming the account delegates to the
    caller's role, a grant allows, and an explicit Deny beats everything."""
    s = fresh_server.start()
    root = s.client()
    nobody, nobody_kms = roleless_user(s, "nobody")
    _, reader = user(s, "app", "reader")
    # The administration API gives a role-less user `none` too.
    status, body, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "raw-nobody"}))
    assert status == 200 and body["User"]["Role"] == "none", body

    default_key = root.create_key()["KeyMetadata"]
    kid, arn = default_key["KeyId"], default_key["Arn"]
    blob = root.encrypt(KeyId=kid, Plaintext=b"default")["CiphertextBlob"]

    # Role-less: refused everywhere by default, in AWS's words.
    msg = denied(lambda: nobody_kms.encrypt(KeyId=kid, Plaintext=b"x"), "kms:Encrypt")
    assert msg == (f"User: {nobody['Arn']} is not authorized to perform: kms:Encrypt on resource: {arn} "
                   "because no identity-based policy allows the kms:Encrypt action"), msg
    denied(lambda: nobody_kms.decrypt(CiphertextBlob=blob), "kms:Decrypt")
    denied(lambda: nobody_kms.describe_key(KeyId=kid), "kms:DescribeKey")
    denied(lambda: nobody_kms.generate_data_key(KeyId=kid, KeySpec="AES_256"), "kms:GenerateDataKey")
    msg = denied(lambda: nobody_kms.create_key(), "kms:CreateKey")
    assert "because no identity-based policy allows the kms:CreateKey action" in msg, msg
    denied(lambda: nobody_kms.list_keys(), "kms:ListKeys")
    denied(lambda: nobody_kms.list_aliases(), "kms:ListAliases")
    denied(lambda: nobody_kms.generate_random(NumberOfBytes=8), "kms:GenerateRandom")
    status, body, _ = s.raw("ClavisAdmin.ListUsers", "{}", akid=nobody["AccessKeyId"], secret=nobody["SecretAccessKey"])
    assert (status, body["__type"]) == (400, "AccessDeniedException")

    # A reader uses a key whose policy delegates to the account (the default policy)...
    assert reader.decrypt(CiphertextBlob=blob)["Plaintext"] == b"default"
    assert reader.decrypt(CiphertextBlob=reader.encrypt(KeyId=kid, Plaintext=b"r")["CiphertextBlob"])["Plaintext"] == b"r"
    # ... but not beyond its role.
    msg = denied(lambda: reader.disable_key(KeyId=kid), "kms:DisableKey")
    assert "because no identity-based policy allows the kms:DisableKey action" in msg, msg

    # A key whose policy names the role-less user's ARN: that user may use it, role or not.
    named = root.create_key(Policy=policy(ROOT_ONLY, {
        "Sid": "nobody-uses", "Effect": "Allow", "Principal": {"AWS": nobody["Arn"]},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], "Resource": "*"}))["KeyMetadata"]
    out = nobody_kms.encrypt(KeyId=named["KeyId"], Plaintext=b"named")
    assert nobody_kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == b"named"
    assert nobody_kms.describe_key(KeyId=named["Arn"])["KeyMetadata"]["KeyId"] == named["KeyId"]
    denied(lambda: nobody_kms.disable_key(KeyId=named["KeyId"]), "kms:DisableKey")
    # The reader is refused on a key whose policy names only another user.
    msg = denied(lambda: reader.encrypt(KeyId=named["KeyId"], Plaintext=b"x"), "kms:Encrypt")
    assert "because no resource-based policy allows the kms:Encrypt action" in msg, msg
    denied(lambda: reader.decrypt(CiphertextBlob=out["CiphertextBlob"]), "kms:Decrypt")

    # An explicit Deny beats a policy naming the principal, a role (even the root's) and a grant.
    denying = root.create_key(Policy=policy(
        {"Sid": "account", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "nobody", "Effect": "Allow", "Principal": {"AWS": nobody["Arn"]}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "no-decrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}))["KeyMetadata"]["KeyId"]
    root.create_grant(KeyId=denying, GranteePrincipal=nobody["Arn"], Operations=["Decrypt"])
    sealed = root.encrypt(KeyId=denying, Plaintext=b"d")["CiphertextBlob"]
    for client in [root, reader, nobody_kms]:
        msg = denied(lambda: client.decrypt(CiphertextBlob=sealed), "kms:Decrypt")
        assert "with an explicit deny in a resource-based policy" in msg, msg
    assert nobody_kms.encrypt(KeyId=denying, Plaintext=b"e")["KeyId"].endswith(denying)

    # A grant allows a role-less user on a key whose policy says nothing of it.
    granted = root.create_key(Policy=policy(ROOT_ONLY))["KeyMetadata"]["KeyId"]
    g_blob = root.encrypt(KeyId=granted, Plaintext=b"granted")["CiphertextBlob"]
    denied(lambda: nobody_kms.decrypt(CiphertextBlob=g_blob), "kms:Decrypt")
    root.create_grant(KeyId=granted, GranteePrincipal=nobody["Arn"], Operations=["Decrypt"])
    assert nobody_kms.decrypt(CiphertextBlob=g_blob)["Plaintext"] == b"granted"
    denied(lambda: nobody_kms.encrypt(KeyId=granted, Plaintext=b"x"), "kms:Encrypt")

    # The lockout check follows the same rule: a policy naming a role-less user with
    # kms:PutKeyPolicy lets it change the policy; a reader delegated through the account cannot.
    own = root.create_key(
        Policy=policy(
            ROOT_ONLY, {"Sid": "nobody-admin", "Effect": "Allow", "Principal": {"AWS": nobody["Arn"]}, "Action": "kms:*", "Resource": "*"}
        )
    )["KeyMetadata"]["KeyId"]
    nobody_kms.put_key_policy(KeyId=own, PolicyName="default", Policy=policy(
        {"Sid": "nobody-admin", "Effect": "Allow", "Principal": {"AWS": nobody["Arn"]}, "Action": "kms:*", "Resource": "*"}))
    msg = denied(lambda: nobody_kms.put_key_policy(KeyId=own, PolicyName="default", Policy=policy(
        {"Sid": "account", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"})),
        "", "MalformedPolicyDocumentException")
    assert "will not allow you to update the key policy" in msg


def test_issue15_policies_fail_closed(fresh_server):
    """Issue #15, item 4: a condition key Clavis does not evaluate is refused by name, and the
    keys a Deny most often relies on are evaluated."""
    s = fresh_server.start()
    root = s.client()
    kid = root.create_key()["KeyMetadata"]["KeyId"]
    account = {"Sid": "account", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"}

    def deny_encrypt(condition):
        return policy(account, {"Sid": "deny", "Effect": "Deny", "Principal": "*", "Action": ["kms:Encrypt", "kms:Decrypt"],
                                "Resource": "*", "Condition": condition})

    # A typo in a condition key: refused, naming the key, rather than a Deny that never applies.
    for bad_key in ["kms:EncryptionContex:tenant", "aws:SourceVpc"]:
        msg = denied(lambda: root.put_key_policy(KeyId=kid, PolicyName="default",
                                                 Policy=deny_encrypt({"StringEquals": {bad_key: "a"}})),
                     "", "MalformedPolicyDocumentException")
        assert bad_key in msg, msg
        msg = denied(lambda: root.create_key(Policy=deny_encrypt({"StringEquals": {bad_key: "a"}})), "", "MalformedPolicyDocumentException")
        assert bad_key in msg, msg

    # kms:RequestAlias: a Deny on the alias the request names.
    root.create_alias(AliasName="alias/blocked", TargetKeyId=kid)
    root.create_alias(AliasName="alias/open", TargetKeyId=kid)
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=deny_encrypt({"StringEquals": {"kms:RequestAlias": "alias/blocked"}}))
    msg = denied(lambda: root.encrypt(KeyId="alias/blocked", Plaintext=b"x"), "kms:Encrypt")
    assert "explicit deny" in msg, msg
    alias_arn = root.list_aliases(KeyId=kid)["Aliases"][0]["AliasArn"]
    assert alias_arn.endswith("alias/blocked")
    denied(lambda: root.encrypt(KeyId=alias_arn, Plaintext=b"x"), "kms:Encrypt")
    assert root.encrypt(KeyId="alias/open", Plaintext=b"x")["KeyId"].endswith(kid)
    blob = root.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    denied(lambda: root.decrypt(CiphertextBlob=blob, KeyId="alias/blocked"), "kms:Decrypt")
    assert root.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"

    # aws:ResourceTag: a Deny on the key's own tag, applied as soon as the tag is.
    root.put_key_policy(
        KeyId=kid, PolicyName="default", Policy=deny_encrypt({"StringEquals": {"aws:ResourceTag/Classification": "secret"}})
    )
    assert root.encrypt(KeyId=kid, Plaintext=b"x")["KeyId"].endswith(kid)
    root.tag_resource(KeyId=kid, Tags=[{"TagKey": "Classification", "TagValue": "secret"}])
    denied(lambda: root.encrypt(KeyId=kid, Plaintext=b"x"), "kms:Encrypt")
    root.untag_resource(KeyId=kid, TagKeys=["Classification"])
    assert root.encrypt(KeyId=kid, Plaintext=b"x")["KeyId"].endswith(kid)

    # aws:CurrentTime: a Deny after a date that has passed applies; one before it does not.
    root.put_key_policy(
        KeyId=kid, PolicyName="default", Policy=deny_encrypt({"DateGreaterThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}})
    )
    denied(lambda: root.encrypt(KeyId=kid, Plaintext=b"x"), "kms:Encrypt")
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=deny_encrypt({"DateLessThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}}))
    assert root.encrypt(KeyId=kid, Plaintext=b"x")["KeyId"].endswith(kid)

    # aws:SecureTransport: plain HTTP is not secure transport, so the Deny applies.
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=deny_encrypt({"Bool": {"aws:SecureTransport": "false"}}))
    denied(lambda: root.encrypt(KeyId=kid, Plaintext=b"x"), "kms:Encrypt")
    root.put_key_policy(KeyId=kid, PolicyName="default", Policy=deny_encrypt({"Bool": {"aws:SecureTransport": "true"}}))
    assert root.encrypt(KeyId=kid, Plaintext=b"x")["KeyId"].endswith(kid)


def test_issue15_unreadable_stored_policy_denies(fresh_server):
    """Issue #15: a stored policy that no longer parses denies every request on its key; it is
    not replaced by the default policy (which would give the key to the whole account)."""
    import sqlite3
    s = fresh_server.start()
    root = s.client()
    kid = root.create_key()["KeyMetadata"]["KeyId"]
    blob = root.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    s.stop()
    db = sqlite3.connect(s.data_dir / "clavis.db")
    with db:
        db.execute("UPDATE keys SET policy = ? WHERE key_id = ?", ('{"Statement": "written by a future version"}', kid))
    db.close()
    s.start()
    for call, action in [(lambda: root.decrypt(CiphertextBlob=blob), "kms:Decrypt"),
                         (lambda: root.describe_key(KeyId=kid), "kms:DescribeKey"),
                         (lambda: root.encrypt(KeyId=kid, Plaintext=b"x"), "kms:Encrypt")]:
        msg = denied(call, action)
        assert "not a valid policy document" in msg, msg
    # Other keys are unaffected.
    assert root.encrypt(KeyId=root.create_key()["KeyMetadata"]["KeyId"], Plaintext=b"y")["CiphertextBlob"]
