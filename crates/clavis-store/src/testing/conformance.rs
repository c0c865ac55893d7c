//! The storage conformance suite: one set of behaviours every [`Store`] backend must show, one
//! function per family trait ([`key_store`], [`alias_store`], [`tag_store`], [`identity_store`],
//! [`setting_store`], [`import_store`], [`grant_store`], [`sealed_store`], [`secret_store`]), each of which passes
//! on a fresh, empty store. Each backend's tests call [`run`], which runs them all on one store,
//! as a deployment holds every family in one database.
//!
//! It lives in the library (not under `tests/`) so that every backend crate runs the same code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Assertions are the point of a test suite.

use crate::{
    AccessKeyRecord, AccountRecord, AliasRecord, DeletionRequest, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord,
    SealedTable, SecretRecord, SecretVersionRecord, Store, StoreError, Tag, UserRecord,
};

fn key(id: &str, account: &str, region: &str) -> KeyRecord {
    KeyRecord {
        key_id: id.to_owned(),
        account_id: account.to_owned(),
        region: region.to_owned(),
        description: "d".to_owned(),
        key_usage: "ENCRYPT_DECRYPT".to_owned(),
        key_spec: "SYMMETRIC_DEFAULT".to_owned(),
        origin: "AWS_KMS".to_owned(),
        key_state: "Enabled".to_owned(),
        creation_date_ms: 1_700_000_000_123,
        deletion_date_ms: None,
        policy: "{}".to_owned(),
        current_version: 1,
        rotation_period_days: None,
        next_rotation_ms: None,
        dual_auth: false,
        deletion_request: None,
        valid_to_ms: None,
        expiration_model: None,
        import_fingerprint: None,
        revision: 1,
    }
}

fn material(id: &str, version: u32) -> KeyMaterialRecord {
    KeyMaterialRecord {
        key_id: id.to_owned(),
        version,
        sealed: vec![1, 2, 3, version as u8],
        created_ms: 5,
        rotation_type: (version > 1).then(|| "ON_DEMAND".to_owned()),
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag { key: k.to_owned(), value: v.to_owned() }
}

/// Runs every family's checks against one empty store.
pub async fn run(store: &dyn Store) {
    key_store(store).await;
    alias_store(store).await;
    tag_store(store).await;
    identity_store(store).await;
    setting_store(store).await;
    import_store(store).await;
    grant_store(store).await;
    sealed_store(store).await;
    secret_store(store).await;
}

/// [`KeyStore`](crate::KeyStore): records with optimistic concurrency, material versions, due
/// work, destruction (of everything [`KEY_DESTRUCTION`](crate::KEY_DESTRUCTION) lists), and
/// client text the database cannot hold.
pub async fn key_store(s: &dyn Store) {
    keys(s).await;
    lifecycle(s).await;
    nul_in_text(s).await;
}

/// [`AliasStore`](crate::AliasStore).
pub async fn alias_store(s: &dyn Store) {
    aliases(s).await;
}

/// [`TagStore`](crate::TagStore).
pub async fn tag_store(s: &dyn Store) {
    tags(s).await;
}

/// [`IdentityStore`](crate::IdentityStore): access keys, users (with a dual-authorization key
/// record), accounts.
pub async fn identity_store(s: &dyn Store) {
    access_keys(s).await;
    users(s).await;
    accounts(s).await;
}

/// [`SettingStore`](crate::SettingStore): settings and leases.
pub async fn setting_store(s: &dyn Store) {
    settings(s).await;
    leases(s).await;
}

/// [`ImportStore`](crate::ImportStore), with the material operations that consume its tokens.
pub async fn import_store(s: &dyn Store) {
    imports(s).await;
    import_params_cap_and_purge(s).await;
}

/// [`GrantStore`](crate::GrantStore), with the grant check's query.
pub async fn grant_store(s: &dyn Store) {
    grants(s).await;
    grant_check_query(s).await;
}

/// [`SealedStore`](crate::SealedStore): listing and replacing every sealed value (reseal).
pub async fn sealed_store(s: &dyn Store) {
    sealed_values(s).await;
}

/// What `list_secret_versions` returns for these versions: the same without their values.
fn metas(versions: &[SecretVersionRecord]) -> Vec<SecretVersionRecord> {
    versions.iter().map(|v| SecretVersionRecord { encrypted_data_key: Vec::new(), ciphertext: Vec::new(), ..v.clone() }).collect()
}

/// [`SecretStore`](crate::SecretStore): secrets by ARN and by name (unique per account and
/// region), versions with compare-and-swap updates, destruction, due work, and values that
/// round-trip byte for byte. Its secrets live in accounts of their own, so its listings are
/// exact on any store.
pub async fn secret_store(s: &dyn Store) {
    secrets_create_and_get(s).await;
    secrets_update_and_versions(s).await;
    secrets_values_round_trip(s).await;
    secrets_destroy(s).await;
    secrets_due(s).await;
    secrets_labels(s).await;
}

/// The accounts the secret checks use (no other check touches them).
const SECRETS_ACCOUNT: &str = "777777777777";
const SECRETS_OTHER_ACCOUNT: &str = "888888888888";

fn secret(name: &str, account: &str, region: &str) -> SecretRecord {
    SecretRecord {
        arn: format!("arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"),
        account_id: account.to_owned(),
        region: region.to_owned(),
        name: name.to_owned(),
        description: None,
        kms_key_id: None,
        created_ms: 1_700_000_000_000,
        last_changed_ms: 1_700_000_000_000,
        last_accessed_ms: None,
        deletion_date_ms: None,
        tags_json: "[]".to_owned(),
        policy: None,
        rotation_json: None,
        next_rotation_ms: None,
        revision: 1,
    }
}

fn secret_version(secret: &SecretRecord, version_id: &str, stages: &[&str], created_ms: i64) -> SecretVersionRecord {
    SecretVersionRecord {
        secret_arn: secret.arn.clone(),
        version_id: version_id.to_owned(),
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        created_ms,
        last_accessed_ms: None,
        kms_key_arn: format!("arn:aws:kms:{}:{}:key/00000000-0000-4000-8000-00000000e001", secret.region, secret.account_id),
        encrypted_data_key: vec![1, 2, 0, 3, version_id.len() as u8],
        ciphertext: format!("sealed {version_id}").into_bytes(),
        binary: false,
    }
}

async fn secrets_create_and_get(s: &dyn Store) {
    let (acct, region) = (SECRETS_ACCOUNT, "us-east-1");
    let db = secret("app/db", acct, region);
    assert_eq!(s.get_secret(&db.arn).await.unwrap(), None);
    assert_eq!(s.get_secret_by_name(acct, region, "app/db").await.unwrap(), None);
    assert!(s.list_secrets(acct, region).await.unwrap().is_empty());

    // With a first version: the secret and its version, by ARN and by name.
    let v1 = secret_version(&db, "v1", &["AWSCURRENT"], 10);
    s.create_secret(&db, Some(&v1)).await.unwrap();
    assert_eq!(s.get_secret(&db.arn).await.unwrap().as_ref(), Some(&db));
    assert_eq!(s.get_secret_by_name(acct, region, "app/db").await.unwrap().as_ref(), Some(&db));
    assert_eq!(s.get_secret_version(&db.arn, "v1").await.unwrap().as_ref(), Some(&v1));
    assert_eq!(s.get_secret_version(&db.arn, "v2").await.unwrap(), None);
    assert_eq!(s.list_secret_versions(&db.arn).await.unwrap(), metas(std::slice::from_ref(&v1)));

    // Without a version, every optional member set: the record round-trips exactly.
    let mut full = secret("app/full", acct, region);
    full.description = Some("every member".into());
    full.kms_key_id = Some("alias/app".into());
    full.last_changed_ms = 1_700_000_000_500;
    full.last_accessed_ms = Some(1_699_999_200_000);
    full.tags_json = r#"[{"Key":"team","Value":"db"}]"#.into();
    full.policy = Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into());
    full.rotation_json = Some(r#"{"AutomaticallyAfterDays":30}"#.into());
    full.next_rotation_ms = Some(4_000_000_000_000);
    full.revision = 7;
    s.create_secret(&full, None).await.unwrap();
    assert_eq!(s.get_secret(&full.arn).await.unwrap().as_ref(), Some(&full));
    assert!(s.list_secret_versions(&full.arn).await.unwrap().is_empty(), "created without a version");

    // The name is unique in its account and region, whatever the ARN; a refused creation
    // stores nothing, its version included.
    let mut dup = secret("app/db", acct, region);
    dup.arn = format!("{}-dup", db.arn);
    let dup_v = secret_version(&dup, "dup-v", &["AWSCURRENT"], 10);
    assert!(matches!(s.create_secret(&dup, Some(&dup_v)).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get_secret(&dup.arn).await.unwrap(), None);
    assert!(s.list_secret_versions(&dup.arn).await.unwrap().is_empty(), "a refused creation stores no version");
    assert_eq!(s.get_secret_by_name(acct, region, "app/db").await.unwrap().as_ref(), Some(&db));
    // The same ARN is taken too.
    let mut same_arn = full.clone();
    same_arn.name = "app/other".into();
    assert!(matches!(s.create_secret(&same_arn, None).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get_secret_by_name(acct, region, "app/other").await.unwrap(), None);

    // The same name in another region or another account is another secret.
    let eu = secret("app/db", acct, "eu-west-1");
    s.create_secret(&eu, Some(&secret_version(&eu, "v1", &["AWSCURRENT"], 10))).await.unwrap();
    let other = secret("app/db", SECRETS_OTHER_ACCOUNT, region);
    s.create_secret(&other, None).await.unwrap();
    assert_eq!(s.get_secret_by_name(acct, "eu-west-1", "app/db").await.unwrap().as_ref(), Some(&eu));
    assert_eq!(s.get_secret_by_name(SECRETS_OTHER_ACCOUNT, region, "app/db").await.unwrap().as_ref(), Some(&other));
    assert_eq!(s.get_secret_by_name(acct, region, "app/db").await.unwrap().as_ref(), Some(&db));
    assert_eq!(s.get_secret_version(&db.arn, "v1").await.unwrap().as_ref(), Some(&v1), "versions are per secret");

    // Listing: one account and region, ordered by name in byte order.
    for name in ["zeta", "Zeta", "alpha/b", "alpha-b", "alpha"] {
        s.create_secret(&secret(name, acct, region), None).await.unwrap();
    }
    let names = |v: Vec<SecretRecord>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(names(s.list_secrets(acct, region).await.unwrap()), ["Zeta", "alpha", "alpha-b", "alpha/b", "app/db", "app/full", "zeta"]);
    assert_eq!(s.list_secrets(acct, region).await.unwrap()[5], full, "listed records are whole");
    assert_eq!(names(s.list_secrets(acct, "eu-west-1").await.unwrap()), ["app/db"]);
    assert_eq!(names(s.list_secrets(SECRETS_OTHER_ACCOUNT, region).await.unwrap()), ["app/db"]);
    assert!(s.list_secrets("999999999999", region).await.unwrap().is_empty());
}

async fn secrets_update_and_versions(s: &dyn Store) {
    let (acct, region) = (SECRETS_ACCOUNT, "us-west-2");
    let s1 = secret("rotating", acct, region);
    let v1 = secret_version(&s1, "v1", &["AWSCURRENT"], 100);
    s.create_secret(&s1, Some(&v1)).await.unwrap();

    // A new value: v2 becomes current, v1 previous (its stages replaced), the record changes.
    let mut s2 = s1.clone();
    s2.revision = 2;
    s2.last_changed_ms = 1_700_000_100_000;
    s2.description = Some("now described".into());
    let mut v1_prev = v1.clone();
    v1_prev.stages = vec!["AWSPREVIOUS".into()];
    v1_prev.last_accessed_ms = Some(1_700_000_000_000);
    let v2 = secret_version(&s1, "v2", &["AWSCURRENT", "custom-label"], 200);
    s.update_secret(&s2, 1, &[v1_prev.clone(), v2.clone()], &[]).await.unwrap();
    assert_eq!(s.get_secret(&s1.arn).await.unwrap().as_ref(), Some(&s2));
    assert_eq!(s.get_secret_version(&s1.arn, "v1").await.unwrap().as_ref(), Some(&v1_prev), "an upsert replaces the version");
    assert_eq!(s.list_secret_versions(&s1.arn).await.unwrap(), metas(&[v1_prev.clone(), v2.clone()]));

    // A stale revision conflicts and changes nothing, its versions included.
    let mut stale = s2.clone();
    stale.revision = 3;
    stale.description = Some("stale".into());
    let v3 = secret_version(&s1, "v3", &["AWSCURRENT"], 300);
    assert!(matches!(s.update_secret(&stale, 1, std::slice::from_ref(&v3), &["v1".into()]).await, Err(StoreError::Conflict)));
    assert_eq!(s.get_secret(&s1.arn).await.unwrap().as_ref(), Some(&s2));
    assert_eq!(s.get_secret_version(&s1.arn, "v3").await.unwrap(), None, "a conflicting update adds no version");
    assert_eq!(s.list_secret_versions(&s1.arn).await.unwrap(), metas(&[v1_prev.clone(), v2.clone()]), "nor deletes one");

    // A secret that does not exist.
    let mut ghost = secret("ghost", acct, region);
    ghost.revision = 2;
    assert!(matches!(s.update_secret(&ghost, 1, &[], &[]).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.update_secret(&ghost, 1, &[secret_version(&ghost, "g1", &["AWSCURRENT"], 1)], &[]).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.get_secret(&ghost.arn).await.unwrap(), None);
    assert!(s.list_secret_versions(&ghost.arn).await.unwrap().is_empty());

    // Deleting versions (a deprecated one, here), in the same call as an upsert.
    let mut s3 = s2.clone();
    s3.revision = 3;
    let v2_plain = secret_version(&s1, "v2", &["AWSCURRENT"], 200);
    s.update_secret(&s3, 2, std::slice::from_ref(&v2_plain), &["v1".into()]).await.unwrap();
    assert_eq!(s.get_secret_version(&s1.arn, "v1").await.unwrap(), None);
    assert_eq!(s.list_secret_versions(&s1.arn).await.unwrap(), metas(std::slice::from_ref(&v2_plain)));
    assert_eq!(s.get_secret(&s1.arn).await.unwrap().unwrap().revision, 3);

    // Versions are listed by creation time, then version id in byte order; a deprecated
    // version (no stages) round-trips.
    let mut s4 = s3.clone();
    s4.revision = 4;
    let later = [
        secret_version(&s1, "b", &[], 300),
        secret_version(&s1, "z", &[], 150),
        secret_version(&s1, "a", &["AWSPENDING"], 300),
        secret_version(&s1, "B", &[], 300),
        secret_version(&s1, "m", &["x", "y", "z"], 250),
    ];
    s.update_secret(&s4, 3, &later, &[]).await.unwrap();
    let listed = s.list_secret_versions(&s1.arn).await.unwrap();
    let ids = listed.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>();
    assert_eq!(ids, ["z", "v2", "m", "B", "a", "b"]);
    assert_eq!(listed[0], metas(&later[1..2])[0]);
    assert_eq!(listed[2].stages, ["x", "y", "z"], "labels keep their order");
    assert!(listed[5].stages.is_empty());

    // Clearing optional members.
    let mut s5 = s4.clone();
    s5.revision = 5;
    s5.description = None;
    s.update_secret(&s5, 4, &[], &[]).await.unwrap();
    assert_eq!(s.get_secret(&s1.arn).await.unwrap().as_ref(), Some(&s5));
    assert_eq!(s.list_secret_versions(&s1.arn).await.unwrap().len(), 6, "an update without versions leaves them");
}

/// Encrypted values are opaque bytes: NUL bytes, every byte value and a 64 KiB value round-trip
/// exactly, with the binary flag.
async fn secrets_values_round_trip(s: &dyn Store) {
    let sec = secret("blobs", SECRETS_ACCOUNT, "ap-southeast-2");
    let mut bin = secret_version(&sec, "bin", &["AWSCURRENT"], 1);
    bin.binary = true;
    bin.encrypted_data_key = (0..=255u8).chain([0, 0, 255, 0]).collect();
    bin.ciphertext = (0..65_536u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect();
    assert!(bin.ciphertext.contains(&0) && bin.ciphertext.len() == 65_536);
    s.create_secret(&sec, Some(&bin)).await.unwrap();
    let got = s.get_secret_version(&sec.arn, "bin").await.unwrap().unwrap();
    assert!(got.binary);
    assert_eq!(got.encrypted_data_key, bin.encrypted_data_key);
    assert_eq!(got.ciphertext, bin.ciphertext);
    assert_eq!(got, bin);

    let mut text = secret_version(&sec, "text", &["AWSPENDING"], 2);
    text.ciphertext = vec![0, 0, 0];
    let mut sec2 = sec.clone();
    sec2.revision = 2;
    s.update_secret(&sec2, 1, &[text.clone()], &[]).await.unwrap();
    assert_eq!(s.list_secret_versions(&sec.arn).await.unwrap(), metas(&[bin.clone(), text.clone()]));
    assert!(!s.get_secret_version(&sec.arn, "text").await.unwrap().unwrap().binary);
    // A replacement flips the flag and the bytes.
    let mut flipped = bin.clone();
    flipped.binary = false;
    flipped.ciphertext = vec![0x00];
    let mut sec3 = sec2.clone();
    sec3.revision = 3;
    s.update_secret(&sec3, 2, &[flipped.clone()], &[]).await.unwrap();
    assert_eq!(s.get_secret_version(&sec.arn, "bin").await.unwrap().as_ref(), Some(&flipped));
    s.destroy_secret(&sec.arn, 3).await.unwrap();
}

async fn secrets_destroy(s: &dyn Store) {
    let (acct, region) = (SECRETS_ACCOUNT, "ca-central-1");
    // Scheduled for deletion: still listed, and it keeps its name.
    let mut doomed = secret("doomed", acct, region);
    doomed.deletion_date_ms = Some(5_000);
    let versions = [secret_version(&doomed, "d1", &["AWSPREVIOUS"], 1), secret_version(&doomed, "d2", &["AWSCURRENT"], 2)];
    s.create_secret(&doomed, Some(&versions[0])).await.unwrap();
    let mut doomed2 = doomed.clone();
    doomed2.revision = 2;
    s.update_secret(&doomed2, 1, &[versions[1].clone()], &[]).await.unwrap();
    let mut taken = secret("doomed", acct, region);
    taken.arn.push_str("-again");
    assert!(matches!(s.create_secret(&taken, None).await, Err(StoreError::AlreadyExists)), "a secret pending deletion keeps its name");
    assert_eq!(s.list_secrets(acct, region).await.unwrap(), vec![doomed2.clone()]);
    let neighbour = secret("neighbour", acct, region);
    s.create_secret(&neighbour, Some(&secret_version(&neighbour, "d1", &["AWSCURRENT"], 1))).await.unwrap();

    // Compare-and-swap: a stale revision conflicts and destroys nothing; an unknown ARN is not found.
    assert!(matches!(s.destroy_secret(&doomed.arn, 1).await, Err(StoreError::Conflict)));
    assert_eq!(s.get_secret(&doomed.arn).await.unwrap().as_ref(), Some(&doomed2));
    assert_eq!(s.list_secret_versions(&doomed.arn).await.unwrap(), metas(&versions));
    assert!(matches!(s.destroy_secret(&taken.arn, 1).await, Err(StoreError::NotFound)));

    s.destroy_secret(&doomed.arn, 2).await.unwrap();
    assert_eq!(s.get_secret(&doomed.arn).await.unwrap(), None);
    assert_eq!(s.get_secret_by_name(acct, region, "doomed").await.unwrap(), None);
    assert!(s.list_secret_versions(&doomed.arn).await.unwrap().is_empty());
    assert_eq!(s.get_secret_version(&doomed.arn, "d2").await.unwrap(), None);
    assert_eq!(s.list_secrets(acct, region).await.unwrap(), vec![neighbour.clone()]);
    assert_eq!(s.list_secret_versions(&neighbour.arn).await.unwrap().len(), 1, "another secret's versions stay");
    assert!(matches!(s.destroy_secret(&doomed.arn, 2).await, Err(StoreError::NotFound)));
    let mut after = doomed2.clone();
    after.revision = 3;
    assert!(matches!(s.update_secret(&after, 2, &[], &[]).await, Err(StoreError::NotFound)));

    // The name is free again, under a new ARN or the old one, with no trace of the old versions.
    s.create_secret(&taken, None).await.unwrap();
    assert_eq!(s.get_secret_by_name(acct, region, "doomed").await.unwrap().as_ref(), Some(&taken));
    s.destroy_secret(&taken.arn, 1).await.unwrap();
    let reborn = secret("doomed", acct, region);
    let fresh = secret_version(&reborn, "d1", &["AWSCURRENT"], 9);
    s.create_secret(&reborn, Some(&fresh)).await.unwrap();
    assert_eq!(s.list_secret_versions(&reborn.arn).await.unwrap(), metas(&[fresh]));
    s.destroy_secret(&reborn.arn, 1).await.unwrap();
    s.destroy_secret(&neighbour.arn, 1).await.unwrap();
    assert!(s.list_secrets(acct, region).await.unwrap().is_empty());
}

async fn secrets_due(s: &dyn Store) {
    let (acct, region) = (SECRETS_ACCOUNT, "sa-east-1");
    let mut rotate = secret("due-rotation", acct, region);
    rotate.next_rotation_ms = Some(1_000);
    rotate.rotation_json = Some(r#"{"AutomaticallyAfterDays":1}"#.into());
    let mut delete = secret("due-deletion", acct, region);
    delete.deletion_date_ms = Some(2_000);
    let mut both = secret("due-both", acct, region);
    both.next_rotation_ms = Some(3_000);
    both.deletion_date_ms = Some(3_000);
    let idle = secret("due-never", acct, region);
    for sec in [&rotate, &delete, &both, &idle] {
        s.create_secret(sec, None).await.unwrap();
    }
    // Only this section's secrets (other checks may leave dated secrets behind).
    let ours = |v: Vec<SecretRecord>| {
        let mut names = v.into_iter().filter(|s| s.account_id == acct && s.region == region).map(|s| s.name).collect::<Vec<_>>();
        names.sort();
        names
    };
    assert!(ours(s.secrets_due(999, 100).await.unwrap()).is_empty());
    assert_eq!(ours(s.secrets_due(1_000, 100).await.unwrap()), ["due-rotation"], "due at the very millisecond");
    assert_eq!(ours(s.secrets_due(2_000, 100).await.unwrap()), ["due-deletion", "due-rotation"]);
    assert_eq!(ours(s.secrets_due(i64::MAX, 100).await.unwrap()), ["due-both", "due-deletion", "due-rotation"]);
    let due = s.secrets_due(i64::MAX, 100).await.unwrap();
    assert!(due.contains(&rotate), "due records are whole");
    // The limit.
    assert_eq!(s.secrets_due(i64::MAX, 2).await.unwrap().len(), 2);
    assert_eq!(s.secrets_due(i64::MAX, 1).await.unwrap().len(), 1);
    // Rotation turned off, deletion cancelled: no longer due.
    let mut off = rotate.clone();
    off.next_rotation_ms = None;
    off.rotation_json = None;
    off.revision = 2;
    s.update_secret(&off, 1, &[], &[]).await.unwrap();
    let mut cancelled = delete.clone();
    cancelled.deletion_date_ms = None;
    cancelled.revision = 2;
    s.update_secret(&cancelled, 1, &[], &[]).await.unwrap();
    assert_eq!(ours(s.secrets_due(i64::MAX, 100).await.unwrap()), ["due-both"]);
    for (sec, revision) in [(&rotate, 2), (&delete, 2), (&both, 1), (&idle, 1)] {
        s.destroy_secret(&sec.arn, revision).await.unwrap();
    }
    assert!(ours(s.secrets_due(i64::MAX, 100).await.unwrap()).is_empty());
}

/// A staging label the backend cannot hold (here, one with a comma, which AWS labels never
/// contain) is refused as the client's error, storing nothing, or stored exactly; never
/// mangled.
async fn secrets_labels(s: &dyn Store) {
    let sec = secret("labels", SECRETS_ACCOUNT, "us-east-2");
    let odd = secret_version(&sec, "odd", &["a,b", "c"], 1);
    match s.create_secret(&sec, Some(&odd)).await {
        Ok(()) => {
            assert_eq!(s.get_secret_version(&sec.arn, "odd").await.unwrap().as_ref(), Some(&odd));
            s.destroy_secret(&sec.arn, 1).await.unwrap();
        }
        Err(StoreError::InvalidInput(_)) => assert_eq!(s.get_secret(&sec.arn).await.unwrap(), None, "a refused creation stores nothing"),
        Err(e) => panic!("a comma in a staging label must be stored or invalid input, got {e:?}"),
    }
    s.create_secret(&sec, None).await.unwrap();
    let mut sec2 = sec.clone();
    sec2.revision = 2;
    match s.update_secret(&sec2, 1, std::slice::from_ref(&odd), &[]).await {
        Ok(()) => assert_eq!(s.get_secret_version(&sec.arn, "odd").await.unwrap().as_ref(), Some(&odd)),
        Err(StoreError::InvalidInput(_)) => {
            assert_eq!(s.get_secret(&sec.arn).await.unwrap().unwrap().revision, 1, "a refused update changes nothing");
            sec2.revision = 1;
        }
        Err(e) => panic!("a comma in a staging label must be stored or invalid input, got {e:?}"),
    }
    s.destroy_secret(&sec.arn, sec2.revision).await.unwrap();
}

async fn sealed_values(s: &dyn Store) {
    // An access key of its own, so that the table has a row on a fresh store too.
    let ak = AccessKeyRecord {
        access_key_id: "AKIASEALED0000000001".to_owned(),
        sealed_secret: vec![3; 40],
        account_id: "111111111111".to_owned(),
        principal_arn: "arn:aws:iam::111111111111:root".to_owned(),
        status: "Active".to_owned(),
        created_ms: 8,
    };
    s.put_access_key(&ak).await.unwrap();
    s.set_setting("root_check", "aa").await.unwrap();
    s.set_setting("root_check", "bb").await.unwrap();
    assert_eq!(s.get_setting("root_check").await.unwrap().as_deref(), Some("bb"));
    let k = key("66666666-6666-6666-6666-666666666666", "111111111111", "us-east-1");
    s.create_key(&k, Some(&material(&k.key_id, 1)), &[]).await.unwrap();
    let mut k2 = k.clone();
    k2.revision = 2;
    k2.current_version = 2;
    s.add_material(&k2, 1, &material(&k.key_id, 2)).await.unwrap();
    // Every material row, paged by (id, version).
    let mut all = Vec::new();
    let mut after: Option<(String, u32)> = None;
    loop {
        let page = s.list_sealed(SealedTable::Material, after.as_ref().map(|(i, v)| (i.as_str(), *v)), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.id.clone(), r.version));
        all.extend(page);
    }
    let ours: Vec<_> = all.iter().filter(|r| r.id == k.key_id).collect();
    assert_eq!(ours.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2]);
    assert!(all.windows(2).all(|w| (w[0].id.as_str(), w[0].version) < (w[1].id.as_str(), w[1].version)), "ordered");
    // Compare-and-swap on the bytes.
    let r = ours[1].clone();
    s.replace_sealed(&r, b"resealed").await.unwrap();
    assert!(matches!(s.replace_sealed(&r, b"again").await, Err(StoreError::Conflict)), "old bytes no longer there");
    assert_eq!(s.get_material(&k.key_id, 2).await.unwrap().unwrap().sealed, b"resealed");
    // Access keys and import parameters too.
    let access = s.list_sealed(SealedTable::AccessKey, None, 1000).await.unwrap();
    assert!(!access.is_empty() && access.iter().all(|r| r.version == 0));
    let a = access[0].clone();
    s.replace_sealed(&a, b"new secret").await.unwrap();
    assert_eq!(s.get_access_key(&a.id).await.unwrap().unwrap().sealed_secret, b"new secret");
    let p = ImportParamsRecord {
        token_id: "sealed-t".into(),
        key_id: k.key_id.clone(),
        wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
        wrapping_key_spec: "RSA_2048".into(),
        sealed_private_key: vec![9; 10],
        nonce: vec![9; 16],
        expires_ms: 77,
        used: false,
    };
    s.put_import_params(&p, 0, 10).await.unwrap();
    let imports = s.list_sealed(SealedTable::ImportParams, None, 1000).await.unwrap();
    assert!(!imports.is_empty() && imports.iter().all(|r| !r.owner.is_empty() && r.expires_ms.is_some()));
    let i = imports.iter().find(|r| r.id == "sealed-t").unwrap().clone();
    s.replace_sealed(&i, b"resealed wrapping key").await.unwrap();
    assert_eq!(s.get_import_params("sealed-t").await.unwrap().unwrap().sealed_private_key, b"resealed wrapping key");
    assert!(
        ours.iter().all(|r| r.expires_ms.is_none()) && access.iter().all(|r| r.expires_ms.is_none()),
        "material and secrets do not expire"
    );
    s.destroy_key(&k.key_id, 2).await.unwrap();
    assert!(matches!(s.replace_sealed(&ours[0].clone(), b"x").await, Err(StoreError::NotFound)));
}

/// A NUL character in client text is refused as the client's error (or stored), never reported
/// as an outage.
async fn nul_in_text(s: &dyn Store) {
    match s.get_alias("111111111111", "us-east-1", "alias/\0x").await {
        Ok(None) | Err(StoreError::InvalidInput(_)) => {}
        other => panic!("a NUL in a looked-up name must be absent or invalid input, got {other:?}"),
    }
    let mut k = key("55555555-5555-5555-5555-555555555555", "111111111111", "us-east-1");
    k.description = "nul \0 inside".into();
    match s.create_key(&k, None, &[]).await {
        Ok(()) => assert_eq!(s.get_key(&k.key_id).await.unwrap().unwrap().description, k.description),
        Err(StoreError::InvalidInput(_)) => assert!(s.get_key(&k.key_id).await.unwrap().is_none()),
        Err(e) => panic!("a NUL in a description must be stored or invalid input, got {e:?}"),
    }
}

async fn grants(s: &dyn Store) {
    let k = key("44444444-4444-4444-4444-444444444444", "111111111111", "us-east-1");
    s.create_key(&k, Some(&material(&k.key_id, 1)), &[]).await.unwrap();
    let grant = |id: &str, created_ms: i64, retiring: Option<&str>| GrantRecord {
        grant_id: id.into(),
        key_id: k.key_id.clone(),
        name: Some(format!("name-{id}")),
        grantee_principal: "arn:aws:iam::111111111111:user/app".into(),
        retiring_principal: retiring.map(str::to_owned),
        operations: "Decrypt,Encrypt".into(),
        constraints: Some(r#"{"EncryptionContextEquals":{"a":"b"}}"#.into()),
        issuing_principal: "arn:aws:iam::111111111111:root".into(),
        created_ms,
        token: format!("token-{id}"),
    };
    let ops = "arn:aws:iam::111111111111:user/ops";
    let (g1, g2, g3) = (grant("bb", 10, Some(ops)), grant("aa", 20, None), grant("cc", 10, Some(ops)));
    for g in [&g1, &g2, &g3] {
        s.create_grant(g).await.unwrap();
    }
    assert!(matches!(s.create_grant(&g1).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get_grant("bb").await.unwrap().as_ref(), Some(&g1));
    assert_eq!(s.get_grant("zz").await.unwrap(), None);
    let ids = |v: Vec<GrantRecord>| v.into_iter().map(|g| g.grant_id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_grants(&k.key_id).await.unwrap()), ["bb", "cc", "aa"], "ordered by creation time, then id");
    assert_eq!(ids(s.list_retirable_grants(ops).await.unwrap()), ["bb", "cc"]);
    assert!(s.list_retirable_grants("arn:aws:iam::111111111111:user/nobody").await.unwrap().is_empty());
    s.delete_grant("bb").await.unwrap();
    assert!(matches!(s.delete_grant("bb").await, Err(StoreError::NotFound)));
    assert_eq!(ids(s.list_grants(&k.key_id).await.unwrap()), ["cc", "aa"]);
    // Destroying the key destroys its grants.
    s.destroy_key(&k.key_id, 1).await.unwrap();
    assert!(s.list_grants(&k.key_id).await.unwrap().is_empty());
    assert_eq!(s.get_grant("aa").await.unwrap(), None);
}

/// The grant check's query: by key, grantee and operation.
async fn grant_check_query(s: &dyn Store) {
    let k = key("44444444-4444-4444-4444-444444444445", "111111111111", "us-east-1");
    let k2 = key("44444444-4444-4444-4444-444444444446", "111111111111", "us-east-1");
    s.create_key(&k, Some(&material(&k.key_id, 1)), &[]).await.unwrap();
    s.create_key(&k2, Some(&material(&k2.key_id, 1)), &[]).await.unwrap();
    let (app, root, other) =
        ("arn:aws:iam::111111111111:user/app", "arn:aws:iam::111111111111:root", "arn:aws:iam::111111111111:user/other");
    let grant = |id: &str, key_id: &str, grantee: &str, ops: &str, created_ms: i64| GrantRecord {
        grant_id: id.into(),
        key_id: key_id.into(),
        name: None,
        grantee_principal: grantee.into(),
        retiring_principal: None,
        operations: ops.into(),
        constraints: None,
        issuing_principal: root.into(),
        created_ms,
        token: format!("token-{id}"),
    };
    for g in [
        grant("q1", &k.key_id, app, "Decrypt,Encrypt", 30),
        grant("q2", &k.key_id, app, "ReEncryptFrom", 10),
        grant("q3", &k.key_id, root, "Decrypt", 20),
        grant("q4", &k.key_id, other, "Decrypt", 5),
        grant("q5", &k2.key_id, app, "Decrypt", 5),
        grant("q6", &k.key_id, app, "Encrypt,GenerateDataKey", 40),
    ] {
        s.create_grant(&g).await.unwrap();
    }
    let ids = |v: Vec<GrantRecord>| v.into_iter().map(|g| g.grant_id).collect::<Vec<_>>();
    assert_eq!(ids(s.grants_for(&k.key_id, &[app], "Decrypt").await.unwrap()), ["q1"]);
    assert_eq!(ids(s.grants_for(&k.key_id, &[app, root], "Decrypt").await.unwrap()), ["q3", "q1"], "ordered by creation time");
    assert_eq!(ids(s.grants_for(&k.key_id, &[app, app], "Decrypt").await.unwrap()), ["q1"], "a grantee named twice counts once");
    assert_eq!(ids(s.grants_for(&k.key_id, &[app], "Encrypt").await.unwrap()), ["q1", "q6"]);
    // An operation matches only as a whole member of the list.
    assert!(s.grants_for(&k.key_id, &[app], "ReEncrypt").await.unwrap().is_empty());
    assert!(s.grants_for(&k.key_id, &[app], "Encrypt,GenerateDataKey").await.unwrap().is_empty());
    assert!(s.grants_for(&k.key_id, &[app], "%").await.unwrap().is_empty());
    assert!(s.grants_for(&k.key_id, &[app], "").await.unwrap().is_empty());
    assert_eq!(ids(s.grants_for(&k.key_id, &[app], "ReEncryptFrom").await.unwrap()), ["q2"]);
    assert!(s.grants_for(&k.key_id, &[], "Decrypt").await.unwrap().is_empty());
    assert!(s.grants_for(&k.key_id, &["arn:aws:iam::111111111111:user/nobody"], "Decrypt").await.unwrap().is_empty());
    assert_eq!(s.grants_for(&k.key_id, &[app], "Decrypt").await.unwrap()[0], grant("q1", &k.key_id, app, "Decrypt,Encrypt", 30));
    s.delete_grant("q1").await.unwrap();
    assert!(s.grants_for(&k.key_id, &[app], "Decrypt").await.unwrap().is_empty(), "a deleted grant is gone at once");
    s.destroy_key(&k.key_id, 1).await.unwrap();
    s.destroy_key(&k2.key_id, 1).await.unwrap();
}

async fn accounts(s: &dyn Store) {
    let root_key = |id: &str, account: &str| AccessKeyRecord {
        access_key_id: id.into(),
        sealed_secret: vec![2; 40],
        account_id: account.into(),
        principal_arn: format!("arn:aws:iam::{account}:root"),
        status: "Active".into(),
        created_ms: 4,
    };
    let acct = |id: &str| AccountRecord { account_id: id.into(), name: format!("tenant {id}"), created_ms: 4 };
    s.create_account(&acct("333333333333"), &root_key("AKIAROOT300000000001", "333333333333")).await.unwrap();
    s.create_account(&acct("222222222222"), &root_key("AKIAROOT200000000001", "222222222222")).await.unwrap();
    assert!(matches!(
        s.create_account(&acct("333333333333"), &root_key("AKIAROOT300000000002", "333333333333")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(s.get_access_key("AKIAROOT300000000002").await.unwrap().is_none(), "a refused account creates no access key");
    assert!(matches!(
        s.create_account(&acct("444444444444"), &root_key("AKIAROOT300000000001", "444444444444")).await,
        Err(StoreError::AlreadyExists)
    ));
    let ids: Vec<String> = s.list_accounts().await.unwrap().into_iter().map(|a| a.account_id).collect();
    assert_eq!(ids, ["222222222222", "333333333333"], "a refused account is not created");
    assert_eq!(s.get_access_key("AKIAROOT200000000001").await.unwrap().unwrap().principal_arn, "arn:aws:iam::222222222222:root");
}

async fn imports(s: &dyn Store) {
    let mut k = key("00000000-0000-4000-8000-0000000000c1", "111111111111", "us-east-1");
    k.origin = "EXTERNAL".into();
    k.key_state = "PendingImport".into();
    k.current_version = 0;
    s.create_key(&k, None, &[]).await.unwrap();
    let params = ImportParamsRecord {
        token_id: "t1".into(),
        key_id: k.key_id.clone(),
        wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
        wrapping_key_spec: "RSA_2048".into(),
        sealed_private_key: vec![5; 10],
        nonce: vec![6; 16],
        expires_ms: 99,
        used: false,
    };
    s.put_import_params(&params, 0, 10).await.unwrap();
    assert_eq!(s.get_import_params("t1").await.unwrap(), Some(params.clone()));
    assert!(s.get_import_params("nope").await.unwrap().is_none());
    let mut imported = k.clone();
    imported.key_state = "Enabled".into();
    imported.current_version = 1;
    imported.valid_to_ms = Some(5_000);
    imported.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
    imported.import_fingerprint = Some("ab".into());
    imported.revision = 2;
    s.import_material(&imported, 1, &material(&k.key_id, 1), "t1").await.unwrap();
    assert_eq!(s.get_key(&k.key_id).await.unwrap().as_ref(), Some(&imported));
    assert_eq!(s.get_import_params("t1").await.unwrap(), None, "a consumed token's parameters are deleted");
    // Rotation of imported material: stage version 2 with another token, then promote it.
    let mut p2 = params.clone();
    p2.token_id = "t2".into();
    s.put_import_params(&p2, 0, 10).await.unwrap();
    let mut staged = imported.clone();
    staged.revision = 3;
    let mut v2 = material(&k.key_id, 2);
    v2.rotation_type = Some("PENDING_ROTATION".into());
    s.stage_material(&staged, 2, &v2, "t2").await.unwrap();
    assert_eq!(s.get_import_params("t2").await.unwrap(), None, "a consumed token's parameters are deleted");
    assert_eq!(s.get_key(&k.key_id).await.unwrap().unwrap().current_version, 1, "staging does not rotate");
    let mut promoted = staged.clone();
    promoted.current_version = 2;
    promoted.revision = 4;
    s.promote_material(&promoted, 3, 2, "ON_DEMAND").await.unwrap();
    assert_eq!(s.get_material(&k.key_id, 2).await.unwrap().unwrap().rotation_type.as_deref(), Some("ON_DEMAND"));
    let mut imported = promoted.clone();
    // A used token cannot import again.
    let mut again = imported.clone();
    again.revision = 5;
    assert!(matches!(s.import_material(&again, 4, &material(&k.key_id, 1), "t1").await, Err(StoreError::Conflict)));
    imported.revision = 4;
    // Expiry is due work.
    assert!(s.keys_due(6_000, 100).await.unwrap().iter().any(|r| r.key_id == k.key_id));
    let mut deleted = imported.clone();
    deleted.key_state = "PendingImport".into();
    deleted.current_version = 1;
    deleted.valid_to_ms = None;
    deleted.revision = 5;
    s.delete_material(&deleted, 4).await.unwrap();
    assert!(s.list_materials(&k.key_id).await.unwrap().is_empty());
    assert_eq!(s.get_key(&k.key_id).await.unwrap().as_ref(), Some(&deleted));
}

/// The cap on outstanding import tokens per key, and the purge of used and expired ones.
async fn import_params_cap_and_purge(s: &dyn Store) {
    let external = |id: &str| {
        let mut k = key(id, "111111111111", "us-east-1");
        k.origin = "EXTERNAL".into();
        k.key_state = "PendingImport".into();
        k.current_version = 0;
        k
    };
    let (k, other) = (external("00000000-0000-4000-8000-0000000000c2"), external("00000000-0000-4000-8000-0000000000c3"));
    s.create_key(&k, None, &[]).await.unwrap();
    s.create_key(&other, None, &[]).await.unwrap();
    let params = |token: &str, key_id: &str, expires_ms: i64, used: bool| ImportParamsRecord {
        token_id: token.into(),
        key_id: key_id.into(),
        wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
        wrapping_key_spec: "RSA_2048".into(),
        sealed_private_key: vec![7; 10],
        nonce: vec![8; 16],
        expires_ms,
        used,
    };
    for t in ["cap-a", "cap-b", "cap-c"] {
        s.put_import_params(&params(t, &k.key_id, 1_000, false), 0, 3).await.unwrap();
    }
    assert!(matches!(s.put_import_params(&params("cap-d", &k.key_id, 1_000, false), 0, 3).await, Err(StoreError::LimitExceeded)));
    assert_eq!(s.get_import_params("cap-d").await.unwrap(), None, "a refused token is not stored");
    // The cap is per key.
    s.put_import_params(&params("cap-other", &other.key_id, 1_000, false), 0, 3).await.unwrap();
    assert_eq!(s.count_import_params(&k.key_id, 0).await.unwrap(), 3);
    assert_eq!(s.count_import_params(&k.key_id, 999).await.unwrap(), 3);
    assert_eq!(s.count_import_params(&k.key_id, 1_000).await.unwrap(), 0, "expired parameters are not outstanding");
    // Expired and used parameters do not count against the cap.
    s.put_import_params(&params("cap-used", &k.key_id, 5_000, true), 1_000, 3).await.unwrap();
    s.put_import_params(&params("cap-e", &k.key_id, 5_000, false), 1_000, 3).await.unwrap();
    assert_eq!(s.count_import_params(&k.key_id, 1_000).await.unwrap(), 1);
    // Sealed-value listing carries the expiry, so a rotation can skip what expired.
    let sealed = s.list_sealed(SealedTable::ImportParams, None, 1000).await.unwrap();
    let a = sealed.iter().find(|r| r.id == "cap-a").unwrap();
    assert_eq!((a.owner.as_str(), a.expires_ms), (k.key_id.as_str(), Some(1_000)));
    // Purge: nothing before the expiry; then the key's used and expired rows, and only its own.
    assert_eq!(s.purge_import_params(Some(&k.key_id), 999).await.unwrap(), 1, "only the used one");
    assert_eq!(s.get_import_params("cap-used").await.unwrap(), None);
    assert_eq!(s.purge_import_params(Some(&k.key_id), 1_000).await.unwrap(), 3);
    for t in ["cap-a", "cap-b", "cap-c"] {
        assert_eq!(s.get_import_params(t).await.unwrap(), None);
    }
    assert!(s.get_import_params("cap-e").await.unwrap().is_some(), "unexpired parameters stay");
    assert!(s.get_import_params("cap-other").await.unwrap().is_some(), "another key's parameters stay");
    assert!(s.purge_import_params(None, 1_000).await.unwrap() >= 1);
    assert_eq!(s.get_import_params("cap-other").await.unwrap(), None, "a purge of every key");
    assert!(s.get_import_params("cap-e").await.unwrap().is_some());
    // Destroying a key deletes its import parameters.
    s.destroy_key(&k.key_id, 1).await.unwrap();
    assert_eq!(s.get_import_params("cap-e").await.unwrap(), None);
}

async fn users(s: &dyn Store) {
    let user = |name: &str| UserRecord {
        account_id: "111111111111".into(),
        user_name: name.into(),
        arn: format!("arn:aws:iam::111111111111:user/{name}"),
        role: "reader".into(),
        created_ms: 3,
    };
    let ak = |id: &str, arn: &str| AccessKeyRecord {
        access_key_id: id.into(),
        sealed_secret: vec![1; 40],
        account_id: "111111111111".into(),
        principal_arn: arn.into(),
        status: "Active".into(),
        created_ms: 3,
    };
    let bob = user("bob");
    s.create_user(&bob, &ak("AKIABOB0000000000001", &bob.arn)).await.unwrap();
    assert!(matches!(s.create_user(&bob, &ak("AKIABOB0000000000002", &bob.arn)).await, Err(StoreError::AlreadyExists)));
    assert!(s.get_access_key("AKIABOB0000000000002").await.unwrap().is_none(), "a refused user creates no access key");
    let alice = user("alice");
    s.create_user(&alice, &ak("AKIAALICE00000000001", &alice.arn)).await.unwrap();
    let names: Vec<String> = s.list_users("111111111111").await.unwrap().into_iter().map(|u| u.user_name).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(s.list_users("111111111111").await.unwrap().iter().all(|u| u.role == "reader"));
    assert_eq!(s.get_access_key("AKIAALICE00000000001").await.unwrap().unwrap().principal_arn, alice.arn);
    assert!(s.list_users("222222222222").await.unwrap().is_empty());

    // Access key management.
    s.put_access_key(&ak("AKIAALICE00000000002", &alice.arn)).await.unwrap();
    let ids = |v: Vec<AccessKeyRecord>| v.into_iter().map(|k| (k.access_key_id, k.status)).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_access_keys(&alice.arn).await.unwrap()),
        [("AKIAALICE00000000001".to_owned(), "Active".to_owned()), ("AKIAALICE00000000002".to_owned(), "Active".to_owned())]
    );
    s.set_access_key_status("AKIAALICE00000000001", "Inactive").await.unwrap();
    assert_eq!(s.get_access_key("AKIAALICE00000000001").await.unwrap().unwrap().status, "Inactive");
    assert!(matches!(s.set_access_key_status("AKIANOBODY0000000000", "Inactive").await, Err(StoreError::NotFound)));
    s.delete_access_key("AKIAALICE00000000002").await.unwrap();
    assert!(s.get_access_key("AKIAALICE00000000002").await.unwrap().is_none());
    assert!(matches!(s.delete_access_key("AKIAALICE00000000002").await, Err(StoreError::NotFound)));

    // Dual-authorization fields round-trip.
    let mut k = key("00000000-0000-4000-8000-0000000000b1", "111111111111", "us-east-1");
    k.dual_auth = true;
    k.deletion_request = Some(DeletionRequest { requested_by: bob.arn.clone(), requested_ms: 77, window_days: 9 });
    s.create_key(&k, Some(&material(&k.key_id, 1)), &[]).await.unwrap();
    assert_eq!(s.get_key(&k.key_id).await.unwrap().as_ref(), Some(&k));
    let mut cleared = k.clone();
    cleared.deletion_request = None;
    cleared.revision = 2;
    s.update_key(&cleared, 1).await.unwrap();
    assert_eq!(s.get_key(&k.key_id).await.unwrap().as_ref(), Some(&cleared));
}

async fn lifecycle(s: &dyn Store) {
    let mut k = key("00000000-0000-4000-8000-0000000000a1", "111111111111", "us-east-1");
    s.create_key(&k, Some(&material(&k.key_id, 1)), &[tag("t", "v")]).await.unwrap();
    // Rotation adds a version atomically with the record; a stale rotation conflicts.
    let mut rotated = k.clone();
    rotated.current_version = 2;
    rotated.revision = 2;
    s.add_material(&rotated, 1, &material(&k.key_id, 2)).await.unwrap();
    assert!(matches!(s.add_material(&rotated, 1, &material(&k.key_id, 3)).await, Err(StoreError::Conflict)));
    assert!(s.get_material(&k.key_id, 3).await.unwrap().is_none(), "a conflicting rotation adds no material");
    let versions: Vec<u32> = s.list_materials(&k.key_id).await.unwrap().iter().map(|m| m.version).collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(s.get_material(&k.key_id, 2).await.unwrap().unwrap().rotation_type.as_deref(), Some("ON_DEMAND"));
    k = rotated;

    // Due work: rotation and deletion dates.
    let mut due = k.clone();
    due.next_rotation_ms = Some(1_000);
    due.rotation_period_days = Some(90);
    due.revision = 3;
    s.update_key(&due, 2).await.unwrap();
    let mut pending = key("00000000-0000-4000-8000-0000000000a2", "111111111111", "us-east-1");
    pending.key_state = "PendingDeletion".to_owned();
    pending.deletion_date_ms = Some(2_000);
    s.create_key(&pending, Some(&material(&pending.key_id, 1)), &[]).await.unwrap();
    // Dates passed, but no work the scheduler does: a disabled key's rotation waits for it to be
    // enabled, a pending-deletion key's rotation and expiry never come. Such keys are not due
    // (they would fill every page).
    let mut deferred = key("00000000-0000-4000-8000-0000000000a3", "111111111111", "us-east-1");
    deferred.key_state = "Disabled".to_owned();
    deferred.next_rotation_ms = Some(1_000);
    deferred.rotation_period_days = Some(90);
    s.create_key(&deferred, Some(&material(&deferred.key_id, 1)), &[]).await.unwrap();
    let mut waiting = key("00000000-0000-4000-8000-0000000000a4", "111111111111", "us-east-1");
    waiting.key_state = "PendingDeletion".to_owned();
    waiting.deletion_date_ms = Some(9_000);
    waiting.next_rotation_ms = Some(1_000);
    waiting.valid_to_ms = Some(1_000);
    s.create_key(&waiting, Some(&material(&waiting.key_id, 1)), &[]).await.unwrap();
    // Only this section's keys (earlier sections left other dated keys behind).
    let ids = |v: Vec<KeyRecord>| {
        v.into_iter().map(|k| k.key_id).filter(|id| ["0a1", "0a2", "0a3", "0a4"].iter().any(|end| id.ends_with(end))).collect::<Vec<_>>()
    };
    assert_eq!(ids(s.keys_due(500, 10).await.unwrap()), Vec::<String>::new());
    assert_eq!(ids(s.keys_due(1_500, 10).await.unwrap()), vec![due.key_id.clone()]);
    let mut both = ids(s.keys_due(2_500, 10).await.unwrap());
    both.sort();
    assert_eq!(both, vec![due.key_id.clone(), pending.key_id.clone()]);

    // Destruction removes the record, every version, tags and aliases.
    s.create_alias(&AliasRecord {
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        alias_name: "alias/doomed".into(),
        target_key_id: pending.key_id.clone(),
        creation_date_ms: 1,
        last_updated_date_ms: 1,
    })
    .await
    .unwrap();
    s.put_tags(&pending.key_id, &[tag("x", "y")], 50).await.unwrap();
    assert!(matches!(s.destroy_key(&pending.key_id, 99).await, Err(StoreError::Conflict)));
    s.destroy_key(&pending.key_id, 1).await.unwrap();
    assert!(s.get_key(&pending.key_id).await.unwrap().is_none());
    assert!(s.list_materials(&pending.key_id).await.unwrap().is_empty());
    assert!(s.list_tags(&pending.key_id, None, 10).await.unwrap().is_empty());
    assert!(s.get_alias("111111111111", "us-east-1", "alias/doomed").await.unwrap().is_none());
    assert!(matches!(s.destroy_key(&pending.key_id, 1).await, Err(StoreError::NotFound)));
}

/// Leases: one holder at a time until expiry; the holder renews.
async fn leases(s: &dyn Store) {
    assert!(s.try_lease("scheduler", "node-a", 0, 1_000).await.unwrap());
    assert!(!s.try_lease("scheduler", "node-b", 500, 1_500).await.unwrap());
    assert!(s.try_lease("scheduler", "node-a", 900, 2_000).await.unwrap());
    assert!(!s.try_lease("scheduler", "node-b", 1_999, 3_000).await.unwrap());
    assert!(s.try_lease("scheduler", "node-b", 2_001, 3_000).await.unwrap());
}

async fn keys(s: &dyn Store) {
    let k = key("00000000-0000-4000-8000-000000000001", "111111111111", "us-east-1");
    assert!(s.get_key(&k.key_id).await.unwrap().is_none());
    s.create_key(&k, Some(&material(&k.key_id, 1)), &[tag("a", "1")]).await.unwrap();
    assert_eq!(s.get_key(&k.key_id).await.unwrap().as_ref(), Some(&k));
    assert!(matches!(s.create_key(&k, Some(&material(&k.key_id, 1)), &[]).await, Err(StoreError::AlreadyExists)));
    let m = s.get_material(&k.key_id, 1).await.unwrap().expect("material v1");
    assert_eq!(m, material(&k.key_id, 1));
    assert!(s.get_material(&k.key_id, 2).await.unwrap().is_none());
    assert_eq!(s.list_tags(&k.key_id, None, 10).await.unwrap(), vec![tag("a", "1")]);

    // Optimistic concurrency: the first update wins, a stale one conflicts.
    let mut k2 = k.clone();
    k2.key_state = "Disabled".to_owned();
    k2.deletion_date_ms = Some(42);
    k2.revision = 2;
    s.update_key(&k2, 1).await.unwrap();
    assert_eq!(s.get_key(&k.key_id).await.unwrap().as_ref(), Some(&k2));
    let mut stale = k.clone();
    stale.revision = 2;
    assert!(matches!(s.update_key(&stale, 1).await, Err(StoreError::Conflict)));
    let mut ghost = key("00000000-0000-4000-8000-0000000000ff", "111111111111", "us-east-1");
    ghost.revision = 2;
    assert!(matches!(s.update_key(&ghost, 1).await, Err(StoreError::NotFound)));

    // Listing is per account and region, ordered by id, paginated by `after`.
    for i in 2..=5 {
        let kk = key(&format!("00000000-0000-4000-8000-00000000000{i}"), "111111111111", "us-east-1");
        s.create_key(&kk, Some(&material(&kk.key_id, 1)), &[]).await.unwrap();
    }
    let other = key("00000000-0000-4000-8000-000000000009", "111111111111", "eu-west-1");
    s.create_key(&other, Some(&material(&other.key_id, 1)), &[]).await.unwrap();
    let other_acct = key("00000000-0000-4000-8000-000000000008", "222222222222", "us-east-1");
    s.create_key(&other_acct, Some(&material(&other_acct.key_id, 1)), &[]).await.unwrap();
    let page1 = s.list_keys("111111111111", "us-east-1", None, 3).await.unwrap();
    let ids: Vec<_> = page1.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(
        ids,
        ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"]
    );
    let page2 = s.list_keys("111111111111", "us-east-1", Some(ids[2]), 3).await.unwrap();
    let ids2: Vec<_> = page2.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids2, ["00000000-0000-4000-8000-000000000004", "00000000-0000-4000-8000-000000000005"]);
    assert_eq!(s.list_keys("111111111111", "eu-west-1", None, 10).await.unwrap().len(), 1);
    assert_eq!(s.list_keys("333333333333", "us-east-1", None, 10).await.unwrap().len(), 0);
}

async fn aliases(s: &dyn Store) {
    let (acct, region) = ("111111111111", "us-east-1");
    let a = AliasRecord {
        account_id: acct.to_owned(),
        region: region.to_owned(),
        alias_name: "alias/b".to_owned(),
        target_key_id: "00000000-0000-4000-8000-000000000001".to_owned(),
        creation_date_ms: 10,
        last_updated_date_ms: 10,
    };
    s.create_alias(&a).await.unwrap();
    assert!(matches!(s.create_alias(&a).await, Err(StoreError::AlreadyExists)));
    // The same name in another region is a different alias.
    let mut a_eu = a.clone();
    a_eu.region = "eu-west-1".to_owned();
    s.create_alias(&a_eu).await.unwrap();
    let mut a2 = a.clone();
    a2.alias_name = "alias/a".to_owned();
    a2.target_key_id = "00000000-0000-4000-8000-000000000002".to_owned();
    s.create_alias(&a2).await.unwrap();
    assert_eq!(s.get_alias(acct, region, "alias/b").await.unwrap().as_ref(), Some(&a));
    assert!(s.get_alias(acct, region, "alias/zzz").await.unwrap().is_none());
    let all = s.list_aliases(acct, region, None, None, 10).await.unwrap();
    assert_eq!(all.iter().map(|a| a.alias_name.as_str()).collect::<Vec<_>>(), ["alias/a", "alias/b"]);
    let after = s.list_aliases(acct, region, None, Some("alias/a"), 10).await.unwrap();
    assert_eq!(after.len(), 1);
    let for_key = s.list_aliases(acct, region, Some("00000000-0000-4000-8000-000000000002"), None, 10).await.unwrap();
    assert_eq!(for_key, vec![a2.clone()]);

    s.update_alias(acct, region, "alias/b", "00000000-0000-4000-8000-000000000003", 99).await.unwrap();
    let b = s.get_alias(acct, region, "alias/b").await.unwrap().expect("alias/b");
    assert_eq!(b.target_key_id, "00000000-0000-4000-8000-000000000003");
    assert_eq!((b.creation_date_ms, b.last_updated_date_ms), (10, 99));
    assert!(matches!(s.update_alias(acct, region, "alias/none", "x", 1).await, Err(StoreError::NotFound)));
    s.delete_alias(acct, region, "alias/b").await.unwrap();
    assert!(s.get_alias(acct, region, "alias/b").await.unwrap().is_none());
    assert!(matches!(s.delete_alias(acct, region, "alias/b").await, Err(StoreError::NotFound)));
    assert!(s.get_alias(acct, "eu-west-1", "alias/b").await.unwrap().is_some());
}

async fn tags(s: &dyn Store) {
    let id = "00000000-0000-4000-8000-000000000002";
    s.put_tags(id, &[tag("z", "1"), tag("y", "2")], 3).await.unwrap();
    s.put_tags(id, &[tag("z", "new")], 3).await.unwrap();
    assert_eq!(s.list_tags(id, None, 10).await.unwrap(), vec![tag("y", "2"), tag("z", "new")]);
    s.put_tags(id, &[tag("x", "3")], 3).await.unwrap();
    // A fourth distinct tag exceeds the limit and changes nothing.
    assert!(matches!(s.put_tags(id, &[tag("w", "4"), tag("x", "changed")], 3).await, Err(StoreError::LimitExceeded)));
    assert_eq!(s.list_tags(id, None, 10).await.unwrap(), vec![tag("x", "3"), tag("y", "2"), tag("z", "new")]);
    assert_eq!(s.list_tags(id, Some("x"), 1).await.unwrap(), vec![tag("y", "2")]);
    s.delete_tags(id, &["y".to_owned(), "absent".to_owned()]).await.unwrap();
    assert_eq!(s.list_tags(id, None, 10).await.unwrap(), vec![tag("x", "3"), tag("z", "new")]);
}

async fn access_keys(s: &dyn Store) {
    let ak = AccessKeyRecord {
        access_key_id: "AKIACONFORMANCE00001".to_owned(),
        sealed_secret: vec![9; 40],
        account_id: "111111111111".to_owned(),
        principal_arn: "arn:aws:iam::111111111111:root".to_owned(),
        status: "Active".to_owned(),
        created_ms: 7,
    };
    assert!(s.get_access_key(&ak.access_key_id).await.unwrap().is_none());
    s.put_access_key(&ak).await.unwrap();
    assert!(matches!(s.put_access_key(&ak).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get_access_key(&ak.access_key_id).await.unwrap(), Some(ak));
}

async fn settings(s: &dyn Store) {
    assert_eq!(s.get_setting("conformance.x").await.unwrap(), None);
    assert_eq!(s.init_setting("conformance.x", "first").await.unwrap(), "first");
    assert_eq!(s.init_setting("conformance.x", "second").await.unwrap(), "first");
    assert_eq!(s.get_setting("conformance.x").await.unwrap().as_deref(), Some("first"));
}
