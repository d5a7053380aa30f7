//! Process-wide allocator settings that keep the daemon's RSS within its cache budgets.

/// Allocations at least this large get their own mapping, returned to the system when freed.
/// Cache blocks (64 KiB to 64 MiB; 110 KiB small files) are the allocations that matter.
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fixes glibc's mmap threshold instead of letting it adapt.
///
/// glibc raises the threshold to the size of every mapped chunk freed (up to 32 MiB). After
/// the first evicted 1 MiB block, every block is carved from the heap arenas, where the holes
/// left by evicted blocks of other sizes are not given back: measured on the bench's small-file
/// reads (1 GiB RAM cache, after a 1 GiB sequential read), peak RSS was 2,039 MiB with the
/// adaptive threshold and 1,116 MiB with it fixed at 128 KiB. Setting it explicitly turns the
/// adaptation off. A `MALLOC_MMAP_THRESHOLD_` set in the environment wins (glibc reads it).
/// Must run before other threads start.
pub fn fix_malloc_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only changes allocator parameters; called before any other thread.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}
