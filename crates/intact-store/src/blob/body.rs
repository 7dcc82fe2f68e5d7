//! The bytes of one blob read. Most backends hand out a reader. A backend that produces whole
//! chunks of its own (an object store's response frames) hands out the chunks, and one whose
//! blob is a local file hands out the open file: read in chunks off the async threads, and
//! checked on the same thread by a store that verifies whole reads. Either way a server can
//! send each chunk on as it is instead of copying it through a reader's buffer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::ReaderStream;

use super::file_chunks::FileChunks;

/// A blob's bytes: readable with `AsyncRead`, or taken whole as a stream of chunks with
/// [`BlobBody::into_chunks`].
pub struct BlobBody(Source);

enum Source {
    Reader(Pin<Box<dyn AsyncRead + Send>>),
    Chunks {
        stream: BoxStream<'static, std::io::Result<Bytes>>,
        /// What is left of the chunk being read through `AsyncRead`.
        current: Bytes,
    },
    /// A local file positioned at the first byte wanted, and how many bytes are wanted.
    File {
        file: std::fs::File,
        len: u64,
    },
}

impl BlobBody {
    pub fn reader(reader: impl AsyncRead + Send + 'static) -> Self {
        Self(Source::Reader(Box::pin(reader)))
    }

    pub fn chunks(stream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static) -> Self {
        Self(Source::Chunks {
            stream: stream.boxed(),
            current: Bytes::new(),
        })
    }

    /// `len` bytes of `file` from where it is positioned.
    pub(crate) fn file(file: std::fs::File, len: u64) -> Self {
        Self(Source::File { file, len })
    }

    /// The open file, when this body is a local file not yet read from (a store that checks
    /// whole reads hashes it as it reads it). A body already read from is no longer a file
    /// (its first read turned it into chunks); so is anything else: both come back as `Err`,
    /// and a caller that must see every byte should only ask a body it has not read.
    pub(crate) fn into_file(self) -> std::result::Result<(std::fs::File, u64), Self> {
        match self.0 {
            Source::File { file, len } => Ok((file, len)),
            other => Err(Self(other)),
        }
    }

    /// The bytes not yet read, as chunks: a chunked body's own chunks as they come, a reader
    /// read `chunk` bytes at a time.
    pub fn into_chunks(self, chunk: usize) -> BoxStream<'static, std::io::Result<Bytes>> {
        match self.0 {
            Source::Reader(reader) => ReaderStream::with_capacity(reader, chunk).boxed(),
            Source::File { file, len } => FileChunks::range(file, len).boxed(),
            Source::Chunks { stream, current } if current.is_empty() => stream,
            Source::Chunks { stream, current } => {
                futures::stream::once(async move { Ok(current) }).chain(stream).boxed()
            }
        }
    }
}

impl AsyncRead for BlobBody {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Source::File { .. } = &self.0 {
            let placeholder = Source::Chunks {
                stream: futures::stream::empty().boxed(),
                current: Bytes::new(),
            };
            if let Source::File { file, len } = std::mem::replace(&mut self.0, placeholder) {
                self.0 = Source::Chunks {
                    stream: FileChunks::range(file, len).boxed(),
                    current: Bytes::new(),
                };
            }
        }
        match &mut self.0 {
            Source::Reader(reader) => reader.as_mut().poll_read(cx, buf),
            Source::File { .. } => unreachable!("turned into chunks above"),
            Source::Chunks { stream, current } => loop {
                if !current.is_empty() {
                    let n = buf.remaining().min(current.len());
                    buf.put_slice(&current[..n]);
                    current.advance(n);
                    return Poll::Ready(Ok(()));
                }
                match stream.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(Some(Ok(chunk))) => *current = chunk,
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn three_chunks() -> BlobBody {
        BlobBody::chunks(futures::stream::iter([
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"defg")),
        ]))
    }

    #[tokio::test]
    async fn chunks_read_through_a_small_buffer() {
        let mut body = three_chunks();
        let mut out = Vec::new();
        let mut buf = [0u8; 2];
        loop {
            let n = body.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"abcdefg");
    }

    #[tokio::test]
    async fn chunks_taken_after_a_partial_read_keep_the_rest() {
        let mut body = three_chunks();
        let mut first = [0u8; 2];
        body.read_exact(&mut first).await.expect("read");
        let rest: Vec<Bytes> = body.into_chunks(1024).map(|c| c.expect("chunk")).collect().await;
        assert_eq!(rest.concat(), b"cdefg");
    }

    #[tokio::test]
    async fn an_error_in_the_chunks_is_an_error_of_the_reader() {
        let mut body = BlobBody::chunks(futures::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("damaged")),
        ]));
        let mut out = Vec::new();
        let err = body.read_to_end(&mut out).await.expect_err("the error comes through");
        assert_eq!(err.to_string(), "damaged");
        assert_eq!(out, b"ab");
    }

    #[tokio::test]
    async fn a_file_reads_and_becomes_chunks() {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"0123456789").expect("write");
        file.seek(SeekFrom::Start(2)).expect("seek");
        let mut out = Vec::new();
        BlobBody::file(file.try_clone().expect("clone"), 5)
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, b"23456");
        file.seek(SeekFrom::Start(1)).expect("seek");
        let all: Vec<Bytes> = BlobBody::file(file, 3)
            .into_chunks(2)
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert_eq!(all.concat(), b"123");
    }

    #[tokio::test]
    async fn a_reader_becomes_chunks() {
        let body = BlobBody::reader(std::io::Cursor::new(b"hello".to_vec()));
        let all: Vec<Bytes> = body.into_chunks(2).map(|c| c.expect("chunk")).collect().await;
        assert_eq!(all.concat(), b"hello");
    }
}
