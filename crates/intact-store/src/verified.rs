//! Reading a committed blob with its sha256 checked on the way out. The last bytes are held
//! back until the whole blob has been hashed, so a damaged blob can never be delivered as a
//! complete body: a reader sees an error before the end instead. Damage is reported once,
//! through a callback (the store quarantines the blob).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use intact_core::{Digest, DigestHasher};
use tokio::io::{AsyncRead, ReadBuf};

/// What went wrong with a blob's bytes.
pub(crate) type OnDamage = Box<dyn FnOnce(String) + Send>;

const CHUNK: usize = 256 * 1024;

/// Below this much room left in the read buffer, a new chunk's worth is reserved.
const MIN_SPARE: usize = 16 * 1024;

/// Wraps a whole-blob reader; see the module docs.
pub struct VerifyingReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    expected: Digest,
    expected_size: u64,
    hasher: DigestHasher,
    /// Bytes cleared for the caller (everything but the last chunk read so far, or all of it
    /// once verified); consumed from the front.
    ready: Bytes,
    /// The last chunk read: released only when more bytes follow, or after verification.
    held: Bytes,
    /// Where the next chunk is read to. Chunks are split off it and frozen, never copied: the
    /// chunk handed on shares the memory it was read into.
    scratch: BytesMut,
    /// Bytes to read at once.
    chunk: usize,
    verified: bool,
    failed: Option<String>,
    on_damage: Option<OnDamage>,
}

impl VerifyingReader {
    pub(crate) fn new(
        inner: Pin<Box<dyn AsyncRead + Send>>,
        expected: Digest,
        expected_size: u64,
        on_damage: OnDamage,
    ) -> Self {
        let chunk = usize::try_from(expected_size).unwrap_or(CHUNK).clamp(1, CHUNK);
        Self {
            inner,
            expected,
            expected_size,
            hasher: DigestHasher::new(),
            ready: Bytes::new(),
            held: Bytes::new(),
            scratch: BytesMut::new(),
            chunk,
            verified: false,
            failed: None,
            on_damage: Some(on_damage),
        }
    }

    fn damaged(&mut self, why: String) -> std::io::Error {
        if let Some(report) = self.on_damage.take() {
            report(why.clone());
        }
        self.failed = Some(why.clone());
        std::io::Error::new(std::io::ErrorKind::InvalidData, why)
    }
}

impl AsyncRead for VerifyingReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(why) = &this.failed {
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why.clone())));
            }
            if !this.ready.is_empty() {
                let n = buf.remaining().min(this.ready.len());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.verified {
                return Poll::Ready(Ok(()));
            }
            if this.scratch.capacity() < MIN_SPARE.min(this.chunk) {
                // A new chunk's worth (or the old memory back, when every chunk split off it
                // has been dropped). Not sooner: a source that hands out small reads (S3's
                // frames) fills one buffer with many of them instead of a buffer each.
                this.scratch.reserve(this.chunk);
            }
            let n = match tokio_util::io::poll_read_buf(this.inner.as_mut(), cx, &mut this.scratch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(n)) => n,
            };
            if n > 0 {
                let read = this.scratch.split().freeze();
                this.hasher.update(&read);
                if this.hasher.len() > this.expected_size {
                    let why = format!(
                        "blob {} is damaged: longer than its {} bytes",
                        this.expected, this.expected_size
                    );
                    return Poll::Ready(Err(this.damaged(why)));
                }
                // Release the previous chunk; hold this one back.
                this.ready = std::mem::replace(&mut this.held, read);
                continue;
            }
            // End of the blob: everything was hashed; release the last chunk only if it is
            // the blob it should be.
            let size = this.hasher.len();
            let actual = std::mem::take(&mut this.hasher).finish();
            if size != this.expected_size || actual != this.expected {
                let why = format!(
                    "blob {} is damaged: {size} bytes hashing to {actual}, expected {} bytes",
                    this.expected, this.expected_size
                );
                return Poll::Ready(Err(this.damaged(why)));
            }
            this.verified = true;
            this.ready = std::mem::take(&mut this.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle(Vec<u8>, usize, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let (pos, step) = (self.1, self.2);
            let n = step.min(self.0.len() - pos).min(buf.remaining());
            buf.put_slice(&self.0[pos..pos + n]);
            self.1 += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn read(content: &[u8], served: Vec<u8>, step: usize) -> (Vec<u8>, std::io::Result<()>, Option<String>) {
        let report = Arc::new(Mutex::new(None));
        let r2 = report.clone();
        let mut reader = VerifyingReader::new(
            Box::pin(Trickle(served, 0, step)),
            Digest::of(content),
            content.len() as u64,
            Box::new(move |why| *r2.lock().expect("lock") = Some(why)),
        );
        let mut out = Vec::new();
        let mut buf = vec![0u8; 7];
        let res = loop {
            match reader.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        let why = report.lock().expect("lock").clone();
        (out, res, why)
    }

    #[tokio::test]
    async fn good_blobs_pass_through_whole() {
        for step in [1, 5, 1000, 1 << 20] {
            let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            let (out, res, why) = read(&content, content.clone(), step).await;
            assert!(res.is_ok() && why.is_none(), "step {step}");
            assert_eq!(out, content, "step {step}");
        }
        let (out, res, _) = read(b"", Vec::new(), 1).await;
        assert!(res.is_ok() && out.is_empty());
    }

    #[tokio::test]
    async fn damage_is_never_delivered_whole() {
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut flipped = content.clone();
        flipped[299_999] ^= 1;
        let truncated = content[..299_000].to_vec();
        let mut longer = content.clone();
        longer.push(0);
        for (what, served) in [("flipped", flipped), ("truncated", truncated), ("longer", longer)] {
            for step in [1, 4096, 1 << 20] {
                let (out, res, why) = read(&content, served.clone(), step).await;
                assert!(res.is_err(), "{what} step {step}: no error");
                assert!(
                    out.len() < content.len(),
                    "{what} step {step}: a whole body was delivered"
                );
                assert!(
                    why.is_some_and(|w| w.contains("damaged")),
                    "{what} step {step}: damage not reported"
                );
            }
        }
    }
}
