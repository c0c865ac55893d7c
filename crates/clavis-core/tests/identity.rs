//! Identities through the core's public operations: accounts (tenants), users and their
//! built-in roles (including `none`, the role of a user created without one), access keys and
//! the credentials the HTTP layer authenticates with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

mod common;

use clavis_core::api::*;
use clavis_core::types::Role;
use clavis_core::{Caller, Credential, Kms};
use common::*;
use serde_json::json;

fn create_user(name: &str, role: Option<&str>) -> CreateUserRequest {
    CreateUserRequest { user_name: Some(name.to_owned()), role: role.map(str::to_owned), account_id: None }
}

/// The caller the HTTP layer would build for a request signed with this credential.
fn caller_of(cred: &Credential) -> Caller {
    Caller {
        account: cred.account.clone(),
        region: clavis_core::types::Region::parse(REGION).unwrap(),
        principal_arn: cred.principal_arn.clone(),
        access_key_id: cred.access_key_id.clone(),
        role: cred.role,
        source_ip: None,
        secure_transport: true,
        resources: Default::default(),
    }
}

async fn signed_in(kms: &Kms, access_key_id: &str) -> Caller {
    let cred = kms.credential(access_key_id).await.unwrap().expect("an access key just created");
    assert!(cred.active);
    caller_of(&cred)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_without_a_role_can_do_nothing_but_what_a_key_policy_gives_it() {
    let env = Env::initialized("id-none").await;
    let (kms, admin) = (&env.kms, admin());
    let created = kms.create_user(&admin, create_user("app", None)).await.unwrap();
    assert_eq!(created.user.role, "none");
    assert_eq!(created.user.arn, user_arn(OPERATOR, "app"));
    let akid = &created.access_key.access_key_id;
    assert!(akid.starts_with("AKIA") && akid.len() == 20, "{akid}");
    assert_eq!(created.access_key.secret_access_key.expose_secret().len(), 40);
    assert_eq!(created.access_key.status, "Active");

    // The credential the HTTP layer verifies signatures with: the secret returned once.
    let cred = kms.credential(akid).await.unwrap().unwrap();
    assert_eq!(cred.secret.expose_secret(), created.access_key.secret_access_key.expose_secret().as_bytes());
    assert_eq!((cred.role, cred.principal_arn.as_str(), cred.account.as_str()), (Role::None, created.user.arn.as_str(), OPERATOR));
    // Debug output never shows the secret.
    assert!(!format!("{cred:?}").contains(created.access_key.secret_access_key.expose_secret()));

    let app = caller_of(&cred);
    let key = new_key(kms, &admin).await;
    let denied = "because no identity-based policy allows the kms:CreateKey action";
    assert_error(kms.create_key(&app, CreateKeyRequest::default()).await, "AccessDeniedException", denied);
    assert_error(kms.list_keys(&app, ListKeysRequest::default()).await, "AccessDeniedException", "kms:ListKeys");
    assert_error(
        kms.generate_random(&app, GenerateRandomRequest { number_of_bytes: Some(8), ..Default::default() }).await,
        "AccessDeniedException",
        "kms:GenerateRandom",
    );
    // The default key policy delegates to the account's identities: the role decides, and
    // `none` allows nothing.
    assert_error(describe(kms, &app, &key).await, "AccessDeniedException", "no identity-based policy allows the kms:DescribeKey action");
    assert_error(encrypt(kms, &app, &key, b"x", None).await, "AccessDeniedException", "kms:Encrypt");
    assert_error(kms.create_user(&app, create_user("other", None)).await, "AccessDeniedException", "clavis:CreateUser");

    // A key policy naming the user itself allows it, whatever its role.
    let policy = json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OPERATOR}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": created.user.arn}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}
    ]});
    let shared = new_key_with_policy(kms, &admin, policy).await;
    let blob = encrypt(kms, &app, &shared, b"mine", None).await.unwrap();
    assert_eq!(decrypt(kms, &app, &blob, None).await.unwrap(), b"mine");
    assert_error(describe(kms, &app, &shared).await, "AccessDeniedException", "kms:DescribeKey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bound_what_each_user_may_do() {
    let env = Env::initialized("id-roles").await;
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let blob = encrypt(kms, &admin, &key, b"data", None).await.unwrap();
    let mut callers = std::collections::HashMap::new();
    for role in ["reader", "writer", "manager", "admin"] {
        let created = kms.create_user(&admin, create_user(role, Some(role))).await.unwrap();
        assert_eq!(created.user.role, role);
        let c = signed_in(kms, &created.access_key.access_key_id).await;
        assert_eq!(c.role.as_str(), role);
        callers.insert(role, c);
    }
    let listed = kms.list_users(&admin, ListUsersRequest::default()).await.unwrap();
    let mut names: Vec<(String, String)> = listed.users.into_iter().map(|u| (u.user_name, u.role)).collect();
    names.sort();
    assert_eq!(
        names,
        [("admin", "admin"), ("manager", "manager"), ("reader", "reader"), ("writer", "writer")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    let reader = &callers["reader"];
    assert_eq!(decrypt(kms, reader, &blob, None).await.unwrap(), b"data");
    describe(kms, reader, &key).await.unwrap();
    assert_error(kms.create_key(reader, CreateKeyRequest::default()).await, "AccessDeniedException", "kms:CreateKey");
    let tag = TagResourceRequest {
        key_id: Some(key.clone()),
        tags: Some(vec![TagEntry { tag_key: Some("a".into()), tag_value: Some("b".into()) }]),
    };
    assert_error(kms.tag_resource(reader, tag).await, "AccessDeniedException", "kms:TagResource");

    let writer = &callers["writer"];
    let own = new_key(kms, writer).await;
    assert_error(kms.disable_key(writer, key_req(&own)).await, "AccessDeniedException", "kms:DisableKey");
    let put = PutKeyPolicyRequest {
        key_id: Some(own.clone()),
        policy: Some(clavis_core::policy::Policy::default_document(OPERATOR)),
        ..Default::default()
    };
    assert_error(kms.put_key_policy(writer, put).await, "AccessDeniedException", "kms:PutKeyPolicy");

    let manager = &callers["manager"];
    kms.disable_key(manager, key_req(&own)).await.unwrap();
    assert_error(kms.create_user(manager, create_user("x", None)).await, "AccessDeniedException", "clavis:CreateUser");
    assert_error(kms.list_users(manager, ListUsersRequest::default()).await, "AccessDeniedException", "clavis:ListUsers");

    let second_admin = &callers["admin"];
    let made = kms.create_user(second_admin, create_user("by-admin", Some("reader"))).await.unwrap();
    assert_eq!(made.user.arn, user_arn(OPERATOR, "by-admin"));

    // User names and roles are checked.
    assert_error(
        kms.create_user(&admin, create_user("reader", None)).await,
        "AlreadyExistsException",
        "User with name reader already exists.",
    );
    assert_error(kms.create_user(&admin, create_user("no spaces", None)).await, "ValidationException", "regular expression pattern");
    assert_error(
        kms.create_user(&admin, create_user("u", Some("root"))).await,
        "ValidationException",
        "Value 'root' at 'role' failed to satisfy constraint: Member must satisfy enum value set: [admin, manager, writer, reader, none]",
    );
    assert_error(kms.create_user(&admin, create_user(&"x".repeat(65), None)).await, "ValidationException", "less than or equal to 64");
    assert_error(kms.create_user(&admin, CreateUserRequest::default()).await, "ValidationException", "Value null at 'userName'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_are_created_deactivated_and_deleted_at_once() {
    let env = Env::initialized("id-keys").await;
    let (kms, admin) = (&env.kms, admin());
    let created = kms.create_user(&admin, create_user("app", Some("reader"))).await.unwrap();
    let first = created.access_key.access_key_id.clone();
    let second = kms.create_access_key(&admin, CreateAccessKeyRequest { user_name: Some("app".into()) }).await.unwrap().access_key;
    assert_ne!(second.access_key_id, first);
    let cred = kms.credential(&second.access_key_id).await.unwrap().unwrap();
    assert_eq!(cred.principal_arn, created.user.arn);
    assert_eq!(cred.secret.expose_secret(), second.secret_access_key.expose_secret().as_bytes());

    let listed = kms.list_access_keys(&admin, ListAccessKeysRequest { user_name: Some("app".into()) }).await.unwrap().access_key_metadata;
    let mut ids: Vec<&str> = listed.iter().map(|k| k.access_key_id.as_str()).collect();
    ids.sort();
    let mut expected = [first.as_str(), second.access_key_id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(listed.iter().all(|k| k.user_name == "app" && k.status == "Active"));
    // The caller's own keys when no user is named.
    let own = kms.list_access_keys(&admin, ListAccessKeysRequest::default()).await.unwrap().access_key_metadata;
    assert_eq!(own.iter().map(|k| k.access_key_id.as_str()).collect::<Vec<_>>(), [OPERATOR_AKID]);

    // Deactivation is in force on this node at once (no wait for the credential cache).
    let update = |id: &str, status: &str| UpdateAccessKeyRequest { access_key_id: Some(id.to_owned()), status: Some(status.to_owned()) };
    kms.update_access_key(&admin, update(&first, "Inactive")).await.unwrap();
    assert!(!kms.credential(&first).await.unwrap().unwrap().active);
    kms.update_access_key(&admin, update(&first, "Active")).await.unwrap();
    assert!(kms.credential(&first).await.unwrap().unwrap().active);
    assert_error(
        kms.update_access_key(&admin, update(&first, "Paused")).await,
        "ValidationException",
        "enum value set: [Active, Inactive]",
    );

    kms.delete_access_key(&admin, DeleteAccessKeyRequest { access_key_id: Some(first.clone()) }).await.unwrap();
    assert!(kms.credential(&first).await.unwrap().is_none());
    assert_error(
        kms.delete_access_key(&admin, DeleteAccessKeyRequest { access_key_id: Some(first.clone()) }).await,
        "NotFoundException",
        "cannot be found",
    );

    // An administrator cannot lock itself out with the key it signs with.
    assert_error(kms.update_access_key(&admin, update(OPERATOR_AKID, "Inactive")).await, "ValidationException", "signs the request");
    assert_error(
        kms.delete_access_key(&admin, DeleteAccessKeyRequest { access_key_id: Some(OPERATOR_AKID.into()) }).await,
        "ValidationException",
        "signs the request",
    );
    assert_error(
        kms.create_access_key(&admin, CreateAccessKeyRequest { user_name: Some("ghost".into()) }).await,
        "NotFoundException",
        "The user with name ghost cannot be found.",
    );
    // Only administrators manage access keys.
    let app = signed_in(kms, &second.access_key_id).await;
    assert_error(kms.create_access_key(&app, CreateAccessKeyRequest::default()).await, "AccessDeniedException", "clavis:CreateAccessKey");
    assert!(kms.credential("AKIANOSUCHKEY0000000").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_tenants_that_see_only_their_own() {
    let env = Env::initialized("id-accounts").await;
    let (kms, admin) = (&env.kms, admin());
    let new_account = |id: Option<&str>| CreateAccountRequest { account_id: id.map(str::to_owned), account_name: Some("tenant".into()) };
    let made = kms.create_account(&admin, new_account(Some(TENANT))).await.unwrap();
    assert_eq!((made.account.account_id.as_str(), made.account.arn.as_str()), (TENANT, "arn:aws:iam::444455556666:root"));
    let generated = kms.create_account(&admin, new_account(None)).await.unwrap().account.account_id;
    assert!(generated.len() == 12 && generated.bytes().all(|b| b.is_ascii_digit()) && !generated.starts_with('0'), "{generated}");

    assert_error(kms.create_account(&admin, new_account(Some(TENANT))).await, "AlreadyExistsException", "444455556666 already exists");
    assert_error(kms.create_account(&admin, new_account(Some(OPERATOR))).await, "AlreadyExistsException", "111122223333 already exists");
    assert_error(kms.create_account(&admin, new_account(Some("12345"))).await, "ValidationException", "Member must be 12 digits");
    assert_error(kms.create_account(&user("a", Role::Manager), new_account(None)).await, "AccessDeniedException", "clavis:CreateAccount");

    // The tenant's root signs in as the administrator of its own account only.
    let tenant = signed_in(kms, &made.access_key.access_key_id).await;
    assert_eq!((tenant.account.as_str(), tenant.role, tenant.principal_arn.as_str()), (TENANT, Role::Admin, made.account.arn.as_str()));
    assert_error(kms.create_account(&tenant, new_account(None)).await, "AccessDeniedException", "only the operator's account");
    let seen = kms.list_accounts(&tenant, ListAccountsRequest::default()).await.unwrap().accounts;
    assert_eq!(seen.iter().map(|a| a.account_id.as_str()).collect::<Vec<_>>(), [TENANT]);
    let all = kms.list_accounts(&admin, ListAccountsRequest::default()).await.unwrap().accounts;
    let mut ids: Vec<&str> = all.iter().map(|a| a.account_id.as_str()).collect();
    ids.sort();
    let mut expected = [OPERATOR, TENANT, generated.as_str()];
    expected.sort();
    assert_eq!(ids, expected);

    // Keys and users are the account's own.
    let tenant_key = kms.create_key(&tenant, CreateKeyRequest::default()).await.unwrap().key_metadata;
    assert_eq!(tenant_key.aws_account_id, TENANT);
    assert_error(describe(kms, &admin, &tenant_key.key_id).await, "NotFoundException", "does not exist");
    // By ARN the operator finds it, but the tenant's default policy does not name the operator.
    assert_error(describe(kms, &admin, &tenant_key.arn).await, "AccessDeniedException", "kms:DescribeKey");
    assert_eq!(kms.list_keys(&admin, ListKeysRequest::default()).await.unwrap().keys.len(), 0);
    assert_eq!(kms.list_keys(&tenant, ListKeysRequest::default()).await.unwrap().keys.len(), 1);
    kms.create_user(&tenant, create_user("app", Some("reader"))).await.unwrap();
    let tenant_users = kms.list_users(&tenant, ListUsersRequest::default()).await.unwrap().users;
    assert_eq!(tenant_users.iter().map(|u| u.arn.as_str()).collect::<Vec<_>>(), [user_arn(TENANT, "app")]);
    assert!(kms.list_users(&admin, ListUsersRequest::default()).await.unwrap().users.is_empty());
    // Another account's access key is not found from here.
    let update = UpdateAccessKeyRequest { access_key_id: Some(made.access_key.access_key_id.clone()), status: Some("Inactive".into()) };
    assert_error(kms.update_access_key(&admin, update).await, "NotFoundException", "cannot be found");

    // Only the operator's administrators create users in another account, and only in one that exists.
    let in_tenant = |account: &str| CreateUserRequest { account_id: Some(account.to_owned()), ..create_user("ops", Some("reader")) };
    let ops = kms.create_user(&admin, in_tenant(TENANT)).await.unwrap();
    assert_eq!(ops.user.arn, user_arn(TENANT, "ops"));
    let ops_caller = signed_in(kms, &ops.access_key.access_key_id).await;
    assert_eq!((ops_caller.account.as_str(), ops_caller.role), (TENANT, Role::Reader));
    assert_error(kms.create_user(&admin, in_tenant("999999999999")).await, "NotFoundException", "999999999999 does not exist");
    assert_error(
        kms.create_user(&tenant, in_tenant(OPERATOR)).await,
        "AccessDeniedException",
        "only administrators of the operator's account",
    );
}
