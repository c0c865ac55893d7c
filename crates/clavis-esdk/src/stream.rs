//! The streaming writer and reader. Frames are grouped into batches of about 1 MiB; one thread
//! reads and lays out (or parses) batches, worker threads seal (or open) their frames, and the
//! calling thread writes finished batches in order (hashing them for the signed suite when
//! writing). A fixed pool of batch buffers bounds memory whatever the message size: about
//! `(2 * workers + 2)` batches of `max(1 MiB, frame length)`.

use crate::header::{Header, MESSAGE_ID_LEN, derive};
use crate::input::Input;
use crate::{EncryptedDataKey, EncryptionContext, Error, Limits, MAX_FRAME_LENGTH, PUBLIC_KEY_CONTEXT_KEY, RESERVED_CONTEXT_PREFIX, Suite};
use base64::Engine as _;
use clavis_crypto::SecretBytes;
use clavis_crypto::ecdsa::{EcdsaP384SigningKey, Sha384, verify_p384};
use clavis_crypto::gcm::{IV_LEN, TAG_LEN};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// Plaintext bytes per batch (at least one frame).
const BATCH_BYTES: usize = 1 << 20;
/// Marks the final frame.
const FINAL_MARKER: u32 = u32::MAX;
/// The body AAD labels.
const REGULAR_LABEL: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_LABEL: &[u8] = b"AWSKMSEncryptionClient Final Frame";
/// The longest signature accepted in a footer (a P-384 DER signature is at most 104 bytes).
const MAX_SIGNATURE_LEN: usize = 512;

/// How to run a stream.
pub struct StreamOptions<'a> {
    /// Threads that seal or open frames (at least one).
    pub workers: usize,
    /// Called on the calling thread with the plaintext bytes done so far, after each batch.
    pub progress: &'a dyn Fn(u64),
}

impl Default for StreamOptions<'_> {
    fn default() -> Self {
        StreamOptions { workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)), progress: &|_| {} }
    }
}

/// What [`encrypt`] needs: the context (with the public key for the signed suite, from
/// [`prepare_context`]), the data key and its wrapped copies.
pub struct EncryptMaterials {
    /// The suite.
    pub suite: Suite,
    /// The full encryption context, as sent to KMS.
    pub context: EncryptionContext,
    /// The wrapped copies of `data_key`.
    pub data_keys: Vec<EncryptedDataKey>,
    /// The plaintext data key (32 bytes).
    pub data_key: SecretBytes,
    /// The signing key, for the signed suite.
    pub signing_key: Option<EcdsaP384SigningKey>,
    /// Plaintext bytes per frame.
    pub frame_length: u32,
}

/// Checks the caller's context (no reserved keys) and, for the signed suite, makes the signing
/// key and adds its public key to the context. KMS must see the returned context.
pub fn prepare_context(suite: Suite, mut context: EncryptionContext) -> Result<(EncryptionContext, Option<EcdsaP384SigningKey>), Error> {
    if let Some(k) = context.keys().find(|k| k.starts_with(RESERVED_CONTEXT_PREFIX)) {
        return Err(Error::InvalidInput(format!("encryption context keys starting with {RESERVED_CONTEXT_PREFIX:?} are reserved ({k:?})")));
    }
    if !suite.is_signed() {
        return Ok((context, None));
    }
    let key = EcdsaP384SigningKey::generate()?;
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key_compressed()?);
    context.insert(PUBLIC_KEY_CONTEXT_KEY.to_owned(), public);
    Ok((context, Some(key)))
}

/// One frame in a batch buffer.
struct Frame {
    seq: u32,
    iv: [u8; IV_LEN],
    is_final: bool,
    /// The frame's content in the batch buffer.
    start: usize,
    len: usize,
    /// Encrypting: where the tag goes in the buffer. Decrypting: the tag itself.
    tag_at: usize,
    tag: [u8; TAG_LEN],
}

/// A batch of frames and its buffer (allocated once, reused through the pool).
struct Batch {
    index: u64,
    buf: Vec<u8>,
    used: usize,
    frames: Vec<Frame>,
    plaintext_len: u64,
    last: bool,
}

impl Batch {
    fn reset(&mut self, index: u64) {
        self.index = index;
        self.used = 0;
        self.frames.clear();
        self.plaintext_len = 0;
        self.last = false;
    }
}

fn iv_for(seq: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&seq.to_be_bytes());
    iv
}

fn body_aad(message_id: &[u8; MESSAGE_ID_LEN], frame: &Frame) -> Vec<u8> {
    let label = if frame.is_final { FINAL_LABEL } else { REGULAR_LABEL };
    let mut aad = Vec::with_capacity(MESSAGE_ID_LEN + label.len() + 12);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(label);
    aad.extend_from_slice(&frame.seq.to_be_bytes());
    aad.extend_from_slice(&(frame.len as u64).to_be_bytes());
    aad
}

fn check_frame_length(frame_length: u32) -> Result<usize, Error> {
    if frame_length == 0 || frame_length > MAX_FRAME_LENGTH {
        return Err(Error::FrameLength(frame_length));
    }
    Ok(frame_length as usize)
}

/// Reads until `out` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, out: &mut [u8]) -> Result<usize, Error> {
    let mut n = 0;
    while n < out.len() {
        match r.read(&mut out[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(n)
}

/// The shared part of both directions: spawns the reader and the workers, writes finished
/// batches in order on the calling thread, and returns what the reader returned.
fn run_pipeline<T: Send>(
    frame_bytes: usize,
    frames_per_batch: usize,
    opts: &StreamOptions<'_>,
    reader: impl FnOnce(Receiver<Batch>, SyncSender<Batch>) -> Result<T, Error> + Send,
    work: impl Fn(&mut Batch) -> Result<(), Error> + Sync,
    mut write: impl FnMut(&Batch) -> Result<(), Error>,
) -> Result<T, Error> {
    let workers = opts.workers.max(1);
    let pool_size = 2 * workers + 2;
    std::thread::scope(|scope| {
        let (pool_tx, pool_rx) = sync_channel::<Batch>(pool_size);
        for _ in 0..pool_size {
            let batch = Batch {
                index: 0,
                buf: vec![0; frames_per_batch * frame_bytes + 8],
                used: 0,
                frames: Vec::new(),
                plaintext_len: 0,
                last: false,
            };
            pool_tx.send(batch).map_err(|_| Error::Malformed("internal: batch pool closed"))?;
        }
        let (job_tx, job_rx) = sync_channel::<Batch>(workers);
        let (done_tx, done_rx) = sync_channel::<Result<Batch, Error>>(pool_size);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let reader = scope.spawn(move || reader(pool_rx, job_tx));
        let work = &work;
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    // Take the next batch; the lock is held only while waiting for it.
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut batch) = next else { return };
                    let result = work(&mut batch).map(|()| batch);
                    let failed = result.is_err();
                    if done_tx.send(result).is_err() || failed {
                        return;
                    }
                }
            });
        }
        // Only the workers hold these now: when they are gone, the reader's sends fail.
        drop(job_rx);
        drop(done_tx);
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut finished = false;
        let mut plaintext = 0u64;
        while !finished {
            let Ok(result) = done_rx.recv() else { break };
            let batch = result?;
            pending.insert(batch.index, batch);
            while let Some(batch) = pending.remove(&next) {
                write(&batch)?;
                plaintext += batch.plaintext_len;
                (opts.progress)(plaintext);
                finished = batch.last;
                next += 1;
                // The reader may already have stopped after the final batch.
                let _ = pool_tx.send(batch);
            }
        }
        drop(pool_tx);
        drop(done_rx);
        let outcome = reader.join().map_err(|_| Error::Malformed("internal: the reader thread failed"))?;
        match (outcome, finished) {
            (Err(e), _) => Err(e),
            (Ok(_), false) => Err(Error::Malformed("internal: the stream ended before its final frame")),
            (Ok(t), true) => Ok(t),
        }
    })
}

/// Encrypts `input` to `output` as one message; returns the plaintext length. `output` gets
/// the header at once and the frames as they are sealed: the caller writes to a temporary file
/// and renames it on success.
pub fn encrypt<R: Read + Send, W: Write>(input: R, output: &mut W, m: EncryptMaterials, opts: &StreamOptions<'_>) -> Result<u64, Error> {
    let frame_len = check_frame_length(m.frame_length)?;
    let public = m.context.get(PUBLIC_KEY_CONTEXT_KEY);
    match (&m.signing_key, public, m.suite.is_signed()) {
        (Some(key), Some(public), true) if base64::engine::general_purpose::STANDARD.encode(key.public_key_compressed()?) == *public => {}
        (None, None, false) => {}
        _ => return Err(Error::InvalidInput("the signing key and the context's public key do not match the suite".into())),
    }
    let mut message_id = [0u8; MESSAGE_ID_LEN];
    clavis_crypto::random::fill(&mut message_id)?;
    let (key, commitment) = derive(m.suite, &message_id, &m.data_key)?;
    let mut header = Header::build(m.suite, message_id, m.context, m.data_keys, m.frame_length, commitment)?;
    header.auth_tag = key.seal_in_place([0; IV_LEN], header.body_bytes(), &mut [])?;
    let header_bytes = header.to_bytes();
    let mut hasher = m.signing_key.as_ref().map(|_| Sha384::new());
    if let Some(h) = hasher.as_mut() {
        h.update(&header_bytes);
    }
    output.write_all(&header_bytes)?;

    let frames_per_batch = (BATCH_BYTES / frame_len).max(1);
    let frame_bytes = 4 + IV_LEN + frame_len + TAG_LEN;
    let reader = move |pool: Receiver<Batch>, jobs: SyncSender<Batch>| -> Result<(), Error> {
        let mut input = BufReader::with_capacity(BATCH_BYTES, input);
        let mut seq: u32 = 0;
        let mut index = 0u64;
        loop {
            let Ok(mut batch) = pool.recv() else { return Ok(()) };
            batch.reset(index);
            index += 1;
            for _ in 0..frames_per_batch {
                // The final frame's number is at most 2^32 - 2: 2^32 - 1 marks it.
                seq = seq
                    .checked_add(1)
                    .filter(|s| *s != FINAL_MARKER)
                    .ok_or(Error::InvalidInput("the input needs more than 2^32 - 2 frames".into()))?;
                let at = batch.used;
                let content = at + 4 + IV_LEN;
                let slot = &mut batch.buf[content..content + frame_len];
                let n = read_full(&mut input, slot)?;
                // A full frame is a regular one, so a plaintext of whole frames ends with an
                // empty final frame (the specification allows it, and the AWS Encryption SDK
                // for Python refuses a final frame as long as the frame length).
                let is_final = n < frame_len;
                let iv = iv_for(seq);
                let (start, tag_at);
                if is_final {
                    // The final frame's header is 8 bytes longer: move its content along.
                    batch.buf.copy_within(content..content + n, content + 8);
                    batch.buf[at..at + 4].copy_from_slice(&FINAL_MARKER.to_be_bytes());
                    batch.buf[at + 4..at + 8].copy_from_slice(&seq.to_be_bytes());
                    batch.buf[at + 8..at + 8 + IV_LEN].copy_from_slice(&iv);
                    let len = u32::try_from(n).map_err(|_| Error::Malformed("internal: frame length"))?;
                    batch.buf[at + 8 + IV_LEN..at + 12 + IV_LEN].copy_from_slice(&len.to_be_bytes());
                    start = content + 8;
                } else {
                    batch.buf[at..at + 4].copy_from_slice(&seq.to_be_bytes());
                    batch.buf[at + 4..at + 4 + IV_LEN].copy_from_slice(&iv);
                    start = content;
                }
                tag_at = start + n;
                batch.used = tag_at + TAG_LEN;
                batch.frames.push(Frame { seq, iv, is_final, start, len: n, tag_at, tag: [0; TAG_LEN] });
                batch.plaintext_len += n as u64;
                if is_final {
                    batch.last = true;
                    break;
                }
            }
            let last = batch.last;
            if jobs.send(batch).is_err() || last {
                return Ok(());
            }
        }
    };
    let key = &key;
    let work = |batch: &mut Batch| -> Result<(), Error> {
        for frame in &batch.frames {
            let aad = body_aad(&message_id, frame);
            let tag = key.seal_in_place(frame.iv, &aad, &mut batch.buf[frame.start..frame.start + frame.len])?;
            batch.buf[frame.tag_at..frame.tag_at + TAG_LEN].copy_from_slice(&tag);
        }
        Ok(())
    };
    let mut total = 0u64;
    run_pipeline(frame_bytes, frames_per_batch, opts, reader, work, |batch| {
        let bytes = &batch.buf[..batch.used];
        if let Some(h) = hasher.as_mut() {
            h.update(bytes);
        }
        output.write_all(bytes)?;
        total += batch.plaintext_len;
        Ok(())
    })?;
    if let (Some(key), Some(h)) = (m.signing_key, hasher) {
        let signature = key.sign_digest(&h.finish())?;
        let len = u16::try_from(signature.len()).map_err(|_| Error::Malformed("internal: signature length"))?;
        output.write_all(&len.to_be_bytes())?;
        output.write_all(&signature)?;
    }
    output.flush()?;
    Ok(total)
}

/// A message whose header has been read: look at [`Decryptor::header`], unwrap one of its
/// data keys, then [`Decryptor::decrypt`].
pub struct Decryptor<R> {
    input: Input<R>,
    header: Header,
}

impl<R: Read + Send> Decryptor<R> {
    /// Reads and parses the header (nothing is authenticated yet: that needs the data key).
    pub fn new(input: R, limits: &Limits) -> Result<Decryptor<R>, Error> {
        let mut input = Input::new(input);
        let header = Header::read(&mut input, limits)?;
        Ok(Decryptor { input, header })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks the key commitment and the header tag under `data_key`, then decrypts the body to
    /// `output` and checks the signature and that nothing follows the message. Plaintext
    /// reaches `output` frame by frame as each frame authenticates, before the signature is
    /// checked at the end: the caller writes to a temporary file and keeps it only on success.
    pub fn decrypt<W: Write>(self, data_key: &SecretBytes, output: &mut W, opts: &StreamOptions<'_>) -> Result<u64, Error> {
        let Decryptor { mut input, header } = self;
        let (key, commitment) = derive(header.suite, &header.message_id, data_key)?;
        if !clavis_crypto::digest::constant_time_eq(&commitment, &header.commitment) {
            return Err(Error::Commitment);
        }
        key.open_in_place_separate_tag([0; IV_LEN], header.body_bytes(), &header.auth_tag, &mut [])
            .map_err(|_| Error::HeaderAuthentication)?;
        let public = header.context.get(PUBLIC_KEY_CONTEXT_KEY);
        let public = match (header.suite.is_signed(), public) {
            (true, Some(p)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .map_err(|_| Error::Malformed("the aws-crypto-public-key context value is not base64"))?,
            ),
            (false, None) => None,
            (true, None) => return Err(Error::Malformed("a signed message without aws-crypto-public-key in its context")),
            (false, Some(_)) => return Err(Error::Malformed("an unsigned message with aws-crypto-public-key in its context")),
        };
        if public.is_some() {
            let mut h = Sha384::new();
            h.update(&header.to_bytes());
            input.start_hash(h);
        }
        let frame_len = header.frame_length as usize;
        let frames_per_batch = (BATCH_BYTES / frame_len).max(1);
        let signed = public.is_some();
        let reader = move |pool: Receiver<Batch>, jobs: SyncSender<Batch>| -> Result<Option<(Sha384, Vec<u8>)>, Error> {
            let mut expected: u32 = 1;
            let mut index = 0u64;
            loop {
                let Ok(mut batch) = pool.recv() else { return Ok(None) };
                batch.reset(index);
                index += 1;
                for _ in 0..frames_per_batch {
                    let first = input.read_u32()?;
                    let (seq, is_final, len) = if first == FINAL_MARKER {
                        let seq = input.read_u32()?;
                        (seq, true, None)
                    } else {
                        (first, false, Some(frame_len))
                    };
                    if seq != expected {
                        return Err(Error::Malformed("frame sequence numbers out of order"));
                    }
                    expected = expected.checked_add(1).ok_or(Error::Malformed("too many frames"))?;
                    let iv = input.read_array()?;
                    let len = match len {
                        Some(l) => l,
                        None => {
                            let l = input.read_u32()? as usize;
                            if l > frame_len {
                                return Err(Error::Malformed("final frame longer than the frame length"));
                            }
                            l
                        }
                    };
                    let start = batch.used;
                    input.read_exact(&mut batch.buf[start..start + len])?;
                    let tag = input.read_array()?;
                    batch.used += len;
                    batch.frames.push(Frame { seq, iv, is_final, start, len, tag_at: 0, tag });
                    batch.plaintext_len += len as u64;
                    if is_final {
                        batch.last = true;
                        break;
                    }
                }
                if !batch.last {
                    if jobs.send(batch).is_err() {
                        return Ok(None);
                    }
                    continue;
                }
                // The footer, then nothing.
                let footer = match input.take_hash() {
                    Some(h) if signed => {
                        let len = usize::from(input.read_u16()?);
                        if len > MAX_SIGNATURE_LEN {
                            return Err(Error::Malformed("signature longer than any P-384 signature"));
                        }
                        let mut sig = vec![0u8; len];
                        input.read_exact(&mut sig)?;
                        Some((h, sig))
                    }
                    _ => None,
                };
                if !input.at_end()? {
                    return Err(Error::TrailingData);
                }
                // Send the last batch only once the whole message has been read.
                let _ = jobs.send(batch);
                return Ok(footer);
            }
        };
        let key = &key;
        let message_id = header.message_id;
        let work = |batch: &mut Batch| -> Result<(), Error> {
            for frame in &batch.frames {
                let aad = body_aad(&message_id, frame);
                key.open_in_place_separate_tag(frame.iv, &aad, &frame.tag, &mut batch.buf[frame.start..frame.start + frame.len])
                    .map_err(|_| Error::FrameAuthentication(frame.seq))?;
            }
            Ok(())
        };
        let mut total = 0u64;
        let footer = run_pipeline(frame_len, frames_per_batch, opts, reader, work, |batch| {
            total += batch.plaintext_len;
            output.write_all(&batch.buf[..batch.used])?;
            Ok(())
        })?;
        if let Some(public) = public {
            let Some((h, sig)) = footer else { return Err(Error::Malformed("internal: no footer read")) };
            verify_p384(&public, &h.finish(), &sig).map_err(|_| Error::Signature)?;
        }
        output.flush()?;
        Ok(total)
    }
}
