//! Builds the configured prefetch policy.

use std::path::Path;

use cairn_prefetch_model::learned::{LearnedConfig, LearnedPrefetcher, Model};
use cairn_prefetch_model::{baselines, Prefetcher};

/// Policy names accepted by `--prefetch`, besides the baselines' own names.
pub const SPECIAL_POLICIES: [&str; 3] = ["off", "readahead", "learned"];

/// The scheduler's policy for `name`: `None` for `off` (no scheduler runs), the `none`
/// baseline for `readahead` (the scheduler only labels the readahead window's blocks),
/// the learned model (from `model`, or the built-in default) for `learned`, else the baseline
/// of that name. An unknown name or an unreadable model file is an error naming the choices.
pub fn build_policy(
    name: &str,
    model: Option<&Path>,
) -> Result<Option<Box<dyn Prefetcher>>, String> {
    match name {
        "off" => Ok(None),
        "readahead" => Ok(baselines::by_name("none")),
        "learned" => {
            let m = match model {
                Some(path) => Model::load(path)
                    .map_err(|e| format!("prefetch model {}: {e}", path.display()))?,
                None => cairn_prefetch_model::learned::default_model(),
            };
            Ok(Some(Box::new(LearnedPrefetcher::new(
                m,
                LearnedConfig::default(),
            ))))
        }
        other => baselines::by_name(other).map(Some).ok_or_else(|| {
            let mut known: Vec<String> = SPECIAL_POLICIES.iter().map(|s| s.to_string()).collect();
            known.extend(baselines::all().iter().map(|p| p.name().to_string()));
            format!(
                "unknown prefetch policy {other:?} (known: {})",
                known.join(", ")
            )
        }),
    }
}
