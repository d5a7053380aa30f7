//! Online logistic regression trained with FTRL-Proximal over hashed binary features.
//!
//! Every feature is a slot index into a fixed table (feature hashing), its value is 1, so a
//! prediction is the sigmoid of a sum of a few weights. FTRL keeps, per slot, the accumulated
//! adjusted gradient `z` and squared gradient `n`; the weight is derived lazily from them, which
//! gives per-coordinate learning rates and L1 sparsity (slots never seen stay exactly zero).

/// Learning-rate and regularisation settings of FTRL-Proximal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FtrlParams {
    /// Learning-rate scale.
    pub alpha: f32,
    /// Learning-rate smoothing (keeps early steps small).
    pub beta: f32,
    /// L1 strength (drives rarely useful weights to exactly zero).
    pub l1: f32,
    /// L2 strength.
    pub l2: f32,
}

impl Default for FtrlParams {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            beta: 1.0,
            l1: 0.5,
            l2: 1.0,
        }
    }
}

/// The FTRL state: `(z, n)` per hashed slot.
#[derive(Clone, Debug, PartialEq)]
pub struct Ftrl {
    params: FtrlParams,
    /// Interleaved `z, n` per slot (one cache line holds both).
    zn: Vec<[f32; 2]>,
    /// The weight each slot's `(z, n)` gives, kept current so a prediction is plain loads.
    w: Vec<f32>,
    mask: u32,
}

/// The FTRL-Proximal weight of a slot from its accumulators.
#[inline]
fn weight_of(p: &FtrlParams, z: f32, n: f32) -> f32 {
    if z.abs() <= p.l1 {
        return 0.0;
    }
    -(z - z.signum() * p.l1) / ((p.beta + n.sqrt()) / p.alpha + p.l2)
}

/// Logistic function, clamped so a saturated sum never returns exactly 0 or 1.
pub fn sigmoid(x: f32) -> f32 {
    let x = x.clamp(-35.0, 35.0);
    1.0 / (1.0 + (-x).exp())
}

impl Ftrl {
    /// A zero model with `2^bits` slots (`bits` is clamped to 4..=20 so a table fits the model file limit).
    pub fn new(bits: u32, params: FtrlParams) -> Self {
        let bits = bits.clamp(4, 20);
        let size = 1usize << bits;
        Self {
            params,
            zn: vec![[0.0, 0.0]; size],
            w: vec![0.0; size],
            mask: (size - 1) as u32,
        }
    }

    /// Rebuilds a model from saved state (`zn.len()` must be a power of two; checked by the caller).
    pub(crate) fn from_parts(params: FtrlParams, zn: Vec<[f32; 2]>) -> Self {
        let mask = (zn.len().max(1) - 1) as u32;
        let w = zn.iter().map(|&[z, n]| weight_of(&params, z, n)).collect();
        Self {
            params,
            zn,
            w,
            mask,
        }
    }

    /// Settings.
    pub fn params(&self) -> FtrlParams {
        self.params
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.zn.len()
    }

    /// The raw `(z, n)` table (for serialisation).
    pub(crate) fn table(&self) -> &[[f32; 2]] {
        &self.zn
    }

    /// Slot index for a 64-bit feature hash.
    #[inline]
    pub fn slot(&self, hash: u64) -> u32 {
        (hash ^ (hash >> 29)) as u32 & self.mask
    }

    #[inline]
    fn weight(&self, slot: u32) -> f32 {
        self.w[(slot & self.mask) as usize]
    }

    /// Probability that the example with these active slots is positive.
    #[inline]
    pub fn predict(&self, slots: &[u32]) -> f32 {
        let s: f32 = slots.iter().map(|&i| self.weight(i)).sum();
        sigmoid(s)
    }

    /// One FTRL step on an example with `label`, the gradient scaled by `weight` (> 0).
    pub fn update(&mut self, slots: &[u32], label: bool, weight: f32) {
        let p = self.predict(slots);
        let g = (p - if label { 1.0 } else { 0.0 }) * weight;
        let alpha = self.params.alpha;
        for &i in slots {
            let w = self.weight(i);
            let cell = &mut self.zn[(i & self.mask) as usize];
            let n = cell[1];
            let sigma = ((n + g * g).sqrt() - n.sqrt()) / alpha;
            cell[0] += g - sigma * w;
            cell[1] = n + g * g;
            let (z, n) = (cell[0], cell[1]);
            self.w[(i & self.mask) as usize] = weight_of(&self.params, z, n);
        }
    }

    /// Count of slots with a non-zero weight (model sparsity, for reports).
    pub fn nonzero(&self) -> usize {
        (0..self.zn.len() as u32)
            .filter(|&i| self.weight(i) != 0.0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn learns_a_separable_toy_problem() {
        // Label = feature A present (slot 3 vs slot 5), with a shared bias slot and noise slots.
        let mut m = Ftrl::new(10, FtrlParams::default());
        let mut rng = Rng::new(1);
        for _ in 0..4000 {
            let pos = rng.below(2) == 1;
            let noise = 100 + rng.below(50) as u32;
            let ex = [0, if pos { 3 } else { 5 }, noise];
            m.update(&ex, pos, 1.0);
        }
        let mut correct = 0;
        for k in 0..200 {
            let pos = k % 2 == 0;
            let ex = [0, if pos { 3 } else { 5 }, 100 + (k % 50) as u32];
            let p = m.predict(&ex);
            if (p > 0.5) == pos {
                correct += 1;
            }
        }
        assert_eq!(correct, 200);
        assert!(m.predict(&[0, 3]) > 0.9, "{}", m.predict(&[0, 3]));
        assert!(m.predict(&[0, 5]) < 0.1, "{}", m.predict(&[0, 5]));
    }

    #[test]
    fn l1_keeps_unhelpful_slots_at_zero() {
        let mut m = Ftrl::new(
            8,
            FtrlParams {
                l1: 5.0,
                ..FtrlParams::default()
            },
        );
        let mut rng = Rng::new(2);
        for _ in 0..500 {
            // slot 7 is pure noise relative to the label
            let pos = rng.below(2) == 1;
            m.update(&[7], pos, 1.0);
        }
        assert_eq!(m.weight(7), 0.0);
        assert!(m.nonzero() <= 1);
    }
}
