//! Mount settings: the TOML config file, overridden by command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Settings a config file may hold (every key optional; flags override).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub read_only: Option<bool>,
    pub allow_other: Option<bool>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cache_dir: Option<PathBuf>,
    pub metadata_ttl: Option<String>,
    pub negative_ttl: Option<String>,
    pub block_size: Option<String>,
    pub max_request_size: Option<String>,
    pub l1_cache_size: Option<String>,
    pub l2_cache_size: Option<String>,
    pub l2_min_free: Option<String>,
    pub max_inflight: Option<String>,
    pub max_readahead: Option<String>,
    pub fuse_threads: Option<usize>,
    pub log_file: Option<PathBuf>,
    pub metrics_addr: Option<String>,
    pub flush_delay: Option<String>,
    pub max_dirty: Option<String>,
    pub journal_direct_io: Option<bool>,
    pub drain_timeout: Option<String>,
    pub prefetch: Option<String>,
    pub prefetch_model: Option<PathBuf>,
    pub prefetch_inflight: Option<String>,
    pub prefetch_cache_share: Option<f64>,
    pub trace: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let cfg: FileConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "invalid config file {}: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            )
        })?;
        Ok(cfg)
    }
}

/// Parses `1MiB`, `512M`, `2G`, `4096` (bytes). K/M/G/T are binary multiples, like `KiB`.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid size '{s}' (examples: 4096, 1MiB, 512M, 2G)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => bail!("invalid size '{s}': unknown unit '{u}' (use K, M, G or T)"),
    };
    if n < 0.0 || !n.is_finite() {
        bail!("invalid size '{s}'");
    }
    Ok((n * mult as f64) as u64)
}

/// Parses `5s`, `500ms`, `1m`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim())
        .with_context(|| format!("invalid duration '{s}' (examples: 5s, 500ms, 1m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let d = std::env::temp_dir().join(format!("cairn-cfg-{}", std::process::id()));
        std::fs::write(&d, "metadata_ttl = \"2s\"\nbogus = 1\n").unwrap();
        let e = FileConfig::load(&d).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        std::fs::write(&d, "metadata_ttl = \"2s\"\nl1_cache_size = \"64M\"\n").unwrap();
        let c = FileConfig::load(&d).unwrap();
        assert_eq!(c.metadata_ttl.as_deref(), Some("2s"));
        std::fs::remove_file(&d).unwrap();
    }
}
