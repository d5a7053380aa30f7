//! Hand-written prefetch policies the learned model is measured against.
//!
//! Each is a [`crate::Prefetcher`] with a params struct implementing `Default`:
//!
//! | name        | policy                                                                  |
//! |-------------|-------------------------------------------------------------------------|
//! | `none`      | [`NoPrefetch`]: never prefetches (the floor)                            |
//! | `fixed`     | [`FixedReadahead`]: the next N bytes after every read                   |
//! | `linux`     | [`LinuxReadahead`]: the kernel's on-demand window with async marker     |
//! | `doubling`  | [`DoublingWindow`]: Mountpoint-style window doubling to 64 MiB          |
//! | `stride`    | [`Stride`]: majority delta of the last reads (Leap), adaptive depth     |
//! | `wholefile` | [`WholeFile`]: whole small files on open                                |

mod doubling;
mod fixed;
mod linux;
mod none;
mod stride;
mod wholefile;

pub use doubling::{DoublingParams, DoublingWindow};
pub use fixed::{FixedParams, FixedReadahead};
pub use linux::{LinuxParams, LinuxReadahead};
pub use none::NoPrefetch;
pub use stride::{Stride, StrideParams};
pub use wholefile::{WholeFile, WholeFileParams};

use crate::Prefetcher;

/// Names of every baseline, in report order.
pub const NAMES: [&str; 6] = ["none", "fixed", "linux", "doubling", "stride", "wholefile"];

/// A fresh baseline with default parameters by its name, `None` for an unknown name.
pub fn by_name(name: &str) -> Option<Box<dyn Prefetcher>> {
    Some(match name.trim() {
        "none" => Box::new(NoPrefetch),
        "fixed" => Box::new(FixedReadahead::new(FixedParams::default())),
        "linux" => Box::new(LinuxReadahead::new(LinuxParams::default())),
        "doubling" => Box::new(DoublingWindow::new(DoublingParams::default())),
        "stride" => Box::new(Stride::new(StrideParams::default())),
        "wholefile" => Box::new(WholeFile::new(WholeFileParams::default())),
        _ => return None,
    })
}

/// Every baseline, fresh, with default parameters, in [`NAMES`] order.
pub fn all() -> Vec<Box<dyn Prefetcher>> {
    NAMES.iter().filter_map(|n| by_name(n)).collect()
}

/// End of the byte range worth fetching: `end` clipped to the file's size when it is known.
fn clip_end(end: u64, file_size: u64) -> u64 {
    if file_size > 0 {
        end.min(file_size)
    } else {
        end
    }
}

/// Appends a request for `[start, end)` clipped to the file, if anything is left.
fn push_range(
    out: &mut Vec<crate::PrefetchRequest>,
    inode: u64,
    start: u64,
    end: u64,
    file_size: u64,
    score: f32,
) {
    let end = clip_end(end, file_size);
    if end > start {
        out.push(crate::PrefetchRequest {
            inode,
            offset: start,
            len: end - start,
            score,
        });
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::trace::{FormatClass, Op, TraceRecord};
    use crate::{EmptyCatalog, PrefetchRequest, Prefetcher};

    /// A record of `op` on handle `h` (stream 0) of inode `ino` sized `size`.
    pub fn rec(op: Op, h: u64, ino: u64, offset: u64, len: u32, size: u64) -> TraceRecord {
        TraceRecord {
            time_ns: 0,
            stream: 0,
            program_hash: 0,
            handle: h,
            inode: ino,
            path_hash: ino,
            dir_hash: 0,
            offset,
            len,
            format: FormatClass::Other,
            op,
            file_size: size,
        }
    }

    /// The requests one access produces, as `(inode, offset, len)`.
    pub fn ask(p: &mut dyn Prefetcher, r: TraceRecord) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<PrefetchRequest> = Vec::new();
        p.on_access(&r, &EmptyCatalog, &mut out);
        for q in &out {
            assert!((0.0..=1.0).contains(&q.score));
        }
        out.iter().map(|q| (q.inode, q.offset, q.len)).collect()
    }

    /// A read record.
    pub fn read(h: u64, ino: u64, offset: u64, len: u32, size: u64) -> TraceRecord {
        rec(Op::Read, h, ino, offset, len, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Op;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary records (offsets up to the top of the range) never panic a baseline, and
        /// every request is non-empty, inside the file when its size is known, scored in [0, 1].
        #[test]
        fn arbitrary_records_give_sane_requests(
            recs in proptest::collection::vec(
                (0u8..4, 0u64..3, prop_oneof![any::<u64>(), (u64::MAX - (1 << 34))..=u64::MAX, 0u64..(1 << 30)], any::<u32>(), prop_oneof![Just(0u64), any::<u64>(), 1u64..(1 << 30)]),
                1..60,
            )
        ) {
            for mut p in all() {
                for &(op, h, off, len, size) in &recs {
                    let op = [Op::Open, Op::Read, Op::Write, Op::Close][op as usize];
                    let off = if size == 0 { off } else { off % size.saturating_mul(2) };
                    let r = testutil::rec(op, h, 1, off, len, size);
                    let mut out = Vec::new();
                    p.on_access(&r, &crate::EmptyCatalog, &mut out);
                    for q in &out {
                        prop_assert!(q.len > 0, "{}", p.name());
                        prop_assert!((0.0..=1.0).contains(&q.score));
                        if size > 0 {
                            prop_assert!(q.offset.saturating_add(q.len) <= size, "{}: {q:?}", p.name());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn by_name_knows_every_name_and_nothing_else() {
        for n in NAMES {
            assert_eq!(
                by_name(n).map(|p| p.name().to_string()),
                Some(n.to_string())
            );
        }
        assert!(by_name("bogus").is_none());
        assert_eq!(all().len(), NAMES.len());
    }
}
