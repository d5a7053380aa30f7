//! Stride prefetching after Leap: the majority delta among the last few reads of a stream.
//!
//! Per (stream, handle), the deltas between consecutive read offsets are kept in a short
//! history. A Boyer-Moore vote finds the delta that holds a strict majority of it; if there is
//! one, the next `depth` reads at that delta are prefetched. The depth doubles while the
//! predictions are hit (a read lands on a predicted offset) and halves on a miss. Without a
//! majority nothing is prefetched.

use std::collections::{HashMap, VecDeque};

use crate::trace::{Op, TraceRecord};
use crate::{Catalog, PrefetchRequest, Prefetcher};

/// Parameters of [`Stride`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrideParams {
    /// Deltas kept per stream.
    pub history: usize,
    /// Reads prefetched ahead when a pattern is first found.
    pub initial_depth: u32,
    /// Largest depth.
    pub max_depth: u32,
}

impl Default for StrideParams {
    fn default() -> Self {
        Self {
            history: 8,
            initial_depth: 2,
            max_depth: 32,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct StreamState {
    last: Option<u64>,
    deltas: VecDeque<i64>,
    depth: u32,
    /// Offsets predicted by the last prefetch (to tell hits from misses).
    predicted: Vec<u64>,
}

/// The Leap-like majority-delta prefetcher.
#[derive(Clone, Debug, Default)]
pub struct Stride {
    params: StrideParams,
    streams: HashMap<(u32, u64), StreamState>,
}

impl Stride {
    /// A policy with these parameters.
    pub fn new(params: StrideParams) -> Self {
        Self {
            params,
            streams: HashMap::new(),
        }
    }
}

/// The strict-majority element of `v` (Boyer-Moore vote, then a verifying count).
fn majority(v: &VecDeque<i64>) -> Option<i64> {
    let mut cand = 0i64;
    let mut count = 0usize;
    for &d in v {
        if count == 0 {
            cand = d;
            count = 1;
        } else if d == cand {
            count += 1;
        } else {
            count -= 1;
        }
    }
    let n = v.iter().filter(|&&d| d == cand).count();
    (count > 0 && n * 2 > v.len()).then_some(cand)
}

impl Prefetcher for Stride {
    fn name(&self) -> &str {
        "stride"
    }

    fn on_access(&mut self, rec: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        let key = (rec.stream, rec.handle);
        match rec.op {
            Op::Close => {
                self.streams.remove(&key);
                return;
            }
            Op::Read => {}
            Op::Open | Op::Write => return,
        }
        let p = self.params;
        let st = self.streams.entry(key).or_insert_with(|| StreamState {
            depth: p.initial_depth.max(1),
            ..StreamState::default()
        });
        if let Some(last) = st.last {
            let d = (rec.offset as i128 - last as i128).clamp(i64::MIN as i128, i64::MAX as i128);
            st.deltas.push_back(d as i64);
            while st.deltas.len() > p.history.max(1) {
                st.deltas.pop_front();
            }
        }
        st.last = Some(rec.offset);
        if !st.predicted.is_empty() {
            if st.predicted.contains(&rec.offset) {
                st.depth = (st.depth * 2).min(p.max_depth.max(1));
            } else {
                st.depth = (st.depth / 2).max(1);
            }
        }
        st.predicted.clear();
        // Wait for at least two deltas before trusting a pattern.
        let Some(d) = majority(&st.deltas).filter(|&d| d != 0 && st.deltas.len() >= 2) else {
            return;
        };
        let len = rec.len as u64;
        for i in 1..=st.depth as i64 {
            let off = rec.offset as i128 + d as i128 * i as i128;
            if off < 0 || off > u64::MAX as i128 {
                break;
            }
            let off = off as u64;
            if rec.file_size > 0 && off >= rec.file_size {
                break;
            }
            st.predicted.push(off);
            super::push_range(
                out,
                rec.inode,
                off,
                off.saturating_add(len),
                rec.file_size,
                0.6,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn vd(v: &[i64]) -> VecDeque<i64> {
        v.iter().copied().collect()
    }

    #[test]
    fn majority_vote() {
        assert_eq!(majority(&vd(&[3, 3, 1, 3])), Some(3));
        assert_eq!(majority(&vd(&[3, 1, 3, 1])), None);
        assert_eq!(majority(&vd(&[1, 2, 3])), None);
        assert_eq!(majority(&vd(&[])), None);
        assert_eq!(majority(&vd(&[5, 1, 5])), Some(5));
    }

    #[test]
    fn finds_stride_and_grows_depth_while_hitting() {
        let mut p = Stride::new(StrideParams::default());
        let size = 1 << 30;
        assert!(ask(&mut p, read(1, 2, 0, 100, size)).is_empty());
        assert!(
            ask(&mut p, read(1, 2, 1000, 100, size)).is_empty(),
            "one delta is not a pattern"
        );
        assert_eq!(
            ask(&mut p, read(1, 2, 2000, 100, size)),
            vec![(2, 3000, 100), (2, 4000, 100)]
        );
        // hit: depth 4
        assert_eq!(ask(&mut p, read(1, 2, 3000, 100, size)).len(), 4);
        assert_eq!(ask(&mut p, read(1, 2, 4000, 100, size)).len(), 8);
        // a miss halves it, the majority still holds (4 of 5 deltas)
        let r = ask(&mut p, read(1, 2, 4500, 100, size));
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], (2, 5500, 100));
    }

    #[test]
    fn no_majority_no_prefetch_and_streams_are_separate() {
        let mut p = Stride::new(StrideParams::default());
        let size = 1 << 30;
        for off in [0u64, 7000, 1000, 90_000, 3, 55_555, 123, 4_000_000] {
            assert!(ask(&mut p, read(1, 2, off, 10, size)).is_empty());
        }
        // two streams interleaved on one handle, each with its own stride
        let mut p = Stride::new(StrideParams::default());
        let mut got = vec![];
        for i in 0..4u64 {
            let mut a = read(9, 2, i * 300, 10, size);
            a.stream = 1;
            let mut b = read(9, 2, 1_000_000 + i * 7000, 10, size);
            b.stream = 2;
            got.push(ask(&mut p, a));
            got.push(ask(&mut p, b));
        }
        assert_eq!(got[4][0], (2, 900, 10));
        assert_eq!(got[5][0], (2, 1_000_000 + 21_000, 10));
    }

    #[test]
    fn stops_at_file_boundaries() {
        let mut p = Stride::new(StrideParams::default());
        ask(&mut p, read(1, 2, 3000, 10, 10_000));
        ask(&mut p, read(1, 2, 2000, 10, 10_000));
        // negative stride: 1000 then 0, nothing below 0
        assert_eq!(ask(&mut p, read(1, 2, 1000, 10, 10_000)), vec![(2, 0, 10)]);
        let mut p = Stride::new(StrideParams::default());
        ask(&mut p, read(1, 2, 7000, 10, 10_000));
        ask(&mut p, read(1, 2, 8000, 10, 10_000));
        assert_eq!(
            ask(&mut p, read(1, 2, 9000, 10, 10_000)),
            Vec::<(u64, u64, u64)>::new()
        );
    }
}
