use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cairn_prefetch_model::{ReadaheadConfig, ReadaheadWindow, StreamObservation};
use futures::FutureExt;

use super::fetcher::{BlockFetcher, BlockFuture, ObjectVersion};
use super::prefetch::{FileIdentity, PrefetchScheduler};
use crate::error::FsResult;

/// The reader behind one open file handle: pins the object version seen at open and keeps the
/// handle's readahead state.
pub struct FileReader {
    fetcher: Arc<BlockFetcher>,
    obj: ObjectVersion,
    state: Mutex<ReaderState>,
    ino: u64,
    identity: FileIdentity,
    /// Where readahead blocks are reported for used/wasted labelling.
    prefetch: Option<Arc<PrefetchScheduler>>,
    /// Pid and program-name hash of the opener (the prefetcher's access stream).
    stream: Mutex<(u32, u32)>,
}

struct ReaderState {
    window: ReadaheadWindow,
    /// Blocks requested for this handle and not yet passed, by index.
    pending: BTreeMap<u64, BlockFuture>,
}

impl FileReader {
    /// A reader of `obj` through `fetcher`.
    pub fn new(fetcher: Arc<BlockFetcher>, obj: ObjectVersion, readahead: ReadaheadConfig) -> Self {
        let obj_key_path = obj.key.to_string();
        Self {
            fetcher,
            obj,
            state: Mutex::new(ReaderState {
                window: ReadaheadWindow::new(readahead),
                pending: BTreeMap::new(),
            }),
            ino: 0,
            identity: FileIdentity::of_path(&obj_key_path),
            prefetch: None,
            stream: Mutex::new((0, 0)),
        }
    }

    /// Sets the inode and path identity the prefetcher and the trace know the file by.
    pub fn with_identity(mut self, ino: u64, identity: FileIdentity) -> Self {
        self.ino = ino;
        self.identity = identity;
        self
    }

    /// Reports this handle's readahead blocks to `scheduler` (which labels them used or wasted).
    pub fn with_prefetch(mut self, scheduler: Option<Arc<PrefetchScheduler>>) -> Self {
        self.prefetch = scheduler;
        self
    }

    /// The inode this reader reads.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The path identity of the file.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// Records the opener's pid and program hash.
    pub fn set_stream(&self, pid: u32, program_hash: u32) {
        *self.stream.lock().unwrap() = (pid, program_hash);
    }

    /// The opener's pid and program hash.
    pub fn stream(&self) -> (u32, u32) {
        *self.stream.lock().unwrap()
    }

    /// The object version this handle reads.
    pub fn object(&self) -> &ObjectVersion {
        &self.obj
    }

    /// Reads up to `len` bytes at `offset` (short at end of file, empty past it).
    pub async fn read(&self, offset: u64, len: u64) -> FsResult<Bytes> {
        match self.plan(offset, len) {
            None => Ok(Bytes::new()),
            Some(p) => self.finish(p).await,
        }
    }

    /// Plans a read without waiting: updates the readahead window, starts the fetches of the
    /// missing blocks (and of the readahead), and returns the blocks the read needs. `None` for
    /// an empty read (past the end, or zero bytes). Must run inside a tokio runtime context
    /// (fetches are spawned); never blocks on I/O, so the FUSE thread can call it.
    pub fn plan(&self, offset: u64, len: u64) -> Option<PlannedRead> {
        let size = self.obj.size;
        if offset >= size || len == 0 {
            return None;
        }
        let end = (offset + len).min(size);
        let bs = self.fetcher.block_size();
        let first = offset / bs;
        let last = (end - 1) / bs;
        let last_block = (size - 1) / bs;
        let mut readahead_started = Vec::new();
        let blocks: Vec<BlockFuture> = {
            let mut st = self.state.lock().unwrap();
            let upto = match st.window.observe(offset, end - offset) {
                StreamObservation::Sequential { window } => {
                    // Inside a unit of a known layout (a Parquet column chunk, a tensor),
                    // readahead stops at the unit's end: what follows belongs to another
                    // column, which the policy predicts (or not) on its own.
                    let stop = self
                        .prefetch
                        .as_ref()
                        .and_then(|p| p.extent_end(self.ino, offset))
                        .map_or(u64::MAX, |e| e.max(end));
                    ((end + window).min(stop).saturating_sub(1) / bs).min(last_block)
                }
                StreamObservation::Random => {
                    st.pending.clear();
                    last
                }
            };
            // Blocks behind this read are done with (for this handle).
            st.pending = st.pending.split_off(&first);
            let per_request = self.fetcher.blocks_per_request();
            let mut i = first;
            while i <= upto {
                if st.pending.contains_key(&i) {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < upto && !st.pending.contains_key(&(j + 1)) {
                    j += 1;
                }
                // Readahead-only gaps wait until a whole request's worth is missing (or the
                // file ends there): a window sliding one block per read must not turn into
                // one small GET per block.
                let needed_now = i <= last;
                let full = j + 1 - i >= per_request;
                if !(needed_now || full || j == last_block) {
                    break;
                }
                let j = if needed_now {
                    j
                } else {
                    j.min(i + per_request - 1)
                };
                let futures = self.fetcher.blocks_with_readahead(
                    &self.obj,
                    i,
                    j,
                    last,
                    &mut readahead_started,
                );
                for (k, f) in (i..=j).zip(futures) {
                    st.pending.insert(k, f);
                }
                i = j + 1;
            }
            (first..=last).map(|i| st.pending[&i].clone()).collect()
        };
        if let Some(p) = &self.prefetch {
            if !readahead_started.is_empty() {
                p.note_readahead(self.ino, &self.obj, &readahead_started);
            }
        }
        Some(PlannedRead {
            blocks,
            first,
            last,
            start_in_first: (offset - first * bs) as usize,
            total: (end - offset) as usize,
        })
    }

    /// The bytes of a planned read if every block it needs is already in memory (warm data):
    /// answered without waiting or a task hop. `None` when something is still on its way (or
    /// failed): then [`Self::finish`] it.
    pub fn finish_now(&self, p: &PlannedRead) -> Option<Bytes> {
        let mut blocks = Vec::with_capacity(p.blocks.len());
        for f in &p.blocks {
            match f.clone().now_or_never() {
                Some(Ok(b)) => blocks.push(b),
                _ => return None,
            }
        }
        Some(p.assemble(&blocks))
    }

    /// Waits for the blocks of a planned read and returns its bytes.
    pub async fn finish(&self, p: PlannedRead) -> FsResult<Bytes> {
        match futures::future::try_join_all(p.blocks.iter().cloned()).await {
            Ok(blocks) => Ok(p.assemble(&blocks)),
            Err(e) => {
                // Do not pin a failed fetch: the next read of these blocks tries again.
                let mut st = self.state.lock().unwrap();
                for i in p.first..=p.last {
                    st.pending.remove(&i);
                }
                Err(e)
            }
        }
    }
}

/// A read whose blocks are known (cached, or being fetched), from [`FileReader::plan`].
pub struct PlannedRead {
    blocks: Vec<BlockFuture>,
    first: u64,
    last: u64,
    start_in_first: usize,
    total: usize,
}

impl PlannedRead {
    /// The read's bytes out of its blocks (a slice of the block, no copy, when it lies in one).
    fn assemble(&self, blocks: &[Bytes]) -> Bytes {
        let (start, total) = (self.start_in_first, self.total);
        if blocks.len() == 1 {
            return blocks[0].slice(start..start + total);
        }
        let mut out = BytesMut::with_capacity(total);
        for (n, b) in blocks.iter().enumerate() {
            let from = if n == 0 { start } else { 0 };
            let to = b.len().min(from + (total - out.len()));
            out.extend_from_slice(&b[from..to]);
        }
        out.freeze()
    }
}
