//! The archive file as the decoders see it: counts bytes read (for progress) and remembers
//! whether reading the file itself failed, so that a disk error is reported as `Io` rather than
//! blamed on the archive as `Corrupt`, however the decoders above wrap it.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

#[derive(Debug, Default)]
pub(crate) struct SourceState {
    read: Cell<u64>,
    failed: Cell<bool>,
}

impl SourceState {
    /// Bytes read from the archive file so far (may exceed its size if parts are re-read).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read.get()
    }

    /// Whether reading the archive file itself failed (as opposed to its content being bad).
    pub(crate) fn failed(&self) -> bool {
        self.failed.get()
    }
}

pub(crate) struct Source {
    file: File,
    state: Rc<SourceState>,
}

impl Source {
    pub(crate) fn new(file: File, state: Rc<SourceState>) -> Self {
        Self { file, state }
    }

    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() != io::ErrorKind::Interrupted
        {
            self.state.failed.set(true);
        }
        r
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.file.read(buf);
        let n = self.note(r)?;
        self.state.read.set(self.state.read.get().saturating_add(n as u64));
        Ok(n)
    }
}

impl Seek for Source {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        // A failed seek means a bogus offset from the archive (zip), not a failing disk.
        self.file.seek(pos)
    }
}
