//! The binary trace file: a 16-byte header, then [`RECORD_SIZE`]-byte records, little-endian.
//!
//! Header: magic `CAIRNTRC` (8 bytes), version `u32`, record size `u32`. Record (72 bytes):
//! `time_ns u64, stream u32, program_hash u32, handle u64, inode u64, path_hash u64,
//! dir_hash u64, offset u64, file_size u64, len u32, format u8, op u8, reserved u16`.
//! A reader accepts larger record sizes (fields appended by later versions are skipped) and stops
//! cleanly at a torn last record (a crash while recording).

use std::io::{self, Read, Write};

use super::{FormatClass, Op, TraceRecord};

/// First bytes of a trace file.
pub const TRACE_MAGIC: &[u8; 8] = b"CAIRNTRC";
/// Format version written by this build.
pub const TRACE_VERSION: u32 = 1;
/// Bytes per record written by this build.
pub const RECORD_SIZE: usize = 72;

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The underlying reader or writer failed.
    #[error("trace I/O: {0}")]
    Io(#[from] io::Error),
    /// Not a cairn trace (wrong magic) or an unsupported version.
    #[error("not a cairn trace file: {0}")]
    Format(String),
}

/// Writes records to any `Write` (buffer it: each record is one small write).
pub struct TraceWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the header and returns the writer.
    pub fn new(mut out: W) -> Result<Self, TraceError> {
        out.write_all(TRACE_MAGIC)?;
        out.write_all(&TRACE_VERSION.to_le_bytes())?;
        out.write_all(&(RECORD_SIZE as u32).to_le_bytes())?;
        Ok(Self { out, records: 0 })
    }

    /// Appends one record.
    pub fn write(&mut self, r: &TraceRecord) -> Result<(), TraceError> {
        self.out.write_all(&encode(r))?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W, TraceError> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Flushes buffered records.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        Ok(self.out.flush()?)
    }
}

/// The 72-byte encoding of one record.
pub fn encode(r: &TraceRecord) -> [u8; RECORD_SIZE] {
    let mut b = [0u8; RECORD_SIZE];
    b[0..8].copy_from_slice(&r.time_ns.to_le_bytes());
    b[8..12].copy_from_slice(&r.stream.to_le_bytes());
    b[12..16].copy_from_slice(&r.program_hash.to_le_bytes());
    b[16..24].copy_from_slice(&r.handle.to_le_bytes());
    b[24..32].copy_from_slice(&r.inode.to_le_bytes());
    b[32..40].copy_from_slice(&r.path_hash.to_le_bytes());
    b[40..48].copy_from_slice(&r.dir_hash.to_le_bytes());
    b[48..56].copy_from_slice(&r.offset.to_le_bytes());
    b[56..64].copy_from_slice(&r.file_size.to_le_bytes());
    b[64..68].copy_from_slice(&r.len.to_le_bytes());
    b[68] = r.format as u8;
    b[69] = r.op as u8;
    b
}

fn decode(b: &[u8]) -> Option<TraceRecord> {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    Some(TraceRecord {
        time_ns: u64_at(0),
        stream: u32_at(8),
        program_hash: u32_at(12),
        handle: u64_at(16),
        inode: u64_at(24),
        path_hash: u64_at(32),
        dir_hash: u64_at(40),
        offset: u64_at(48),
        file_size: u64_at(56),
        len: u32_at(64),
        format: FormatClass::from_code(b[68]),
        op: Op::from_code(b[69])?,
    })
}

/// Reads records from any `Read`.
pub struct TraceReader<R: Read> {
    input: R,
    record_size: usize,
    buf: Vec<u8>,
}

impl<R: Read> TraceReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, TraceError> {
        let mut h = [0u8; 16];
        input.read_exact(&mut h).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => TraceError::Format("shorter than its header".into()),
            _ => TraceError::Io(e),
        })?;
        if &h[0..8] != TRACE_MAGIC {
            return Err(TraceError::Format("wrong magic".into()));
        }
        let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
        let record_size = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
        if version == 0 || version > TRACE_VERSION && record_size < RECORD_SIZE {
            return Err(TraceError::Format(format!("unsupported version {version}")));
        }
        if record_size < RECORD_SIZE {
            return Err(TraceError::Format(format!(
                "record size {record_size} too small"
            )));
        }
        Ok(Self {
            input,
            record_size,
            buf: vec![0; record_size],
        })
    }

    /// The next record; `None` at the end (a torn last record also ends the trace).
    /// Records with an unknown op are skipped.
    pub fn next_record(&mut self) -> Result<Option<TraceRecord>, TraceError> {
        loop {
            let mut got = 0;
            while got < self.record_size {
                match self.input.read(&mut self.buf[got..]) {
                    Ok(0) => return Ok(None),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(r) = decode(&self.buf) {
                return Ok(Some(r));
            }
        }
    }

    /// All remaining records.
    pub fn read_all(mut self) -> Result<Vec<TraceRecord>, TraceError> {
        let mut out = Vec::new();
        while let Some(r) = self.next_record()? {
            out.push(r);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = TraceRecord> {
        (
            any::<(u64, u32, u32, u64, u64, u64)>(),
            any::<(u64, u64, u64, u32)>(),
            0u8..10,
            1u8..5,
        )
            .prop_map(
                |((t, s, p, h, i, ph), (dh, off, fs, len), f, op)| TraceRecord {
                    time_ns: t,
                    stream: s,
                    program_hash: p,
                    handle: h,
                    inode: i,
                    path_hash: ph,
                    dir_hash: dh,
                    offset: off,
                    len,
                    format: FormatClass::from_code(f),
                    op: Op::from_code(op).unwrap(),
                    file_size: fs,
                },
            )
    }

    proptest! {
        #[test]
        fn roundtrip_and_torn_tail(recs in proptest::collection::vec(record(), 0..50), cut in 0usize..RECORD_SIZE) {
            let mut w = TraceWriter::new(Vec::new()).unwrap();
            for r in &recs {
                w.write(r).unwrap();
            }
            let mut bytes = w.finish().unwrap();
            let back = TraceReader::new(&bytes[..]).unwrap().read_all().unwrap();
            prop_assert_eq!(&back, &recs);
            if !recs.is_empty() {
                bytes.truncate(bytes.len() - cut.max(1));
                let back = TraceReader::new(&bytes[..]).unwrap().read_all().unwrap();
                prop_assert_eq!(&back[..], &recs[..recs.len() - 1]);
            }
        }
    }

    #[test]
    fn rejects_other_files() {
        assert!(matches!(
            TraceReader::new(&b"version,time,op"[..]),
            Err(TraceError::Format(_))
        ));
        assert!(matches!(
            TraceReader::new(&b"NOTATRACEFILE..."[..]),
            Err(TraceError::Format(_))
        ));
    }
}
