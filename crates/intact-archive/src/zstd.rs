//! A `Read` over a whole zstd stream with ruzstd (pure Rust). ruzstd's `StreamingDecoder`
//! handles exactly one frame and does not compare content checksums; real `.tar.zst` files may
//! hold several frames (pzstd, `zstd -T`) and skippable frames, and a checksum mismatch must
//! fail the archive. Memory is the frame's window (capped) plus one block.

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

pub(crate) struct ZstdReader<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
    started: bool,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> ZstdReader<R> {
    /// `max_window` bounds the window a frame may ask for (and so the decoder's memory).
    pub(crate) fn new(source: R, max_window: u64) -> Self {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(max_window);
        Self {
            source,
            decoder,
            in_frame: false,
            started: false,
        }
    }

    /// Starts the next frame; `Ok(false)` at a clean end of input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                if !self.started {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "zstd: empty stream"));
                }
                return Ok(false);
            }
            self.started = true;
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: truncated skippable frame",
                        ));
                    }
                }
                Err(FrameDecoderError::WindowSizeTooBig { requested, max }) => {
                    return Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!("zstd: frame needs a {requested}-byte window, more than the {max} allowed"),
                    ));
                }
                Err(e) => return Err(invalid(e)),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(invalid)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                if let (Some(stored), Some(computed)) = (
                    self.decoder.get_checksum_from_data(),
                    self.decoder.get_calculated_checksum(),
                ) && stored != computed
                {
                    return Err(invalid("content checksum mismatch"));
                }
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};

    fn decode(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdReader::new(bytes, 1 << 27).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_several_frames_and_skips_skippable_ones() -> io::Result<()> {
        let mut stream = compress_to_vec(&b"hello "[..], CompressionLevel::Fastest);
        // A skippable frame: magic 0x184D2A50, 4-byte length, payload.
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&3u32.to_le_bytes());
        stream.extend_from_slice(b"xyz");
        stream.extend(compress_to_vec(&b"world"[..], CompressionLevel::Fastest));
        assert_eq!(decode(&stream)?, b"hello world");
        Ok(())
    }

    #[test]
    fn refuses_empty_truncated_and_garbage() {
        assert!(decode(b"").is_err());
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let stream = compress_to_vec(&data[..], CompressionLevel::Fastest);
        assert!(decode(&stream[..stream.len() / 2]).is_err());
        let mut trailing = stream.clone();
        trailing.extend_from_slice(b"garbage!");
        assert!(decode(&trailing).is_err());
    }
}
