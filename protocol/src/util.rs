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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Non-zero when some byte of `x` is below `n` (n <= 128). Exact as a yes/no answer.
#[inline(always)]
pub(crate) fn swar_has_less(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES.wrapping_mul(u64::from(n))) & !x & HIGHS
}

/// Non-zero when some byte of `x` equals `b`.
#[inline(always)]
pub(crate) fn swar_has_byte(x: u64, b: u8) -> u64 {
    let y = x ^ ONES.wrapping_mul(u64::from(b));
    y.wrapping_sub(ONES) & !y & HIGHS
}

/// Non-zero when some byte of `x` is above `n` (n <= 127). Exact as a yes/no answer.
#[inline(always)]
pub(crate) fn swar_has_more(x: u64, n: u8) -> u64 {
    (x.wrapping_add(ONES.wrapping_mul(u64::from(127 - n))) | x) & HIGHS
}

#[inline(always)]
pub(crate) fn load8(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
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
    fn swar_matches_bytewise() {
        let samples: [[u8; 8]; 6] = [
            *b"abcdefgh",
            *b"abc\rdefg",
            *b"\x7fbcdefgh",
            *b"abcdefg\x80",
            *b"\xff\xff\xff\xff\xff\xff\xff\x00",
            *b"        ",
        ];
        for s in samples {
            let x = u64::from_le_bytes(s);
            assert_eq!(swar_has_less(x, 0x20) != 0, s.iter().any(|&b| b < 0x20));
            assert_eq!(swar_has_less(x, 0x21) != 0, s.iter().any(|&b| b < 0x21));
            assert_eq!(swar_has_byte(x, 0x7f) != 0, s.contains(&0x7f));
            assert_eq!(swar_has_more(x, 0x7e) != 0, s.iter().any(|&b| b > 0x7e));
        }
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
