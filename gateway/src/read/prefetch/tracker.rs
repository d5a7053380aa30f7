//! Bookkeeping of prefetched blocks: each is labelled exactly once, used or wasted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_prefetch_model::Feedback;

use crate::read::ObjectVersion;

/// One prefetched block not yet used.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The object version it belongs to.
    pub obj: ObjectVersion,
    /// Block index.
    pub index: u64,
    /// First byte of the block.
    pub offset: u64,
    /// Bytes in the block.
    pub len: u64,
    /// When the prefetch was issued.
    pub at: Instant,
    /// Whether the data has arrived.
    pub arrived: bool,
}

/// What a demand read found among the prefetched blocks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DemandOutcome {
    /// Prefetched blocks used that had arrived in time.
    pub on_time: u64,
    /// Prefetched blocks used that were still in flight.
    pub late: u64,
    /// Bytes of both.
    pub bytes: u64,
}

/// The prefetched-but-unused blocks, by (inode, block index).
#[derive(Default)]
pub struct Tracker {
    unused: HashMap<(u64, u64), Issued>,
    unused_bytes: u64,
    /// Number of entries, readable without the lock (the demand path skips the lock at zero).
    count: AtomicU64,
}

impl Tracker {
    /// Bytes of prefetched blocks not used yet.
    pub fn unused_bytes(&self) -> u64 {
        self.unused_bytes
    }

    /// Entries not used yet (lock-free read).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether this block is already tracked.
    pub fn contains(&self, inode: u64, index: u64) -> bool {
        self.unused.contains_key(&(inode, index))
    }

    /// Starts tracking a prefetched block.
    pub fn issue(&mut self, inode: u64, issued: Issued) {
        let len = issued.len;
        if self.unused.insert((inode, issued.index), issued).is_none() {
            self.unused_bytes += len;
            self.count.fetch_add(1, Ordering::Relaxed);
        } else {
            // Re-issued: the old entry was replaced, its bytes are already counted.
        }
    }

    /// Marks a block as arrived (its data is in the cache).
    pub fn arrived(&mut self, inode: u64, index: u64) {
        if let Some(e) = self.unused.get_mut(&(inode, index)) {
            e.arrived = true;
        }
    }

    /// A demand read of blocks `first..=last` of `inode`: the prefetched ones among them are
    /// labelled used; their feedback is appended to `fb`.
    /// `arrived` tells, for a block not yet marked arrived, whether its data is cached by now.
    pub fn demand(
        &mut self,
        inode: u64,
        first: u64,
        last: u64,
        fb: &mut Vec<Feedback>,
        mut arrived: impl FnMut(&Issued) -> bool,
    ) -> DemandOutcome {
        let mut out = DemandOutcome::default();
        if self.unused.is_empty() {
            return out;
        }
        for index in first..=last {
            if let Some(e) = self.remove(inode, index) {
                if e.arrived || arrived(&e) {
                    out.on_time += 1;
                } else {
                    out.late += 1;
                }
                out.bytes += e.len;
                fb.push(Feedback {
                    inode,
                    offset: e.offset,
                    len: e.len,
                    used: true,
                });
            }
        }
        out
    }

    fn remove(&mut self, inode: u64, index: u64) -> Option<Issued> {
        let e = self.unused.remove(&(inode, index))?;
        self.unused_bytes -= e.len;
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some(e)
    }

    /// Labels wasted every block for which `gone` says the cache dropped it, and every block
    /// unused for longer than `ttl`; returns their feedback.
    pub fn sweep(
        &mut self,
        now: Instant,
        ttl: Duration,
        mut gone: impl FnMut(&Issued) -> bool,
    ) -> Vec<Feedback> {
        let victims: Vec<(u64, u64)> = self
            .unused
            .iter()
            .filter(|(_, e)| (e.arrived && gone(e)) || now.duration_since(e.at) > ttl)
            .map(|(k, _)| *k)
            .collect();
        victims
            .into_iter()
            .filter_map(|(inode, index)| {
                self.remove(inode, index).map(|e| Feedback {
                    inode,
                    offset: e.offset,
                    len: e.len,
                    used: false,
                })
            })
            .collect()
    }

    /// Drops a block whose prefetch failed (not labelled: it never reached the cache).
    pub fn failed(&mut self, inode: u64, index: u64) {
        self.remove(inode, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn issued(index: u64, at: Instant) -> Issued {
        Issued {
            obj: ObjectVersion {
                key: Arc::from("k"),
                etag: None,
                size: 100 << 20,
            },
            index,
            offset: index << 20,
            len: 1 << 20,
            at,
            arrived: false,
        }
    }

    #[test]
    fn each_block_is_labelled_once() {
        let now = Instant::now();
        let mut t = Tracker::default();
        for i in 0..4 {
            t.issue(1, issued(i, now));
        }
        t.arrived(1, 0);
        assert_eq!(t.unused_bytes(), 4 << 20);
        let mut fb = vec![];
        let out = t.demand(1, 0, 1, &mut fb, |_| false);
        assert_eq!((out.on_time, out.late), (1, 1));
        assert!(fb.iter().all(|f| f.used));
        // A second demand of the same blocks labels nothing again.
        assert_eq!(
            t.demand(1, 0, 1, &mut fb, |_| true),
            DemandOutcome::default()
        );
        t.arrived(1, 2);
        let wasted = t.sweep(now, Duration::from_secs(60), |e| e.index == 2);
        assert_eq!(wasted.len(), 1);
        assert!(!wasted[0].used);
        let expired = t.sweep(
            now + Duration::from_secs(61),
            Duration::from_secs(60),
            |_| false,
        );
        assert_eq!(expired.len(), 1);
        assert_eq!((t.count(), t.unused_bytes()), (0, 0));
    }
}
