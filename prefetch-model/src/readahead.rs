/// Limits of the sequential readahead window, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadaheadConfig {
    /// Window after the first sequential read.
    pub initial: u64,
    /// Largest window the doubling may reach.
    pub max: u64,
    /// How far behind the expected offset a read may start and still count as sequential
    /// (the kernel issues readahead requests out of order across FUSE worker threads).
    pub backward_slack: u64,
    /// How far ahead of the expected offset a read may start and still count as sequential.
    pub forward_slack: u64,
}

impl Default for ReadaheadConfig {
    fn default() -> Self {
        Self {
            initial: 1 << 20,
            max: 256 << 20,
            backward_slack: 4 << 20,
            forward_slack: 16 << 20,
        }
    }
}

/// What the window decided about one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamObservation {
    /// The read continues the stream; fetch up to `window` bytes past its end.
    Sequential {
        /// Bytes to keep in flight beyond the end of this read.
        window: u64,
    },
    /// The read jumped; readahead was reset and nothing beyond the read should be fetched.
    Random,
}

/// Per-stream state of the doubling readahead window.
///
/// Each sequential read doubles the window (up to `max`); a read outside the slack around the
/// expected offset resets it. The first read of a stream at offset 0 counts as sequential so a
/// whole-file reader gets readahead from its first request.
#[derive(Clone, Debug)]
pub struct ReadaheadWindow {
    cfg: ReadaheadConfig,
    expected: Option<u64>,
    window: u64,
}

impl ReadaheadWindow {
    /// A fresh stream (nothing read yet).
    pub fn new(cfg: ReadaheadConfig) -> Self {
        Self {
            cfg,
            expected: None,
            window: 0,
        }
    }

    /// Records a read of `len` bytes at `offset` and returns how far ahead to fetch.
    pub fn observe(&mut self, offset: u64, len: u64) -> StreamObservation {
        let sequential = match self.expected {
            None => offset == 0,
            Some(exp) => {
                offset.saturating_add(self.cfg.backward_slack) >= exp
                    && offset <= exp.saturating_add(self.cfg.forward_slack)
            }
        };
        let end = offset.saturating_add(len);
        // Out-of-order reads behind the frontier must not pull the frontier back.
        self.expected = Some(match self.expected {
            Some(exp) if sequential => exp.max(end),
            _ => end,
        });
        if sequential {
            self.window = if self.window == 0 {
                self.cfg.initial
            } else {
                (self.window * 2).min(self.cfg.max)
            };
            StreamObservation::Sequential {
                window: self.window,
            }
        } else {
            self.window = 0;
            StreamObservation::Random
        }
    }

    /// Current window in bytes (0 after a random read).
    pub fn window(&self) -> u64 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ReadaheadConfig {
        ReadaheadConfig {
            initial: 100,
            max: 800,
            backward_slack: 30,
            forward_slack: 50,
        }
    }

    #[test]
    fn doubles_while_sequential_up_to_max() {
        let mut w = ReadaheadWindow::new(cfg());
        let mut windows = vec![];
        for i in 0..6 {
            match w.observe(i * 10, 10) {
                StreamObservation::Sequential { window } => windows.push(window),
                StreamObservation::Random => panic!("read {i} should be sequential"),
            }
        }
        assert_eq!(windows, vec![100, 200, 400, 800, 800, 800]);
    }

    #[test]
    fn jump_resets_then_regrows() {
        let mut w = ReadaheadWindow::new(cfg());
        w.observe(0, 10);
        w.observe(10, 10);
        assert_eq!(w.observe(10_000, 10), StreamObservation::Random);
        assert_eq!(w.window(), 0);
        assert_eq!(
            w.observe(10_010, 10),
            StreamObservation::Sequential { window: 100 }
        );
    }

    #[test]
    fn offsets_near_the_top_do_not_overflow() {
        let mut w = ReadaheadWindow::new(cfg());
        w.observe(u64::MAX - 5, 100);
        assert!(matches!(
            w.observe(u64::MAX - 1, 10),
            StreamObservation::Sequential { .. }
        ));
    }

    #[test]
    fn first_read_not_at_zero_is_random() {
        let mut w = ReadaheadWindow::new(cfg());
        assert_eq!(w.observe(5000, 10), StreamObservation::Random);
    }

    #[test]
    fn out_of_order_within_slack_stays_sequential() {
        let mut w = ReadaheadWindow::new(cfg());
        w.observe(0, 10);
        w.observe(20, 10); // skipped ahead within forward slack
        assert!(matches!(
            w.observe(10, 10), // the read the other worker thread had
            StreamObservation::Sequential { .. }
        ));
        assert!(matches!(
            w.observe(30, 10),
            StreamObservation::Sequential { .. }
        ));
    }
}
