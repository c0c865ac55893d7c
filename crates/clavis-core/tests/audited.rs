//! The audit rule of `Kms::audited`, driven as a front end drives it: one record per request,
//! allowed, refused or unauthenticated; the result withheld (`DependencyTimeoutException`)
//! when the record cannot be made durable; request members taken from the decoded request,
//! response members from the typed response with secrets removed; resources from the keys the
//! core itself resolved; and LookupEvents over the records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

mod common;

use clavis_core::api::*;
use clavis_core::audit::{self, AuditFailure, AuditParams, AuditSink, LookupQuery, Outcome, RequestEvent};
use clavis_core::types::Role;
use clavis_core::{Caller, Kms, KmsError};
use common::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// An audit sink in memory, which a test can make fail.
#[derive(Default)]
struct MemorySink {
    records: Mutex<Vec<Value>>,
    failing: AtomicBool,
    /// No room to hold an operator request's record.
    full: AtomicBool,
}

impl MemorySink {
    fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    fn last(&self) -> Value {
        self.records().last().cloned().expect("a record")
    }
}

#[async_trait::async_trait]
impl AuditSink for MemorySink {
    async fn append(&self, record: Vec<u8>) -> Result<(), AuditFailure> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuditFailure("injected: disk full".into()));
        }
        self.records.lock().unwrap().push(serde_json::from_slice(&record).expect("a record is JSON"));
        Ok(())
    }

    async fn lookup(&self, query: LookupQuery) -> Result<(Vec<Value>, Option<u64>), AuditFailure> {
        let records = self.records();
        let end = query.before.map_or(records.len(), |b| usize::try_from(b).unwrap().min(records.len()));
        let mut out = Vec::new();
        for seq in (0..end).rev() {
            if (query.keep)(&records[seq]) {
                if out.len() == query.max {
                    return Ok((out, Some(seq as u64 + 1)));
                }
                out.push(records[seq].clone());
            }
        }
        Ok((out, None))
    }

    fn reserve_hold(&self) -> bool {
        !self.full.load(Ordering::SeqCst)
    }
}

fn env_with_sink(name: &str) -> (Env, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let env = Env::with_audit(name, Some(sink.clone()));
    (env, sink)
}

fn event(operation: &str) -> RequestEvent<'_> {
    RequestEvent {
        request_id: "req-1",
        source_ip: "192.0.2.7".parse().ok(),
        user_agent: Some("test-agent/1.0"),
        operation,
        event_source: "kms.amazonaws.com",
        claimed_access_key_id: None,
        region: Some(REGION),
    }
}

/// Runs one operation as the HTTP front end does: the decoded request's members, the
/// operation, the response's members (for operations that change something), all inside
/// `Kms::audited`.
async fn run<Req, Resp, F, Fut>(kms: &Kms, c: &Caller, operation: &str, req: Req, op: F) -> Result<Resp, KmsError>
where
    Req: AuditParams,
    Resp: Serialize,
    F: FnOnce(Caller, Req) -> Fut,
    Fut: Future<Output = Result<Resp, KmsError>>,
{
    let caller = fresh(c);
    let ev = event(operation);
    kms.audited(&ev, async {
        let request_parameters = Some(req.audit_params());
        let result = op(caller.clone(), req).await;
        let response_elements = match &result {
            Ok(r) if audit::records_response(operation) => audit::response_elements(r),
            _ => None,
        };
        Outcome { request_parameters, response_elements, ..Outcome::new(Some(caller), result) }
    })
    .await
}

async fn encrypt_audited(kms: &Kms, c: &Caller, key: &str, context: ContextMap) -> Result<EncryptResponse, KmsError> {
    let req = EncryptRequest {
        key_id: Some(key.to_owned()),
        plaintext: blob(b"top secret"),
        encryption_context: Some(context),
        ..Default::default()
    };
    run(kms, c, "Encrypt", req, |c, r| async move { kms.encrypt(&c, r).await }).await
}

async fn create_key_audited(kms: &Kms, c: &Caller) -> Result<KeyMetadataResponse, KmsError> {
    let req = CreateKeyRequest { description: Some("audited".into()), ..Default::default() };
    run(kms, c, "CreateKey", req, |c, r| async move { kms.create_key(&c, r).await }).await
}

fn arns(record: &Value) -> Vec<String> {
    record["resources"].as_array().unwrap().iter().map(|r| r["ARN"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_record_allowed_refused_or_unauthenticated() {
    let (env, sink) = env_with_sink("audit-one");
    let (kms, admin) = (&env.kms, admin());
    let meta = create_key_audited(kms, &admin).await.unwrap().key_metadata;
    let created = sink.last();
    assert_eq!(created["eventName"], "CreateKey");
    assert_eq!(created["readOnly"], false);
    assert_eq!(created["requestParameters"], json!({"description": "audited"}));
    assert_eq!(created["responseElements"]["keyMetadata"]["keyId"], meta.key_id.as_str());
    assert_eq!(arns(&created), [meta.arn.as_str()]);
    assert_eq!(created["userIdentity"]["arn"], admin.principal_arn.as_str());
    assert_eq!(created["userIdentity"]["type"], "Root");
    assert_eq!(created["recipientAccountId"], OPERATOR);
    assert_eq!(created["sourceIPAddress"], "192.0.2.7");
    assert_eq!(created["requestID"], "req-1");
    assert!(created.get("errorCode").is_none());

    let enc = encrypt_audited(kms, &admin, &meta.key_id, ctx(&[("Tenant", "A")])).await.unwrap();
    assert_eq!(sink.records().len(), 2);
    let r = sink.last();
    assert_eq!((r["eventName"].as_str(), r["readOnly"].as_bool()), (Some("Encrypt"), Some(true)));
    // Members as decoded: the plaintext is left out by type, the context keeps its case.
    assert_eq!(r["requestParameters"], json!({"keyId": meta.key_id, "encryptionContext": {"Tenant": "A"}}));
    // A read-only operation records no response members.
    assert_eq!(r["responseElements"], Value::Null);
    let text = r.to_string();
    assert!(!text.contains("top secret") && !text.contains(&base64_of(&enc.ciphertext_blob.0)), "{text}");

    // Refused: recorded with its error, and the key it was refused on.
    let reader = user("nobody", Role::None);
    let refused = encrypt_audited(kms, &reader, &meta.key_id, ContextMap::new()).await;
    assert_eq!(error(refused).0, "AccessDeniedException");
    let r = sink.last();
    assert_eq!(r["errorCode"], "AccessDeniedException");
    assert!(r["errorMessage"].as_str().unwrap().contains("kms:Encrypt"));
    assert_eq!(r["userIdentity"]["type"], "IAMUser");
    assert_eq!(arns(&r), [meta.arn.as_str()]);

    // Refused by validation before any key was resolved: no resources.
    let invalid = encrypt_audited(kms, &admin, "not-a-key", ContextMap::new()).await;
    assert_eq!(error(invalid).0, "NotFoundException");
    assert!(arns(&sink.last()).is_empty());

    // Unauthenticated: a record with the claimed access key, no members.
    let ev = RequestEvent { claimed_access_key_id: Some("AKIAUNKNOWN000000000"), ..event("Encrypt") };
    let outcome = kms
        .audited(&ev, async {
            let mut o = Outcome::<()>::new(None, Err(KmsError::UnrecognizedClient));
            o.request_parameters = Some(serde_json::Map::from_iter([("keyId".to_owned(), json!("k"))]));
            o
        })
        .await;
    assert!(matches!(outcome, Err(KmsError::UnrecognizedClient)));
    let r = sink.last();
    assert_eq!(
        (r["userIdentity"]["type"].as_str(), r["userIdentity"]["accessKeyId"].as_str()),
        (Some("Unknown"), Some("AKIAUNKNOWN000000000"))
    );
    assert_eq!((r["requestParameters"].clone(), r["recipientAccountId"].clone()), (Value::Null, Value::Null));
    assert_eq!(r["errorCode"], "UnrecognizedClientException");
    assert_eq!(sink.records().len(), 5);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_record_cannot_be_written_fails_closed() {
    let (env, sink) = env_with_sink("audit-fail");
    let (kms, admin) = (&env.kms, admin());
    let key = create_key_audited(kms, &admin).await.unwrap().key_metadata.key_id;

    sink.failing.store(true, Ordering::SeqCst);
    let withheld = encrypt_audited(kms, &admin, &key, ContextMap::new()).await;
    let e = withheld.expect_err("a ciphertext was released without its record");
    assert!(matches!(e, KmsError::AuditUnavailable(_)), "{e:?}");
    assert_eq!((e.code(), e.http_status()), ("DependencyTimeoutException", 503));
    assert!(e.to_string().contains("audit record could not be written"), "{e}");
    // A failure is withheld the same way: the client learns nothing but that it must retry.
    let refused = encrypt_audited(kms, &user("nobody", Role::None), &key, ContextMap::new()).await;
    assert!(matches!(refused, Err(KmsError::AuditUnavailable(_))), "{refused:?}");
    let made = create_key_audited(kms, &admin).await;
    assert!(matches!(made, Err(KmsError::AuditUnavailable(_))), "{made:?}");
    assert_eq!(sink.records().len(), 1);

    // Writable again: requests succeed and are recorded.
    sink.failing.store(false, Ordering::SeqCst);
    encrypt_audited(kms, &admin, &key, ContextMap::new()).await.unwrap();
    assert_eq!(sink.records().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_request_runs_only_if_its_record_can_be_held() {
    let (env, sink) = env_with_sink("audit-hold");
    let ran = AtomicBool::new(false);
    sink.full.store(true, Ordering::SeqCst);
    let ev = RequestEvent { event_source: "operator.clavis", ..event("Unseal") };
    let r = env
        .kms
        .audited_operator(&ev, async {
            ran.store(true, Ordering::SeqCst);
            Outcome::new(None, Ok(()))
        })
        .await;
    assert!(matches!(r, Err(KmsError::AuditUnavailable(_))), "{r:?}");
    assert!(!ran.load(Ordering::SeqCst), "the operation ran although its record had no room");
    assert!(sink.records().is_empty());

    sink.full.store(false, Ordering::SeqCst);
    let members =
        OperatorUnsealRequest { share: Some("the share itself".to_owned().into()), nonce: Some("0123456789abcdef0123456789abcdef".into()) }
            .audit_params();
    let r = env
        .kms
        .audited_operator(&ev, async {
            ran.store(true, Ordering::SeqCst);
            Outcome { request_parameters: Some(members), ..Outcome::new(None, Ok(7)) }
        })
        .await;
    assert_eq!(r.unwrap(), 7);
    let rec = sink.last();
    // Operator paths are unauthenticated by design; their decoded members (never the share)
    // are recorded.
    assert_eq!(rec["requestParameters"], json!({"nonce": "0123456789abcdef0123456789abcdef"}));
    assert!(!rec.to_string().contains("the share itself"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_the_keys_the_core_resolved() {
    let (env, sink) = env_with_sink("audit-resources");
    let (kms, admin) = (&env.kms, admin());
    let one = kms.create_key(&admin, CreateKeyRequest::default()).await.unwrap().key_metadata;
    let two = kms.create_key(&admin, CreateKeyRequest::default()).await.unwrap().key_metadata;
    kms.create_alias(&admin, AliasTargetRequest { alias_name: Some("alias/one".into()), target_key_id: Some(one.key_id.clone()) })
        .await
        .unwrap();

    // By alias: the record names the key, not the alias.
    let blob = encrypt_audited(kms, &admin, "alias/one", ContextMap::new()).await.unwrap().ciphertext_blob;
    assert_eq!(arns(&sink.last()), [one.arn.as_str()]);
    // Decrypt names no key: the one the ciphertext named.
    let req = DecryptRequest { ciphertext_blob: Some(blob.clone()), ..Default::default() };
    run(kms, &admin, "Decrypt", req, |c, r| async move { kms.decrypt(&c, r).await }).await.unwrap();
    assert_eq!(arns(&sink.last()), [one.arn.as_str()]);
    // ReEncrypt: both keys.
    let req = ReEncryptRequest { ciphertext_blob: Some(blob), destination_key_id: Some(two.key_id.clone()), ..Default::default() };
    run(kms, &admin, "ReEncrypt", req, |c, r| async move { kms.re_encrypt(&c, r).await }).await.unwrap();
    let mut both = arns(&sink.last());
    both.sort();
    let mut expected = vec![one.arn.clone(), two.arn.clone()];
    expected.sort();
    assert_eq!(both, expected);
    // RetireGrant by token names no key: the grant's.
    let g = kms
        .create_grant(
            &admin,
            CreateGrantRequest {
                key_id: Some(two.key_id.clone()),
                grantee_principal: Some(user_arn(OPERATOR, "app")),
                operations: Some(vec!["Decrypt".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let req = RetireGrantRequest { grant_token: Some(g.grant_token), ..Default::default() };
    run(kms, &admin, "RetireGrant", req, |c, r| async move { kms.retire_grant(&c, r).await }).await.unwrap();
    assert_eq!(arns(&sink.last()), [two.arn.as_str()]);
    // Another account's refused attempt names the key, with the key owner's account, so that the
    // owner sees it.
    let stranger = root(TENANT);
    let refused = encrypt_audited(kms, &stranger, &one.arn, ContextMap::new()).await;
    assert_eq!(error(refused).0, "AccessDeniedException");
    let r = sink.last();
    assert_eq!(r["resources"], json!([{"ARN": one.arn, "accountId": OPERATOR, "type": "AWS::KMS::Key"}]));
    assert_eq!(r["recipientAccountId"], TENANT);
    // Operations on no key have none.
    let req = GenerateRandomRequest { number_of_bytes: Some(16), ..Default::default() };
    run(kms, &admin, "GenerateRandom", req, |c, r| async move { kms.generate_random(&c, r).await }).await.unwrap();
    assert!(arns(&sink.last()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_a_record_and_records_are_bounded() {
    let (env, sink) = env_with_sink("audit-secrets");
    env.initialize().await;
    let (kms, admin) = (&env.kms, admin());
    let req = CreateUserRequest { user_name: Some("app".into()), role: Some("reader".into()), account_id: None };
    let made = run(kms, &admin, "CreateUser", req, |c, r| async move { kms.create_user(&c, r).await }).await.unwrap();
    let r = sink.last();
    assert_eq!(r["responseElements"]["accessKey"]["accessKeyId"], made.access_key.access_key_id.as_str());
    assert!(r["responseElements"]["accessKey"].get("secretAccessKey").is_none(), "{r}");
    assert!(!r.to_string().contains(made.access_key.secret_access_key.expose_secret()));

    let req = GenerateDataKeyRequest { key_id: Some(new_key(kms, &admin).await), key_spec: Some("AES_256".into()), ..Default::default() };
    let dk = run(kms, &admin, "GenerateDataKey", req, |c, r| async move { kms.generate_data_key(&c, r).await }).await.unwrap();
    let text = sink.last().to_string();
    assert!(!text.contains(&base64_of(dk.plaintext.unwrap().0.expose_secret())), "{text}");

    // A record is bounded, whatever the request carried; what was cut is listed.
    let huge = "d".repeat(200_000);
    let ev = event("UpdateKeyDescription");
    let params = serde_json::Map::from_iter([("description".to_owned(), json!(huge))]);
    kms.audited(&ev, async { Outcome { request_parameters: Some(params), ..Outcome::new(Some(fresh(&admin)), Ok(())) } }).await.unwrap();
    let r = sink.last();
    assert!(r.to_string().len() <= audit::MAX_RECORD_BYTES, "{}", r.to_string().len());
    assert_eq!(r["additionalEventData"]["truncated"], json!(["requestParameters.description"]));
    assert_eq!(r["requestParameters"]["description"].as_str().unwrap().len(), audit::MAX_FIELD_BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppressed_refusal_is_left_out_only_when_unauthenticated() {
    let (env, sink) = env_with_sink("audit-suppress");
    let kms = &env.kms;
    let ev = event("ListKeys");
    let throttled = Outcome::<()> { suppress: true, ..Outcome::new(None, Err(KmsError::Throttling("slow down".into()))) };
    assert!(matches!(kms.audited(&ev, async { throttled }).await, Err(KmsError::Throttling(_))));
    assert!(sink.records().is_empty());
    // The next record counts the ones left out.
    let counted = Outcome::<()> { suppressed_before: 3, ..Outcome::new(None, Err(KmsError::UnrecognizedClient)) };
    let _ = kms.audited(&ev, async { counted }).await;
    assert_eq!(sink.last()["additionalEventData"]["suppressedFailures"], 3);
    // Anything that ran (a caller was established) is recorded whatever the front end says.
    let ran = Outcome::<()> { suppress: true, ..Outcome::new(Some(admin()), Err(KmsError::Throttling("slow down".into()))) };
    let _ = kms.audited(&ev, async { ran }).await;
    assert_eq!(sink.records().len(), 2);
    assert_eq!(sink.last()["userIdentity"]["arn"], admin().principal_arn.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_events_shows_an_account_its_own_records_and_those_on_its_keys() {
    let (env, sink) = env_with_sink("audit-lookup");
    env.initialize().await;
    let (kms, admin) = (&env.kms, admin());
    let key = create_key_audited(kms, &admin).await.unwrap().key_metadata;
    encrypt_audited(kms, &admin, &key.key_id, ContextMap::new()).await.unwrap();
    let tenant = root(TENANT);
    create_key_audited(kms, &tenant).await.unwrap();
    let _ = encrypt_audited(kms, &tenant, &key.arn, ContextMap::new()).await;
    let _ = kms.audited(&event("ListKeys"), async { Outcome::<()>::new(None, Err(KmsError::UnrecognizedClient)) }).await;
    assert_eq!(sink.records().len(), 5);

    let lookup = |attr: Option<(&str, &str)>| LookupEventsRequest {
        lookup_attributes: attr.map(|(k, v)| vec![LookupAttribute { attribute_key: Some(k.into()), attribute_value: Some(v.into()) }]),
        ..Default::default()
    };
    let names = |events: &[LookupEvent]| events.iter().map(|e| e.event_name.clone()).collect::<Vec<_>>();
    // The operator sees its own records, the tenant's attempt on its key, and the
    // unauthenticated one; not the tenant's own CreateKey. Newest first.
    let seen = kms.lookup_events(&admin, lookup(None)).await.unwrap().events;
    assert_eq!(names(&seen), ["ListKeys", "Encrypt", "Encrypt", "CreateKey"]);
    // The tenant sees only its own.
    let seen = kms.lookup_events(&tenant, lookup(None)).await.unwrap().events;
    assert_eq!(names(&seen), ["Encrypt", "CreateKey"]);
    let by_name = kms.lookup_events(&admin, lookup(Some(("EventName", "CreateKey")))).await.unwrap().events;
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].resources[0].resource_name, key.arn);
    let by_resource = kms.lookup_events(&admin, lookup(Some(("ResourceName", &key.key_id)))).await.unwrap().events;
    assert_eq!(names(&by_resource), ["Encrypt", "Encrypt", "CreateKey"]);

    assert_error(
        kms.lookup_events(&admin, lookup(Some(("Colour", "red")))).await,
        "ValidationException",
        "Value 'Colour' at 'lookupAttributes.member.attributeKey'",
    );
    assert_error(kms.lookup_events(&user("m", Role::Manager), lookup(None)).await, "AccessDeniedException", "clavis:LookupEvents");
    // Pages.
    let page = LookupEventsRequest { max_results: Some(2), ..lookup(None) };
    let first = kms.lookup_events(&admin, page).await.unwrap();
    assert_eq!(names(&first.events), ["ListKeys", "Encrypt"]);
    let next = LookupEventsRequest { max_results: Some(2), next_token: first.next_token, ..lookup(None) };
    assert_eq!(names(&kms.lookup_events(&admin, next).await.unwrap().events), ["Encrypt", "CreateKey"]);

    // A service without a sink cannot look anything up.
    let plain = Env::initialized("audit-lookup-none").await;
    assert_error(plain.kms.lookup_events(&admin, lookup(None)).await, "UnsupportedOperationException", "Auditing is disabled");
}

/// The scheduler's changes follow the audit rule too: each is an `AwsServiceEvent` record,
/// durable before the change. With the audit log unwritable the pass fails closed and changes
/// nothing; the next pass with a working log makes every change, each once, each recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_changes_nothing_while_its_records_cannot_be_written() {
    const DAY_S: i64 = 86_400;
    let (env, sink) = env_with_sink("audit-scheduler");
    env.initialize().await;
    let (kms, admin) = (&env.kms, admin());
    let rotating = kms.create_key(&admin, CreateKeyRequest::default()).await.unwrap().key_metadata;
    let rotation = EnableKeyRotationRequest { key_id: Some(rotating.key_id.clone()), rotation_period_in_days: Some(90) };
    kms.enable_key_rotation(&admin, rotation).await.unwrap();
    let doomed = kms.create_key(&admin, CreateKeyRequest::default()).await.unwrap().key_metadata;
    let deletion = ScheduleKeyDeletionRequest { key_id: Some(doomed.key_id.clone()), pending_window_in_days: Some(7) };
    kms.schedule_key_deletion(&admin, deletion).await.unwrap();
    let secret = CreateSecretRequest {
        name: Some("short-lived".into()),
        secret_string: Some(SecretText::new("value".into())),
        ..Default::default()
    };
    let secret = kms.create_secret(&admin, secret).await.unwrap().arn;
    let deletion = DeleteSecretRequest { secret_id: Some(secret.clone()), recovery_window_in_days: Some(7), ..Default::default() };
    kms.delete_secret(&admin, deletion).await.unwrap();
    let rotations = || kms.list_key_rotations(&admin, ListForKeyRequest { key_id: Some(rotating.key_id.clone()), ..Default::default() });
    let secret_exists = || kms.describe_secret(&admin, SecretIdRequest { secret_id: Some(secret.clone()) });
    env.advance(91 * DAY_S);

    let before = sink.records().len();
    sink.failing.store(true, Ordering::SeqCst);
    let failed = kms.run_due_work("node").await;
    assert!(matches!(failed, Err(KmsError::AuditUnavailable(_))), "{failed:?}");
    assert_eq!(describe(kms, &admin, &doomed.key_id).await.unwrap().key_state, "PendingDeletion");
    assert!(rotations().await.unwrap().rotations.is_empty());
    assert!(secret_exists().await.is_ok());
    assert_eq!(sink.records().len(), before);

    sink.failing.store(false, Ordering::SeqCst);
    let done = kms.run_due_work("node").await.unwrap();
    assert_eq!((done.destroyed, done.rotated, done.secrets_destroyed), (1, 1, 1));
    assert_error(describe(kms, &admin, &doomed.key_id).await, "NotFoundException", &doomed.key_id);
    assert_eq!(rotations().await.unwrap().rotations.len(), 1);
    assert!(secret_exists().await.is_err());
    let mut recorded: Vec<(String, String)> = sink.records()[before..]
        .iter()
        .map(|r| {
            assert_eq!(r["eventType"], "AwsServiceEvent", "{r}");
            assert_eq!(r["userIdentity"]["accountId"], OPERATOR, "{r}");
            assert!(r.get("errorCode").is_none(), "{r}");
            (r["eventName"].as_str().unwrap().to_owned(), arns(r).concat())
        })
        .collect();
    recorded.sort();
    let mut expected = vec![
        ("DeleteKey".to_owned(), doomed.arn.clone()),
        ("EndSecretVersionDelete".to_owned(), secret.clone()),
        ("RotateKey".to_owned(), rotating.arn.clone()),
    ];
    expected.sort();
    assert_eq!(recorded, expected);
    // Nothing more is due: a further pass records nothing.
    assert_eq!(kms.run_due_work("node").await.unwrap(), clavis_core::DueWork::default());
    assert_eq!(sink.records().len(), before + 3);
}
