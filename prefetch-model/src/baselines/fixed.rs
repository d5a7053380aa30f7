//! Fixed readahead: the next N bytes after every read, whatever the pattern.

use crate::trace::{Op, TraceRecord};
use crate::{Catalog, PrefetchRequest, Prefetcher};

/// Parameters of [`FixedReadahead`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedParams {
    /// Bytes to fetch after the end of each read.
    pub bytes: u64,
}

impl Default for FixedParams {
    fn default() -> Self {
        Self { bytes: 1 << 20 }
    }
}

/// On each read, prefetches the `bytes` following it (clipped to the file).
#[derive(Clone, Debug, Default)]
pub struct FixedReadahead {
    params: FixedParams,
}

impl FixedReadahead {
    /// A policy with these parameters.
    pub fn new(params: FixedParams) -> Self {
        Self { params }
    }
}

impl Prefetcher for FixedReadahead {
    fn name(&self) -> &str {
        "fixed"
    }
    fn on_access(&mut self, rec: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        if rec.op != Op::Read || self.params.bytes == 0 {
            return;
        }
        let end = rec.offset.saturating_add(rec.len as u64);
        super::push_range(
            out,
            rec.inode,
            end,
            end.saturating_add(self.params.bytes),
            rec.file_size,
            0.5,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn next_n_bytes_clipped_to_file() {
        let mut p = FixedReadahead::new(FixedParams { bytes: 1000 });
        assert_eq!(
            ask(&mut p, read(1, 7, 0, 100, 10_000)),
            vec![(7, 100, 1000)]
        );
        // random reads get the same treatment
        assert_eq!(
            ask(&mut p, read(1, 7, 5000, 100, 10_000)),
            vec![(7, 5100, 1000)]
        );
        // clipped at the end of the file, nothing past it
        assert_eq!(
            ask(&mut p, read(1, 7, 9000, 500, 10_000)),
            vec![(7, 9500, 500)]
        );
        assert!(ask(&mut p, read(1, 7, 9900, 100, 10_000)).is_empty());
        assert!(ask(&mut p, rec(Op::Open, 1, 7, 0, 0, 10_000)).is_empty());
    }
}
