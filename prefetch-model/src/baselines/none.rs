//! The floor: no prefetching at all.

use crate::trace::TraceRecord;
use crate::{Catalog, PrefetchRequest, Prefetcher};

/// Never prefetches; every byte is fetched on demand.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPrefetch;

impl Prefetcher for NoPrefetch {
    fn name(&self) -> &str {
        "none"
    }
    fn on_access(&mut self, _: &TraceRecord, _: &dyn Catalog, _: &mut Vec<PrefetchRequest>) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::trace::Op;

    #[test]
    fn asks_for_nothing() {
        let mut p = NoPrefetch;
        assert!(ask(&mut p, rec(Op::Open, 1, 1, 0, 0, 1 << 20)).is_empty());
        assert!(ask(&mut p, read(1, 1, 0, 4096, 1 << 20)).is_empty());
    }
}
