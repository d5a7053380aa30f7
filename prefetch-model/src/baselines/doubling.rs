//! Mountpoint-style doubling window: per handle, sequential reads keep a window ahead of the
//! reader that starts at 1 MiB and doubles up to 64 MiB; a jump resets it.

use std::collections::HashMap;

use crate::trace::{Op, TraceRecord};
use crate::{
    Catalog, PrefetchRequest, Prefetcher, ReadaheadConfig, ReadaheadWindow, StreamObservation,
};

/// Parameters of [`DoublingWindow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoublingParams {
    /// The window's limits and sequential-detection slack.
    pub window: ReadaheadConfig,
}

impl Default for DoublingParams {
    fn default() -> Self {
        Self {
            window: ReadaheadConfig {
                initial: 1 << 20,
                max: 64 << 20,
                ..ReadaheadConfig::default()
            },
        }
    }
}

/// A [`ReadaheadWindow`] per handle: after each sequential read, keep `window` bytes past its
/// end requested (the scheduler skips what is already cached or in flight).
#[derive(Clone, Debug, Default)]
pub struct DoublingWindow {
    params: DoublingParams,
    handles: HashMap<u64, ReadaheadWindow>,
}

impl DoublingWindow {
    /// A policy with these parameters.
    pub fn new(params: DoublingParams) -> Self {
        Self {
            params,
            handles: HashMap::new(),
        }
    }
}

impl Prefetcher for DoublingWindow {
    fn name(&self) -> &str {
        "doubling"
    }

    fn on_access(&mut self, rec: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        match rec.op {
            Op::Close => {
                self.handles.remove(&rec.handle);
            }
            Op::Read => {
                let cfg = self.params.window;
                // The shared window adds offsets, lengths and slack without overflow checks:
                // a read at the very top of the offset space is not a stream worth following.
                let headroom = cfg
                    .max
                    .saturating_add(cfg.forward_slack)
                    .saturating_add(cfg.backward_slack);
                if rec
                    .offset
                    .checked_add(rec.len as u64)
                    .and_then(|e| e.checked_add(headroom))
                    .is_none()
                {
                    return;
                }
                let w = self
                    .handles
                    .entry(rec.handle)
                    .or_insert_with(|| ReadaheadWindow::new(cfg));
                if let StreamObservation::Sequential { window } =
                    w.observe(rec.offset, rec.len as u64)
                {
                    let end = rec.offset.saturating_add(rec.len as u64);
                    super::push_range(
                        out,
                        rec.inode,
                        end,
                        end.saturating_add(window),
                        rec.file_size,
                        0.7,
                    );
                }
            }
            Op::Open | Op::Write => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const M: u64 = 1 << 20;

    #[test]
    fn window_doubles_to_64_mib_and_resets_on_jump() {
        let mut p = DoublingWindow::new(DoublingParams::default());
        let size = 10 << 30;
        let mut lens = vec![];
        for i in 0..9 {
            let r = ask(&mut p, read(1, 4, i * M, M as u32, size));
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].1, (i + 1) * M, "window starts at the end of the read");
            lens.push(r[0].2 / M);
        }
        assert_eq!(lens, vec![1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert!(ask(&mut p, read(1, 4, 5 << 30, M as u32, size)).is_empty());
        assert_eq!(
            ask(&mut p, read(1, 4, (5 << 30) + M, M as u32, size)),
            vec![(4, (5 << 30) + 2 * M, M)]
        );
        // the window never runs past the end of the file
        assert_eq!(
            ask(&mut p, read(2, 5, 0, M as u32, M + 10)),
            vec![(5, M, 10)]
        );
    }

    #[test]
    fn first_read_not_at_zero_is_not_sequential() {
        let mut p = DoublingWindow::new(DoublingParams::default());
        assert!(ask(&mut p, read(1, 4, 77 * M, 4096, 1 << 30)).is_empty());
    }
}
