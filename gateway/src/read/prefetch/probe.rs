//! Reads a file's footer or header (normally already cached: the application just read it) and
//! parses it into a [`Layout`].

use cairn_prefetch_model::formats;
use cairn_prefetch_model::trace::FormatClass;
use cairn_prefetch_model::Layout;

use crate::read::{BlockFetcher, ObjectVersion};

/// Largest footer or header parsed (bigger ones are skipped: the policy falls back to
/// format-blind candidates).
const MAX_META: u64 = 16 << 20;

/// The layout of `obj` for its format, `Ok(None)` for formats without one.
pub async fn layout_of(
    fetcher: &std::sync::Arc<BlockFetcher>,
    obj: &ObjectVersion,
    format: FormatClass,
) -> Result<Option<Layout>, String> {
    let size = obj.size;
    match format {
        FormatClass::Parquet => {
            if size < 12 {
                return Err("too small for a Parquet file".into());
            }
            let tail = fetcher
                .read_range(obj, size - 8, size)
                .await
                .map_err(|e| e.to_string())?;
            let len = formats::parquet_footer_len(&tail).map_err(|e| e.to_string())?;
            if len > MAX_META || len + 8 > size {
                return Err(format!("footer of {len} bytes not parsed"));
            }
            let footer = fetcher
                .read_range(obj, size - 8 - len, size - 8)
                .await
                .map_err(|e| e.to_string())?;
            let layout = formats::parquet_layout(&footer, size).map_err(|e| e.to_string())?;
            Ok(Some(layout))
        }
        FormatClass::Safetensors => {
            if size < 8 {
                return Err("too small for a safetensors file".into());
            }
            let head = fetcher
                .read_range(obj, 0, 8)
                .await
                .map_err(|e| e.to_string())?;
            let len = formats::safetensors_header_len(&head).map_err(|e| e.to_string())?;
            if len > MAX_META || 8 + len > size {
                return Err(format!("header of {len} bytes not parsed"));
            }
            let header = fetcher
                .read_range(obj, 8, 8 + len)
                .await
                .map_err(|e| e.to_string())?;
            let layout = formats::safetensors_layout(&header, size).map_err(|e| e.to_string())?;
            Ok(Some(layout))
        }
        _ => Ok(None),
    }
}
