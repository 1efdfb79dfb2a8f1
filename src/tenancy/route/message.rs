//! What a routed call carries, as bytes (pure: no PostgreSQL here).
//!
//! The call, sealed by the coordinator (`crypto::DataKey::seal_call`):
//! `version (1) || role (u16 length, UTF-8) || user (0, or 1 and 16 bytes) ||
//! owner_can_read_secrets (0 or 1) || values`. The worker's reply, not sealed
//! (results travel as the rows of any query do): `values` of each row, after
//! a u32 row count. `values` is a u16 count, then each value as an i32 length
//! (-1: NULL) and its bytes: numbers, times, booleans and UUIDs in their
//! binary form (`typsend`: no DateStyle, TimeZone or extra_float_digits of
//! either end changes them), everything else as its output function's text
//! in the server's encoding (binary strings are in each session's
//! client_encoding).

use std::fmt;

use zeroize::Zeroize;

pub const VERSION: u8 = 1;

/// Who calls, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The role the call runs as on the worker (`SET LOCAL ROLE`).
    pub role: String,
    /// The signed-in user of the caller's claims, when the coordinator
    /// believed them.
    pub user: Option<[u8; 16]>,
    /// `integrations.owner_can_read_secrets` on the coordinator.
    pub owner_reads: bool,
    /// The function's arguments, in order.
    pub args: Vec<Option<Vec<u8>>>,
}

/// The arguments may hold an API key (`set_*`): wiped when the call is dropped.
impl Drop for Call {
    fn drop(&mut self) {
        for value in self.args.iter_mut().flatten() {
            value.zeroize();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a malformed routed call: {}", self.0)
    }
}

impl Call {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.role.len());
        out.push(VERSION);
        let role = self.role.as_bytes();
        out.extend_from_slice(&(role.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&role[..role.len().min(u16::MAX as usize)]);
        match self.user {
            Some(u) => {
                out.push(1);
                out.extend_from_slice(&u);
            }
            None => out.push(0),
        }
        out.push(self.owner_reads as u8);
        put_values(&mut out, &self.args);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Call, Malformed> {
        let mut r = Reader(bytes);
        if r.take(1)?[0] != VERSION {
            return Err(Malformed("unknown version"));
        }
        let n = u16::from_be_bytes(r.array()?) as usize;
        let role = std::str::from_utf8(r.take(n)?)
            .map_err(|_| Malformed("a role name is UTF-8"))?
            .to_owned();
        let user = match r.take(1)?[0] {
            0 => None,
            1 => Some(r.array()?),
            _ => return Err(Malformed("bad user flag")),
        };
        let owner_reads = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return Err(Malformed("bad flag")),
        };
        let args = r.values()?;
        r.end()?;
        Ok(Call {
            role,
            user,
            owner_reads,
            args,
        })
    }
}

/// The worker's answer: the rows of the call (one row of one value for a
/// function that returns a value).
pub fn encode_rows(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
    for row in rows {
        put_values(&mut out, row);
    }
    out
}

pub fn decode_rows(bytes: &[u8]) -> Result<Vec<Vec<Option<Vec<u8>>>>, Malformed> {
    let mut r = Reader(bytes);
    let n = u32::from_be_bytes(r.array()?) as usize;
    // each row takes at least two bytes: no allocation beyond the input's size
    if n > bytes.len() / 2 {
        return Err(Malformed("more rows than bytes"));
    }
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        rows.push(r.values()?);
    }
    r.end()?;
    Ok(rows)
}

fn put_values(out: &mut Vec<u8>, values: &[Option<Vec<u8>>]) {
    out.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }
    fn values(&mut self) -> Result<Vec<Option<Vec<u8>>>, Malformed> {
        let n = u16::from_be_bytes(self.array()?) as usize;
        let mut values = Vec::with_capacity(n.min(self.0.len() / 4));
        for _ in 0..n {
            let len = i32::from_be_bytes(self.array()?);
            values.push(match len {
                -1 => None,
                l if l >= 0 => Some(self.take(l as usize)?.to_vec()),
                _ => return Err(Malformed("negative length")),
            });
        }
        Ok(values)
    }
    fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Call {
        Call {
            role: "authenticated".into(),
            user: Some([7; 16]),
            owner_reads: true,
            args: vec![
                Some(vec![1; 16]),
                None,
                Some(Vec::new()),
                Some(b"sk_live".to_vec()),
            ],
        }
    }

    #[test]
    fn calls_round_trip() {
        for c in [
            sample(),
            Call {
                role: String::new(),
                user: None,
                owner_reads: false,
                args: vec![],
            },
        ] {
            assert_eq!(Call::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn every_cut_and_extension_is_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Call::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Call::decode(&longer).is_err());
        let mut v2 = bytes;
        v2[0] = 2;
        assert!(Call::decode(&v2).is_err());
    }

    #[test]
    fn rows_round_trip_and_refuse_lies() {
        let rows = vec![vec![Some(b"a".to_vec()), None], vec![None, Some(vec![])]];
        let bytes = encode_rows(&rows);
        assert_eq!(decode_rows(&bytes).unwrap(), rows);
        assert_eq!(
            decode_rows(&encode_rows(&[])).unwrap(),
            Vec::<Vec<_>>::new()
        );
        for n in 0..bytes.len() {
            assert!(decode_rows(&bytes[..n]).is_err(), "cut at {n}");
        }
        // a row count far beyond the bytes, a negative length
        assert!(decode_rows(&[0xff, 0xff, 0xff, 0xff, 0, 0]).is_err());
        assert!(decode_rows(&[0, 0, 0, 1, 0, 1, 0xff, 0xff, 0xff, 0xfe]).is_err());
    }
}
