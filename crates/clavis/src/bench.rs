//! `clavis bench`: a load generator for any AWS-KMS-compatible endpoint. It signs its own SigV4
//! requests, drives N concurrent keep-alive connections for a fixed time, and prints requests
//! per second, latency percentiles and errors per operation. It creates the keys it needs and
//! schedules them for deletion afterwards (where the endpoint supports it).

use crate::client::{Client, Endpoint};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Arguments of `clavis bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Endpoint to load: `http://` or `https://` (TLS trusting `AWS_CA_BUNDLE` or the system CAs).
    #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:8484")]
    endpoint_url: String,
    /// Signing region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// Operation: encrypt, decrypt, generate-data-key, re-encrypt, create-key, sign, verify,
    /// generate-mac, get-secret-value or mix (the first four).
    #[arg(long, default_value = "encrypt")]
    op: String,
    /// Key spec of the signing key for sign and verify: ECC_NIST_P256, ECC_NIST_P384,
    /// RSA_2048, RSA_3072, ECC_NIST_EDWARDS25519 or ML_DSA_44/65/87.
    #[arg(long, default_value = "ECC_NIST_P256")]
    sign_key_spec: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured duration in seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Plaintext bytes per Encrypt.
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const OPS: &[&str] =
    &["encrypt", "decrypt", "generate-data-key", "re-encrypt", "create-key", "sign", "verify", "generate-mac", "get-secret-value"];
/// The operations `mix` runs.
const MIX: &[&str] = &["encrypt", "decrypt", "generate-data-key", "re-encrypt"];

/// The signing algorithm the benchmark uses for a key spec.
fn signing_algorithm(spec: &str) -> anyhow::Result<&'static str> {
    Ok(match spec {
        "ECC_NIST_P256" => "ECDSA_SHA_256",
        "ECC_NIST_P384" => "ECDSA_SHA_384",
        "RSA_2048" | "RSA_3072" => "RSASSA_PSS_SHA_256",
        "ECC_NIST_EDWARDS25519" => "ED25519_SHA_512",
        "ML_DSA_44" | "ML_DSA_65" | "ML_DSA_87" => "ML_DSA_SHAKE_256",
        other => anyhow::bail!("--sign-key-spec {other} is not one the benchmark knows"),
    })
}

/// What a worker needs to build each request.
#[derive(Clone, Default)]
struct Fixture {
    key_arn: String,
    other_key_arn: String,
    ciphertext_b64: String,
    plaintext_b64: String,
    sign_key_arn: String,
    signing_algorithm: String,
    signature_b64: String,
    mac_key_arn: String,
    secret_arn: String,
}

fn request(op: &str, f: &Fixture) -> (&'static str, Value) {
    match op {
        "encrypt" => ("TrentService.Encrypt", json!({"KeyId": f.key_arn, "Plaintext": f.plaintext_b64})),
        "decrypt" => ("TrentService.Decrypt", json!({"CiphertextBlob": f.ciphertext_b64})),
        "generate-data-key" => ("TrentService.GenerateDataKey", json!({"KeyId": f.key_arn, "KeySpec": "AES_256"})),
        "re-encrypt" => ("TrentService.ReEncrypt", json!({"CiphertextBlob": f.ciphertext_b64, "DestinationKeyId": f.other_key_arn})),
        "sign" => {
            ("TrentService.Sign", json!({"KeyId": f.sign_key_arn, "Message": f.plaintext_b64, "SigningAlgorithm": f.signing_algorithm}))
        }
        "verify" => (
            "TrentService.Verify",
            json!({"KeyId": f.sign_key_arn, "Message": f.plaintext_b64, "Signature": f.signature_b64, "SigningAlgorithm": f.signing_algorithm}),
        ),
        "get-secret-value" => ("secretsmanager.GetSecretValue", json!({"SecretId": f.secret_arn})),
        "generate-mac" => {
            ("TrentService.GenerateMac", json!({"KeyId": f.mac_key_arn, "Message": f.plaintext_b64, "MacAlgorithm": "HMAC_SHA_256"}))
        }
        _ => ("TrentService.CreateKey", json!({"Description": "clavis bench"})),
    }
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    created_keys: Vec<String>,
}

async fn worker(
    endpoint: Endpoint,
    ops: Vec<String>,
    f: Fixture,
    warmup_end: Instant,
    end: Instant,
) -> anyhow::Result<BTreeMap<String, Stats>> {
    let mut client = Client::connect(&endpoint).await?;
    let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
    let mut i = 0usize;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let op = &ops[i % ops.len()];
        i += 1;
        let (target, body) = request(op, &f);
        let started = Instant::now();
        let reply = client.call(target, serde_json::to_vec(&body)?).await;
        let elapsed = started.elapsed();
        let s = stats.entry(op.clone()).or_default();
        match reply {
            Ok(r) if r.status == 200 => {
                if op == "create-key"
                    && let Ok(v) = serde_json::from_slice::<Value>(&r.body)
                    && let Some(id) = v["KeyMetadata"]["Arn"].as_str()
                {
                    s.created_keys.push(id.to_owned());
                }
                if started >= warmup_end {
                    s.latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                }
            }
            Ok(r) => {
                let code = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["__type"].as_str().map(str::to_owned));
                *s.errors.entry(code.unwrap_or_else(|| format!("HTTP {}", r.status))).or_default() += 1;
            }
            Err(e) => {
                *s.errors.entry(format!("transport: {e}")).or_default() += 1;
                client = Client::connect(&endpoint).await?;
            }
        }
    }
    Ok(stats)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `clavis bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let ops: Vec<String> = match args.op.as_str() {
        "mix" => MIX.iter().map(|s| (*s).to_owned()).collect(),
        op if OPS.contains(&op) => vec![op.to_owned()],
        other => anyhow::bail!("unknown --op {other}; one of {} or mix", OPS.join(", ")),
    };
    let endpoint = Endpoint::from_env(&args.endpoint_url, args.region.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut setup = Client::connect(&endpoint).await?;
        let key_arn = setup.call_json("TrentService.CreateKey", json!({"Description": "clavis bench"})).await?["KeyMetadata"]["Arn"]
            .as_str()
            .context("CreateKey returned no Arn")?
            .to_owned();
        let other_key_arn = setup.call_json("TrentService.CreateKey", json!({"Description": "clavis bench"})).await?["KeyMetadata"]["Arn"]
            .as_str()
            .context("CreateKey returned no Arn")?
            .to_owned();
        let plaintext_b64 = STANDARD.encode(vec![0x5a; args.payload_bytes]);
        let ciphertext_b64 =
            setup.call_json("TrentService.Encrypt", json!({"KeyId": key_arn, "Plaintext": plaintext_b64})).await?["CiphertextBlob"]
                .as_str()
                .context("Encrypt returned no CiphertextBlob")?
                .to_owned();
        let mut fixture =
            Fixture { key_arn: key_arn.clone(), other_key_arn: other_key_arn.clone(), ciphertext_b64, plaintext_b64, ..Fixture::default() };
        let mut extra_keys = Vec::new();
        if ops.iter().any(|o| o == "sign" || o == "verify") {
            let algorithm = signing_algorithm(&args.sign_key_spec)?;
            let created = setup
                .call_json(
                    "TrentService.CreateKey",
                    json!({"Description": "clavis bench", "KeySpec": args.sign_key_spec, "KeyUsage": "SIGN_VERIFY"}),
                )
                .await?;
            let arn = created["KeyMetadata"]["Arn"].as_str().context("CreateKey returned no Arn")?.to_owned();
            let signed = setup
                .call_json("TrentService.Sign", json!({"KeyId": arn, "Message": fixture.plaintext_b64, "SigningAlgorithm": algorithm}))
                .await?;
            fixture.signature_b64 = signed["Signature"].as_str().context("Sign returned no Signature")?.to_owned();
            fixture.signing_algorithm = algorithm.to_owned();
            fixture.sign_key_arn = arn.clone();
            extra_keys.push(arn);
        }
        let mut secret_arn = None;
        if ops.iter().any(|o| o == "get-secret-value") {
            let suffix: String = clavis_crypto::random::bytes(8)?.iter().map(|b| format!("{b:02x}")).collect();
            let name = format!("clavis-bench/{suffix}");
            let created =
                setup.call_json("secretsmanager.CreateSecret", json!({"Name": name, "SecretString": fixture.plaintext_b64})).await?;
            let arn = created["ARN"].as_str().context("CreateSecret returned no ARN")?.to_owned();
            fixture.secret_arn = arn.clone();
            secret_arn = Some(arn);
        }
        if ops.iter().any(|o| o == "generate-mac") {
            let created = setup
                .call_json(
                    "TrentService.CreateKey",
                    json!({"Description": "clavis bench", "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
                )
                .await?;
            let arn = created["KeyMetadata"]["Arn"].as_str().context("CreateKey returned no Arn")?.to_owned();
            fixture.mac_key_arn = arn.clone();
            extra_keys.push(arn);
        }

        let start = Instant::now();
        let warmup_end = start + Duration::from_secs(1);
        let end = warmup_end + Duration::from_secs_f64(args.duration);
        let mut handles = Vec::new();
        for c in 0..args.connections {
            // Stagger each worker's position in a mix so every operation runs concurrently.
            let mut ops_c = ops.clone();
            ops_c.rotate_left(c % ops.len());
            handles.push(tokio::spawn(worker(endpoint.clone(), ops_c, fixture.clone(), warmup_end, end)));
        }
        let mut total: BTreeMap<String, Stats> = BTreeMap::new();
        for h in handles {
            for (op, s) in h.await?? {
                let t = total.entry(op).or_default();
                t.latencies_us.extend(s.latencies_us);
                t.created_keys.extend(s.created_keys);
                for (k, v) in s.errors {
                    *t.errors.entry(k).or_default() += v;
                }
            }
        }

        let mut report = Vec::new();
        for (op, s) in &mut total {
            s.latencies_us.sort_unstable();
            let n = s.latencies_us.len();
            report.push(json!({
                "operation": op,
                "requests": n,
                "requests_per_second": (n as f64 / args.duration).round(),
                "p50_us": percentile(&s.latencies_us, 0.50),
                "p90_us": percentile(&s.latencies_us, 0.90),
                "p99_us": percentile(&s.latencies_us, 0.99),
                "max_us": s.latencies_us.last().copied().unwrap_or(0),
                "errors": s.errors,
            }));
        }

        // Clean up: every key this run created.
        let mut created: Vec<String> = total.values().flat_map(|s| s.created_keys.iter().cloned()).collect();
        created.push(key_arn);
        created.push(other_key_arn);
        created.extend(extra_keys);
        let mut cleanup_note = None;
        if let Some(arn) = &secret_arn {
            let _ = setup.call_json("secretsmanager.DeleteSecret", json!({"SecretId": arn, "ForceDeleteWithoutRecovery": true})).await;
        }
        for arn in &created {
            if let Err(e) = setup.call_json("TrentService.ScheduleKeyDeletion", json!({"KeyId": arn, "PendingWindowInDays": 7})).await {
                cleanup_note.get_or_insert(format!("could not schedule deletion of the {} bench keys: {e}", created.len()));
                // Fall back to disabling, so the keys at least cannot be used.
                let _ = setup.call_json("TrentService.DisableKey", json!({"KeyId": arn})).await;
            }
        }

        let summary = json!({
            "endpoint": args.endpoint_url,
            "connections": args.connections,
            "duration_s": args.duration,
            "payload_bytes": args.payload_bytes,
            "results": report,
            "cleanup": cleanup_note.clone().unwrap_or_else(|| format!("{} keys scheduled for deletion", created.len())),
        });
        if args.json {
            println!("{summary}");
        } else {
            println!(
                "clavis bench: {} connections, {}s, {}-byte payload, {}",
                args.connections, args.duration, args.payload_bytes, args.endpoint_url
            );
            println!("{:<20} {:>10} {:>9} {:>9} {:>9} {:>9}  errors", "operation", "req/s", "p50 µs", "p90 µs", "p99 µs", "max µs");
            for r in &report {
                println!(
                    "{:<20} {:>10} {:>9} {:>9} {:>9} {:>9}  {}",
                    r["operation"].as_str().unwrap_or_default(),
                    r["requests_per_second"].to_string(),
                    r["p50_us"].to_string(),
                    r["p90_us"].to_string(),
                    r["p99_us"].to_string(),
                    r["max_us"].to_string(),
                    r["errors"]
                );
            }
            if let Some(note) = cleanup_note {
                eprintln!("note: {note} (bench keys were disabled instead)");
            }
        }
        Ok(())
    })
}
