//! Linux-style on-demand readahead (after `mm/readahead.c`), per open handle.
//!
//! The kernel keeps, per file handle, a window `[start, start + size)` of which the last
//! `async_size` bytes are "ahead": the first byte of that tail carries a marker (PG_readahead).
//! A read from offset 0, or one continuing the previous read, opens an initial window sized
//! from the request (rounded to a power of two, x4 when small, x2 when medium, else max), with
//! everything past the request asynchronous. A read reaching the marker (or continuing right
//! after the window) pushes the window forward: the new window starts where the old one ended,
//! grows x4 while small and x2 after (capped at max) and is all asynchronous. Any other read is
//! random: the state resets and nothing is read ahead.

use std::collections::HashMap;

use crate::trace::{Op, TraceRecord};
use crate::{Catalog, PrefetchRequest, Prefetcher};

/// Parameters of [`LinuxReadahead`] (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxParams {
    /// Largest window (the kernel's `read_ahead_kb`).
    pub max: u64,
    /// Smallest initial window.
    pub min_initial: u64,
}

impl Default for LinuxParams {
    fn default() -> Self {
        Self {
            max: 2 << 20,
            min_initial: 128 << 10,
        }
    }
}

/// The per-handle readahead state (`struct file_ra_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RaState {
    start: u64,
    size: u64,
    async_size: u64,
    /// End of the previous read (`prev_pos`), for sequential detection.
    prev_end: Option<u64>,
    /// Where this sequential run's first window started: reads between it and the marker
    /// find their pages cached and trigger nothing.
    run_start: u64,
}

/// Linux's adaptive readahead window with its async marker, per handle.
#[derive(Clone, Debug, Default)]
pub struct LinuxReadahead {
    params: LinuxParams,
    handles: HashMap<u64, RaState>,
}

impl LinuxReadahead {
    /// A policy with these parameters.
    pub fn new(params: LinuxParams) -> Self {
        Self {
            params,
            handles: HashMap::new(),
        }
    }

    /// `get_init_ra_size`: the first window for a request of `len` bytes.
    fn init_size(&self, len: u64) -> u64 {
        let max = self.params.max.max(1);
        let r = len.max(1).checked_next_power_of_two().unwrap_or(max);
        let s = if r <= max / 32 {
            r * 4
        } else if r <= max / 4 {
            r * 2
        } else {
            max
        };
        s.max(self.params.min_initial).min(max)
    }

    /// `get_next_ra_size`: the window after `cur`.
    fn next_size(&self, cur: u64) -> u64 {
        let max = self.params.max.max(1);
        let s = if cur < max / 16 { cur * 4 } else { cur * 2 };
        s.min(max)
    }
}

impl Prefetcher for LinuxReadahead {
    fn name(&self) -> &str {
        "linux"
    }

    fn on_access(&mut self, rec: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        match rec.op {
            Op::Close => {
                self.handles.remove(&rec.handle);
                return;
            }
            Op::Read => {}
            Op::Open | Op::Write => return,
        }
        let (off, len) = (rec.offset, rec.len as u64);
        let end = off.saturating_add(len);
        let mut st = self.handles.get(&rec.handle).copied().unwrap_or_default();
        let win_end = st.start.saturating_add(st.size);
        let marker = win_end - st.async_size;
        if st.size > 0 && end > marker && off <= win_end {
            // Hit the marker (or ran right past the window): the next window, all async.
            let size = self.next_size(st.size);
            let start = win_end.max(end);
            st = RaState {
                start,
                size,
                async_size: size,
                prev_end: Some(end),
                run_start: st.run_start,
            };
            super::push_range(
                out,
                rec.inode,
                start,
                start.saturating_add(size),
                rec.file_size,
                0.6,
            );
        } else if st.size > 0 && off >= st.run_start && end <= marker {
            // Inside what was read ahead, before the marker: cached, nothing to do.
            st.prev_end = Some(end);
        } else if off == 0 || st.prev_end == Some(off) {
            // Start of file or a sequential continuation: the initial window.
            let size = self.init_size(len).max(len);
            st = RaState {
                start: off,
                size,
                async_size: size - len,
                prev_end: Some(end),
                run_start: off,
            };
            super::push_range(
                out,
                rec.inode,
                end,
                off.saturating_add(size),
                rec.file_size,
                0.6,
            );
        } else {
            // Random: read just what is asked; forget the window.
            st = RaState {
                prev_end: Some(end),
                ..RaState::default()
            };
        }
        self.handles.insert(rec.handle, st);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const K: u64 = 1024;

    #[test]
    fn initial_window_then_marker_pushes_it_forward() {
        let mut p = LinuxReadahead::new(LinuxParams::default());
        let size = 100 << 20;
        // 16 KiB at 0: 16K -> x4 = 64K, raised to the 128K minimum; the rest past the request
        assert_eq!(
            ask(&mut p, read(1, 3, 0, 16 * 1024, size)),
            vec![(3, 16 * K, 112 * K)]
        );
        // inside the window before the marker (marker at 16K): the first async byte is 16K, so
        // a read at 16K..32K reaches it and the next window (128K -> x2 = 256K) starts at 128K
        assert_eq!(
            ask(&mut p, read(1, 3, 16 * K, 16 * 1024, size)),
            vec![(3, 128 * K, 256 * K)]
        );
        // inside the new window but before its marker (its start): nothing
        assert!(ask(&mut p, read(1, 3, 32 * K, 16 * 1024, size)).is_empty());
        // reaching the marker at 128K: window 384K.. of 512K
        assert_eq!(
            ask(&mut p, read(1, 3, 128 * K, 16 * 1024, size)),
            vec![(3, 384 * K, 512 * K)]
        );
    }

    #[test]
    fn window_caps_at_max() {
        let mut p = LinuxReadahead::new(LinuxParams::default());
        let size = 1 << 30;
        let mut sizes = vec![];
        let mut off = 0;
        for _ in 0..200 {
            for (_, o, l) in ask(&mut p, read(1, 3, off, 128 * 1024, size)) {
                assert!(o >= off + 128 * K, "readahead starts past the request");
                sizes.push(l);
            }
            off += 128 * K;
        }
        assert_eq!(*sizes.iter().max().unwrap(), 2 << 20);
        assert!(
            sizes.windows(2).all(|w| w[1] >= w[0]),
            "never shrinks while sequential"
        );
    }

    #[test]
    fn random_read_resets_and_asks_nothing() {
        let mut p = LinuxReadahead::new(LinuxParams::default());
        let size = 1 << 30;
        assert!(!ask(&mut p, read(1, 3, 0, 4096, size)).is_empty());
        assert!(ask(&mut p, read(1, 3, 500 << 20, 4096, size)).is_empty());
        assert!(ask(&mut p, read(1, 3, 100 << 20, 4096, size)).is_empty());
        // a continuation of the last read starts a fresh initial window
        assert_eq!(
            ask(&mut p, read(1, 3, (100 << 20) + 4096, 4096, size)),
            vec![(3, (100 << 20) + 8192, 128 * K - 4096)]
        );
        // handles are independent
        assert!(!ask(&mut p, read(2, 3, 0, 4096, size)).is_empty());
    }

    #[test]
    fn large_requests_get_large_windows() {
        let p = LinuxReadahead::new(LinuxParams::default());
        assert_eq!(p.init_size(4096), 128 * K);
        assert_eq!(p.init_size(64 * K), 256 * K); // 64K <= 2M/32 -> x4
        assert_eq!(p.init_size(256 * K), 512 * K); // <= 2M/4 -> x2
        assert_eq!(p.init_size(1 << 20), 2 << 20);
        assert_eq!(p.next_size(64 * K), 256 * K);
        assert_eq!(p.next_size(1 << 20), 2 << 20);
    }
}
