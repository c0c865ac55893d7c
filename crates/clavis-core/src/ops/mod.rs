//! The operations, one module per family: each is an `impl Kms` block whose public methods
//! are the operations of the catalogue ([`crate::operation`]). They validate the request shape
//! into domain types, obtain keys through the kernel's resolvers (which authorize), apply the
//! state rules, do the work through the kernel, and build the response shape. They cannot
//! reach the fields of `Kms`: only the kernel's methods (see `crate::kernel`).

mod admin;
mod aliases;
mod asymmetric;
mod byok;
mod crypto;
mod grants;
pub mod identity;
mod key_policy;
mod keys;
pub(crate) mod lifecycle;
mod operator;
mod secrets;
mod tags;
pub mod xks;

use crate::KmsError;

/// Whether `nonce` has the form of an unseal nonce (32 lower-case hex digits).
pub(crate) fn is_unseal_nonce(nonce: &str) -> bool {
    nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// Permits for key-pair generation (wrapping keys, asymmetric keys, data key pairs), shared by the whole process (they bound CPU, which the
/// process shares): half the cores, at least one, so that a burst of RSA-4096 requests leaves
/// the other half to everything else.
fn generation_permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            Arc::new(Semaphore::new((cores / 2).max(1)))
        })
        .clone()
}

/// How many RSA generations may wait for a permit, process-wide, before further requests are
/// refused with `ThrottlingException` (AWS throttles with request quotas too): a flood of
/// RSA-4096 requests queues a bounded amount of work, so the wait of a later request is bounded.
const MAX_WAITING_GENERATIONS: usize = 16;

/// Requests waiting for a generation permit now.
static WAITING_GENERATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a request among the waiting ones while it lives.
struct Waiting;

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING_GENERATIONS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A new private key of this kind (PKCS#8; ML-KEM: its decapsulation key). RSA generation
/// (hundreds of milliseconds of a core, sometimes seconds) runs off the request threads under
/// a generation permit ([`generate_off_runtime`]); EC, Ed25519, ML-DSA and ML-KEM keys take
/// microseconds and are made inline, so they never queue behind RSA.
pub(crate) async fn generate_pair(kind: clavis_crypto::asymmetric::PairSpec) -> Result<clavis_crypto::SecretBytes, KmsError> {
    use clavis_crypto::asymmetric::{PairSpec, generate};
    match kind {
        PairSpec::Rsa2048 | PairSpec::Rsa3072 | PairSpec::Rsa4096 => generate_off_runtime(move || generate(kind)).await,
        _ => Ok(generate(kind)?),
    }
}

/// Runs a key generation (an RSA key pair: hundreds of milliseconds of a core, sometimes
/// seconds) on tokio's blocking pool under a generation permit.
/// Requests beyond the permits wait here, as cheap suspended tasks, not on a worker thread, at
/// most [`MAX_WAITING_GENERATIONS`] of them (then `ThrottlingException`).
/// The permit moves into the blocking task, so a request abandoned by its client mid-generation
/// still holds it until its generation ends: the bound is on running generations, not on
/// waiting requests.
pub(crate) async fn generate_off_runtime<T: Send + 'static>(
    generate: impl FnOnce() -> Result<T, clavis_crypto::CryptoError> + Send + 'static,
) -> Result<T, KmsError> {
    let permits = generation_permits();
    let permit = match permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if WAITING_GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= MAX_WAITING_GENERATIONS {
                WAITING_GENERATIONS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                return Err(KmsError::Throttling(
                    "Rate exceeded: too many RSA key generations are waiting on this server; retry later.".into(),
                ));
            }
            let _waiting = Waiting;
            permits.acquire_owned().await.map_err(|_| KmsError::Internal("the key generation semaphore is closed".into()))?
        }
    };
    let generate = move || {
        let _permit = permit;
        generate()
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.spawn_blocking(generate).await.map_err(|e| KmsError::Internal(format!("key generation failed: {e}")))?,
        // Driven by an executor other than tokio: no blocking pool to use, so generate here;
        // the permit still bounds how many run at once.
        Err(_) => generate(),
    }
    .map_err(KmsError::from)
}
