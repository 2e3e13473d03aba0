//! Small byte helpers shared by the parsers and the server.

/// Percent-decode `input` into `out` (cleared first). Invalid escapes are kept as they are.
pub fn percent_decode_into(input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(input.len());
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'%', &input[i..]) {
        let p = i + off;
        out.extend_from_slice(&input[i..p]);
        match (input.get(p + 1), input.get(p + 2)) {
            (Some(&h), Some(&l)) if hex_val(h).is_some() && hex_val(l).is_some() => {
                out.push(hex_val(h).unwrap_or(0) << 4 | hex_val(l).unwrap_or(0));
                i = p + 3;
            }
            _ => {
                out.push(b'%');
                i = p + 1;
            }
        }
    }
    out.extend_from_slice(&input[i..]);
}

#[inline]
/// Appends `n` in decimal.
pub fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// tchar (RFC 9110 5.6.2): `!#$%&'*+-.^_`|~`, DIGIT, ALPHA.
pub(crate) static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// `true` when `s` is a non-empty token.
#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TOKEN[b as usize])
}

/// Trims SP and HTAB on both ends.
#[inline]
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a non-empty string of ASCII digits into a u64; `None` on any other byte or overflow.
#[inline]
pub(crate) fn parse_u64_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

// The 16-byte scanners below return the index of the first byte that stops a scan (16 when
// none does). They work on two u64 halves with exact per-byte SWAR tests (bit 7 of each byte
// of the result is that byte's flag, and no other bit is set), then `trailing_zeros` finds the
// first flag. All in general-purpose registers: no `unsafe`, no SIMD intrinsics, and no trip
// through memory (a 128-bit vector mask moved to integer registers cost more than the scan).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Bit 7 of each byte set where that byte of `low` (all bytes <= 0x7f) is >= `n` (1..=0x80).
#[inline(always)]
const fn ge(low: u64, n: u8) -> u64 {
    low + ONES * (0x80 - n as u64)
}

#[inline(always)]
fn first_of(c: &[u8; 16], flags: impl Fn(u64) -> u64) -> usize {
    let lo = flags(u64::from_le_bytes([
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
    ]));
    if lo != 0 {
        return (lo.trailing_zeros() / 8) as usize;
    }
    let hi = flags(u64::from_le_bytes([
        c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15],
    ]));
    8 + (hi.trailing_zeros() / 8) as usize
}

/// Flags control bytes (< 0x20) and DEL.
#[inline(always)]
fn value_flags(x: u64) -> u64 {
    let low = x & LOW7;
    (!ge(low, 0x20) | ge(low, 0x7f)) & !x & HIGH
}

/// Flags bytes outside 0x21..=0x7E.
#[inline(always)]
fn target_flags(x: u64) -> u64 {
    let low = x & LOW7;
    (!ge(low, 0x21) | ge(low, 0x7f) | x) & HIGH
}

/// First control byte (< 0x20, HTAB included: the caller lets it through) or DEL.
#[inline(always)]
pub(crate) fn value_stop16(c: &[u8; 16]) -> usize {
    first_of(c, value_flags)
}

/// Like [`value_stop16`] over 32 bytes, with one branch for the common "none" case (values
/// such as User-Agent, Accept or Cookie are long).
#[inline(always)]
pub(crate) fn value_stop32(c: &[u8; 32]) -> usize {
    let w = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
    let f = [
        value_flags(w(0)),
        value_flags(w(8)),
        value_flags(w(16)),
        value_flags(w(24)),
    ];
    if (f[0] | f[1] | f[2] | f[3]) == 0 {
        return 32;
    }
    let mut at = 0;
    for x in f {
        if x != 0 {
            return at + (x.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    32
}

#[inline(always)]
pub(crate) fn load32(s: &[u8], at: usize) -> &[u8; 32] {
    s[at..at + 32].try_into().expect("32 bytes")
}

/// First byte outside 0x21..=0x7E (what may not appear in a request-target).
#[inline(always)]
pub(crate) fn target_stop16(c: &[u8; 16]) -> usize {
    first_of(c, target_flags)
}

#[inline(always)]
pub(crate) fn load16(s: &[u8], at: usize) -> &[u8; 16] {
    s[at..at + 16].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let mut out = Vec::new();
        for (input, want) in [
            (&b"/a%20b"[..], &b"/a b"[..]),
            (b"%2F%2f", b"//"),
            (b"%", b"%"),
            (b"%4", b"%4"),
            (b"%zz%41", b"%zzA"),
            (b"100%", b"100%"),
            (b"%%41", b"%A"),
            (b"", b""),
            (b"%C3%A9", b"\xc3\xa9"),
        ] {
            out.extend_from_slice(b"junk");
            percent_decode_into(input, &mut out);
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn scanner_masks_match_bytewise() {
        // every byte value in every lane
        for v in 0..=255u8 {
            for lane in 0..16 {
                let mut c = *b"abcdefghijklmnop";
                c[lane] = v;
                let at = |stop: bool| if stop { lane } else { 16 };
                assert_eq!(value_stop16(&c), at(v < 0x20 || v == 0x7f), "value {v:#x}");
                for half in 0..2 {
                    let mut c32 = [b'a'; 32];
                    c32[half * 16..half * 16 + 16].copy_from_slice(&c);
                    let at32 = if v < 0x20 || v == 0x7f {
                        half * 16 + lane
                    } else {
                        32
                    };
                    assert_eq!(value_stop32(&c32), at32, "value32 {v:#x}");
                }
                assert_eq!(
                    target_stop16(&c),
                    at(!(0x21..=0x7e).contains(&v)),
                    "target {v:#x}"
                );
            }
        }
        assert_eq!(value_stop16(b"xx\r\n\x7fxxxxxxxxxx\t"), 2);
        assert_eq!(target_stop16(b"/abc?d=e#fghijkl"), 16);
        // several flags in one half: the first wins
        assert_eq!(value_stop16(b"abcdefghij\x01k\x7fmn\r"), 10);
    }

    #[test]
    fn token_and_trim() {
        assert!(is_token(b"Content-Type"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert_eq!(trim_ows(b" \t x y \t"), b"x y");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(parse_u64_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64_digits(b"18446744073709551616"), None);
        assert_eq!(parse_u64_digits(b"+1"), None);
        assert_eq!(parse_u64_digits(b""), None);
    }
}
