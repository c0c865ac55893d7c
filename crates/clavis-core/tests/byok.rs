//! Bring your own key through the core's public operations: material wrapped client-side with
//! RSA-OAEP (and RSA + AES key wrap) through `clavis_crypto::import`, the client half the crypto
//! crate already offers for `clavis key import`, so the test needs no crypto library of its
//! own. Import, re-import of the same material only, deletion and expiry of material, new
//! material for rotation, the import errors AWS defines, and the cap on outstanding tokens
//! with their purge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

mod common;

use clavis_core::api::*;
use clavis_core::types::Role;
use clavis_core::{Kms, KmsError};
use clavis_crypto::SecretBytes;
use clavis_crypto::import::{ImportWrapping, encrypt_nonce, wrap_for_import};
use common::*;

async fn external_key(kms: &Kms) -> String {
    let req = CreateKeyRequest { origin: Some("EXTERNAL".into()), ..Default::default() };
    let meta = kms.create_key(&admin(), req).await.unwrap().key_metadata;
    assert_eq!((meta.origin.as_str(), meta.key_state.as_str(), meta.enabled), ("EXTERNAL", "PendingImport", false));
    meta.key_id
}

fn params_req(key_id: &str, algorithm: &str) -> GetParametersForImportRequest {
    GetParametersForImportRequest {
        key_id: Some(key_id.to_owned()),
        wrapping_algorithm: Some(algorithm.to_owned()),
        wrapping_key_spec: Some("RSA_2048".into()),
    }
}

async fn params(kms: &Kms, key_id: &str, algorithm: &str) -> GetParametersForImportResponse {
    kms.get_parameters_for_import(&admin(), params_req(key_id, algorithm)).await.unwrap()
}

/// The material, wrapped for the parameters as a client would.
fn wrapped(p: &GetParametersForImportResponse, algorithm: &str, material: &SecretBytes) -> Blob {
    Blob(wrap_for_import(&p.public_key.0, ImportWrapping::parse(algorithm).unwrap(), material).unwrap())
}

fn import_req(key_id: &str, p: &GetParametersForImportResponse, wrapped_material: Blob) -> ImportKeyMaterialRequest {
    ImportKeyMaterialRequest {
        key_id: Some(key_id.to_owned()),
        import_token: Some(p.import_token.clone()),
        encrypted_key_material: Some(wrapped_material),
        ..Default::default()
    }
}

/// GetParametersForImport and ImportKeyMaterial with RSAES_OAEP_SHA_256.
async fn import(kms: &Kms, key_id: &str, material: &SecretBytes) -> Result<Empty, KmsError> {
    let p = params(kms, key_id, "RSAES_OAEP_SHA_256").await;
    kms.import_key_material(&admin(), import_req(key_id, &p, wrapped(&p, "RSAES_OAEP_SHA_256", material))).await
}

fn material(byte: u8) -> SecretBytes {
    SecretBytes::new(vec![byte; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_material_serves_every_wrapping_algorithm() {
    let env = Env::new("byok-algorithms");
    let (kms, admin) = (&env.kms, admin());
    for (i, algorithm) in
        ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"].iter().enumerate()
    {
        let key = external_key(kms).await;
        assert_error(encrypt(kms, &admin, &key, b"x", None).await, "KMSInvalidStateException", "is pending import.");
        let p = params(kms, &key, algorithm).await;
        assert!(p.key_id.ends_with(&format!(":key/{key}")), "{}", p.key_id);
        assert_eq!(p.import_token.0.len(), 32);
        near_day(p.parameters_valid_to, env.now_s());
        kms.import_key_material(&admin, import_req(&key, &p, wrapped(&p, algorithm, &material(i as u8 + 1)))).await.unwrap();

        let meta = describe(kms, &admin, &key).await.unwrap();
        assert_eq!(meta.key_state, "Enabled", "{algorithm}");
        assert_eq!(meta.expiration_model.as_deref(), Some("KEY_MATERIAL_DOES_NOT_EXPIRE"));
        assert!(meta.valid_to.is_none());
        let blob = encrypt(kms, &admin, &key, algorithm.as_bytes(), None).await.unwrap();
        assert_eq!(decrypt(kms, &admin, &blob, None).await.unwrap(), algorithm.as_bytes());
    }
}

#[track_caller]
fn near_day(valid_to: f64, now: f64) {
    assert!((valid_to - now - 86_400.0).abs() < 60.0, "parameters valid to {valid_to}, now {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_material_imports_again_after_deletion() {
    let env = Env::new("byok-reimport");
    let (kms, admin) = (&env.kms, admin());
    let key = external_key(kms).await;
    import(kms, &key, &material(7)).await.unwrap();
    let blob = encrypt(kms, &admin, &key, b"kept", None).await.unwrap();
    // An enabled key takes no more EXISTING_KEY_MATERIAL.
    assert_error(
        import(kms, &key, &material(7)).await,
        "KMSInvalidStateException",
        "is Enabled; import key material into a key that is pending import.",
    );

    // Deleting needs a manager; then the key waits for material again.
    assert_error(
        kms.delete_imported_key_material(&user("w", Role::Writer), key_req(&key)).await,
        "AccessDeniedException",
        "kms:DeleteImportedKeyMaterial",
    );
    kms.delete_imported_key_material(&admin, key_req(&key)).await.unwrap();
    assert_eq!(describe(kms, &admin, &key).await.unwrap().key_state, "PendingImport");
    assert_error(decrypt(kms, &admin, &blob, None).await, "KMSInvalidStateException", "is pending import.");

    assert_error(import(kms, &key, &material(8)).await, "IncorrectKeyMaterialException", "different from the material previously imported");
    import(kms, &key, &material(7)).await.unwrap();
    assert_eq!(decrypt(kms, &admin, &blob, None).await.unwrap(), b"kept");

    // Only EXTERNAL keys have imported material.
    let generated = new_key(kms, &admin).await;
    assert_error(kms.delete_imported_key_material(&admin, key_req(&generated)).await, "UnsupportedOperationException", "not EXTERNAL");
    assert_error(
        kms.get_parameters_for_import(&admin, params_req(&generated, "RSAES_OAEP_SHA_256")).await,
        "UnsupportedOperationException",
        "origin is AWS_KMS, not EXTERNAL",
    );
    // And automatic rotation is for material Clavis generated.
    let enable = EnableKeyRotationRequest { key_id: Some(key.clone()), rotation_period_in_days: None };
    assert_error(kms.enable_key_rotation(&admin, enable).await, "UnsupportedOperationException", "cannot be rotated");
    assert!(!kms.get_key_rotation_status(&admin, key_req(&key)).await.unwrap().key_rotation_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_what_aws_refuses() {
    let env = Env::new("byok-errors");
    let (kms, admin) = (&env.kms, admin());
    let key = external_key(kms).await;
    let other = external_key(kms).await;

    assert_error(
        kms.get_parameters_for_import(&admin, params_req(&key, "NOPE")).await,
        "ValidationException",
        "Value 'NOPE' at 'wrappingAlgorithm'",
    );
    assert_error(
        kms.get_parameters_for_import(&admin, params_req(&key, "RSAES_PKCS1_V1_5")).await,
        "UnsupportedOperationException",
        "RSAES_PKCS1_V1_5 is not supported",
    );
    let sm2 = GetParametersForImportRequest { wrapping_key_spec: Some("SM2".into()), ..params_req(&key, "RSAES_OAEP_SHA_256") };
    assert_error(kms.get_parameters_for_import(&admin, sm2).await, "UnsupportedOperationException", "China Regions");
    let no_spec = GetParametersForImportRequest { wrapping_key_spec: None, ..params_req(&key, "RSAES_OAEP_SHA_256") };
    assert_error(kms.get_parameters_for_import(&admin, no_spec).await, "ValidationException", "Value null at 'wrappingKeySpec'");
    assert_error(
        kms.get_parameters_for_import(&user("r", Role::Reader), params_req(&key, "RSAES_OAEP_SHA_256")).await,
        "AccessDeniedException",
        "kms:GetParametersForImport",
    );

    let p = params(kms, &key, "RSAES_OAEP_SHA_256").await;
    let good = || wrapped(&p, "RSAES_OAEP_SHA_256", &material(1));
    // Another key's token.
    assert_error(
        kms.import_key_material(&admin, import_req(&other, &p, good())).await,
        "InvalidImportTokenException",
        "not issued for this key",
    );
    // A token Clavis never issued.
    let forged = ImportKeyMaterialRequest { import_token: Some(Blob(vec![0; 32])), ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, forged).await, "InvalidImportTokenException", "invalid");
    // Bytes that are not wrapped for this token's key, or wrapped with another algorithm.
    assert_error(
        kms.import_key_material(&admin, import_req(&key, &p, Blob(vec![1; 256]))).await,
        "InvalidCiphertextException",
        "could not be unwrapped",
    );
    let sha1 = Blob(wrap_for_import(&p.public_key.0, ImportWrapping::OaepSha1, &material(1)).unwrap());
    assert_error(kms.import_key_material(&admin, import_req(&key, &p, sha1)).await, "InvalidCiphertextException", "RSAES_OAEP_SHA_256");
    // Material of the wrong size for SYMMETRIC_DEFAULT.
    let short = wrapped(&p, "RSAES_OAEP_SHA_256", &SecretBytes::new(vec![3; 16]));
    assert_error(
        kms.import_key_material(&admin, import_req(&key, &p, short)).await,
        "IncorrectKeyMaterialException",
        "256 bits (32 bytes), not 16 bytes",
    );
    // Expiry members that do not fit together.
    let no_valid_to = ImportKeyMaterialRequest { expiration_model: Some("KEY_MATERIAL_EXPIRES".into()), ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, no_valid_to).await, "ValidationException", "A ValidTo date is required");
    let stray_valid_to = ImportKeyMaterialRequest { valid_to: Some(env.now_s() + 3600.0), ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, stray_valid_to).await, "ValidationException", "ValidTo must not be set");
    for valid_to in [env.now_s() - 1.0, env.now_s() + 366.0 * DAY_S as f64] {
        let req = ImportKeyMaterialRequest {
            expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
            valid_to: Some(valid_to),
            ..import_req(&key, &p, good())
        };
        assert_error(kms.import_key_material(&admin, req).await, "ValidationException", "at most 365 days from now");
    }
    let missing = ImportKeyMaterialRequest { encrypted_key_material: None, ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, missing).await, "ValidationException", "Value null at 'encryptedKeyMaterial'");
    // The proof of possession (Clavis extension) must decrypt to the token's nonce.
    let (iv, enc) = encrypt_nonce(&material(1), b"some other nonce").unwrap();
    let wrong_nonce =
        ImportKeyMaterialRequest { encrypted_nonce: Some(Blob(enc)), nonce_iv: Some(Blob(iv)), ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, wrong_nonce).await, "IncorrectKeyMaterialException", "ClavisEncryptedNonce");
    // Half a proof is refused, not skipped (it was silently ignored before).
    let (iv, enc) = encrypt_nonce(&material(1), b"some other nonce").unwrap();
    let only_iv = ImportKeyMaterialRequest { nonce_iv: Some(Blob(iv)), ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, only_iv).await, "ValidationException", "go together");
    let only_nonce = ImportKeyMaterialRequest { encrypted_nonce: Some(Blob(enc)), ..import_req(&key, &p, good()) };
    assert_error(kms.import_key_material(&admin, only_nonce).await, "ValidationException", "go together");

    // None of the refusals used the token: it still imports, with the right proof.
    let (iv, enc) = encrypt_nonce(&material(1), &p.nonce.0).unwrap();
    let proven = ImportKeyMaterialRequest { encrypted_nonce: Some(Blob(enc)), nonce_iv: Some(Blob(iv)), ..import_req(&key, &p, good()) };
    kms.import_key_material(&admin, proven).await.unwrap();
    // Used once: after the material is deleted, the same token is refused.
    kms.delete_imported_key_material(&admin, key_req(&key)).await.unwrap();
    assert_error(kms.import_key_material(&admin, import_req(&key, &p, good())).await, "InvalidImportTokenException", "invalid");

    // No import parameters for a key pending deletion.
    kms.schedule_key_deletion(&admin, ScheduleKeyDeletionRequest { key_id: Some(other.clone()), pending_window_in_days: Some(7) })
        .await
        .unwrap();
    assert_error(
        kms.get_parameters_for_import(&admin, params_req(&other, "RSAES_OAEP_SHA_256")).await,
        "KMSInvalidStateException",
        "is pending deletion.",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_tokens_are_capped_and_expired_ones_purged() {
    let env = Env::new("byok-tokens");
    let kms = &env.kms;
    let key = external_key(kms).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(params(kms, &key, "RSAES_OAEP_SHA_256").await);
    }
    assert_error(
        kms.get_parameters_for_import(&admin(), params_req(&key, "RSAES_OAEP_SHA_256")).await,
        "LimitExceededException",
        "already has 10 unused import tokens",
    );
    // The cap is per key.
    let other = external_key(kms).await;
    params(kms, &other, "RSAES_OAEP_SHA_256").await;

    // A day later they have expired: they no longer count, and a late import says so.
    env.advance(DAY_S + 1);
    let first = &tokens[0];
    let late = import_req(&key, first, wrapped(first, "RSAES_OAEP_SHA_256", &material(1)));
    assert_error(kms.import_key_material(&admin(), late).await, "ExpiredImportTokenException", "has expired");
    let fresh = params(kms, &key, "RSAES_OAEP_SHA_256").await;
    // Expired parameters are kept for a day after expiry, then purged by the due work.
    assert_eq!(kms.run_due_work("node").await.unwrap().purged_import_params, 0);
    env.advance(DAY_S);
    let done = kms.run_due_work("node").await.unwrap();
    // The ten expired tokens of `key` and the one of `other`; `fresh` has just expired and is
    // kept another day.
    assert_eq!(done.purged_import_params, 11);
    let purged = import_req(&key, first, wrapped(first, "RSAES_OAEP_SHA_256", &material(1)));
    assert_error(kms.import_key_material(&admin(), purged).await, "InvalidImportTokenException", "invalid");
    let expired = import_req(&key, &fresh, wrapped(&fresh, "RSAES_OAEP_SHA_256", &material(1)));
    assert_error(kms.import_key_material(&admin(), expired).await, "ExpiredImportTokenException", "has expired");

    // A used token is deleted with the import that uses it.
    let p = params(kms, &key, "RSAES_OAEP_SHA_256").await;
    kms.import_key_material(&admin(), import_req(&key, &p, wrapped(&p, "RSAES_OAEP_SHA_256", &material(1)))).await.unwrap();
    env.advance(2 * DAY_S);
    // Only `fresh` is left to purge.
    assert_eq!(kms.run_due_work("node").await.unwrap().purged_import_params, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_material_expires_at_its_valid_to() {
    let env = Env::new("byok-expiry");
    let (kms, admin) = (&env.kms, admin());
    let key = external_key(kms).await;
    let p = params(kms, &key, "RSA_AES_KEY_WRAP_SHA_256").await;
    let valid_to = env.now_s() + DAY_S as f64;
    let req = ImportKeyMaterialRequest {
        expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
        valid_to: Some(valid_to),
        ..import_req(&key, &p, wrapped(&p, "RSA_AES_KEY_WRAP_SHA_256", &material(9)))
    };
    kms.import_key_material(&admin, req).await.unwrap();
    let meta = describe(kms, &admin, &key).await.unwrap();
    assert_eq!(meta.expiration_model.as_deref(), Some("KEY_MATERIAL_EXPIRES"));
    assert!((meta.valid_to.unwrap() - valid_to).abs() < 0.01, "{:?} vs {valid_to}", meta.valid_to);
    let blob = encrypt(kms, &admin, &key, b"until tomorrow", None).await.unwrap();

    env.advance(DAY_S - 60);
    assert_eq!(kms.run_due_work("node").await.unwrap().expired, 0);
    env.advance(120);
    assert_eq!(kms.run_due_work("node").await.unwrap().expired, 1);
    let meta = describe(kms, &admin, &key).await.unwrap();
    assert_eq!((meta.key_state.as_str(), meta.valid_to), ("PendingImport", None));
    assert_error(decrypt(kms, &admin, &blob, None).await, "KMSInvalidStateException", "is pending import.");

    // The same material, imported again without expiry, brings the old ciphertexts back.
    import(kms, &key, &material(9)).await.unwrap();
    assert_eq!(decrypt(kms, &admin, &blob, None).await.unwrap(), b"until tomorrow");
    assert_eq!(describe(kms, &admin, &key).await.unwrap().valid_to, None);
    env.advance(400 * DAY_S);
    assert_eq!(kms.run_due_work("node").await.unwrap().expired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_material_is_staged_and_made_current_by_on_demand_rotation() {
    let env = Env::new("byok-rotate");
    let (kms, admin) = (&env.kms, admin());
    let key = external_key(kms).await;
    import(kms, &key, &material(1)).await.unwrap();
    let old = encrypt(kms, &admin, &key, b"v1", None).await.unwrap();
    let rotations = || ListForKeyRequest { key_id: Some(key.clone()), ..Default::default() };
    let stage = |p: &GetParametersForImportResponse, m: &SecretBytes| ImportKeyMaterialRequest {
        import_type: Some("NEW_KEY_MATERIAL".into()),
        ..import_req(&key, p, wrapped(p, "RSAES_OAEP_SHA_256", m))
    };

    assert_error(kms.rotate_key_on_demand(&admin, key_req(&key)).await, "KMSInvalidStateException", "no key material pending rotation");
    let p = params(kms, &key, "RSAES_OAEP_SHA_256").await;
    assert_error(kms.import_key_material(&admin, stage(&p, &material(1))).await, "IncorrectKeyMaterialException", "must differ");
    kms.import_key_material(&admin, stage(&p, &material(2))).await.unwrap();
    // Staged material is not a rotation yet, and is not used yet.
    assert!(kms.list_key_rotations(&admin, rotations()).await.unwrap().rotations.is_empty());
    let p2 = params(kms, &key, "RSAES_OAEP_SHA_256").await;
    assert_error(
        kms.import_key_material(&admin, stage(&p2, &material(3))).await,
        "KMSInvalidStateException",
        "already has key material pending rotation",
    );

    kms.rotate_key_on_demand(&admin, key_req(&key)).await.unwrap();
    let listed = kms.list_key_rotations(&admin, rotations()).await.unwrap().rotations;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].rotation_type, "ON_DEMAND");
    let new = encrypt(kms, &admin, &key, b"v2", None).await.unwrap();
    assert_eq!(decrypt(kms, &admin, &old, None).await.unwrap(), b"v1");
    assert_eq!(decrypt(kms, &admin, &new, None).await.unwrap(), b"v2");
    assert_error(kms.rotate_key_on_demand(&admin, key_req(&key)).await, "KMSInvalidStateException", "no key material pending rotation");

    // NEW_KEY_MATERIAL needs a key that has material.
    let waiting = external_key(kms).await;
    let p = params(kms, &waiting, "RSAES_OAEP_SHA_256").await;
    let req = ImportKeyMaterialRequest {
        import_type: Some("NEW_KEY_MATERIAL".into()),
        ..import_req(&waiting, &p, wrapped(&p, "RSAES_OAEP_SHA_256", &material(4)))
    };
    assert_error(kms.import_key_material(&admin, req).await, "KMSInvalidStateException", "only into a key that has key material");
}
