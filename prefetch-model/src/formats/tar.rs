//! tar archives (WebDataset shards): members' byte ranges from their 512-byte headers.
//!
//! A tar is a sequence of members, each a 512-byte header then its data padded to 512 bytes,
//! ended by zero blocks. Headers are interleaved with data, so the gateway learns the layout
//! one header at a time as a reader streams through ([`next_tar_header`]), or from a window of
//! whole blocks ([`tar_members`]). Sizes are octal (ustar) or GNU base-256; pax extended
//! headers (`x`) may override the next member's size; extended headers (`x`, `g`, GNU `L`/`K`
//! long names) are counted as part of the member that follows them.

use std::ops::Range;

use super::FormatError;
use crate::Layout;

/// Tar block size: headers are one block, data is padded to whole blocks.
pub const BLOCK: u64 = 512;

/// One parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarEntry {
    /// Offset of the header block.
    pub header: u64,
    /// The typeflag byte (`b'0'` file, `b'5'` directory, `b'x'` pax header, ...).
    pub typeflag: u8,
    /// The member's data bytes (unpadded).
    pub data: Range<u64>,
    /// Offset of the next header (data rounded up to a block).
    pub next: u64,
}

impl TarEntry {
    /// The entry with its data size replaced (a pax `size` record overrides the header's).
    pub fn with_size(&self, size: u64, file_size: u64) -> Result<TarEntry, FormatError> {
        entry(self.header, self.typeflag, size, file_size)
    }
}

/// What one header block says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarBlock {
    /// A member header.
    Entry(TarEntry),
    /// A zero block: the end-of-archive marker.
    End,
}

/// Parses the header block at `offset` (a multiple of 512) of a `file_size`-byte archive.
pub fn next_tar_header(block: &[u8], offset: u64, file_size: u64) -> Result<TarBlock, FormatError> {
    let block = block.get(..BLOCK as usize).ok_or(FormatError::Short {
        what: "tar header",
        need: BLOCK,
        got: block.len() as u64,
    })?;
    if offset % BLOCK != 0 {
        return Err(FormatError::Invalid(format!(
            "tar header offset {offset} is not block aligned"
        )));
    }
    if offset.checked_add(BLOCK).is_none_or(|e| e > file_size) {
        return Err(FormatError::OutOfRange(format!(
            "tar header at {offset} past the end of a {file_size}-byte file"
        )));
    }
    if block.iter().all(|b| *b == 0) {
        return Ok(TarBlock::End);
    }
    let stored = parse_octal(&block[148..156], "checksum")?;
    let (mut unsigned, mut signed) = (8 * b' ' as u64, 8 * b' ' as i64);
    for (i, b) in block.iter().enumerate() {
        if !(148..156).contains(&i) {
            unsigned += *b as u64;
            signed += *b as i8 as i64;
        }
    }
    if stored != unsigned && stored as i64 != signed {
        return Err(FormatError::Invalid(format!(
            "tar header at {offset}: checksum {stored} does not match computed {unsigned}"
        )));
    }
    let typeflag = block[156];
    let size = match typeflag {
        // hard and symbolic links, devices and FIFOs have no data whatever the size field says
        b'1' | b'2' | b'3' | b'4' | b'6' => 0,
        _ => parse_size(&block[124..136])?,
    };
    entry(offset, typeflag, size, file_size).map(TarBlock::Entry)
}

fn entry(header: u64, typeflag: u8, size: u64, file_size: u64) -> Result<TarEntry, FormatError> {
    let start = header + BLOCK;
    let end = start
        .checked_add(size)
        .filter(|e| *e <= file_size)
        .ok_or_else(|| {
            FormatError::OutOfRange(format!(
            "tar member at {header} of {size} bytes runs past the end of a {file_size}-byte file"
        ))
        })?;
    // end <= file_size, so rounding up cannot overflow
    let next = end.div_ceil(BLOCK) * BLOCK;
    Ok(TarEntry {
        header,
        typeflag,
        data: start..end,
        next,
    })
}

/// A numeric field: octal digits (leading spaces, ended by NUL or space).
fn parse_octal(field: &[u8], what: &str) -> Result<u64, FormatError> {
    let mut v: u64 = 0;
    let mut digits = field.iter().skip_while(|b| **b == b' ').peekable();
    while let Some(&b) = digits.next() {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add((b - b'0') as u64))
                    .ok_or_else(|| FormatError::Invalid(format!("tar {what} overflows")))?;
            }
            0 | b' ' => break,
            _ => {
                return Err(FormatError::Invalid(format!(
                    "tar {what} field has non-octal byte {b:#04x}"
                )))
            }
        }
    }
    Ok(v)
}

/// The size field: octal, or GNU base-256 (high bit of the first byte set, big-endian).
fn parse_size(field: &[u8]) -> Result<u64, FormatError> {
    let first = field[0];
    if first & 0x80 == 0 {
        return parse_octal(field, "size");
    }
    if first & 0x40 != 0 {
        return Err(FormatError::Invalid("tar base-256 size is negative".into()));
    }
    let mut v: u64 = (first & 0x3f) as u64;
    for b in &field[1..] {
        v = v
            .checked_mul(256)
            .map(|v| v | *b as u64)
            .ok_or_else(|| FormatError::Invalid("tar base-256 size overflows 64 bits".into()))?;
    }
    Ok(v)
}

/// The `size` record of pax extended-header data (`"<len> key=value\n"` records), if any.
pub fn pax_size(records: &[u8]) -> Result<Option<u64>, FormatError> {
    let bad = |why: &str| FormatError::Invalid(format!("pax header: {why}"));
    let mut size = None;
    let mut rest = records;
    // GNU tar pads the data block with NULs after the last record
    while rest.first().is_some_and(|b| *b != 0) {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad record length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("record length does not match its text"));
        }
        let kv = &rest[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("record without '='"))?;
        if &kv[..eq] == b"size" {
            let v = std::str::from_utf8(&kv[eq + 1..])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad("size is not a decimal number"))?;
            size = Some(v);
        }
        rest = &rest[len..];
    }
    Ok(size)
}

/// Walks the headers in `bytes` (which start at the header at `base_offset` of a
/// `file_size`-byte archive) and returns each member's header-through-padded-data range.
///
/// The walk stops at a zero block or at the first header not wholly in `bytes` (a member whose
/// header is in the window is returned even if its data is not). Extended headers are merged
/// into the range of the member they describe.
pub fn tar_members(
    bytes: &[u8],
    base_offset: u64,
    file_size: u64,
) -> Result<Vec<Range<u64>>, FormatError> {
    walk(bytes, base_offset, file_size).map(|(m, _)| m)
}

/// [`tar_members`] as a [`Layout`] whose source is the span of the archive accounted for:
/// `source.end` is the next header not yet parsed (block aligned, possibly past `bytes` when
/// the last member's data is not in the window), where a later window should start.
pub fn tar_layout(bytes: &[u8], base_offset: u64, file_size: u64) -> Result<Layout, FormatError> {
    let (extents, walked) = walk(bytes, base_offset, file_size)?;
    Ok(Layout {
        source: base_offset..walked,
        extents,
        group: 0,
    })
}

/// The members and the offset where the walk stopped (the next header not yet accounted for).
fn walk(bytes: &[u8], base: u64, file_size: u64) -> Result<(Vec<Range<u64>>, u64), FormatError> {
    if base % BLOCK != 0 {
        return Err(FormatError::Invalid(format!(
            "tar window offset {base} is not block aligned"
        )));
    }
    if base > file_size {
        return Err(FormatError::OutOfRange(format!(
            "tar window at {base} past a {file_size}-byte file"
        )));
    }
    let mut out = Vec::new();
    let mut pos = base;
    let mut pending: Option<u64> = None; // start of extended headers awaiting their member
    let mut size_override: Option<u64> = None;
    loop {
        let rel = (pos - base) as usize;
        let Some(block) = bytes.get(rel..rel + BLOCK as usize) else {
            break;
        };
        let mut e = match next_tar_header(block, pos, file_size)? {
            TarBlock::End => break,
            TarBlock::Entry(e) => e,
        };
        match e.typeflag {
            b'x' => {
                let d = (e.data.start - base) as usize..(e.data.end - base) as usize;
                let Some(data) = bytes.get(d) else { break };
                if let Some(s) = pax_size(data)? {
                    size_override = Some(s);
                }
                pending.get_or_insert(e.header);
            }
            b'g' | b'L' | b'K' => {
                pending.get_or_insert(e.header);
            }
            _ => {
                if let Some(s) = size_override.take() {
                    e = e.with_size(s, file_size)?;
                }
                out.push(pending.take().unwrap_or(e.header)..e.next.min(file_size));
            }
        }
        pos = e.next;
        if pos - base > bytes.len() as u64 {
            break;
        }
    }
    Ok((out, pending.unwrap_or(pos).min(file_size.max(base))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header block with a valid checksum; `size` is written in octal unless
    /// `size_field` overrides the 12 bytes.
    fn header(name: &str, typeflag: u8, size: u64, size_field: Option<[u8; 12]>) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        let sf = size_field.unwrap_or_else(|| {
            let s = format!("{size:011o}\0");
            s.as_bytes().try_into().unwrap()
        });
        h[124..136].copy_from_slice(&sf);
        h[136..148].copy_from_slice(b"14712345670\0");
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| *b as u64).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// Appends a member (header, data padded to a block).
    fn member(tar: &mut Vec<u8>, name: &str, typeflag: u8, data: &[u8]) {
        tar.extend(header(name, typeflag, data.len() as u64, None));
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }

    fn pax_record(key: &str, value: &str) -> String {
        // the length counts its own digits
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    }

    /// An archive of several kinds of members and their expected ranges.
    fn archive() -> (Vec<u8>, Vec<Range<u64>>) {
        let mut t = Vec::new();
        let mut want = Vec::new();
        let mut add = |t: &mut Vec<u8>, f: &mut dyn FnMut(&mut Vec<u8>)| {
            let s = t.len() as u64;
            f(t);
            want.push(s..t.len() as u64);
        };
        add(&mut t, &mut |t| member(t, "a.txt", b'0', &[1; 100]));
        add(&mut t, &mut |t| member(t, "b.bin", b'0', &[2; 1024])); // a multiple of 512
        add(&mut t, &mut |t| member(t, "empty", b'0', &[]));
        add(&mut t, &mut |t| member(t, "dir/", b'5', &[]));
        add(&mut t, &mut |t| {
            // a symlink whose size field is (wrongly) nonzero has no data
            t.extend(header("link", b'2', 999, None));
        });
        add(&mut t, &mut |t| {
            // GNU base-256 size
            let mut f = [0u8; 12];
            f[0] = 0x80;
            f[10] = 0x02; // 0x0258 = 600
            f[11] = 0x58;
            t.extend(header("big", b'0', 0, Some(f)));
            t.extend_from_slice(&[3; 600]);
            t.resize(t.len().div_ceil(512) * 512, 0);
        });
        add(&mut t, &mut |t| {
            // pax header overriding the next member's size, then GNU long name
            let recs = pax_record("path", "some/long/name") + &pax_record("size", "700");
            member(t, "PaxHeaders/x", b'x', recs.as_bytes());
            member(t, "././@LongLink", b'L', b"a/really/long/name\0");
            t.extend(header("x", b'0', 0, None));
            t.extend_from_slice(&[4; 700]);
            t.resize(t.len().div_ceil(512) * 512, 0);
        });
        add(&mut t, &mut |t| member(t, "7.txt", b'7', &[5; 513]));
        t.extend_from_slice(&[0; 1024]);
        (t, want)
    }

    #[test]
    fn walks_members_of_every_kind() {
        let (t, want) = archive();
        let size = t.len() as u64;
        assert_eq!(tar_members(&t, 0, size).unwrap(), want);
        let l = tar_layout(&t, 0, size).unwrap();
        assert_eq!(l.extents, want);
        assert_eq!(l.source, 0..want.last().unwrap().end);
        // spot checks of the expected ranges themselves
        assert_eq!(want[0], 0..1024);
        assert_eq!(want[1], 1024..2560);
        assert_eq!(want[2], 2560..3072);
        assert_eq!(want[4].end - want[4].start, 512);
        assert_eq!(want[5].end - want[5].start, 512 + 1024);
    }

    #[test]
    fn windows_resume_where_the_last_stopped() {
        let (t, want) = archive();
        let size = t.len() as u64;
        for window in [512usize, 1024, 1536, 4096] {
            let mut got = Vec::new();
            let mut pos = 0u64;
            let mut steps = 0;
            loop {
                let end = (pos as usize + window).min(t.len());
                let l = tar_layout(&t[pos as usize..end], pos, size).unwrap();
                got.extend(l.extents.iter().cloned());
                if l.source.end == pos {
                    // no progress: either the end marker or a window too small for an
                    // extended header and its data
                    let whole = tar_layout(&t[pos as usize..], pos, size).unwrap();
                    if whole.extents.is_empty() {
                        break;
                    }
                    got.extend(whole.extents);
                    break;
                }
                pos = l.source.end;
                steps += 1;
                assert!(steps < 100);
            }
            assert_eq!(got, want, "window {window}");
        }
    }

    #[test]
    fn streaming_one_header_at_a_time() {
        let (t, _) = archive();
        let size = t.len() as u64;
        let mut pos = 0u64;
        let mut seen = Vec::new();
        let mut size_override = None;
        while let TarBlock::Entry(mut e) = next_tar_header(&t[pos as usize..], pos, size).unwrap() {
            if e.typeflag == b'x' {
                size_override = pax_size(&t[e.data.start as usize..e.data.end as usize]).unwrap();
            } else if e.typeflag != b'L' {
                if let Some(s) = size_override.take() {
                    e = e.with_size(s, size).unwrap();
                }
            }
            seen.push((e.typeflag, e.data.end - e.data.start));
            pos = e.next;
        }
        let pax_len =
            (pax_record("path", "some/long/name") + &pax_record("size", "700")).len() as u64;
        let want = [
            (b'0', 100),
            (b'0', 1024),
            (b'0', 0),
            (b'5', 0),
            (b'2', 0),
            (b'0', 600),
            (b'x', pax_len),
            (b'L', 19),
            (b'0', 700),
            (b'7', 513),
        ];
        assert_eq!(seen, want);
        assert_eq!(pos, size - 1024, "stopped at the end marker");
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let (t, _) = archive();
        let size = t.len() as u64;
        let mut bad = t.clone();
        bad[10] ^= 1; // name byte: checksum mismatch
        assert!(tar_members(&bad, 0, size)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(matches!(
            next_tar_header(&t, 100, size),
            Err(FormatError::Invalid(_))
        ));
        assert!(matches!(
            next_tar_header(&t[..100], 0, size),
            Err(FormatError::Short { .. })
        ));
        assert!(matches!(
            next_tar_header(&t, 0, 500),
            Err(FormatError::OutOfRange(_))
        ));
        // data past the end of the file
        assert!(matches!(
            tar_members(&t, 0, 1000),
            Err(FormatError::OutOfRange(_))
        ));
        // negative base-256 size
        let mut f = [0xffu8; 12];
        f[11] = 0xfe;
        let h = header("neg", b'0', 0, Some(f));
        assert!(tar_members(&h, 0, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("negative"));
        // base-256 size over 64 bits
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[2] = 1;
        let h = header("huge", b'0', 0, Some(f));
        assert!(tar_members(&h, 0, 1 << 20).is_err());
        // non-octal size
        let h = header("bad", b'0', 0, Some(*b"0000000009x\0"));
        assert!(tar_members(&h, 0, 1 << 20).is_err());
        // malformed pax records
        for recs in [
            "5 size=1\n",
            "x size=1\n",
            "12 size=abc\n",
            "9 size=1 ",
            "8 nokey\n",
        ] {
            assert!(pax_size(recs.as_bytes()).is_err(), "{recs:?}");
        }
        assert_eq!(pax_size(b"12 size=345\n\0\0\0").unwrap(), Some(345));
        assert_eq!(pax_size(b"").unwrap(), None);
    }

    #[test]
    fn base_offset_is_honoured() {
        let (t, want) = archive();
        let size = t.len() as u64;
        let second = want[1].start as usize;
        let got = tar_members(&t[second..], second as u64, size).unwrap();
        assert_eq!(got, want[1..]);
    }

    proptest::proptest! {
        /// Flipped bytes never panic; a window cut anywhere yields a prefix of the members.
        #[test]
        fn mutations_and_truncations(flips in proptest::collection::vec((0usize..20_000, 0u8..=255), 0..6), cut in 0usize..20_000) {
            let (t, want) = archive();
            let size = t.len() as u64;
            let mut m = t.clone();
            for (i, x) in flips {
                let i = i % m.len();
                m[i] ^= x;
            }
            if let Ok(l) = tar_layout(&m, 0, size) {
                assert!(l.extents.iter().all(|e| e.start < e.end && e.end <= size));
            }
            let cut = cut % (t.len() + 1);
            let got = tar_members(&t[..cut], 0, size).unwrap();
            assert_eq!(&want[..got.len()], &got[..]);
        }
    }

    /// Cross-checks against archives made by the `tar` CLI in gnu, pax and ustar formats
    /// (long names become `L` or `x` headers); skipped when `tar` is not installed.
    #[test]
    fn matches_the_tar_cli() {
        use std::process::Command;
        if Command::new("tar").arg("--version").output().is_err() {
            eprintln!("skipped: no tar on PATH");
            return;
        }
        let dir = std::env::temp_dir().join(format!("cairn-tar-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        let long = format!("d/{}", "x".repeat(150));
        let sizes: Vec<(String, u64)> = vec![
            ("a".into(), 100),
            ("empty".into(), 0),
            ("b".into(), 1024),
            ("d/".into(), 0),
            (long.clone(), 70_000),
        ];
        for (k, (name, n)) in sizes.iter().enumerate() {
            if !name.ends_with('/') {
                std::fs::write(src.join(name), vec![k as u8 + 1; *n as usize]).unwrap();
            }
        }
        for format in ["gnu", "pax", "ustar"] {
            let out = dir.join(format!("{format}.tar"));
            // ustar cannot store the long name; tar skips it with an error status
            let _ = Command::new("tar")
                .args(["--format", format, "-cf"])
                .arg(&out)
                .arg("-C")
                .arg(&src)
                .args(["a", "empty", "b", "d"])
                .output()
                .unwrap();
            let listing = Command::new("tar")
                .args(["-tR", "-f"])
                .arg(&out)
                .output()
                .unwrap();
            let listing = String::from_utf8(listing.stdout).unwrap();
            // expected: ranges tile the archive up to the end marker, one per listed member,
            // each ending with its file's bytes and padding right after a header for them
            let mut names = Vec::new();
            let mut end_marker = 0;
            for line in listing.lines() {
                let (block, name) = line.trim_start_matches("block ").split_once(": ").unwrap();
                if name.starts_with("** Block of NULs") {
                    end_marker = block.parse::<u64>().unwrap() * 512;
                } else {
                    names.push(name.to_string());
                }
            }
            let bytes = std::fs::read(&out).unwrap();
            let got = tar_members(&bytes, 0, bytes.len() as u64).unwrap();
            assert_eq!(got.len(), names.len(), "{format}: {listing}");
            assert_eq!(got.first().map(|r| r.start), Some(0));
            assert_eq!(got.last().map(|r| r.end), Some(end_marker), "{format}");
            for (i, (r, name)) in got.iter().zip(&names).enumerate() {
                if i > 0 {
                    assert_eq!(got[i - 1].end, r.start, "{format}: ranges tile");
                }
                let (fill, n) = sizes
                    .iter()
                    .enumerate()
                    .find(|(_, (s, _))| s == name)
                    .map(|(k, s)| (k as u8 + 1, s.1))
                    .unwrap();
                let data = r.end - n.div_ceil(512) * 512;
                let hdr = data - 512;
                assert!(hdr >= r.start, "{format} {name}");
                match next_tar_header(&bytes[hdr as usize..], hdr, bytes.len() as u64).unwrap() {
                    TarBlock::Entry(e) => assert_eq!(e.data, data..data + n, "{format} {name}"),
                    TarBlock::End => panic!("{format} {name}: no header before the data"),
                }
                let body = &bytes[data as usize..r.end as usize];
                assert!(
                    body[..n as usize].iter().all(|b| *b == fill),
                    "{format} {name}: data"
                );
                assert!(
                    body[n as usize..].iter().all(|b| *b == 0),
                    "{format} {name}: padding"
                );
            }
            assert!(names.len() >= 4, "{format}: {listing}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
