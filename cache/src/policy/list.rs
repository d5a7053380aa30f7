//! Slab storage with intrusive doubly linked lists threaded through it by slot index.
//!
//! Every policy keeps its entries in a [`Slab`] and its queues as [`DList`]s over the slab's link
//! arrays, so moving an entry between queues, or unlinking it from the middle of one, is O(1)
//! and allocates nothing. A slab carries `F` link families: an entry can be on one list of each
//! family at a time (S3-FIFO uses family 0 for its small/main queues and family 1 for a recency
//! list that the adaptive policy needs).

/// "No slot": the end of a list, or an empty list's head and tail.
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub prev: u32,
    pub next: u32,
}

impl Link {
    const NONE: Link = Link {
        prev: NIL,
        next: NIL,
    };
}

/// Entries of type `T` in reusable slots, each with `F` pairs of list links.
pub(crate) struct Slab<T, const F: usize> {
    slots: Vec<Option<T>>,
    pub links: Vec<[Link; F]>,
    free: Vec<u32>,
}

impl<T, const F: usize> Slab<T, F> {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `v` in a free slot (or a new one) and returns its index; its links are unset.
    pub fn insert(&mut self, v: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(v);
                self.links[i as usize] = [Link::NONE; F];
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("more than 2^32 cache entries");
                assert!(i != NIL, "more than 2^32 - 1 cache entries");
                self.slots.push(Some(v));
                self.links.push([Link::NONE; F]);
                i
            }
        }
    }

    /// Frees slot `i` and returns its entry. The caller must have unlinked it from every list.
    pub fn remove(&mut self, i: u32) -> T {
        let v = self.slots[i as usize].take().expect("slab slot is empty");
        self.free.push(i);
        v
    }

    pub fn get(&self, i: u32) -> &T {
        self.slots[i as usize].as_ref().expect("slab slot is empty")
    }

    pub fn get_mut(&mut self, i: u32) -> &mut T {
        self.slots[i as usize].as_mut().expect("slab slot is empty")
    }
}

/// A doubly linked list over one link family of a slab. `head` is the newest end (insertions),
/// `tail` the oldest. It also keeps its length and the bytes of its entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DList {
    pub head: u32,
    pub tail: u32,
    pub len: usize,
    pub bytes: u64,
}

impl DList {
    pub const fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Links slot `i` (of `size` bytes) at the head.
    pub fn push_front<const F: usize>(
        &mut self,
        links: &mut [[Link; F]],
        fam: usize,
        i: u32,
        size: u64,
    ) {
        debug_assert_eq!(links[i as usize][fam], Link::NONE, "slot already linked");
        links[i as usize][fam] = Link {
            prev: NIL,
            next: self.head,
        };
        if self.head != NIL {
            links[self.head as usize][fam].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
        self.len += 1;
        self.bytes += size;
    }

    /// Links slot `i` (of `size` bytes) at the tail.
    pub fn push_back<const F: usize>(
        &mut self,
        links: &mut [[Link; F]],
        fam: usize,
        i: u32,
        size: u64,
    ) {
        debug_assert_eq!(links[i as usize][fam], Link::NONE, "slot already linked");
        links[i as usize][fam] = Link {
            prev: self.tail,
            next: NIL,
        };
        if self.tail != NIL {
            links[self.tail as usize][fam].next = i;
        } else {
            self.head = i;
        }
        self.tail = i;
        self.len += 1;
        self.bytes += size;
    }

    /// Unlinks slot `i` (of `size` bytes), wherever it is in this list.
    pub fn unlink<const F: usize>(
        &mut self,
        links: &mut [[Link; F]],
        fam: usize,
        i: u32,
        size: u64,
    ) {
        let Link { prev, next } = links[i as usize][fam];
        if prev != NIL {
            links[prev as usize][fam].next = next;
        } else {
            debug_assert_eq!(self.head, i);
            self.head = next;
        }
        if next != NIL {
            links[next as usize][fam].prev = prev;
        } else {
            debug_assert_eq!(self.tail, i);
            self.tail = prev;
        }
        links[i as usize][fam] = Link::NONE;
        self.len -= 1;
        self.bytes -= size;
    }

    /// Moves slot `i`, already on this list, to the head.
    pub fn move_to_front<const F: usize>(
        &mut self,
        links: &mut [[Link; F]],
        fam: usize,
        i: u32,
        size: u64,
    ) {
        if self.head != i {
            self.unlink(links, fam, i, size);
            self.push_front(links, fam, i, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(l: &DList, links: &[[Link; 1]]) -> Vec<u32> {
        let mut v = Vec::new();
        let mut i = l.head;
        while i != NIL {
            v.push(i);
            i = links[i as usize][0].next;
        }
        v
    }

    #[test]
    fn push_unlink_move() {
        let mut s: Slab<u8, 1> = Slab::new();
        let mut l = DList::new();
        let a = s.insert(1);
        let b = s.insert(2);
        let c = s.insert(3);
        for i in [a, b, c] {
            l.push_front(&mut s.links, 0, i, 10);
        }
        assert_eq!(order(&l, &s.links), vec![c, b, a]);
        l.move_to_front(&mut s.links, 0, a, 10);
        assert_eq!(order(&l, &s.links), vec![a, c, b]);
        l.unlink(&mut s.links, 0, c, 10);
        assert_eq!(order(&l, &s.links), vec![a, b]);
        assert_eq!((l.len, l.bytes, l.tail), (2, 20, b));
        l.push_back(&mut s.links, 0, c, 10);
        assert_eq!(order(&l, &s.links), vec![a, b, c]);
        l.unlink(&mut s.links, 0, c, 10);
        assert_eq!(s.remove(c), 3);
        let d = s.insert(4);
        assert_eq!(d, c, "freed slots are reused");
    }
}
