//! A minimal reader of the Thrift compact protocol, enough to walk Parquet's `FileMetaData`.
//!
//! It decodes varints, zigzag integers and field headers (with id deltas) and can skip any
//! value (struct, list, set, map, binary, bool, double, integers) so unknown fields are passed
//! over. Every read is bounds-checked against the input, collection sizes are checked against
//! the bytes left (each element takes at least one byte), and nesting depth is capped, so
//! hostile input yields an error, never a panic, a huge allocation or a stack overflow.

use super::FormatError;

/// Deepest nesting of structs and collections accepted (Parquet metadata needs about 8).
pub const MAX_DEPTH: usize = 64;

/// A compact-protocol type code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TType {
    /// A bool whose value is in the type code (fields) or in one byte (collections).
    Bool(Option<bool>),
    /// i8, one raw byte.
    Byte,
    /// i16, zigzag varint.
    I16,
    /// i32, zigzag varint.
    I32,
    /// i64, zigzag varint.
    I64,
    /// IEEE double, 8 bytes little-endian.
    Double,
    /// Length-prefixed bytes (strings too).
    Binary,
    /// A list: size and element type, then elements.
    List,
    /// A set, encoded like a list.
    Set,
    /// A map: size, key and value types, then pairs.
    Map,
    /// A nested struct, ended by a stop byte.
    Struct,
    /// A 16-byte UUID (newer Thrift).
    Uuid,
}

impl TType {
    /// The type of a field header's low nibble.
    fn from_field_nibble(n: u8) -> Result<TType, FormatError> {
        Ok(match n {
            1 => TType::Bool(Some(true)),
            2 => TType::Bool(Some(false)),
            _ => Self::from_elem_nibble(n)?,
        })
    }

    /// The type of a collection's element nibble (bools carry their value in a byte).
    fn from_elem_nibble(n: u8) -> Result<TType, FormatError> {
        Ok(match n {
            1 | 2 => TType::Bool(None),
            3 => TType::Byte,
            4 => TType::I16,
            5 => TType::I32,
            6 => TType::I64,
            7 => TType::Double,
            8 => TType::Binary,
            9 => TType::List,
            10 => TType::Set,
            11 => TType::Map,
            12 => TType::Struct,
            13 => TType::Uuid,
            _ => {
                return Err(FormatError::Thrift(format!(
                    "unknown compact type code {n}"
                )))
            }
        })
    }
}

/// A cursor over compact-protocol bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, what: &str) -> FormatError {
        FormatError::Thrift(format!("truncated {what} at byte {}", self.pos))
    }

    fn byte(&mut self) -> Result<u8, FormatError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.truncated("value"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, FormatError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let bits = (b & 0x7f) as u64;
            if i == 9 && bits > 1 {
                return Err(FormatError::Thrift("varint overflows 64 bits".into()));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FormatError::Thrift("varint longer than 10 bytes".into()))
    }

    /// A zigzag-encoded i64 (also used for i16 and i32).
    pub fn zigzag(&mut self) -> Result<i64, FormatError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// The next field header of a struct: `None` at the stop byte, else (field id, type).
    /// `last_id` is the previous field's id (0 at the start of a struct), for id deltas.
    pub fn field(&mut self, last_id: i16) -> Result<Option<(i16, TType)>, FormatError> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let ty = TType::from_field_nibble(b & 0x0f)?;
        let delta = (b >> 4) as i16;
        let id = if delta == 0 {
            let v = self.zigzag()?;
            i16::try_from(v)
                .map_err(|_| FormatError::Thrift(format!("field id out of range: {v}")))?
        } else {
            last_id
                .checked_add(delta)
                .ok_or_else(|| FormatError::Thrift("field id overflows i16".into()))?
        };
        Ok(Some((id, ty)))
    }

    /// A list or set header: (element count, element type). The count is checked against the
    /// bytes left, since every element takes at least one byte.
    pub fn list_header(&mut self) -> Result<(usize, TType), FormatError> {
        let b = self.byte()?;
        let ty = TType::from_elem_nibble(b & 0x0f)?;
        let n = match b >> 4 {
            15 => self.varint()?,
            n => n as u64,
        };
        if n > self.remaining() as u64 {
            return Err(FormatError::Thrift(format!(
                "list of {n} elements but only {} bytes left",
                self.remaining()
            )));
        }
        Ok((n as usize, ty))
    }

    /// Reads an i64 field's value, accepting any integer type (writers differ in width).
    pub fn int(&mut self, ty: TType) -> Result<i64, FormatError> {
        match ty {
            TType::Byte => Ok(self.byte()? as i8 as i64),
            TType::I16 | TType::I32 | TType::I64 => self.zigzag(),
            other => Err(FormatError::Thrift(format!(
                "expected an integer, found {other:?}"
            ))),
        }
    }

    /// Skips one value of type `ty`; `depth` is the current nesting.
    pub fn skip(&mut self, ty: TType, depth: usize) -> Result<(), FormatError> {
        if depth > MAX_DEPTH {
            return Err(FormatError::Thrift(format!(
                "nesting deeper than {MAX_DEPTH}"
            )));
        }
        match ty {
            TType::Bool(Some(_)) => {}
            TType::Bool(None) | TType::Byte => {
                self.byte()?;
            }
            TType::I16 | TType::I32 | TType::I64 => {
                self.varint()?;
            }
            TType::Double => {
                self.take(8, "double")?;
            }
            TType::Uuid => {
                self.take(16, "uuid")?;
            }
            TType::Binary => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| self.truncated("binary"))?;
                self.take(n, "binary")?;
            }
            TType::List | TType::Set => {
                let (n, elem) = self.list_header()?;
                for _ in 0..n {
                    self.skip(elem, depth + 1)?;
                }
            }
            TType::Map => {
                let n = self.varint()?;
                if n > 0 {
                    if n > self.remaining() as u64 / 2 {
                        return Err(FormatError::Thrift(format!(
                            "map of {n} entries overruns input"
                        )));
                    }
                    let kv = self.byte()?;
                    let k = TType::from_elem_nibble(kv >> 4)?;
                    let v = TType::from_elem_nibble(kv & 0x0f)?;
                    for _ in 0..n {
                        self.skip(k, depth + 1)?;
                        self.skip(v, depth + 1)?;
                    }
                }
            }
            TType::Struct => {
                let mut last = 0i16;
                while let Some((id, fty)) = self.field(last)? {
                    self.skip(fty, depth + 1)?;
                    last = id;
                }
            }
        }
        Ok(())
    }
}
