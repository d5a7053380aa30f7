//! Aggressiveness per workload class: a discounted UCB bandit over a few (threshold, depth cap)
//! arms, and a fallback that hands a class to the best heuristic while the model loses to it.
//!
//! Both judge by the same window score, computed from demand reads at access time, in cache
//! blocks: `(covered − λ·(issued − covered)) / demand`, where `demand` counts blocks reads
//! touched, `covered` those that lay in ranges issued earlier (and not reported evicted), and
//! `issued` the blocks issued in the window.

/// One aggressiveness setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arm {
    /// Emit candidates whose probability is at least this.
    pub threshold: f32,
    /// Emit only candidates with a depth bucket below this.
    pub max_depth: u8,
}

/// The arms every class chooses among, from cautious to aggressive. The first emits nothing:
/// it wins where every prefetch loses (random reads of hot blocks).
pub const ARMS: [Arm; 5] = [
    Arm {
        threshold: 2.0,
        max_depth: 0,
    },
    Arm {
        threshold: 0.7,
        max_depth: 4,
    },
    Arm {
        threshold: 0.5,
        max_depth: 6,
    },
    Arm {
        threshold: 0.35,
        max_depth: 8,
    },
    Arm {
        threshold: 0.2,
        max_depth: 8,
    },
];

/// The best window score there is (everything covered, nothing wasted).
pub const MAX_SCORE: f64 = 1.0;

/// Optimistic value of an arm never played in a class: an upper bound of its window score,
/// not infinity (scores are bounded). [`ARMS`] run from cautious to aggressive, each emitting a
/// subset of what the next emits, so an arm covers at most what a more aggressive arm covered
/// and its score is at most that coverage; with no such arm played, the bound is
/// [`MAX_SCORE`]. The arm that emits nothing covers and wastes nothing: its score is known
/// (0). So an arm already at the best score is kept, a cautious arm is tried only when the
/// aggressive one wastes, and emitting nothing only once every emitting arm loses bytes (a
/// window of nothing costs a sequential reader a miss per read).
pub fn unplayed_value(arm: usize, plays: &[f64; ARMS.len()], cover: &[f64; ARMS.len()]) -> f64 {
    if ARMS[arm].threshold > 1.0 {
        return 0.0;
    }
    (arm + 1..ARMS.len())
        .filter(|&j| plays[j] >= 0.05)
        .map(|j| cover[j] / plays[j])
        .fold(MAX_SCORE, f64::min)
}

/// Number of workload classes (format class × access shape).
pub const CLASSES: usize = 10 * 5;

/// A workload class index from a format code and a shape code.
pub fn class_of(format: u8, shape: u8) -> usize {
    (format as usize % 10) * 5 + (shape as usize % 5)
}

/// Bytes one window of a class accumulated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Demand bytes read.
    pub demand: f64,
    /// Demand bytes that were in issued ranges.
    pub covered: f64,
    /// Bytes issued.
    pub issued: f64,
}

impl WindowStats {
    /// The window score (higher is better); 0 with no demand.
    pub fn score(&self, lambda: f64) -> f64 {
        if self.demand <= 0.0 {
            return 0.0;
        }
        let waste = (self.issued - self.covered).max(0.0);
        ((self.covered - lambda * waste) / self.demand).clamp(-4.0, MAX_SCORE)
    }
}

#[derive(Clone, Debug)]
struct ClassState {
    arm: usize,
    accesses: u32,
    model: WindowStats,
    heur: WindowStats,
    reward: [f64; ARMS.len()],
    plays: [f64; ARMS.len()],
    /// Discounted sum of the model's covered / demand per arm (an arm's coverage bounds the
    /// score of every less aggressive arm).
    cover: [f64; ARMS.len()],
    model_ema: Option<f64>,
    heur_ema: Option<f64>,
    fallback: bool,
    windows: u64,
}

impl Default for ClassState {
    fn default() -> Self {
        Self {
            arm: 2,
            accesses: 0,
            model: WindowStats::default(),
            heur: WindowStats::default(),
            reward: [0.0; ARMS.len()],
            plays: [0.0; ARMS.len()],
            cover: [0.0; ARMS.len()],
            model_ema: None,
            heur_ema: None,
            fallback: false,
            windows: 0,
        }
    }
}

/// Settings of the bandit and the fallback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControlConfig {
    /// Accesses of a class per decision window.
    pub window: u32,
    /// Weight of a wasted byte against a used one.
    pub lambda: f64,
    /// Exploration strength of UCB.
    pub explore: f64,
    /// Per-window discount of old arm statistics (non-stationary workloads).
    pub discount: f64,
    /// How far (in score) the model may trail the heuristic before the class falls back.
    pub margin: f64,
    /// Windows a class is observed before it may fall back.
    pub min_windows: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            window: 128,
            lambda: 0.5,
            explore: 0.3,
            discount: 0.9,
            margin: 0.05,
            min_windows: 2,
        }
    }
}

/// Bandit and fallback state of every class.
#[derive(Clone, Debug)]
pub struct Control {
    cfg: ControlConfig,
    classes: Vec<ClassState>,
}

impl Control {
    /// Fresh state (every class starts on a middle arm, model in charge).
    pub fn new(cfg: ControlConfig) -> Self {
        Self {
            cfg,
            classes: vec![ClassState::default(); CLASSES],
        }
    }

    /// The arm in force for a class.
    pub fn arm(&self, class: usize) -> Arm {
        ARMS[self.classes[class % CLASSES].arm]
    }

    /// Index of the arm in force.
    pub fn arm_index(&self, class: usize) -> usize {
        self.classes[class % CLASSES].arm
    }

    /// Whether the class is handed to the heuristic.
    pub fn fallback(&self, class: usize) -> bool {
        self.classes[class % CLASSES].fallback
    }

    /// The model's and the heuristic's smoothed window scores of a class (None before a window closed).
    pub fn scores(&self, class: usize) -> (Option<f64>, Option<f64>) {
        let c = &self.classes[class % CLASSES];
        (c.model_ema, c.heur_ema)
    }

    /// Classes currently in fallback.
    pub fn fallback_count(&self) -> usize {
        self.classes.iter().filter(|c| c.fallback).count()
    }

    /// Adds to the model's (`model`) and the heuristic's (`heur`) window statistics.
    pub fn record(&mut self, class: usize, model: WindowStats, heur: WindowStats) {
        let c = &mut self.classes[class % CLASSES];
        for (a, b) in [(&mut c.model, model), (&mut c.heur, heur)] {
            a.demand += b.demand;
            a.covered += b.covered;
            a.issued += b.issued;
        }
    }

    /// Counts one access of a class; closes its window when due (rewarding the arm, choosing
    /// the next by UCB, and deciding fallback).
    pub fn tick(&mut self, class: usize) {
        let cfg = self.cfg;
        let c = &mut self.classes[class % CLASSES];
        c.accesses += 1;
        if c.accesses < cfg.window {
            return;
        }
        c.accesses = 0;
        if c.model.demand <= 0.0 {
            c.model = WindowStats::default();
            c.heur = WindowStats::default();
            return;
        }
        c.windows += 1;
        let ms = c.model.score(cfg.lambda);
        let cover = (c.model.covered / c.model.demand).clamp(0.0, MAX_SCORE);
        let hs = c.heur.score(cfg.lambda);
        c.model = WindowStats::default();
        c.heur = WindowStats::default();
        for i in 0..ARMS.len() {
            c.reward[i] *= cfg.discount;
            c.plays[i] *= cfg.discount;
            c.cover[i] *= cfg.discount;
        }
        c.reward[c.arm] += ms;
        c.plays[c.arm] += 1.0;
        c.cover[c.arm] += cover;
        let total: f64 = c.plays.iter().sum::<f64>().max(1.0);
        // Only an arm never played is valued by its bound: one played long ago keeps its mean
        // (its plays decay but never reach 0), so an arm that wasted heavily comes back only
        // through the UCB bonus, not every time its plays decay (which re-explored a
        // deep-prefetch arm every ~30 windows on random block traces).
        let value = |i: usize| {
            if c.plays[i] <= 0.0 {
                unplayed_value(i, &c.plays, &c.cover)
            } else {
                c.reward[i] / c.plays[i] + cfg.explore * (total.ln().max(0.0) / c.plays[i]).sqrt()
            }
        };
        // Ties keep the arm in force: an arm already scoring the best possible window is not
        // left for exploration.
        let mut best = (c.arm, value(c.arm));
        for i in 0..ARMS.len() {
            let v = value(i);
            if v > best.1 {
                best = (i, v);
            }
        }
        c.arm = best.0;
        let ema = |old: Option<f64>, x: f64| Some(old.map_or(x, |o| 0.7 * o + 0.3 * x));
        c.model_ema = ema(c.model_ema, ms);
        c.heur_ema = ema(c.heur_ema, hs);
        // Where the model and the heuristic both lose bytes, stop prefetching; re-explore one
        // window in eight.
        if let (Some(m), Some(h)) = (c.model_ema, c.heur_ema) {
            if m < 0.0 && h < 0.0 && c.windows % 8 != 0 {
                c.arm = 0;
            }
        }
        if let (Some(m), Some(h)) = (c.model_ema, c.heur_ema) {
            if !c.fallback && c.windows >= cfg.min_windows && m < h - cfg.margin {
                c.fallback = true;
            } else if c.fallback && m >= h {
                c.fallback = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller whose decision window is one access.
    fn per_access_control() -> Control {
        Control::new(ControlConfig {
            window: 1,
            ..Default::default()
        })
    }

    /// Which arms `class` was given over `n` windows of the same model/heuristic stats.
    fn arms_seen(
        c: &mut Control,
        class: usize,
        model: WindowStats,
        heur: WindowStats,
        n: usize,
    ) -> [bool; ARMS.len()] {
        let mut seen = [false; ARMS.len()];
        for _ in 0..n {
            seen[c.arm_index(class)] = true;
            c.record(class, model, heur);
            c.tick(class);
        }
        seen
    }

    fn w(demand: f64, covered: f64, issued: f64) -> WindowStats {
        WindowStats {
            demand,
            covered,
            issued,
        }
    }

    #[test]
    fn score_rewards_coverage_and_punishes_waste() {
        assert_eq!(w(100.0, 100.0, 100.0).score(0.5), 1.0);
        assert_eq!(w(100.0, 50.0, 150.0).score(0.5), 0.0);
        assert_eq!(w(0.0, 0.0, 10.0).score(0.5), 0.0);
    }

    #[test]
    fn falls_back_when_the_model_loses_and_recovers_when_it_wins() {
        let cfg = ControlConfig {
            window: 4,
            ..Default::default()
        };
        let mut c = Control::new(cfg);
        let class = class_of(1, 1);
        for _ in 0..40 {
            // the model covers nothing, the heuristic covers everything
            c.record(class, w(10.0, 0.0, 10.0), w(10.0, 10.0, 10.0));
            c.tick(class);
        }
        assert!(c.fallback(class));
        assert!(!c.fallback(class_of(2, 1)));
        for _ in 0..40 {
            c.record(class, w(10.0, 10.0, 10.0), w(10.0, 5.0, 10.0));
            c.tick(class);
        }
        assert!(!c.fallback(class));
    }

    #[test]
    fn bandit_settles_on_the_best_arm() {
        let mut c = per_access_control();
        let class = 7;
        let mut plays = [0u32; ARMS.len()];
        for _ in 0..400 {
            let a = c.arm_index(class);
            plays[a] += 1;
            // arm 3 covers most with little waste
            let cov = [0.0, 3.0, 5.0, 9.0, 9.0][a];
            let iss = [0.0, 3.0, 5.0, 9.5, 16.0][a];
            c.record(class, w(10.0, cov, iss), w(10.0, 5.0, 5.0));
            c.tick(class);
        }
        assert!(plays[3] > plays.iter().sum::<u32>() / 2, "{plays:?}");
    }

    #[test]
    fn a_perfect_arm_is_kept_and_emitting_nothing_is_not_explored() {
        let mut c = per_access_control();
        let start = c.arm_index(4);
        for _ in 0..300 {
            // whatever arm: everything covered, nothing wasted
            c.record(4, w(10.0, 10.0, 10.0), w(10.0, 10.0, 10.0));
            c.tick(4);
            assert_eq!(c.arm_index(4), start);
        }
        // a class covering 60% without waste: more aggressive arms are tried; a more
        // cautious one cannot do better (it covers less), nor can the silent one
        let seen = arms_seen(&mut c, 5, w(10.0, 6.0, 6.0), w(10.0, 6.0, 6.0), 50);
        assert!(!seen[0] && !seen[1], "{seen:?}");
        assert!(seen[3] && seen[4], "{seen:?}");
        // covering 60% while wasting: the cautious arm is worth a try
        let seen = arms_seen(&mut c, 6, w(10.0, 6.0, 20.0), w(10.0, 6.0, 6.0), 50);
        assert!(!seen[0] && seen[1], "{seen:?}");
        assert_eq!(
            unplayed_value(0, &[0.0; ARMS.len()], &[0.0; ARMS.len()]),
            0.0
        );
        // arm 1 emits a subset of arm 3: it cannot cover more than arm 3 covered
        let mut plays = [0.0; ARMS.len()];
        let mut cover = [0.0; ARMS.len()];
        plays[3] = 2.0;
        cover[3] = 1.2;
        assert!((unplayed_value(1, &plays, &cover) - 0.6).abs() < 1e-9);
        assert_eq!(unplayed_value(4, &plays, &cover), MAX_SCORE);
    }

    #[test]
    fn an_arm_that_wasted_is_not_re_explored_once_its_plays_decay() {
        let mut c = per_access_control();
        let mut wasteful = 0;
        for _ in 0..400 {
            let arm = c.arm_index(7);
            if arm == 4 {
                wasteful += 1;
                // the most aggressive arm covers everything and wastes 100x the demand
                c.record(7, w(10.0, 10.0, 1000.0), w(10.0, 0.0, 0.0));
            } else {
                c.record(7, w(10.0, 5.0, 5.0), w(10.0, 0.0, 0.0));
            }
            c.tick(7);
        }
        // tried once when unplayed, then only through the (slow-growing) UCB bonus: about
        // every 45 windows (valued as unplayed once its plays decay below 0.05, it came back
        // every 29: 14 times)
        assert!((1..=10).contains(&wasteful), "{wasteful}");
    }

    #[test]
    fn bandit_stops_prefetching_where_every_prefetch_loses() {
        let mut c = per_access_control();
        let mut off = 0;
        for i in 0..400 {
            let a = c.arm_index(3);
            if i >= 200 && a == 0 {
                off += 1;
            }
            // every emitting arm wastes what it issues
            let iss = [0.0, 4.0, 8.0, 16.0, 32.0][a];
            c.record(3, w(10.0, 0.0, iss), w(10.0, 0.0, 0.0));
            c.tick(3);
        }
        assert!(off > 100, "{off}");
        assert!(ARMS[0].threshold > 1.0);
    }
}
