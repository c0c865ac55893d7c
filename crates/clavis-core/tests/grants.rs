//! Grants through the core's public operations: what a grant allows and what it does not, its
//! constraints, grants made through grants, retiring and revoking, listing, validation, and
//! grants across accounts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

mod common;

use clavis_core::api::*;
use clavis_core::types::Role;
use common::*;
use serde_json::json;

fn grant(key_id: &str, grantee: &str, operations: &[&str]) -> CreateGrantRequest {
    CreateGrantRequest {
        key_id: Some(key_id.to_owned()),
        grantee_principal: Some(grantee.to_owned()),
        operations: Some(operations.iter().map(|o| (*o).to_owned()).collect()),
        ..Default::default()
    }
}

fn list(key_id: &str) -> ListGrantsRequest {
    ListGrantsRequest { key_id: Some(key_id.to_owned()), ..Default::default() }
}

/// A key policy that allows only the operator's root itself, so that nothing but a grant lets
/// another principal of the account use the key.
fn root_only_policy() -> serde_json::Value {
    json!({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OPERATOR}:root")}, "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalArn": format!("arn:aws:iam::{OPERATOR}:root")}}
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_allows_its_operations_and_nothing_else_until_revoked() {
    let env = Env::new("grant-allows");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let blob = encrypt(kms, &admin, &key, b"secret", None).await.unwrap();
    let app = user("app", Role::None);

    assert_error(decrypt(kms, &app, &blob, None).await, "AccessDeniedException", "kms:Decrypt");
    let g = kms.create_grant(&admin, grant(&key, &app.principal_arn, &["Decrypt"])).await.unwrap();
    assert_eq!(g.grant_id.len(), 64, "{}", g.grant_id);

    // In force at once (grants are never cached).
    assert_eq!(decrypt(kms, &app, &blob, None).await.unwrap(), b"secret");
    // Only the operations it lists.
    assert_error(encrypt(kms, &app, &key, b"x", None).await, "AccessDeniedException", "kms:Encrypt");
    assert_error(describe(kms, &app, &key).await, "AccessDeniedException", "kms:DescribeKey");

    let listed = kms.list_grants(&admin, list(&key)).await.unwrap();
    assert_eq!(listed.grants.len(), 1);
    let entry = &listed.grants[0];
    assert_eq!(entry.grant_id, g.grant_id);
    assert_eq!(entry.operations, ["Decrypt"]);
    assert_eq!(entry.grantee_principal, app.principal_arn);
    assert_eq!(entry.issuing_account, format!("arn:aws:iam::{OPERATOR}:root"));
    assert!(entry.key_id.ends_with(&format!(":key/{key}")), "{}", entry.key_id);

    kms.revoke_grant(&admin, RevokeGrantRequest { key_id: Some(key.clone()), grant_id: Some(g.grant_id.clone()), dry_run: None })
        .await
        .unwrap();
    assert_error(decrypt(kms, &app, &blob, None).await, "AccessDeniedException", "kms:Decrypt");
    assert!(kms.list_grants(&admin, list(&key)).await.unwrap().grants.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_bind_a_grant_to_encryption_contexts() {
    let env = Env::new("grant-constraints");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let app = user("app", Role::None);
    let tenant_a = ctx(&[("tenant", "a")]);
    let tenant_a_more = ctx(&[("tenant", "a"), ("purpose", "backup")]);
    let tenant_b = ctx(&[("tenant", "b")]);

    let equals = CreateGrantRequest {
        constraints: Some(GrantConstraints { encryption_context_equals: Some(tenant_a.clone()), encryption_context_subset: None }),
        ..grant(&key, &app.principal_arn, &["Encrypt", "Decrypt"])
    };
    kms.create_grant(&admin, equals).await.unwrap();
    let a = encrypt(kms, &app, &key, b"a", Some(tenant_a.clone())).await.unwrap();
    assert_eq!(decrypt(kms, &app, &a, Some(tenant_a.clone())).await.unwrap(), b"a");
    assert_error(encrypt(kms, &app, &key, b"a", Some(tenant_a_more.clone())).await, "AccessDeniedException", "kms:Encrypt");
    assert_error(encrypt(kms, &app, &key, b"b", Some(tenant_b.clone())).await, "AccessDeniedException", "kms:Encrypt");
    // Refused for the context, before anything is said about the ciphertext.
    let b = encrypt(kms, &admin, &key, b"b", Some(tenant_b.clone())).await.unwrap();
    assert_error(decrypt(kms, &app, &b, Some(tenant_b)).await, "AccessDeniedException", "kms:Decrypt");

    let other = user("other", Role::None);
    let subset = CreateGrantRequest {
        constraints: Some(GrantConstraints { encryption_context_equals: None, encryption_context_subset: Some(tenant_a.clone()) }),
        ..grant(&key, &other.principal_arn, &["Encrypt"])
    };
    kms.create_grant(&admin, subset).await.unwrap();
    encrypt(kms, &other, &key, b"x", Some(tenant_a_more)).await.unwrap();
    assert_error(encrypt(kms, &other, &key, b"x", None).await, "AccessDeniedException", "kms:Encrypt");

    let both = CreateGrantRequest {
        constraints: Some(GrantConstraints {
            encryption_context_equals: Some(tenant_a.clone()),
            encryption_context_subset: Some(tenant_a),
        }),
        ..grant(&key, &other.principal_arn, &["Encrypt"])
    };
    assert_error(kms.create_grant(&admin, both).await, "ValidationException", "only one constraint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_for_the_account_reaches_its_principals_as_far_as_their_roles_allow() {
    let env = Env::new("grant-account");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key_with_policy(kms, &admin, root_only_policy()).await;
    let blob = encrypt(kms, &admin, &key, b"shared", None).await.unwrap();
    let reader = user("reader", Role::Reader);
    let nobody = user("nobody", Role::None);
    // The policy names only the root: the reader's role alone does not reach the key.
    assert_error(decrypt(kms, &reader, &blob, None).await, "AccessDeniedException", "no resource-based policy allows");

    // A bare account id names the account's root.
    kms.create_grant(&admin, grant(&key, OPERATOR, &["Decrypt"])).await.unwrap();
    let listed = kms.list_grants(&admin, list(&key)).await.unwrap();
    assert_eq!(listed.grants[0].grantee_principal, format!("arn:aws:iam::{OPERATOR}:root"));
    assert_eq!(decrypt(kms, &reader, &blob, None).await.unwrap(), b"shared");
    assert_error(decrypt(kms, &nobody, &blob, None).await, "AccessDeniedException", "kms:Decrypt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_made_through_a_grant_stay_within_it() {
    let env = Env::new("grant-child");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key_with_policy(kms, &admin, root_only_policy()).await;
    let delegate = user("delegate", Role::None);
    let worker = user("worker", Role::None);
    let tenant = ctx(&[("tenant", "a")]);
    let parent = CreateGrantRequest {
        constraints: Some(GrantConstraints { encryption_context_subset: Some(tenant.clone()), encryption_context_equals: None }),
        ..grant(&key, &delegate.principal_arn, &["CreateGrant", "Decrypt", "Encrypt"])
    };
    kms.create_grant(&admin, parent).await.unwrap();

    // Operations beyond the parent's are refused.
    let wider = grant(&key, &worker.principal_arn, &["Decrypt", "ReEncryptFrom"]);
    assert_error(kms.create_grant(&delegate, wider).await, "AccessDeniedException", "kms:CreateGrant");
    // So is a child without the parent's constraint.
    let unconstrained = grant(&key, &worker.principal_arn, &["Decrypt"]);
    assert_error(kms.create_grant(&delegate, unconstrained).await, "AccessDeniedException", "kms:CreateGrant");

    let child = CreateGrantRequest {
        constraints: Some(GrantConstraints { encryption_context_subset: Some(tenant.clone()), encryption_context_equals: None }),
        ..grant(&key, &worker.principal_arn, &["Encrypt"])
    };
    kms.create_grant(&delegate, child).await.unwrap();
    encrypt(kms, &worker, &key, b"w", Some(tenant)).await.unwrap();
    assert_error(encrypt(kms, &worker, &key, b"w", None).await, "AccessDeniedException", "kms:Encrypt");
    let listed = kms.list_grants(&admin, list(&key)).await.unwrap();
    assert_eq!(listed.grants.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_grant_validates_like_aws_and_is_idempotent_by_name() {
    let env = Env::new("grant-validate");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let grantee = user_arn(OPERATOR, "app");

    let no_grantee = CreateGrantRequest { grantee_principal: None, ..grant(&key, &grantee, &["Decrypt"]) };
    assert_error(
        kms.create_grant(&admin, no_grantee).await,
        "ValidationException",
        "Value null at 'granteePrincipal' failed to satisfy constraint: Member must not be null",
    );
    assert_error(
        kms.create_grant(&admin, grant(&key, &grantee, &[])).await,
        "ValidationException",
        "Member must have length greater than or equal to 1",
    );
    assert_error(
        kms.create_grant(&admin, grant(&key, &grantee, &["Fly"])).await,
        "ValidationException",
        "Value 'Fly' at 'operations.member'",
    );
    // Operations AWS does not allow in a grant.
    assert_error(kms.create_grant(&admin, grant(&key, &grantee, &["ScheduleKeyDeletion"])).await, "ValidationException", "enum value set");
    assert_error(kms.create_grant(&admin, grant(&key, "*", &["Decrypt"])).await, "ValidationException", "IAM principal ARN");
    assert_error(kms.create_grant(&admin, grant(&key, "bob", &["Decrypt"])).await, "ValidationException", "IAM principal ARN");
    let bad_name = CreateGrantRequest { name: Some("no spaces".into()), ..grant(&key, &grantee, &["Decrypt"]) };
    assert_error(kms.create_grant(&admin, bad_name).await, "ValidationException", "regular expression pattern");
    let alias = grant("alias/app", &grantee, &["Decrypt"]);
    assert_error(kms.create_grant(&admin, alias).await, "NotFoundException", "not an alias");
    let dry = CreateGrantRequest { dry_run: Some(true), ..grant(&key, &grantee, &["Decrypt"]) };
    assert_error(kms.create_grant(&admin, dry).await, "DryRunOperationException", "DryRun");
    assert!(kms.list_grants(&admin, list(&key)).await.unwrap().grants.is_empty(), "a dry run made a grant");

    // Same name, same parameters: the same grant. A change of parameters is a new one.
    let named = || CreateGrantRequest { name: Some("app-decrypt".into()), ..grant(&key, &grantee, &["Decrypt", "Encrypt"]) };
    let first = kms.create_grant(&admin, named()).await.unwrap();
    let again = kms.create_grant(&admin, named()).await.unwrap();
    assert_eq!((&first.grant_id, &first.grant_token), (&again.grant_id, &again.grant_token));
    // Operations are a set: order and repeats do not make a different grant.
    let reordered = CreateGrantRequest { name: Some("app-decrypt".into()), ..grant(&key, &grantee, &["Encrypt", "Decrypt", "Encrypt"]) };
    assert_eq!(kms.create_grant(&admin, reordered).await.unwrap().grant_id, first.grant_id);
    let changed = CreateGrantRequest { name: Some("app-decrypt".into()), ..grant(&key, &grantee, &["Decrypt"]) };
    assert_ne!(kms.create_grant(&admin, changed).await.unwrap().grant_id, first.grant_id);
    assert_eq!(kms.list_grants(&admin, list(&key)).await.unwrap().grants.len(), 2);

    // No grants on a key pending deletion.
    kms.schedule_key_deletion(&admin, ScheduleKeyDeletionRequest { key_id: Some(key.clone()), pending_window_in_days: Some(7) })
        .await
        .unwrap();
    assert_error(kms.create_grant(&admin, grant(&key, &grantee, &["Decrypt"])).await, "KMSInvalidStateException", "pending deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_is_for_the_retiring_principal_the_grantee_allowed_to_and_administrators() {
    let env = Env::new("grant-retire");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let app = user("app", Role::None);
    let retirer = user("retirer", Role::None);
    let stranger = user("stranger", Role::Reader);

    let g = kms
        .create_grant(
            &admin,
            CreateGrantRequest { retiring_principal: Some(retirer.principal_arn.clone()), ..grant(&key, &app.principal_arn, &["Decrypt"]) },
        )
        .await
        .unwrap();
    let by_token = |token: &str| RetireGrantRequest { grant_token: Some(token.to_owned()), ..Default::default() };

    // Retirable grants are listed for the retiring principal's account only.
    let retirable = kms
        .list_retirable_grants(
            &admin,
            ListRetirableGrantsRequest { retiring_principal: Some(retirer.principal_arn.clone()), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(retirable.grants.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), [g.grant_id.as_str()]);
    let elsewhere = ListRetirableGrantsRequest { retiring_principal: Some(user_arn(TENANT, "x")), ..Default::default() };
    assert_error(kms.list_retirable_grants(&admin, elsewhere).await, "AccessDeniedException", "of another account");

    assert_error(kms.retire_grant(&stranger, by_token(&g.grant_token)).await, "AccessDeniedException", "neither the retiring principal");
    // The grantee may retire only when RetireGrant is one of the grant's operations.
    assert_error(kms.retire_grant(&app, by_token(&g.grant_token)).await, "AccessDeniedException", "neither the retiring principal");
    let dry = RetireGrantRequest { dry_run: Some(true), ..by_token(&g.grant_token) };
    assert_error(kms.retire_grant(&retirer, dry).await, "DryRunOperationException", "DryRun");
    kms.retire_grant(&retirer, by_token(&g.grant_token)).await.unwrap();
    assert!(kms.list_grants(&admin, list(&key)).await.unwrap().grants.is_empty());
    assert_error(kms.retire_grant(&retirer, by_token(&g.grant_token)).await, "InvalidGrantTokenException", "no longer exists");

    let self_retiring = kms.create_grant(&admin, grant(&key, &app.principal_arn, &["Decrypt", "RetireGrant"])).await.unwrap();
    let by_id = RetireGrantRequest { key_id: Some(key.clone()), grant_id: Some(self_retiring.grant_id.clone()), ..Default::default() };
    kms.retire_grant(&app, by_id).await.unwrap();

    // The account's administrator may retire any grant of its keys.
    let g = kms.create_grant(&admin, grant(&key, &app.principal_arn, &["Decrypt"])).await.unwrap();
    kms.retire_grant(&root(OPERATOR), by_token(&g.grant_token)).await.unwrap();

    // Tokens Clavis did not issue, and requests naming the grant twice or not at all.
    assert_error(kms.retire_grant(&admin, by_token("not-a-token")).await, "InvalidGrantTokenException", "not valid");
    let both = RetireGrantRequest { key_id: Some(key.clone()), ..by_token(&g.grant_token) };
    assert_error(kms.retire_grant(&admin, both).await, "ValidationException", "either GrantToken, or both KeyId and GrantId");
    assert_error(kms.retire_grant(&admin, RetireGrantRequest::default()).await, "ValidationException", "either GrantToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_list_check_grant_ids_tokens_and_pages() {
    let env = Env::new("grant-revoke");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let revoke = |grant_id: &str| RevokeGrantRequest { key_id: Some(key.clone()), grant_id: Some(grant_id.to_owned()), dry_run: None };
    assert_error(kms.revoke_grant(&admin, revoke("abc")).await, "InvalidGrantIdException", "Grant ID abc is not valid.");
    assert_error(kms.revoke_grant(&admin, revoke(&"0".repeat(64))).await, "NotFoundException", "does not exist on key");
    // Revoking needs a role that manages keys: a writer is refused.
    let g = kms.create_grant(&admin, grant(&key, &user_arn(OPERATOR, "app"), &["Decrypt"])).await.unwrap();
    assert_error(kms.revoke_grant(&user("w", Role::Writer), revoke(&g.grant_id)).await, "AccessDeniedException", "kms:RevokeGrant");
    let dry = RevokeGrantRequest { dry_run: Some(true), ..revoke(&g.grant_id) };
    assert_error(kms.revoke_grant(&admin, dry).await, "DryRunOperationException", "DryRun");
    assert_eq!(kms.list_grants(&admin, list(&key)).await.unwrap().grants.len(), 1, "a dry run revoked the grant");
    // A grant id of another key is not found on this one.
    let other_key = new_key(kms, &admin).await;
    let wrong_key = RevokeGrantRequest { key_id: Some(other_key), grant_id: Some(g.grant_id.clone()), dry_run: None };
    assert_error(kms.revoke_grant(&admin, wrong_key).await, "NotFoundException", "does not exist on key");

    // A grant token in a request must be one Clavis issued; an issued one is accepted.
    let with_token = |t: &str| EncryptRequest {
        key_id: Some(key.clone()),
        plaintext: blob(b"x"),
        grant_tokens: Some(vec![t.to_owned()]),
        ..Default::default()
    };
    assert_error(kms.encrypt(&admin, with_token("forged")).await, "InvalidGrantTokenException", "not valid");
    kms.encrypt(&admin, with_token(&g.grant_token)).await.unwrap();
    let eleven = EncryptRequest { grant_tokens: Some(vec![g.grant_token.clone(); 11]), ..with_token(&g.grant_token) };
    assert_error(kms.encrypt(&admin, eleven).await, "ValidationException", "'grantTokens'");

    // Pages of ListGrants, and the grantee filter.
    for i in 0..4 {
        kms.create_grant(&admin, grant(&key, &user_arn(OPERATOR, &format!("u{i}")), &["Encrypt"])).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = kms.list_grants(&admin, ListGrantsRequest { limit: Some(2), marker: marker.clone(), ..list(&key) }).await.unwrap();
        assert!(page.grants.len() <= 2);
        seen.extend(page.grants.into_iter().map(|g| g.grant_id));
        if !page.truncated {
            assert!(page.next_marker.is_none());
            break;
        }
        marker = page.next_marker;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let bad_marker = ListGrantsRequest { marker: Some("nope".into()), ..list(&key) };
    assert_error(kms.list_grants(&admin, bad_marker).await, "InvalidMarkerException", "marker");
    let one = ListGrantsRequest { grantee_principal: Some(user_arn(OPERATOR, "u2")), ..list(&key) };
    assert_eq!(kms.list_grants(&admin, one).await.unwrap().grants.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_shares_a_key_with_another_account_by_arn_only() {
    let env = Env::new("grant-cross");
    let (kms, admin) = (&env.kms, admin());
    let key_meta = kms.create_key(&admin, CreateKeyRequest::default()).await.unwrap().key_metadata;
    let blob = encrypt(kms, &admin, &key_meta.key_id, b"across", None).await.unwrap();
    let partner = caller(TENANT, &user_arn(TENANT, "partner"), Role::Admin);

    // The key's policy names only its own account.
    assert_error(decrypt(kms, &partner, &blob, None).await, "AccessDeniedException", "kms:Decrypt");
    kms.create_grant(&admin, grant(&key_meta.key_id, &partner.principal_arn, &["Decrypt", "Encrypt", "DescribeKey"])).await.unwrap();
    assert_eq!(decrypt(kms, &partner, &blob, None).await.unwrap(), b"across");
    encrypt(kms, &partner, &key_meta.arn, b"back", None).await.unwrap();
    assert_eq!(describe(kms, &partner, &key_meta.arn).await.unwrap().key_id, key_meta.key_id);
    // A bare key id names a key of the caller's own account.
    assert_error(describe(kms, &partner, &key_meta.key_id).await, "NotFoundException", "does not exist");
    // Operations AWS does not allow across accounts do not find the key at all.
    assert_error(kms.disable_key(&partner, key_req(&key_meta.arn)).await, "NotFoundException", "does not exist");
}
