//! The key lifecycle through the core's public operations, with the test clock: enable and
//! disable, automatic and on-demand rotation, scheduled deletion and its cancellation, the
//! scheduler's due work, dual authorization of deletion, and which roles may do each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

mod common;

use clavis_core::api::*;
use clavis_core::types::Role;
use common::*;

fn schedule(key_id: &str, days: Option<i64>) -> ScheduleKeyDeletionRequest {
    ScheduleKeyDeletionRequest { key_id: Some(key_id.to_owned()), pending_window_in_days: days }
}

fn rotation(key_id: &str, days: Option<i64>) -> EnableKeyRotationRequest {
    EnableKeyRotationRequest { key_id: Some(key_id.to_owned()), rotation_period_in_days: days }
}

fn rotations_req(key_id: &str) -> ListForKeyRequest {
    ListForKeyRequest { key_id: Some(key_id.to_owned()), ..Default::default() }
}

/// Asserts that `a` and `b` (epoch seconds) are within a minute of each other.
#[track_caller]
fn near(a: f64, b: f64) {
    assert!((a - b).abs() < 60.0, "{a} is not near {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_enable_change_what_the_key_may_do() {
    let env = Env::new("lc-enable");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let blob = encrypt(kms, &admin, &key, b"x", None).await.unwrap();

    kms.disable_key(&admin, key_req(&key)).await.unwrap();
    let meta = describe(kms, &admin, &key).await.unwrap();
    assert_eq!((meta.key_state.as_str(), meta.enabled), ("Disabled", false));
    assert_error(encrypt(kms, &admin, &key, b"x", None).await, "DisabledException", &format!("{} is disabled.", meta.arn));
    assert_error(decrypt(kms, &admin, &blob, None).await, "DisabledException", "is disabled");
    // Disabling a disabled key changes nothing and is not an error.
    kms.disable_key(&admin, key_req(&key)).await.unwrap();
    // On-demand rotation needs an enabled key.
    assert_error(kms.rotate_key_on_demand(&admin, key_req(&key)).await, "KMSInvalidStateException", "is disabled.");

    kms.enable_key(&admin, key_req(&key)).await.unwrap();
    kms.enable_key(&admin, key_req(&key)).await.unwrap();
    assert_eq!(describe(kms, &admin, &key).await.unwrap().key_state, "Enabled");
    assert_eq!(decrypt(kms, &admin, &blob, None).await.unwrap(), b"x");

    // Only a manager (or administrator) disables; a writer uses and creates keys only.
    let writer = user("writer", Role::Writer);
    assert_error(
        kms.disable_key(&writer, key_req(&key)).await,
        "AccessDeniedException",
        "because no identity-based policy allows the kms:DisableKey action",
    );
    kms.disable_key(&user("manager", Role::Manager), key_req(&key)).await.unwrap();

    // Pending deletion: neither enable nor disable.
    kms.schedule_key_deletion(&admin, schedule(&key, Some(7))).await.unwrap();
    assert_error(kms.enable_key(&admin, key_req(&key)).await, "KMSInvalidStateException", "is pending deletion.");
    assert_error(kms.disable_key(&admin, key_req(&key)).await, "KMSInvalidStateException", "is pending deletion.");
    // An alias names an existing key only: EnableKey does not accept one.
    assert_error(kms.enable_key(&admin, key_req("alias/none")).await, "NotFoundException", "not an alias");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_deletion_destroys_the_key_at_the_end_of_its_window() {
    let env = Env::new("lc-delete");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let keep = new_key(kms, &admin).await;
    let blob = encrypt(kms, &admin, &key, b"doomed", None).await.unwrap();
    kms.create_alias(&admin, AliasTargetRequest { alias_name: Some("alias/doomed".into()), target_key_id: Some(key.clone()) })
        .await
        .unwrap();

    assert_error(kms.schedule_key_deletion(&admin, schedule(&key, Some(6))).await, "ValidationException", "greater than or equal to 7");
    assert_error(kms.schedule_key_deletion(&admin, schedule(&key, Some(31))).await, "ValidationException", "less than or equal to 30");
    let writer = user("writer", Role::Writer);
    assert_error(kms.schedule_key_deletion(&writer, schedule(&key, None)).await, "AccessDeniedException", "kms:ScheduleKeyDeletion");

    let scheduled = kms.schedule_key_deletion(&admin, schedule(&key, Some(7))).await.unwrap();
    assert_eq!((scheduled.key_state.as_str(), scheduled.pending_window_in_days), ("PendingDeletion", 7));
    near(scheduled.deletion_date.unwrap(), env.now_s() + 7.0 * DAY_S as f64);
    assert!(scheduled.dual_authorization.is_none());
    let meta = describe(kms, &admin, &key).await.unwrap();
    assert_eq!(meta.deletion_date, scheduled.deletion_date);
    assert_error(encrypt(kms, &admin, &key, b"x", None).await, "KMSInvalidStateException", "is pending deletion.");
    assert_error(decrypt(kms, &admin, &blob, None).await, "KMSInvalidStateException", "is pending deletion.");
    // Scheduling again is refused in that state.
    assert_error(kms.schedule_key_deletion(&admin, schedule(&key, Some(7))).await, "KMSInvalidStateException", "pending deletion");

    // Not yet due: nothing happens.
    env.advance(6 * DAY_S);
    let done = kms.run_due_work("node-a").await.unwrap();
    assert_eq!(done.destroyed, 0);
    assert_eq!(describe(kms, &admin, &key).await.unwrap().key_state, "PendingDeletion");

    env.advance(DAY_S + 60);
    let done = kms.run_due_work("node-a").await.unwrap();
    assert_eq!((done.destroyed, done.rotated, done.expired), (1, 0, 0));
    assert_error(describe(kms, &admin, &key).await, "NotFoundException", "does not exist");
    assert_error(decrypt(kms, &admin, &blob, None).await, "InvalidCiphertextException", "does not exist in this region");
    // Its alias went with it; the other key is untouched.
    let aliases = kms.list_aliases(&admin, ListAliasesRequest::default()).await.unwrap();
    assert!(aliases.aliases.iter().all(|a| a.alias_name != "alias/doomed"), "{:?}", aliases.aliases);
    let listed = kms.list_keys(&admin, ListKeysRequest::default()).await.unwrap();
    assert_eq!(listed.keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), [keep.as_str()]);
    // Nothing left to do.
    assert_eq!(kms.run_due_work("node-a").await.unwrap().destroyed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_scheduler_lease_holder_runs_due_work() {
    let env = Env::new("lc-lease");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    kms.schedule_key_deletion(&admin, schedule(&key, Some(7))).await.unwrap();
    // node-a takes the lease (30 s of the service's clock) with nothing due yet.
    assert_eq!(kms.run_due_work("node-a").await.unwrap(), clavis_core::DueWork::default());
    // Ten seconds before the deletion date, node-b takes the lapsed lease; nothing is due.
    env.advance(7 * DAY_S - 10);
    assert_eq!(kms.run_due_work("node-b").await.unwrap().destroyed, 0);
    // Now the key is due, but node-b holds the lease: node-a does nothing.
    env.advance(15);
    assert_eq!(kms.run_due_work("node-a").await.unwrap(), clavis_core::DueWork::default());
    assert_eq!(describe(kms, &admin, &key).await.unwrap().key_state, "PendingDeletion");
    // The holder does the work, once.
    assert_eq!(kms.run_due_work("node-b").await.unwrap().destroyed, 1);
    assert_eq!(kms.run_due_work("node-b").await.unwrap().destroyed, 0);
    assert_error(describe(kms, &admin, &key).await, "NotFoundException", "does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_deletion_leaves_the_key_disabled() {
    let env = Env::new("lc-cancel");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    assert_error(kms.cancel_key_deletion(&admin, key_req(&key)).await, "KMSInvalidStateException", "is not pending deletion.");
    kms.schedule_key_deletion(&admin, schedule(&key, None)).await.unwrap();
    let meta = describe(kms, &admin, &key).await.unwrap();
    near(meta.deletion_date.unwrap(), env.now_s() + 30.0 * DAY_S as f64);

    let cancelled = kms.cancel_key_deletion(&admin, key_req(&key)).await.unwrap();
    assert!(cancelled.key_id.ends_with(&key));
    let meta = describe(kms, &admin, &key).await.unwrap();
    assert_eq!((meta.key_state.as_str(), meta.deletion_date), ("Disabled", None));
    env.advance(31 * DAY_S);
    assert_eq!(kms.run_due_work("node").await.unwrap().destroyed, 0);
    kms.enable_key(&admin, key_req(&key)).await.unwrap();
    encrypt(kms, &admin, &key, b"back", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation_adds_a_version_when_due_and_keeps_the_schedule() {
    let env = Env::new("lc-rotate");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let idle = new_key(kms, &admin).await;
    let old = encrypt(kms, &admin, &key, b"v1", None).await.unwrap();

    let status = kms.get_key_rotation_status(&admin, key_req(&key)).await.unwrap();
    assert!(!status.key_rotation_enabled && status.next_rotation_date.is_none());
    assert_error(kms.enable_key_rotation(&admin, rotation(&key, Some(89))).await, "ValidationException", "greater than or equal to 90");
    assert_error(kms.enable_key_rotation(&admin, rotation(&key, Some(2561))).await, "ValidationException", "less than or equal to 2560");
    assert_error(
        kms.enable_key_rotation(&user("w", Role::Writer), rotation(&key, None)).await,
        "AccessDeniedException",
        "kms:EnableKeyRotation",
    );

    let t0 = env.now_s();
    kms.enable_key_rotation(&admin, rotation(&key, Some(90))).await.unwrap();
    let status = kms.get_key_rotation_status(&admin, key_req(&key)).await.unwrap();
    assert!(status.key_rotation_enabled);
    assert_eq!(status.rotation_period_in_days, Some(90));
    near(status.next_rotation_date.unwrap(), t0 + 90.0 * DAY_S as f64);
    kms.enable_key_rotation(&admin, rotation(&idle, None)).await.unwrap();
    assert_eq!(kms.get_key_rotation_status(&admin, key_req(&idle)).await.unwrap().rotation_period_in_days, Some(365));

    env.advance(89 * DAY_S);
    assert_eq!(kms.run_due_work("node").await.unwrap().rotated, 0);
    env.advance(2 * DAY_S);
    assert_eq!(kms.run_due_work("node").await.unwrap().rotated, 1);
    assert_eq!(kms.run_due_work("node").await.unwrap().rotated, 0, "rotated twice for one due date");

    let rotations = kms.list_key_rotations(&admin, rotations_req(&key)).await.unwrap();
    assert_eq!(rotations.rotations.len(), 1);
    assert_eq!(rotations.rotations[0].rotation_type, "AUTOMATIC");
    near(rotations.rotations[0].rotation_date, env.now_s());
    assert!(kms.list_key_rotations(&admin, rotations_req(&idle)).await.unwrap().rotations.is_empty());
    // The schedule keeps its rhythm: the next date is one period after the one that fell due.
    let status = kms.get_key_rotation_status(&admin, key_req(&key)).await.unwrap();
    near(status.next_rotation_date.unwrap(), t0 + 180.0 * DAY_S as f64);

    // Old ciphertexts decrypt; new ones use the new version and decrypt too.
    assert_eq!(decrypt(kms, &admin, &old, None).await.unwrap(), b"v1");
    let new = encrypt(kms, &admin, &key, b"v2", None).await.unwrap();
    assert_ne!(new.0[..], old.0[..]);
    assert_eq!(decrypt(kms, &admin, &new, None).await.unwrap(), b"v2");

    // A disabled key does not rotate while disabled; it rotates once enabled again.
    kms.disable_key(&admin, key_req(&key)).await.unwrap();
    env.advance(100 * DAY_S);
    assert_eq!(kms.run_due_work("node").await.unwrap().rotated, 0);
    kms.enable_key(&admin, key_req(&key)).await.unwrap();
    assert_eq!(kms.run_due_work("node").await.unwrap().rotated, 1);

    kms.disable_key_rotation(&admin, key_req(&key)).await.unwrap();
    let status = kms.get_key_rotation_status(&admin, key_req(&key)).await.unwrap();
    assert!(!status.key_rotation_enabled && status.next_rotation_date.is_none() && status.rotation_period_in_days.is_none());
    env.advance(1000 * DAY_S);
    // Only the key whose rotation is still on (once, however many periods passed).
    assert_eq!(kms.run_due_work("node").await.unwrap().rotated, 1);
    assert_eq!(kms.list_key_rotations(&admin, rotations_req(&key)).await.unwrap().rotations.len(), 2);
    assert_eq!(kms.list_key_rotations(&admin, rotations_req(&idle)).await.unwrap().rotations.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_rotation_is_limited_and_listed_in_pages() {
    let env = Env::new("lc-on-demand");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let first = encrypt(kms, &admin, &key, b"first", None).await.unwrap();
    // AWS's quota: 25 on-demand rotations per key.
    for _ in 0..25 {
        let r = kms.rotate_key_on_demand(&admin, key_req(&key)).await.unwrap();
        assert!(r.key_id.ends_with(&key));
    }
    assert_error(kms.rotate_key_on_demand(&admin, key_req(&key)).await, "LimitExceededException", "limit of 25 on-demand rotations");
    assert_eq!(decrypt(kms, &admin, &first, None).await.unwrap(), b"first");

    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_key_rotations(&admin, ListForKeyRequest { limit: Some(10), marker: marker.clone(), ..rotations_req(&key) })
            .await
            .unwrap();
        assert!(page.rotations.iter().all(|r| r.rotation_type == "ON_DEMAND"));
        seen.extend(page.rotations);
        if !page.truncated {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(seen.len(), 25);
    let bad = ListForKeyRequest { marker: Some("x".into()), ..rotations_req(&key) };
    assert_error(kms.list_key_rotations(&admin, bad).await, "InvalidMarkerException", "marker");
    // Rotation does not change the automatic schedule (none here).
    assert!(!kms.get_key_rotation_status(&admin, key_req(&key)).await.unwrap().key_rotation_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_authorization_needs_a_second_principal_within_seven_days() {
    let env = Env::new("lc-dual");
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    let alice = user("alice", Role::Manager);
    let bob = user("bob", Role::Manager);
    let dual = |k: &str| EnableKeyDualAuthorizationRequest { key_id: Some(k.to_owned()) };

    assert_error(
        kms.enable_key_dual_authorization(&user("w", Role::Writer), dual(&key)).await,
        "AccessDeniedException",
        "EnableKeyDualAuthorization",
    );
    kms.enable_key_dual_authorization(&alice, dual(&key)).await.unwrap();
    assert_eq!(describe(kms, &admin, &key).await.unwrap().dual_authorization, Some(true));
    // Enabling again changes nothing; there is no way to switch it off.
    kms.enable_key_dual_authorization(&alice, dual(&key)).await.unwrap();

    // The first request waits for approval; the key stays usable.
    let first = kms.schedule_key_deletion(&alice, schedule(&key, Some(10))).await.unwrap();
    assert_eq!(first.key_state, "Enabled");
    assert!(first.deletion_date.is_none());
    let status = first.dual_authorization.unwrap();
    assert_eq!(
        (status.status.as_str(), status.requested_by.as_str(), status.approved_by.as_deref()),
        ("PendingApproval", alice.principal_arn.as_str(), None)
    );
    near(status.approve_by, env.now_s() + 7.0 * DAY_S as f64);
    encrypt(kms, &admin, &key, b"still usable", None).await.unwrap();
    // The requester cannot approve its own request.
    let again = kms.schedule_key_deletion(&alice, schedule(&key, Some(10))).await.unwrap();
    assert_eq!((again.key_state.as_str(), again.dual_authorization.unwrap().status.as_str()), ("Enabled", "PendingApproval"));

    // Cancelling withdraws the request without changing the key's state.
    kms.cancel_key_deletion(&alice, key_req(&key)).await.unwrap();
    assert_eq!(describe(kms, &admin, &key).await.unwrap().key_state, "Enabled");
    let approve_after_cancel = kms.schedule_key_deletion(&bob, schedule(&key, Some(7))).await.unwrap();
    assert_eq!(approve_after_cancel.dual_authorization.unwrap().status, "PendingApproval", "a withdrawn request was approved");
    kms.cancel_key_deletion(&bob, key_req(&key)).await.unwrap();

    // A request older than seven days cannot be approved: the second call starts a new one.
    kms.schedule_key_deletion(&alice, schedule(&key, Some(10))).await.unwrap();
    env.advance(8 * DAY_S);
    let late = kms.schedule_key_deletion(&bob, schedule(&key, Some(7))).await.unwrap();
    let late_status = late.dual_authorization.unwrap();
    assert_eq!(
        (late.key_state.as_str(), late_status.status.as_str(), late_status.requested_by.as_str()),
        ("Enabled", "PendingApproval", bob.principal_arn.as_str())
    );

    // A second principal within the window approves: the requester's window applies.
    let approved = kms.schedule_key_deletion(&alice, schedule(&key, Some(30))).await.unwrap();
    assert_eq!((approved.key_state.as_str(), approved.pending_window_in_days), ("PendingDeletion", 7));
    let s = approved.dual_authorization.unwrap();
    assert_eq!(
        (s.status.as_str(), s.requested_by.as_str(), s.approved_by.as_deref()),
        ("Approved", bob.principal_arn.as_str(), Some(alice.principal_arn.as_str()))
    );
    near(approved.deletion_date.unwrap(), env.now_s() + 7.0 * DAY_S as f64);
    env.advance(8 * DAY_S);
    assert_eq!(kms.run_due_work("node").await.unwrap().destroyed, 1);
    assert_error(describe(kms, &admin, &key).await, "NotFoundException", "does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_clock_moves_only_for_the_operators_administrators() {
    let env = Env::initialized("lc-clock").await;
    let (kms, admin) = (&env.kms, admin());
    let key = new_key(kms, &admin).await;
    kms.schedule_key_deletion(&admin, schedule(&key, Some(7))).await.unwrap();
    let advance = |seconds: i64| AdvanceTestClockRequest { seconds: Some(seconds), run_scheduler: None };

    assert_error(kms.advance_test_clock(&user("m", Role::Manager), advance(1)).await, "AccessDeniedException", "clavis:AdvanceTestClock");
    assert_error(kms.advance_test_clock(&root(TENANT), advance(1)).await, "AccessDeniedException", "only the operator's account");
    assert_error(kms.advance_test_clock(&admin, advance(-1)).await, "ValidationException", "greater than or equal to 0");

    let before = env.now_s();
    let moved = kms.advance_test_clock(&admin, advance(8 * DAY_S)).await.unwrap();
    near(moved.now, before + 8.0 * DAY_S as f64);
    // It ran the scheduler, which destroyed the key.
    assert_eq!(moved.destroyed, 1);
    assert_error(describe(kms, &admin, &key).await, "NotFoundException", "does not exist");

    // A service started without the test clock refuses.
    let dir = TempDir::new("lc-no-clock");
    let plain = clavis_core::Kms::new(
        std::sync::Arc::new(clavis_store_sqlite::SqliteStore::open(&dir.path().join("db")).unwrap()),
        std::sync::Arc::new(clavis_crypto::seal::LocalKeyFile::create(&dir.path().join("master.key")).unwrap()),
        std::sync::Arc::new(clavis_core::SystemClock),
        clavis_core::KmsConfig::default(),
    );
    assert_error(plain.advance_test_clock(&admin, advance(1)).await, "UnsupportedOperationException", "test clock is not enabled");
}
