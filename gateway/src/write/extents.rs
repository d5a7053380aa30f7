//! Which bytes of a locally written file live where in the journal.
//!
//! Every write appends a record to the journal; the file's extent map says, for each byte range
//! of the file, which record (and which offset inside it) holds the newest data. Ranges no write
//! covered are holes and read as zeros. Overwrites split or replace older extents, so a read or an
//! upload never sees stale bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a run of file bytes lives in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLoc {
    /// Journal segment of the record.
    pub segment: u64,
    /// Offset of the record header in the segment.
    pub record_offset: u64,
    /// Log sequence number of the record.
    pub lsn: u64,
    /// Payload length of the record.
    pub payload_len: u32,
    /// Offset inside the payload of this run's first byte.
    pub payload_offset: u64,
}

impl DataLoc {
    fn shifted(self, by: u64) -> Self {
        Self {
            payload_offset: self.payload_offset + by,
            ..self
        }
    }
}

/// One run of file bytes stored in one journal record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Length in bytes.
    pub len: u64,
    /// Where its first byte is.
    pub loc: DataLoc,
}

/// A piece of a requested range: journal data or a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `len` bytes at `loc`.
    Data {
        /// File offset of the piece.
        offset: u64,
        /// Length.
        len: u64,
        /// Where the bytes are.
        loc: DataLoc,
    },
    /// `len` zero bytes.
    Hole {
        /// File offset of the piece.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// Non-overlapping extents of one file, by file offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentMap {
    map: BTreeMap<u64, Extent>,
}

impl ExtentMap {
    /// An empty map (a file of holes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `[offset, offset+len)` now holds the bytes at `loc`, replacing older data.
    pub fn insert(&mut self, offset: u64, len: u64, loc: DataLoc) {
        if len == 0 {
            return;
        }
        self.cut(offset, offset + len);
        self.map.insert(offset, Extent { len, loc });
    }

    /// Drops everything at or past `size` (a truncate).
    pub fn truncate(&mut self, size: u64) {
        self.cut(size, u64::MAX);
    }

    /// Removes data in `[from, to)`, splitting extents that straddle the bounds.
    fn cut(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        // An extent starting before `from` may reach into the range.
        if let Some((&start, &ext)) = self.map.range(..from).next_back() {
            let end = start + ext.len;
            if end > from {
                self.map.insert(
                    start,
                    Extent {
                        len: from - start,
                        loc: ext.loc,
                    },
                );
                if end > to {
                    self.map.insert(
                        to,
                        Extent {
                            len: end - to,
                            loc: ext.loc.shifted(to - start),
                        },
                    );
                }
            }
        }
        let inside: Vec<u64> = self.map.range(from..to).map(|(&k, _)| k).collect();
        for start in inside {
            let ext = self.map.remove(&start).expect("key just listed");
            let end = start + ext.len;
            if end > to {
                self.map.insert(
                    to,
                    Extent {
                        len: end - to,
                        loc: ext.loc.shifted(to - start),
                    },
                );
            }
        }
    }

    /// The pieces covering `[offset, offset+len)`, in order, holes included.
    pub fn pieces(&self, offset: u64, len: u64) -> Vec<Piece> {
        let end = offset + len;
        let mut out = Vec::new();
        let mut at = offset;
        let first = self
            .map
            .range(..=offset)
            .next_back()
            .filter(|(&s, e)| s + e.len > offset)
            .map(|(&s, _)| s)
            .unwrap_or(offset);
        for (&start, ext) in self.map.range(first..end) {
            if start > at {
                out.push(Piece::Hole {
                    offset: at,
                    len: start - at,
                });
                at = start;
            }
            let skip = at - start;
            let take = (ext.len - skip).min(end - at);
            out.push(Piece::Data {
                offset: at,
                len: take,
                loc: ext.loc.shifted(skip),
            });
            at += take;
        }
        if at < end {
            out.push(Piece::Hole {
                offset: at,
                len: end - at,
            });
        }
        out
    }

    /// Every extent, by file offset.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Extent)> {
        self.map.iter().map(|(&k, v)| (k, v))
    }

    /// Bytes of data held (holes not counted).
    pub fn data_bytes(&self) -> u64 {
        self.map.values().map(|e| e.len).sum()
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the file is all holes.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference model: the file as bytes; each written byte remembers (lsn, index in write).
    #[derive(Clone, Debug)]
    enum Op {
        Write { offset: u64, len: u64 },
        Truncate { size: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..300, 1u64..120).prop_map(|(offset, len)| Op::Write { offset, len }),
            1 => (0u64..400).prop_map(|size| Op::Truncate { size }),
        ]
    }

    proptest! {
        #[test]
        fn pieces_match_a_byte_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut map = ExtentMap::new();
            // model[i] = Some((lsn, payload offset)) of the newest byte at i, None for a hole
            let mut model: Vec<Option<(u64, u64)>> = Vec::new();
            for (lsn, op) in ops.iter().enumerate() {
                let lsn = lsn as u64 + 1;
                match *op {
                    Op::Write { offset, len } => {
                        let loc = DataLoc { segment: 1, record_offset: lsn * 1000, lsn,
                            payload_len: len as u32 + 16, payload_offset: 16 };
                        map.insert(offset, len, loc);
                        let end = (offset + len) as usize;
                        if model.len() < end { model.resize(end, None); }
                        for i in 0..len {
                            model[(offset + i) as usize] = Some((lsn, 16 + i));
                        }
                    }
                    Op::Truncate { size } => {
                        map.truncate(size);
                        model.truncate(size as usize);
                    }
                }
                // Whole-range and sub-range views agree with the model byte by byte.
                for (from, len) in [(0u64, 500u64), (37, 91), (150, 7)] {
                    let mut at = from;
                    for p in map.pieces(from, len) {
                        match p {
                            Piece::Hole { offset, len } => {
                                prop_assert_eq!(offset, at);
                                for i in offset..offset + len {
                                    prop_assert_eq!(model.get(i as usize).copied().flatten(), None);
                                }
                                at += len;
                            }
                            Piece::Data { offset, len, loc } => {
                                prop_assert_eq!(offset, at);
                                prop_assert!(len > 0);
                                for i in 0..len {
                                    prop_assert_eq!(
                                        model.get((offset + i) as usize).copied().flatten(),
                                        Some((loc.lsn, loc.payload_offset + i))
                                    );
                                }
                                at += len;
                            }
                        }
                    }
                    prop_assert_eq!(at, from + len);
                }
                // Extents never overlap.
                let mut prev_end = 0;
                for (start, e) in map.iter() {
                    prop_assert!(start >= prev_end);
                    prop_assert!(e.len > 0);
                    prev_end = start + e.len;
                }
                let held = model.iter().filter(|b| b.is_some()).count() as u64;
                prop_assert_eq!(map.data_bytes(), held);
            }
        }
    }
}
