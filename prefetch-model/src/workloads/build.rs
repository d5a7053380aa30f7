//! A software build: compilers reading sources and headers in a mostly repeating order.

use crate::rng::Rng;
use crate::{FileRef, Workload};

use super::builder::{jitter, ms, scale_count, us, Builder, KIB};

/// Parameters of [`build_chain`].
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Source modules (directories, default 20).
    pub modules: usize,
    /// `.c` files per module (default 20).
    pub sources_per_module: usize,
    /// `.h` files per module (default 10).
    pub headers_per_module: usize,
    /// Project-wide headers in `include/` (default 10).
    pub common_headers: usize,
    /// Full builds (default 4).
    pub builds: usize,
    /// Parallel compiler jobs (`make -j`, default 4).
    pub jobs: usize,
    /// Probability per translation unit and build of a changed include list (an edit) and of
    /// swapping places with the next unit in the build order (default 0.05).
    pub noise: f64,
    /// Median source file size (default 12 KiB, log-normal sigma 0.8).
    pub median_source: u64,
    /// Median compile time per translation unit after its files are read (default 150 ms).
    pub compile_ns: u64,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            modules: 20,
            sources_per_module: 20,
            headers_per_module: 10,
            common_headers: 10,
            builds: 4,
            jobs: 4,
            noise: 0.05,
            median_source: 12 * KIB,
            compile_ns: ms(150.0),
        }
    }
}

impl BuildParams {
    /// The same workload with `scale` times the files (modules scaled, at least 2).
    pub fn scaled(mut self, scale: f64) -> Self {
        self.modules = scale_count(self.modules, scale, 2);
        self
    }
}

/// A translation unit: its source and the headers it includes, in include order.
struct Unit {
    source: FileRef,
    includes: Vec<FileRef>,
}

fn small_size(rng: &mut Rng, median: u64) -> u64 {
    (rng.lognormal(median as f64, 0.8) as u64).clamp(256, 512 * KIB)
}

/// Repeated builds of a C project (`make -j4` from a clean tree, CI re-running the same build):
/// `modules` directories of sources and headers plus project-wide headers. Each translation unit
/// runs as a new `cc1` process that reads its `.c` whole, then each included header whole, in a
/// fixed include order (the config header, the module's common headers and its main header,
/// then a few of its own), then compiles. Units run in name order on the first free job slot. Across builds the file
/// sequence repeats: after file A comes file B, which successor prediction can learn; `noise`
/// perturbs include lists and the unit order so it is not exact.
pub fn build_chain(p: &BuildParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("build-chain");
    let common: Vec<FileRef> = (0..p.common_headers.max(1))
        .map(|k| {
            let size = small_size(&mut rng, p.median_source / 2);
            b.add_file(&format!("proj/include/common_{k:02}.h"), size)
        })
        .collect();
    let mut headers: Vec<Vec<FileRef>> = Vec::with_capacity(p.modules);
    let mut sources: Vec<Vec<FileRef>> = Vec::with_capacity(p.modules);
    for m in 0..p.modules {
        let hs = (0..p.headers_per_module.max(1))
            .map(|k| {
                let size = small_size(&mut rng, p.median_source / 2);
                b.add_file(&format!("proj/src/mod{m:02}/mod{m:02}_{k:02}.h"), size)
            })
            .collect();
        headers.push(hs);
        let ss = (0..p.sources_per_module)
            .map(|j| {
                let size = small_size(&mut rng, p.median_source);
                b.add_file(&format!("proj/src/mod{m:02}/file_{j:03}.c"), size)
            })
            .collect();
        sources.push(ss);
    }
    let all_headers: Vec<FileRef> = common
        .iter()
        .chain(headers.iter().flatten())
        .copied()
        .collect();
    let pick = |rng: &mut Rng, v: &[FileRef]| v[rng.below(v.len() as u64) as usize];
    let mut units = Vec::new();
    for m in 0..p.modules {
        // Units of a module share their include prologue: the config header, the module's
        // choice of common headers, its main header; then a few headers of their own.
        let mut prologue = vec![common[0]];
        for _ in 0..2 + rng.below(3) {
            prologue.push(pick(&mut rng, &common));
        }
        prologue.push(headers[m][0]);
        for &source in &sources[m] {
            let mut includes = prologue.clone();
            for _ in 0..rng.below(3) {
                includes.push(pick(&mut rng, &headers[m]));
            }
            for _ in 0..rng.below(2) {
                includes.push(pick(&mut rng, &all_headers));
            }
            // A header is read once per unit (include guards, `#pragma once`).
            let mut seen = std::collections::HashSet::new();
            includes.retain(|f| seen.insert(f.inode));
            units.push(Unit { source, includes });
        }
    }
    let jobs = p.jobs.max(1);
    let mut t_build = 0;
    for _ in 0..p.builds {
        let mut order: Vec<usize> = (0..units.len()).collect();
        for i in 0..order.len().saturating_sub(1) {
            if rng.unit() < p.noise {
                order.swap(i, i + 1);
            }
        }
        let mut slots = vec![t_build; jobs];
        for &u in &order {
            let unit = &units[u];
            let mut files = vec![unit.source];
            files.extend(unit.includes.iter().copied());
            if rng.unit() < p.noise && files.len() > 2 {
                if rng.unit() < 0.5 {
                    files.remove(2 + rng.below(files.len() as u64 - 2) as usize);
                } else {
                    let at = 1 + rng.below(files.len() as u64 - 1) as usize;
                    let extra = pick(&mut rng, &all_headers);
                    if !files.contains(&extra) {
                        files.insert(at, extra);
                    }
                }
            }
            let slot = (0..jobs).min_by_key(|&j| (slots[j], j)).unwrap_or(0);
            let mut s = b.stream("cc1", slots[slot] + ms(1.0));
            for f in &files {
                let h = b.open(&mut s, f);
                b.read_span(&mut s, f, h, 0, f.size, 128 * KIB);
                b.close(&mut s, f, h);
                s.think(jitter(&mut rng, us(200.0)));
            }
            s.think(jitter(&mut rng, p.compile_ns));
            slots[slot] = s.t;
        }
        t_build = slots.iter().copied().max().unwrap_or(t_build) + ms(2000.0);
    }
    b.finish()
}
