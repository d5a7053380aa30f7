//! Transfers in flight from the object store, sharing bandwidth as a processor-sharing queue:
//! each of the `n` active transfers moves at `min(conn_bw, aggregate_bw / n)`.

use super::config::StoreModel;

/// The bodies of GETs being transferred (after their first byte arrived).
#[derive(Clone, Debug)]
pub struct Transfers {
    conn_bw: f64,
    aggregate_bw: f64,
    /// (GET id, bytes remaining), in start order.
    active: Vec<(u64, f64)>,
}

/// Bytes under which a transfer counts as complete (float rounding).
const EPS_BYTES: f64 = 1e-3;

impl Transfers {
    /// No transfers, bandwidths from the store model.
    pub fn new(m: &StoreModel) -> Self {
        Self {
            conn_bw: m.conn_bw.max(1.0),
            aggregate_bw: m.aggregate_bw.max(1.0),
            active: Vec::new(),
        }
    }

    /// Bytes/s each active transfer gets now.
    pub fn rate(&self) -> f64 {
        let n = self.active.len().max(1) as f64;
        self.conn_bw.min(self.aggregate_bw / n)
    }

    /// Starts moving `bytes` for GET `id`.
    pub fn start(&mut self, id: u64, bytes: u64) {
        self.active.push((id, bytes as f64));
    }

    /// Seconds until the next transfer completes at the current rates, if any is active.
    pub fn next_completion(&self) -> Option<f64> {
        let min = self
            .active
            .iter()
            .map(|a| a.1)
            .min_by(|a, b| a.total_cmp(b))?;
        Some(min.max(0.0) / self.rate())
    }

    /// Moves every transfer forward by `dt` seconds.
    pub fn advance(&mut self, dt: f64) {
        if dt <= 0.0 || self.active.is_empty() {
            return;
        }
        let moved = self.rate() * dt;
        for a in &mut self.active {
            a.1 -= moved;
        }
    }

    /// Removes and returns the completed transfers (at least the closest one when `force`,
    /// so float rounding can never stall the clock).
    pub fn take_done(&mut self, force: bool) -> Vec<u64> {
        let mut done: Vec<u64> = self
            .active
            .iter()
            .filter(|a| a.1 <= EPS_BYTES)
            .map(|a| a.0)
            .collect();
        if done.is_empty() && force {
            if let Some(a) = self.active.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
                done.push(a.0);
            }
        }
        self.active.retain(|a| !done.contains(&a.0));
        done
    }

    /// Transfers in progress.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_under_aggregate_cap() {
        let m = StoreModel {
            conn_bw: 100.0,
            aggregate_bw: 150.0,
            ..StoreModel::default()
        };
        let mut t = Transfers::new(&m);
        t.start(1, 100);
        assert_eq!(t.rate(), 100.0);
        t.start(2, 300);
        assert_eq!(t.rate(), 75.0);
        let dt = t.next_completion().unwrap();
        assert!((dt - 100.0 / 75.0).abs() < 1e-9);
        t.advance(dt);
        assert_eq!(t.take_done(true), vec![1]);
        // the survivor speeds up to its connection's bandwidth
        assert_eq!(t.rate(), 100.0);
        let dt2 = t.next_completion().unwrap();
        assert!((dt2 - 2.0).abs() < 1e-6);
        t.advance(dt2);
        assert_eq!(t.take_done(true), vec![2]);
        assert_eq!(t.len(), 0);
        assert!(t.next_completion().is_none());
    }
}
