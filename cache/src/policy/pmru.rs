//! Protected MRU ("pmru"): MRU eviction for keys that come back only after the cache could have
//! cycled through its contents (loops, shuffled passes), LRU protection for keys that are
//! re-read within the cache's reach (hot sets), and age-out of keys that stopped coming back.
//!
//! Every key remembers the logical time (accesses seen by the policy) of its last access. A hit
//! whose gap since the previous access is at most the number of cached keys (the *reach*: the
//! key was re-read before a pass over the cache could have completed) moves the key to the
//! *protected* list; any other hit or insertion puts it at the head of the *plain* list.
//! Victims, in order:
//!
//! 1. a protected key not re-read within the reach is first demoted to the old end of the plain
//!    list (a hot set that cooled down does not pin the cache);
//! 2. the oldest plain key, if it looks abandoned: either nothing has been hit for as many
//!    accesses as there are cached keys, and for a quarter of the average gap of plain hits (in a
//!    live loop cached keys are hit all the time), and this key was last read before the last
//!    hit (it is from the old loop, not one admitted since); or it is older than 1.5x the
//!    longest recent plain-hit gap (leftovers). These rules wait until as many plain hits as
//!    there are cached keys have been seen, so that the gap statistics describe the loop.
//!    This is how the cache lets go of a dataset the workload moved away from; without it MRU
//!    would keep the old keys forever and never cache the new loop;
//! 3. the newest plain key (most recently used: on a shuffled pass, one the pass has already
//!    read);
//! 4. the oldest protected key, when there is no plain key.
//!
//! All O(1) amortized. On a loop or on shuffled epochs this is MRU: it keeps a stable resident
//! set and is hit on all of it once per pass. When the loop moves to other data, the old keys
//! are aged out after about a quarter of a pass, and the new loop's keys become the stable set. With a hot set mixed in, the hot keys stay
//! protected, which plain MRU cannot do (it evicts a hot key right after reading it). On skewed
//! or recency workloads it is poor (a new key survives only if the next access is a hit); it
//! is meant as an expert of [`super::Adaptive`], which uses it only where it measures better.

use std::collections::HashMap;
use std::hash::Hash;

use super::list::{DList, Link, Slab, NIL};
use super::EvictionPolicy;

/// With no hit for this many average plain-hit gaps, the loop is abandoned: age out its keys.
/// (The average is over gaps longer than the reach, so this is at least a quarter of the reach;
/// in a live loop the cached keys are hit every few accesses.)
const ABANDONED_GAPS: f64 = 0.25;
/// Keys older than this many times the longest recent plain-hit gap are aged out. A maximum,
/// not the average: an average is biased low by the keys evicted before their long gap ended.
const STALE_MAX_GAPS: f64 = 1.5;
/// Per plain hit, the longest recent gap decays by this fraction (so a shorter loop is learned).
const MAX_GAP_DECAY: f64 = 1.0 / 8192.0;
/// Weight of a new gap in the running average.
const GAP_EWMA: f64 = 1.0 / 64.0;

#[derive(Clone, Copy, Default)]
struct Meta {
    last: u64,
    size: u64,
    protected: bool,
}

/// The protected-MRU lists over one link family of a slab owned by the caller, which reports
/// insertions, hits and removals by slot and asks for victims.
pub(crate) struct PmruLists {
    protected: DList,
    plain: DList,
    clock: u64,
    /// Average gap (in accesses) of hits on plain keys; `None` before the first.
    gap: Option<f64>,
    /// Longest recent gap of a plain hit (decaying maximum).
    max_gap: f64,
    /// Logical time of the last hit.
    last_hit: u64,
    /// Plain hits since the statistics were reset.
    plain_hits: u64,
    meta: Vec<Meta>,
}

impl PmruLists {
    pub fn new() -> Self {
        Self {
            protected: DList::new(),
            plain: DList::new(),
            clock: 0,
            gap: None,
            max_gap: 0.0,
            last_hit: 0,
            plain_hits: 0,
            meta: Vec::new(),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.protected.bytes + self.plain.bytes
    }

    fn list(&mut self, protected: bool) -> &mut DList {
        if protected {
            &mut self.protected
        } else {
            &mut self.plain
        }
    }

    /// Forgets the gap statistics. Called when the lists start to pick victims after another
    /// rule did: the gaps seen under that rule (which evicts keys before their long gaps end)
    /// would make live keys look abandoned.
    pub fn reset_stats(&mut self) {
        self.gap = None;
        self.max_gap = 0.0;
        self.plain_hits = 0;
    }

    /// Slot `i` was admitted with `size` bytes.
    pub fn insert<const F: usize>(
        &mut self,
        links: &mut [[Link; F]],
        fam: usize,
        i: u32,
        size: u64,
    ) {
        self.clock += 1;
        if self.meta.len() <= i as usize {
            self.meta.resize(i as usize + 1, Meta::default());
        }
        self.meta[i as usize] = Meta {
            last: self.clock,
            size,
            protected: false,
        };
        self.plain.push_front(links, fam, i, size);
    }

    /// Slot `i` was read; `reach` is the number of cached keys.
    pub fn hit<const F: usize>(&mut self, links: &mut [[Link; F]], fam: usize, i: u32, reach: u64) {
        self.clock += 1;
        let m = self.meta[i as usize];
        let gap = self.clock - m.last;
        let protect = gap <= reach;
        if !protect {
            let g = gap as f64;
            self.gap = Some(self.gap.map_or(g, |a| a + (g - a) * GAP_EWMA));
            self.max_gap = g.max(self.max_gap * (1.0 - MAX_GAP_DECAY));
            self.plain_hits += 1;
        }
        self.last_hit = self.clock;
        self.list(m.protected).unlink(links, fam, i, m.size);
        self.list(protect).push_front(links, fam, i, m.size);
        self.meta[i as usize].last = self.clock;
        self.meta[i as usize].protected = protect;
    }

    /// Slot `i` left the cache.
    pub fn remove<const F: usize>(&mut self, links: &mut [[Link; F]], fam: usize, i: u32) {
        let m = self.meta[i as usize];
        self.list(m.protected).unlink(links, fam, i, m.size);
    }

    /// The next victim (still linked; the caller removes it); `NIL` when empty.
    pub fn victim<const F: usize>(
        &mut self,
        links: &mut [[Link; F]],
        fam: usize,
        reach: u64,
    ) -> u32 {
        loop {
            let t = self.protected.tail;
            if t == NIL || self.clock - self.meta[t as usize].last <= reach {
                break;
            }
            let size = self.meta[t as usize].size;
            self.protected.unlink(links, fam, t, size);
            self.meta[t as usize].protected = false;
            self.plain.push_back(links, fam, t, size);
        }
        let old = self.plain.tail;
        if old != NIL {
            if let Some(gap) = self.gap.filter(|_| self.plain_hits >= reach) {
                let last = self.meta[old as usize].last;
                let idle = (self.clock - self.last_hit) as f64;
                let abandoned =
                    idle > (ABANDONED_GAPS * gap).max(reach as f64) && last <= self.last_hit;
                let stale = (self.clock - last) as f64 > STALE_MAX_GAPS * self.max_gap;
                if abandoned || stale {
                    return old;
                }
            }
            return self.plain.head;
        }
        self.protected.tail
    }
}

/// Protected MRU eviction (see the module docs).
pub struct Pmru<K> {
    map: HashMap<K, u32>,
    slab: Slab<K, 1>,
    lists: PmruLists,
}

impl<K: Clone + Eq + Hash> Default for Pmru<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> Pmru<K> {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            slab: Slab::new(),
            lists: PmruLists::new(),
        }
    }

    fn remove_slot(&mut self, i: u32) -> K {
        self.lists.remove(&mut self.slab.links, 0, i);
        let key = self.slab.remove(i);
        self.map.remove(&key);
        key
    }
}

impl<K: Clone + Eq + Hash + Send> EvictionPolicy<K> for Pmru<K> {
    fn name(&self) -> &'static str {
        "pmru"
    }

    fn on_hit(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            let reach = self.map.len() as u64;
            self.lists.hit(&mut self.slab.links, 0, i, reach);
        }
    }

    fn on_insert(&mut self, key: K, size: u64) {
        if let Some(&i) = self.map.get(&key) {
            self.remove_slot(i);
        }
        let i = self.slab.insert(key.clone());
        self.lists.insert(&mut self.slab.links, 0, i, size);
        self.map.insert(key, i);
    }

    fn on_remove(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            self.remove_slot(i);
        }
    }

    fn evict(&mut self) -> Option<K> {
        let reach = self.map.len() as u64;
        let i = self.lists.victim(&mut self.slab.links, 0, reach);
        (i != NIL).then(|| self.remove_slot(i))
    }

    fn tracked_bytes(&self) -> u64 {
        self.lists.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_most_recent_plain_key_and_protects_quick_rereads() {
        let mut p = Pmru::new();
        for k in 0..4u32 {
            p.on_insert(k, 1); // clock 1..4
        }
        p.on_hit(&3); // gap 1 <= 4 keys: protected
        p.on_hit(&0); // gap 5 > 4: plain, most recent
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), Some(1));
        assert_eq!(p.evict(), Some(3)); // plain empty: the protected key goes last
        assert_eq!(p.evict(), None);
    }

    #[test]
    fn protection_expires() {
        let mut p = Pmru::new();
        p.on_insert(0u32, 1);
        p.on_insert(1, 1);
        p.on_hit(&0); // gap 2 <= 2: protected
        for _ in 0..3 {
            p.on_hit(&1); // gaps 2, 1, 1: protected too
        }
        // 0 was last read 3 accesses ago, more than the 2 keys cached: demoted to the old end
        // of the plain list, which is then the only plain key.
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), Some(1));
    }

    /// A loop of 20 keys with room for 10 keeps a stable half; when the workload moves to a new
    /// loop, the old keys age out instead of pinning the cache forever.
    #[test]
    fn stable_set_on_a_loop_and_age_out_when_the_loop_changes() {
        let mut c = crate::policy::KeyCache::new(Box::new(Pmru::<u32>::new()), 10);
        let mut hits = 0;
        for round in 0..10 {
            for k in 0..20u32 {
                if c.access(&k, 1) && round >= 2 {
                    hits += 1;
                }
            }
        }
        assert!(hits >= 8 * 9, "old loop hits {hits}");
        let mut hits = 0;
        for round in 0..20 {
            for k in 100..120u32 {
                if c.access(&k, 1) && round >= 10 {
                    hits += 1;
                }
            }
        }
        assert!(hits >= 10 * 9, "new loop hits {hits}");
    }
}
