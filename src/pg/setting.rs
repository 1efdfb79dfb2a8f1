//! Reading a string setting by name on every call, without PostgreSQL's
//! search by name each time. The claims (`request.jwt.claim.sub`, then
//! `request.jwt.claims`) are read by every call that authorizes.
//!
//! On PostgreSQL 15 `GetConfigOption` binary-searches the sorted array of
//! all settings (~400) with a case-folding compare: the two lookups were ~5%
//! of a `get_*_integration` call. Here each setting remembers where it sat
//! in that array and checks the place with one compare (or, for a setting
//! nobody has set, two: its neighbours), so nothing is trusted that the
//! array does not say now. PostgreSQL 16 and later keep settings in a hash
//! table, and `GetConfigOption` is used as it is.

use std::ffi::CStr;

use pgrx::pg_sys;

/// Where a setting was last found in PostgreSQL 15's sorted array: its index,
/// or the index it would take (the setting does not exist).
#[derive(Clone, Copy, Default)]
pub struct Spot(#[cfg_attr(not(feature = "pg15"), allow(dead_code))] usize);

/// `f` of the value of string setting `name`; `None` when it does not exist.
/// `spot` is this backend's memory of where `name` sits (one per setting).
pub fn with_value<R>(
    name: &'static CStr,
    spot: &'static std::thread::LocalKey<std::cell::Cell<Spot>>,
    f: impl FnOnce(Option<&CStr>) -> R,
) -> R {
    #[cfg(feature = "pg15")]
    {
        // SAFETY: get_guc_variables and GetNumConfigOptions describe the live, sorted array of
        // settings, which only changes when a setting is added or removed, never while this
        // backend runs Rust code; `find` reads entries below that count only.
        let record = unsafe {
            let vars = pg_sys::get_guc_variables();
            let n = pg_sys::GetNumConfigOptions().max(0) as usize;
            let found = spot.with(|s| {
                let (place, found) = find(name.to_bytes(), vars, n, s.get().0);
                s.set(Spot(place));
                found
            });
            match found {
                None => return f(None),
                Some(record) => record,
            }
        };
        // SAFETY: `record` is a live entry of the array; a string setting is a config_string,
        // whose `variable` points at its current value (a NUL-terminated string or NULL),
        // owned by the GUC machinery and unchanged while `f` runs on this backend's stack.
        unsafe {
            if (*record).vartype == pg_sys::config_type::PGC_STRING {
                let value = *(*(record as *mut pg_sys::config_string)).variable;
                return f((!value.is_null()).then(|| CStr::from_ptr(value)));
            }
        }
    }
    let _ = spot;
    // SAFETY: `name` is NUL-terminated; missing_ok returns NULL for an unknown setting, and a
    // non-NULL result is a NUL-terminated string owned by the GUC machinery, which cannot
    // change while `f` runs on this backend's stack.
    unsafe {
        let p = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        f((!p.is_null()).then(|| CStr::from_ptr(p)))
    }
}

/// The array's index for `name` and the entry there, if `name` exists: the
/// remembered index `hint` when the array confirms it, else a binary search.
///
/// # Safety
/// `vars` points at `n` valid `config_generic` pointers sorted by
/// [`compare`], each with a NUL-terminated name.
#[cfg(feature = "pg15")]
unsafe fn find(
    name: &[u8],
    vars: *mut *mut pg_sys::config_generic,
    n: usize,
    hint: usize,
) -> (usize, Option<*mut pg_sys::config_generic>) {
    use std::cmp::Ordering::*;
    // SAFETY: the caller's contract; only indexes below n are read. Names are compared where
    // they lie, up to their NUL (no strlen: this runs on every call).
    let at = |i: usize| unsafe {
        let record = *vars.add(i);
        (record, compare_c(name, (*record).name))
    };
    // The hint holds if the entry there has the name, or if the name falls
    // strictly between the entries on either side of it (then it is absent).
    if hint < n {
        match at(hint) {
            (record, Equal) => return (hint, Some(record)),
            (_, Less) if hint == 0 || at(hint - 1).1 == Greater => return (hint, None),
            _ => {}
        }
    } else if hint == n && (n == 0 || at(n - 1).1 == Greater) {
        return (hint, None);
    }
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid) {
            (record, Equal) => return (mid, Some(record)),
            (_, Less) => hi = mid,
            (_, Greater) => lo = mid + 1,
        }
    }
    (lo, None)
}

/// PostgreSQL's order of setting names (`guc_name_compare`) of `a` and the
/// NUL-terminated name at `b`: ASCII letters folded to lower case, bytes
/// compared as C's `char`, a prefix first.
///
/// # Safety
/// `b` points at a NUL-terminated string.
#[cfg(feature = "pg15")]
unsafe fn compare_c(a: &[u8], b: *const std::ffi::c_char) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    for (i, x) in a.iter().enumerate() {
        // SAFETY: the caller's contract; no byte past b's NUL is read (a NUL ends the loop).
        let c = unsafe { *b.add(i) } as u8;
        if c == 0 {
            return Greater;
        }
        match fold(*x).cmp(&fold(c)) {
            Equal => {}
            o => return o,
        }
    }
    // SAFETY: as above: every byte before index a.len() was not NUL.
    if unsafe { *b.add(a.len()) } == 0 {
        Equal
    } else {
        Less
    }
}

/// A name's byte as `guc_name_compare` sees it: a C `char`, signed on x86-64
/// and unsigned on ARM, as PostgreSQL sorted the array with.
#[cfg_attr(not(feature = "pg15"), allow(dead_code))]
fn fold(c: u8) -> std::ffi::c_char {
    c.to_ascii_lowercase() as std::ffi::c_char
}

/// [`compare_c`] of two slices, for the tests.
#[cfg(test)]
fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter().map(|c| fold(*c)).cmp(b.iter().map(|c| fold(*c)))
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::*;

    #[test]
    fn names_compare_as_postgres_sorts_them() {
        assert_eq!(compare(b"request.jwt.claims", b"Request.JWT.Claims"), Equal);
        assert_eq!(
            compare(b"request.jwt.claim.sub", b"request.jwt.claims"),
            Less
        );
        assert_eq!(compare(b"request.jwt", b"request.jwt.claims"), Less);
        assert_eq!(compare(b"work_mem", b"request.jwt.claims"), Greater);
        // 'Z' folds to 'z' (0x7a), after '_' (0x5f)
        assert_eq!(compare(b"a_b", b"aZb"), Less);
        // a byte above 0x7f is a C char: negative where char is signed (x86-64), so before
        // every ASCII byte, and after them where it is unsigned (ARM)
        let signed = std::ffi::c_char::MIN != 0;
        assert_eq!(
            compare("é".as_bytes(), b"a"),
            if signed { Less } else { Greater }
        );
    }

    #[cfg(feature = "pg15")]
    #[test]
    fn names_compare_with_c_strings_as_with_slices() {
        let names: [&[u8]; 6] = [
            b"request.jwt.claims",
            b"Request.JWT.Claims",
            b"request.jwt",
            b"request.jwt.claims.x",
            b"work_mem",
            b"",
        ];
        for a in names {
            for b in names {
                let c = std::ffi::CString::new(b).unwrap();
                // SAFETY: a NUL-terminated string.
                let in_place = unsafe { super::compare_c(a, c.as_ptr()) };
                assert_eq!(in_place, compare(a, b), "{a:?} {b:?}");
            }
        }
    }
}
