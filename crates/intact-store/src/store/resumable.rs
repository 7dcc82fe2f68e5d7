//! Resumable uploads: one file sent in several requests into an open transaction, each
//! request continuing at the offset the last one left (`Catalog::create_upload_session`).
//!
//! The offset a client is told is honest: bytes count only once they are durable in the blob
//! store as a *piece* (`BlobStore::put_piece`) and the catalog has counted that piece in one
//! write that also checks the offset it starts at. A request body is cut into pieces of
//! [`UPLOAD_PIECE_BYTES`] as it arrives, and what arrived before a broken connection is kept
//! as a last, shorter piece, so a cut 1 GiB request resumes where it broke, not at 0. The
//! session lives in the catalog and the pieces in the blob store, so the next request may
//! land on any replica. Completion reads the pieces back in order, hashing them (a client's
//! digest is only ever compared with), and stages the file exactly as an upload in one
//! request is staged.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use intact_core::{Digest, FileEntry, FilePath, TxnId, TxnState};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::Store;
use crate::catalog::{UploadPiece, UploadSession};
use crate::{Error, Result};

/// How many bytes of a request body are gathered before they are made durable as one piece:
/// the most a broken request can lose, and the memory one request holds.
pub const UPLOAD_PIECE_BYTES: usize = 8 << 20;

/// Bytes read from a body per call.
const READ_CHUNK: usize = 256 * 1024;

/// Ended uploads whose pieces are deleted per round of reclaiming.
const RECLAIM_PAGE: u32 = 100;

impl Store {
    /// Opens a resumable upload of `path` into open transaction `id`. `size` and `sha256`,
    /// when given, are what the file must turn out to be.
    pub async fn start_upload_session(
        &self,
        id: &TxnId,
        path: FilePath,
        size: Option<u64>,
        sha256: Option<Digest>,
    ) -> Result<UploadSession> {
        let mut random = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
        let session = UploadSession {
            upload: random.iter().map(|b| format!("{b:02x}")).collect(),
            txn: id.clone(),
            path,
            size,
            sha256,
            offset: 0,
            created_at: self.now(),
        };
        self.catalog.create_upload_session(&session).await?;
        Ok(session)
    }

    /// Upload `upload` of transaction `id` as it stands (`NotFound` when it is gone or
    /// belongs to another transaction: an upload id is only found through its own).
    pub async fn upload_session(&self, id: &TxnId, upload: &str) -> Result<UploadSession> {
        let session = self.catalog.upload_session(upload).await?;
        if session.txn != *id {
            return Err(Error::not_found(format!("upload {upload}")));
        }
        Ok(session)
    }

    /// Appends `body` to upload `upload` at `start`, which must be its offset
    /// (`UploadOffset` otherwise, before any byte is read). Every full piece is made durable
    /// and counted as it fills; when the body fails (a broken connection, an idle client)
    /// what arrived is counted too before the error is returned. Returns the new offset.
    pub async fn append_upload(
        &self,
        id: &TxnId,
        upload: &str,
        start: u64,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let session = self.upload_session(id, upload).await?;
        if session.offset != start {
            return Err(Error::UploadOffset {
                upload: upload.to_owned(),
                offset: session.offset,
                detail: format!(", not {start}"),
            });
        }
        let status = self.catalog.txn_status(id).await?;
        if status.state != TxnState::Open {
            return Err(Error::TxnNotOpen {
                id: id.clone(),
                state: status.state,
            });
        }
        // Streaming counts as an upload in flight, as a one-request upload does: a commit
        // meanwhile is refused rather than made without this file. Between requests the
        // session holds nothing back (a commit then simply leaves the unfinished file out).
        let _in_flight = self.uploads.start(id);
        let shared = match self.catalog.is_shared() {
            true => Some(crate::upload::SharedUpload::start(self.catalog.clone(), id).await?),
            false => None,
        };
        let work = self.receive_pieces(id, &session, status, body);
        match shared {
            Some(shared) => shared.run(work).await,
            None => work.await,
        }
    }

    async fn receive_pieces(
        &self,
        id: &TxnId,
        session: &UploadSession,
        status: crate::catalog::TxnStatus,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let idle_limit = self
            .config
            .upload_idle_timeout
            .min(status.lease)
            .max(Duration::from_secs(1));
        let renew_when_left = status.lease / 2;
        let mut expires_at = status.expires_at;
        let mut offset = session.offset;
        let mut piece = BytesMut::with_capacity(UPLOAD_PIECE_BYTES);
        let mut chunk = vec![0u8; READ_CHUNK];
        let min_rate = self.config.upload_min_bytes_per_second;
        let (mut window_start, mut window_bytes) = (tokio::time::Instant::now(), offset);
        loop {
            let room = (UPLOAD_PIECE_BYTES - piece.len()).min(READ_CHUNK);
            let read = match tokio::time::timeout(idle_limit, body.read(&mut chunk[..room])).await {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(e)) => Err(Error::Body(e)),
                Err(_) => Err(Error::BodyIdle {
                    seconds: idle_limit.as_secs(),
                }),
            };
            // A body that trickles (a byte now and then, each just inside the idle limit)
            // must not hold the upload, its slot and its lease for ever: judged over every
            // idle-limit window, as a one-request upload is.
            let now = tokio::time::Instant::now();
            let read = match read {
                Ok(n) if now.duration_since(window_start) >= idle_limit => {
                    let received = offset + piece.len() as u64 + n as u64;
                    let window = now.duration_since(window_start);
                    let sent = received - window_bytes;
                    let needed = u64::try_from(u128::from(min_rate) * window.as_millis() / 1000).unwrap_or(u64::MAX);
                    (window_start, window_bytes) = (now, received);
                    if sent < needed {
                        // This read's bytes are not kept (nor checked): the client sends
                        // them again from the offset it is told.
                        Err(Error::BodyTooSlow {
                            bytes: sent,
                            seconds: window.as_secs(),
                            min_per_second: min_rate,
                        })
                    } else {
                        Ok(n)
                    }
                }
                other => other,
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    // What arrived before the body broke is the client's too: keep it, so
                    // the resumed request need not send it again.
                    if !piece.is_empty() {
                        match self.add_piece(session, offset, piece.split().freeze()).await {
                            Ok(_) => {}
                            Err(kept) => tracing::warn!(
                                upload = %session.upload,
                                error = %kept,
                                "keeping the bytes of a broken upload request failed"
                            ),
                        }
                    }
                    return Err(e);
                }
            };
            if n == 0 {
                break;
            }
            if let Some(size) = session.size
                && offset + (piece.len() + n) as u64 > size
            {
                return Err(Error::BadRequest {
                    field: "body",
                    message: format!("runs past the upload's declared size of {size} bytes"),
                });
            }
            piece.extend_from_slice(&chunk[..n]);
            if piece.len() == UPLOAD_PIECE_BYTES {
                offset = self.add_piece(session, offset, piece.split().freeze()).await?;
                // A long upload outlives its lease: renewed while pieces keep arriving.
                let left = Duration::from_millis(
                    u64::try_from(expires_at.millis().saturating_sub(self.now().millis())).unwrap_or(0),
                );
                if left <= renew_when_left {
                    expires_at = self.catalog.renew_txn(id).await?.expires_at;
                }
            }
        }
        if !piece.is_empty() {
            offset = self.add_piece(session, offset, piece.freeze()).await?;
            // Clients that send many requests smaller than a piece renew the lease too: each
            // request's last piece counts as activity, as an upload's bytes do.
            let left = Duration::from_millis(
                u64::try_from(expires_at.millis().saturating_sub(self.now().millis())).unwrap_or(0),
            );
            if left <= renew_when_left {
                self.catalog.renew_txn(id).await?;
            }
        }
        Ok(offset)
    }

    /// Makes `bytes` durable as a piece and has the catalog count it at `start`; a piece the
    /// catalog refuses is deleted at once.
    async fn add_piece(&self, session: &UploadSession, start: u64, bytes: Bytes) -> Result<u64> {
        let len = bytes.len() as u64;
        let name = self.blobs.put_piece(&session.upload, bytes).await?;
        let piece = UploadPiece { start, len, name };
        match self.catalog.add_upload_piece(&session.upload, &piece).await {
            Ok(offset) => Ok(offset),
            Err(e) => {
                if let Err(deleting) = self.blobs.delete_piece(&piece.name).await {
                    tracing::warn!(piece = %piece.name, error = %deleting, "deleting a refused upload piece failed");
                }
                Err(e)
            }
        }
    }

    /// Completes upload `upload`: its pieces are read back in order and hashed, checked
    /// against the declared size and sha256 (and `expected`, a digest the completing request
    /// gives), and staged at the upload's path as any upload is (registered in the catalog,
    /// then made durable under the digest). The session then ends and its pieces go.
    pub async fn complete_upload(&self, id: &TxnId, upload: &str, expected: Option<Digest>) -> Result<FileEntry> {
        let session = self.upload_session(id, upload).await?;
        if let Some(size) = session.size
            && size != session.offset
        {
            return Err(Error::BadRequest {
                field: "upload",
                message: format!(
                    "holds {} of the {size} bytes declared; send the rest (from offset {}) first",
                    session.offset, session.offset
                ),
            });
        }
        let expected = match (expected, session.sha256) {
            (Some(given), Some(declared)) if given != declared => {
                return Err(Error::BadRequest {
                    field: "x-checksum-sha256",
                    message: format!("differs from the sha256 declared when the upload began ({declared})"),
                });
            }
            (given, declared) => given.or(declared),
        };
        // Pieces only ever follow the last one: a request still appending meanwhile (the
        // client's own race) adds pieces past the offset read above, which are left out.
        let mut pieces = self.catalog.upload_pieces(upload).await?;
        let mut next = 0u64;
        let mut taken = 0;
        for p in &pieces {
            if next == session.offset {
                break;
            }
            if p.start != next {
                return Err(Error::Catalog {
                    context: format!("reading upload {upload}"),
                    source: format!("its pieces do not follow each other (a gap at {next})").into(),
                });
            }
            next += p.len;
            taken += 1;
        }
        if next != session.offset {
            return Err(Error::Catalog {
                context: format!("reading upload {upload}"),
                source: format!("its pieces hold {next} bytes, its offset says {}", session.offset).into(),
            });
        }
        pieces.truncate(taken);
        let blobs = self.blobs.clone();
        let chunks = futures::stream::iter(pieces)
            .then(move |p| {
                let blobs = blobs.clone();
                async move {
                    blobs
                        .read_piece(&p.name)
                        .await
                        .map(|body| body.into_chunks(READ_CHUNK))
                        .map_err(|e| std::io::Error::other(e.to_string()))
                }
            })
            .try_flatten()
            .boxed();
        let mut reader = ExactLength {
            inner: tokio_util::io::StreamReader::new(chunks),
            left: session.offset,
        };
        let entry = self
            .put_file(id, session.path.clone(), &mut reader, expected, None)
            .await?;
        self.end_upload_session(upload).await?;
        Ok(entry)
    }

    /// Discards upload `upload` of transaction `id` and its bytes.
    pub async fn discard_upload(&self, id: &TxnId, upload: &str) -> Result<()> {
        self.upload_session(id, upload).await?;
        self.end_upload_session(upload).await
    }

    /// Ends the session (it takes no more bytes) and deletes its own pieces. The file is
    /// staged or discarded by then: a failure to delete is not the caller's failure (a retry
    /// would find no upload), so it is logged and left to the reaper, which deletes the pieces
    /// of every ended session. Other sessions' pieces are never the request's work.
    async fn end_upload_session(&self, upload: &str) -> Result<()> {
        self.catalog.discard_upload_session(upload).await?;
        let ended = [upload.to_owned()];
        let cleaned = match self.blobs.delete_pieces(upload).await {
            Ok(_) => self.catalog.forget_upload_sessions(&ended).await,
            Err(e) => Err(e),
        };
        if let Err(e) = cleaned {
            tracing::warn!(upload, error = %e, "an ended upload's pieces were not deleted yet; the reaper will");
        }
        Ok(())
    }

    /// Ends the sessions of transactions no longer open and deletes the bytes of every
    /// session that ended (the reaper calls this; so do commits and rollbacks). Returns how
    /// many pieces were deleted.
    pub async fn reclaim_upload_sessions(&self) -> Result<u64> {
        self.catalog.discard_finished_upload_sessions().await?;
        self.delete_ended_uploads().await
    }

    /// Deletes the pieces of ended sessions, then forgets the sessions: in that order, so a
    /// crash in between leaves a session to try again, never bytes nobody knows of. Every
    /// piece of an upload goes, counted or not: one stored just before a crash too.
    async fn delete_ended_uploads(&self) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let ended = self.catalog.ended_upload_sessions(RECLAIM_PAGE).await?;
            if ended.is_empty() {
                return Ok(deleted);
            }
            for upload in &ended {
                deleted += self.blobs.delete_pieces(upload).await?;
            }
            self.catalog.forget_upload_sessions(&ended).await?;
        }
    }
}

/// A reader that must end after exactly `left` bytes: pieces that hold more or fewer bytes
/// than the catalog counted (damaged since) fail the read instead of staging other bytes.
struct ExactLength<R> {
    inner: R,
    left: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for ExactLength<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let n = (buf.filled().len() - before) as u64;
            if n > self.left {
                buf.set_filled(before);
                return Poll::Ready(Err(std::io::Error::other(
                    "the upload's pieces hold more bytes than were counted",
                )));
            }
            if n == 0 && self.left > 0 {
                return Poll::Ready(Err(std::io::Error::other(format!(
                    "the upload's pieces end {} bytes short of what was counted",
                    self.left
                ))));
            }
            self.left -= n;
        }
        polled
    }
}
