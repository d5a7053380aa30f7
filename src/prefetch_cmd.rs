//! `cairn prefetch train`: trains the learned prefetcher on recorded traces.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_prefetch_model::learned::{train, TrainConfig};
use cairn_prefetch_model::trace::TraceReader;
use cairn_prefetch_model::Workload;

/// Reads every trace, trains a model on them and writes it to `out`.
pub fn train_cmd(traces: &[PathBuf], out: &Path) -> Result<()> {
    if traces.is_empty() {
        bail!("give at least one trace file (recorded with `cairn mount --trace FILE`)");
    }
    let mut workloads = Vec::new();
    for path in traces {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open trace {}", path.display()))?;
        let records = TraceReader::new(std::io::BufReader::new(file))
            .and_then(|r| r.read_all())
            .with_context(|| format!("cannot read trace {}", path.display()))?;
        if records.is_empty() {
            bail!("trace {} holds no records", path.display());
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "trace".into());
        eprintln!("cairn: {}: {} records", path.display(), records.len());
        workloads.push(Workload::from_records(&name, records));
    }
    let model = train(&workloads, &TrainConfig::default());
    model
        .save(out)
        .with_context(|| format!("cannot write model {}", out.display()))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    eprintln!("cairn: model written to {} ({size} bytes)", out.display());
    Ok(())
}
