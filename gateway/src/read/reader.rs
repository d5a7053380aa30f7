use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cairn_prefetch_model::{ReadaheadConfig, ReadaheadWindow, StreamObservation};

use super::fetcher::{BlockFetcher, BlockFuture, ObjectVersion};
use crate::error::FsResult;

/// The reader behind one open file handle: pins the object version seen at open and keeps the
/// handle's readahead state.
pub struct FileReader {
    fetcher: Arc<BlockFetcher>,
    obj: ObjectVersion,
    state: Mutex<ReaderState>,
}

struct ReaderState {
    window: ReadaheadWindow,
    /// Blocks requested for this handle and not yet passed, by index.
    pending: BTreeMap<u64, BlockFuture>,
}

impl FileReader {
    /// A reader of `obj` through `fetcher`.
    pub fn new(fetcher: Arc<BlockFetcher>, obj: ObjectVersion, readahead: ReadaheadConfig) -> Self {
        Self {
            fetcher,
            obj,
            state: Mutex::new(ReaderState {
                window: ReadaheadWindow::new(readahead),
                pending: BTreeMap::new(),
            }),
        }
    }

    /// The object version this handle reads.
    pub fn object(&self) -> &ObjectVersion {
        &self.obj
    }

    /// Reads up to `len` bytes at `offset` (short at end of file, empty past it).
    pub async fn read(&self, offset: u64, len: u64) -> FsResult<Bytes> {
        let size = self.obj.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len).min(size);
        let bs = self.fetcher.block_size();
        let first = offset / bs;
        let last = (end - 1) / bs;
        let last_block = (size - 1) / bs;
        let needed: Vec<BlockFuture> = {
            let mut st = self.state.lock().unwrap();
            let upto = match st.window.observe(offset, end - offset) {
                StreamObservation::Sequential { window } => {
                    ((end + window).saturating_sub(1) / bs).min(last_block)
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
                for (k, f) in (i..=j).zip(self.fetcher.blocks(&self.obj, i, j)) {
                    st.pending.insert(k, f);
                }
                i = j + 1;
            }
            (first..=last).map(|i| st.pending[&i].clone()).collect()
        };
        let blocks = match futures::future::try_join_all(needed).await {
            Ok(b) => b,
            Err(e) => {
                // Do not pin a failed fetch: the next read of these blocks tries again.
                let mut st = self.state.lock().unwrap();
                for i in first..=last {
                    st.pending.remove(&i);
                }
                return Err(e);
            }
        };
        let start_in_first = (offset - first * bs) as usize;
        let total = (end - offset) as usize;
        if blocks.len() == 1 {
            return Ok(blocks[0].slice(start_in_first..start_in_first + total));
        }
        let mut out = BytesMut::with_capacity(total);
        for (n, b) in blocks.iter().enumerate() {
            let from = if n == 0 { start_in_first } else { 0 };
            let to = b.len().min(from + (total - out.len()));
            out.extend_from_slice(&b[from..to]);
        }
        Ok(out.freeze())
    }
}
