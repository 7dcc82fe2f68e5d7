//! Resumable uploads: one promise per function, run on every backend pair like the rest of
//! the conformance suite (re-exported by `conformance`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use intact_core::{Digest, FilePath, TxnState};
use intact_store::store::UPLOAD_PIECE_BYTES;
use intact_store::{Error, UploadPiece};
use tokio::io::{AsyncRead, ReadBuf};

use crate::Harness;
use crate::conformance::{begin, read_all, req};

fn path(s: &str) -> FilePath {
    FilePath::parse(s).expect("path")
}

/// Bytes that differ from one offset to the next (no piece looks like another).
fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

/// A body that hands out `bytes` and then fails, as a connection cut mid-request does.
struct Broken {
    bytes: Vec<u8>,
    at: usize,
}

impl AsyncRead for Broken {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.at == self.bytes.len() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            )));
        }
        let n = buf.remaining().min(self.bytes.len() - self.at).min(64 * 1024);
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// The offset counts what was made durable, a piece must start at it (else the offset is
/// told), and completion hashes the bytes read back and stages them like any upload.
pub async fn resumable_uploads_count_durable_pieces_and_complete_hashed(h: &Harness) {
    let t = begin(h, req("resumable", "1")).await;
    // One piece and a bit: the body is cut into durable pieces as it arrives.
    let content = bytes(UPLOAD_PIECE_BYTES + 300_000);
    let digest = Digest::of(&content);
    let size = content.len() as u64;
    let s = h
        .store
        .start_upload_session(&t.id, path("big.bin"), Some(size), Some(digest))
        .await
        .expect("start");
    assert_eq!(s.offset, 0);
    let first = UPLOAD_PIECE_BYTES + 100_000;
    let mut body = &content[..first];
    let offset = h
        .store
        .append_upload(&t.id, &s.upload, 0, &mut body)
        .await
        .expect("first part");
    assert_eq!(offset, first as u64);
    assert_eq!(
        h.store.upload_session(&t.id, &s.upload).await.expect("status").offset,
        first as u64
    );
    // A part that does not start at the offset is refused before anything is read.
    let mut elsewhere = &content[10..20];
    match h.store.append_upload(&t.id, &s.upload, 10, &mut elsewhere).await {
        Err(Error::UploadOffset { offset, .. }) => assert_eq!(offset, first as u64),
        other => panic!("a part at the wrong offset must be refused with the offset, got {other:?}"),
    }
    assert_eq!(elsewhere.len(), 10, "nothing of a refused part is read");
    let mut rest = &content[first..];
    let offset = h
        .store
        .append_upload(&t.id, &s.upload, first as u64, &mut rest)
        .await
        .expect("rest");
    assert_eq!(offset, size);
    let entry = h.store.complete_upload(&t.id, &s.upload, None).await.expect("complete");
    assert_eq!((entry.size, entry.sha256), (size, digest));
    // The session is over, and its pieces are gone.
    assert!(matches!(
        h.store.upload_session(&t.id, &s.upload).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        h.hooks.piece_count().await.expect("pieces"),
        0,
        "completion deletes the pieces"
    );
    h.store.commit(&t.id).await.expect("commit");
    assert!(
        read_all(h, "resumable", "1", "big.bin").await == content,
        "the bytes read back"
    );
}

/// A body that breaks mid-request keeps what arrived: the upload resumes there.
pub async fn a_broken_upload_request_keeps_what_arrived(h: &Harness) {
    let t = begin(h, req("broken", "1")).await;
    let content = bytes(3_000_000);
    let s = h
        .store
        .start_upload_session(&t.id, path("f"), None, None)
        .await
        .expect("start");
    let mut cut = Broken {
        bytes: content[..1_234_567].to_vec(),
        at: 0,
    };
    let err = h
        .store
        .append_upload(&t.id, &s.upload, 0, &mut cut)
        .await
        .expect_err("the body broke");
    assert!(matches!(err, Error::Body(_)), "{err:?}");
    let offset = h.store.upload_session(&t.id, &s.upload).await.expect("status").offset;
    assert_eq!(offset, 1_234_567, "every byte received before the break counts");
    let mut rest = &content[1_234_567..];
    h.store
        .append_upload(&t.id, &s.upload, offset, &mut rest)
        .await
        .expect("resume");
    let entry = h
        .store
        .complete_upload(&t.id, &s.upload, Some(Digest::of(&content)))
        .await
        .expect("complete");
    assert_eq!(entry.sha256, Digest::of(&content));
    h.store.commit(&t.id).await.expect("commit");
    assert!(read_all(h, "broken", "1", "f").await == content);
}

/// Completion never trusts a digest: bytes that hash otherwise than declared are refused and
/// nothing is staged; so are bytes past the declared size, and a completion short of it.
pub async fn resumable_uploads_refuse_bytes_other_than_declared(h: &Harness) {
    let t = begin(h, req("declared", "1")).await;
    let content = bytes(1000);
    let s = h
        .store
        .start_upload_session(&t.id, path("f"), Some(1000), Some(Digest::of(b"something else")))
        .await
        .expect("start");
    let mut body = &content[..600];
    h.store
        .append_upload(&t.id, &s.upload, 0, &mut body)
        .await
        .expect("part");
    match h.store.complete_upload(&t.id, &s.upload, None).await {
        Err(Error::BadRequest { .. }) => {}
        other => panic!("a completion short of the declared size must be refused, got {other:?}"),
    }
    let mut too_much = &bytes(1000)[..];
    match h.store.append_upload(&t.id, &s.upload, 600, &mut too_much).await {
        Err(Error::BadRequest { .. }) => {}
        other => panic!("bytes past the declared size must be refused, got {other:?}"),
    }
    let mut rest = &content[600..];
    h.store
        .append_upload(&t.id, &s.upload, 600, &mut rest)
        .await
        .expect("rest");
    match h.store.complete_upload(&t.id, &s.upload, None).await {
        Err(Error::ChecksumMismatch { actual, .. }) => assert_eq!(actual, Digest::of(&content)),
        other => panic!("bytes hashing otherwise than declared must be refused, got {other:?}"),
    }
    assert!(
        h.store.txn(&t.id).await.expect("txn").files.is_empty(),
        "nothing staged"
    );
    // A digest given at completion that contradicts the declared one is refused too.
    match h
        .store
        .complete_upload(&t.id, &s.upload, Some(Digest::of(&content)))
        .await
    {
        Err(Error::BadRequest { .. }) => {}
        other => panic!("a completion digest other than the declared one must be refused, got {other:?}"),
    }
    h.store.discard_upload(&t.id, &s.upload).await.expect("discard");
    assert_eq!(
        h.hooks.piece_count().await.expect("pieces"),
        0,
        "a discard deletes the bytes"
    );
    // An upload id is only found through its own transaction.
    let other = begin(h, req("declared", "2")).await;
    let s = h
        .store
        .start_upload_session(&t.id, path("g"), None, None)
        .await
        .expect("start");
    assert!(matches!(
        h.store.upload_session(&other.id, &s.upload).await,
        Err(Error::NotFound { .. })
    ));
}

/// Sessions end with their transaction, however it ends (commit, rollback, expiry), and
/// their bytes are reclaimed; no upload can start in a transaction that is not open.
pub async fn upload_sessions_end_with_their_transaction_and_leave_no_bytes(h: &Harness) {
    let owned = bytes(5000);
    let partial = owned.as_slice();
    let started = |n: &'static str| async move {
        let t = begin(h, req("ending", n)).await;
        let s = h
            .store
            .start_upload_session(&t.id, path("f"), None, None)
            .await
            .expect("start");
        let mut body = partial;
        h.store
            .append_upload(&t.id, &s.upload, 0, &mut body)
            .await
            .expect("part");
        (t, s)
    };
    let (committed, s1) = started("1").await;
    let (aborted, s2) = started("2").await;
    // A piece stored just before a crash, never counted by the catalog: it goes with its
    // upload all the same.
    h.blobs
        .put_piece(&s1.upload, bytes::Bytes::from_static(b"never counted"))
        .await
        .expect("piece");
    assert_eq!(h.hooks.piece_count().await.expect("pieces"), 3);
    // An unfinished upload does not hold a commit back: the file is simply not in it.
    h.store.commit(&committed.id).await.expect("commit");
    h.store.abort(&aborted.id).await.expect("abort");
    for (t, s) in [(&committed, &s1), (&aborted, &s2)] {
        assert!(matches!(
            h.store.upload_session(&t.id, &s.upload).await,
            Err(Error::NotFound { .. })
        ));
    }
    assert_eq!(h.hooks.piece_count().await.expect("pieces"), 0);
    let mut late = partial;
    match h.store.append_upload(&aborted.id, &s2.upload, 5000, &mut late).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("an ended upload takes no more bytes, got {other:?}"),
    }
    match h.store.start_upload_session(&aborted.id, path("g"), None, None).await {
        Err(Error::TxnNotOpen { .. }) => {}
        other => panic!("no upload starts in a rolled-back transaction, got {other:?}"),
    }

    let (expiring, s3) = started("3").await;
    assert_eq!(h.hooks.piece_count().await.expect("pieces"), 1);
    h.clock.advance(Duration::from_secs(301));
    assert_eq!(h.store.expire_due().await.expect("expire"), 1);
    assert_eq!(h.store.txn(&expiring.id).await.expect("txn").state, TxnState::Expired);
    assert!(matches!(
        h.store.upload_session(&expiring.id, &s3.upload).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        h.hooks.piece_count().await.expect("pieces"),
        0,
        "expiry reclaims the bytes"
    );
}

/// Two writers racing for one offset (a retry on another replica while the first request
/// still streams) both make a piece durable, and the catalog counts exactly one of them.
pub async fn racing_pieces_at_one_offset_count_once(h: &Harness) {
    let t = begin(h, req("racing", "1")).await;
    let s = h
        .store
        .start_upload_session(&t.id, path("f"), None, None)
        .await
        .expect("start");
    let catalog = h.store.catalog();
    let mut pieces = Vec::new();
    for content in [&b"first writer"[..], &b"second"[..]] {
        let name = h
            .blobs
            .put_piece(&s.upload, bytes::Bytes::copy_from_slice(content))
            .await
            .expect("piece");
        pieces.push(UploadPiece {
            start: 0,
            len: content.len() as u64,
            name,
        });
    }
    assert_ne!(pieces[0].name, pieces[1].name, "every piece has a name of its own");
    let (a, b) = tokio::join!(
        catalog.add_upload_piece(&s.upload, &pieces[0]),
        catalog.add_upload_piece(&s.upload, &pieces[1]),
    );
    let counted = match (a, b) {
        (Ok(n), Err(Error::UploadOffset { offset, .. })) | (Err(Error::UploadOffset { offset, .. }), Ok(n)) => {
            assert_eq!(n, offset);
            n
        }
        other => panic!("exactly one piece may count at one offset, got {other:?}"),
    };
    let recorded = catalog.upload_pieces(&s.upload).await.expect("pieces");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].len, counted);
}

/// A request that trickles (a byte now and then, each inside the idle limit) is ended like a
/// one-request upload that does, keeping what it had sent: it holds no slot or lease for ever.
pub async fn a_trickling_upload_request_is_ended_and_keeps_what_it_sent(h: &Harness) {
    let t = begin(h, req("trickle", "1")).await;
    let s = h
        .store
        .start_upload_session(&t.id, path("f"), None, None)
        .await
        .expect("start");
    // A first burst, then one byte every 300 ms: under the test store's 1 KiB/s minimum
    // over its 2 s idle limit.
    let first = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 5000])) });
    let trickle = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), ()))
    });
    let mut body =
        tokio_util::io::StreamReader::new(futures::StreamExt::boxed(futures::StreamExt::chain(first, trickle)));
    let started = std::time::Instant::now();
    let err = h
        .store
        .append_upload(&t.id, &s.upload, 0, &mut body)
        .await
        .expect_err("a trickle is ended");
    assert!(matches!(err, Error::BodyTooSlow { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ended within a window or two"
    );
    let offset = h.store.upload_session(&t.id, &s.upload).await.expect("status").offset;
    assert!(
        offset >= 5000,
        "what arrived before the trickle was ended is kept: {offset}"
    );
}

/// A client sending many small requests (smaller than a piece) keeps its transaction alive:
/// each request's bytes renew the lease once half of it is gone, as an upload's bytes do.
pub async fn small_resumable_requests_renew_the_lease(h: &Harness) {
    let mut r = req("resumable-lease", "1");
    r.lease = Some(Duration::from_secs(10));
    let t = begin(h, r).await;
    let s = h
        .store
        .start_upload_session(&t.id, path("slow.bin"), None, None)
        .await
        .expect("start");
    let mut offset = 0u64;
    // Thirty requests of 1 KiB, 4 s apart: 120 s, twelve leases' worth.
    for _ in 0..30 {
        h.clock.advance(Duration::from_secs(4));
        let chunk = vec![7u8; 1024];
        let mut body = &chunk[..];
        offset = h
            .store
            .append_upload(&t.id, &s.upload, offset, &mut body)
            .await
            .expect("a request of an upload that keeps sending");
    }
    assert_eq!(offset, 30 * 1024);
    let entry = h.store.complete_upload(&t.id, &s.upload, None).await.expect("complete");
    assert_eq!(entry.size, 30 * 1024);
    h.store.commit(&t.id).await.expect("commit");
}
