//! File contents as shared, copy-on-write chunks: making a file durable (or cutting the power)
//! clones a list of pointers, and only the chunks written afterwards are copied.

use std::sync::Arc;

/// Chunk size: big enough that a large file is few chunks, small enough that a write into a
/// durable file copies little.
const CHUNK: u64 = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub(crate) struct Data {
    /// Chunk `i` holds bytes `[i * CHUNK, min((i + 1) * CHUNK, len))`: every chunk but the last
    /// is exactly `CHUNK` long.
    chunks: Vec<Arc<Vec<u8>>>,
    len: u64,
}

impl Data {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Up to `size` bytes from `offset` (fewer at the end of the file).
    pub(crate) fn read(&self, offset: u64, size: u64) -> Vec<u8> {
        let end = self.len.min(offset.saturating_add(size));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let chunk = &self.chunks[(pos / CHUNK) as usize];
            let within = (pos % CHUNK) as usize;
            let take = (chunk.len() - within).min((end - pos) as usize);
            out.extend_from_slice(&chunk[within..within + take]);
            pos += take as u64;
        }
        out
    }

    /// Truncates, or extends with zeros.
    pub(crate) fn set_len(&mut self, new_len: u64) {
        let count = new_len.div_ceil(CHUNK) as usize;
        self.chunks.truncate(count);
        // Every kept chunk but the last is already full.
        if let Some(last) = self.chunks.len().checked_sub(1) {
            let want = Self::chunk_len(last, new_len);
            if self.chunks[last].len() != want {
                Arc::make_mut(&mut self.chunks[last]).resize(want, 0);
            }
        }
        while self.chunks.len() < count {
            let want = Self::chunk_len(self.chunks.len(), new_len);
            self.chunks.push(Arc::new(vec![0; want]));
        }
        self.len = new_len;
    }

    fn chunk_len(index: usize, file_len: u64) -> usize {
        (file_len - index as u64 * CHUNK).min(CHUNK) as usize
    }

    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset + bytes.len() as u64;
        if end > self.len {
            self.set_len(end);
        }
        let mut pos = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let chunk = Arc::make_mut(&mut self.chunks[(pos / CHUNK) as usize]);
            let within = (pos % CHUNK) as usize;
            let n = rest.len().min(chunk.len() - within);
            chunk[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
    }

    /// Whether both hold the very same chunks (no write since one was copied from the other).
    pub(crate) fn same_as(&self, other: &Data) -> bool {
        self.len == other.len
            && self.chunks.len() == other.chunks.len()
            && self.chunks.iter().zip(&other.chunks).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_write(model: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
        if model.len() < offset + bytes.len() {
            model.resize(offset + bytes.len(), 0);
        }
        model[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn writes_truncates_and_reads_match_a_plain_vector() {
        let mut data = Data::default();
        let mut model = Vec::new();
        let mut x = 7u64;
        for step in 0..400u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = (x % 300_000) as usize;
            if step % 7 == 0 {
                let len = (x % 250_000) as usize;
                data.set_len(len as u64);
                model.resize(len, 0);
            } else {
                let bytes: Vec<u8> = (0..(x % 100_000)).map(|i| (i as u8).wrapping_add(step as u8)).collect();
                data.write(offset as u64, &bytes);
                reference_write(&mut model, offset, &bytes);
            }
            assert_eq!(data.len(), model.len() as u64);
            assert_eq!(data.read(0, u64::MAX), model, "step {step}");
            let from = (x % (model.len() as u64 + 1)) as usize;
            assert_eq!(
                data.read(from as u64, 70_000),
                model[from..model.len().min(from + 70_000)]
            );
        }
    }

    #[test]
    fn a_copy_shares_chunks_until_written() {
        let mut live = Data::default();
        live.write(0, &vec![1; 200_000]);
        let durable = live.clone();
        assert!(live.same_as(&durable));
        live.write(70_000, b"x");
        assert!(!live.same_as(&durable));
        assert_eq!(durable.read(70_000, 1), vec![1]);
        assert_eq!(live.read(70_000, 1), b"x".to_vec());
    }
}
