//! Which key segments can be file names.
//!
//! Object keys are arbitrary UTF-8; POSIX names are not. A segment that is empty (`a//b`), `.`
//! or `..`, longer than 255 bytes, or holds a NUL is not shown, and the skip is counted.

/// Why a key segment cannot be a file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// `a//b`: an empty segment.
    Empty,
    /// `.` or `..`.
    DotSegment,
    /// More than 255 bytes.
    TooLong,
    /// Contains a NUL byte.
    Nul,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "empty path segment",
            NameProblem::DotSegment => "'.' or '..' segment",
            NameProblem::TooLong => "name longer than 255 bytes",
            NameProblem::Nul => "NUL byte in name",
        })
    }
}

/// Longest file name Linux accepts.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks that one key segment can be shown as a file name.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        Err(NameProblem::Empty)
    } else if name == "." || name == ".." {
        Err(NameProblem::DotSegment)
    } else if name.len() > MAX_NAME_BYTES {
        Err(NameProblem::TooLong)
    } else if name.contains('\0') {
        Err(NameProblem::Nul)
    } else {
        Ok(())
    }
}

/// Joins a directory path (relative, no leading or trailing `/`) and a child name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_unrepresentable_segments() {
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert_eq!(check_name("."), Err(NameProblem::DotSegment));
        assert_eq!(check_name(".."), Err(NameProblem::DotSegment));
        assert_eq!(check_name(&"x".repeat(256)), Err(NameProblem::TooLong));
        assert_eq!(check_name("a\0b"), Err(NameProblem::Nul));
        assert!(check_name(&"x".repeat(255)).is_ok());
        assert!(check_name("...").is_ok());
        assert!(check_name("ünïcödé €").is_ok());
    }

    proptest! {
        /// Every accepted name joins into a path whose last segment is that name again, so
        /// path -> key -> path round-trips.
        #[test]
        fn join_round_trips(dir in "([a-z0-9._-]{1,8}/){0,3}[a-z0-9._-]{1,8}|", name in "[^/\u{0}]{1,40}") {
            prop_assume!(check_name(&name).is_ok());
            let p = join(&dir, &name);
            let (d, n) = match p.rsplit_once('/') { Some((d, n)) => (d, n), None => ("", p.as_str()) };
            prop_assert_eq!(n, name.as_str());
            prop_assert_eq!(d, dir.as_str());
        }
    }
}
