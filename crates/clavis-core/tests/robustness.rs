//! Hostile input to the core's parsers: random and mutated ciphertext blobs through Decrypt,
//! random JSON bodies into the request shapes, random KeyId strings. Every outcome must be an
//! AWS error (or, for an untouched blob, the plaintext), never a panic or an internal error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code.

use clavis_core::api::*;
use clavis_core::types::{AccountId, KeyRef, Region, Role};
use clavis_core::{Caller, Kms, KmsConfig, KmsError, SystemClock};
use clavis_crypto::SecretBytes;
use clavis_crypto::seal::LocalKeyFile;
use clavis_store_sqlite::SqliteStore;
use std::sync::Arc;

#[path = "../../../tests/support/rng.rs"]
mod rng;
use rng::Rng;

fn caller() -> Caller {
    Caller {
        account: AccountId::parse("111122223333").unwrap(),
        region: Region::parse("us-east-1").unwrap(),
        principal_arn: "arn:aws:iam::111122223333:root".into(),
        access_key_id: "AKIATEST".into(),
        role: Role::Admin,
        source_ip: None,
        secure_transport: false,
        resources: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_ciphertexts_are_refused_cleanly() {
    let dir = std::env::temp_dir().join(format!("clavis-robust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kms = Kms::new(
        Arc::new(SqliteStore::open(&dir.join("db")).unwrap()),
        Arc::new(LocalKeyFile::create(&dir.join("master.key")).unwrap()),
        Arc::new(SystemClock),
        KmsConfig::default(),
    );
    let c = caller();
    let key = kms.create_key(&c, CreateKeyRequest::default()).await.unwrap().key_metadata.key_id;
    let blob = kms
        .encrypt(&c, EncryptRequest { key_id: Some(key), plaintext: Some(SecretBlob(SecretBytes::from_slice(b"x"))), ..Default::default() })
        .await
        .unwrap()
        .ciphertext_blob
        .0;
    let mut rng = Rng(7);
    for i in 0..3_000 {
        let candidate = if i % 2 == 0 {
            let mut b = blob.clone();
            let at = (rng.next() as usize) % b.len();
            b[at] ^= (rng.next() as u8) | 1;
            if rng.next().is_multiple_of(4) {
                b.truncate(at);
            }
            b
        } else {
            rng.bytes(120)
        };
        match kms.decrypt(&c, DecryptRequest { ciphertext_blob: Some(Blob(candidate)), ..Default::default() }).await {
            Err(KmsError::InvalidCiphertext(_) | KmsError::Validation(_)) => {}
            other => panic!("unexpected outcome for a damaged ciphertext: {other:?}"),
        }
    }
}

#[test]
fn random_json_and_key_ids_never_panic() {
    let mut rng = Rng(11);
    let fragments: [&[u8]; 10] = [b"{", b"}", b"\"KeyId\":", b"\"Plaintext\":\"", b"=\"", b"[", b"]", b"null", b"1e999", b","];
    for _ in 0..20_000 {
        let mut body = Vec::new();
        for _ in 0..(rng.next() % 8) {
            body.extend_from_slice(fragments[(rng.next() % 10) as usize]);
        }
        body.extend(rng.bytes(8));
        let _ = serde_json::from_slice::<EncryptRequest>(&body);
        let _ = serde_json::from_slice::<DecryptRequest>(&body);
        let _ = serde_json::from_slice::<CreateKeyRequest>(&body);
        let id = String::from_utf8_lossy(&rng.bytes(80)).into_owned();
        let _ = KeyRef::parse(&id, "keyId");
        let _ = KeyRef::parse(&format!("arn:aws:kms:{id}"), "keyId");
    }
}
