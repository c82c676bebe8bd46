//! RISC-V ISA strings: building `riscv,isa`, splitting it back into extensions.
//!
//! Canonical order (ISA manual, "ISA Extension Naming Conventions"):
//! single-letter extensions in the order `i e m a f d q l c b k j t p v h`
//! (any other letter after those, alphabetically); then multi-letter `Z*`
//! extensions by the category of their second letter (same order), then
//! alphabetically; then `S*` extensions alphabetically; then `X*`
//! extensions alphabetically; then anything else alphabetically.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Canonical order of the single-letter extensions.
const SINGLE_ORDER: &str = "iemafdqlcbkjtpvh";

/// Position of a single letter in canonical order (unknown letters last).
fn letter_rank(c: char) -> usize {
    SINGLE_ORDER
        .find(c)
        .unwrap_or_else(|| SINGLE_ORDER.len() + (c as usize))
}

/// Sort key of one (lowercase) extension name.
fn ext_key(name: &str) -> (usize, usize, &str) {
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('\0');
    let second = chars.next();
    match (first, second) {
        (c, None) => (0, letter_rank(c), name),
        ('z', Some(c)) => (1, letter_rank(c), name),
        ('s', Some(_)) => (2, 0, name),
        ('x', Some(_)) => (3, 0, name),
        _ => (4, 0, name),
    }
}

/// Lowercases, drops empty names and duplicates, and sorts into canonical
/// order.
pub(crate) fn canonical_extensions(exts: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = exts
        .iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    out.sort_by(|a, b| ext_key(a).cmp(&ext_key(b)));
    out.dedup();
    out
}

/// Builds an RV64 `riscv,isa` string: `"rv64"`, the single-letter extensions
/// in canonical order, then every multi-letter extension prefixed with `_`,
/// also in canonical order. Names are lowercased; duplicates and empty names
/// are dropped.
///
/// ```
/// use rivet_devtree::isa_string;
/// let exts = ["i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei", "zihpm", "sstc"];
/// assert_eq!(isa_string(&exts), "rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc");
/// ```
pub fn isa_string(exts: &[&str]) -> String {
    isa_from_canonical(&canonical_extensions(exts))
}

/// [`isa_string`] for a list already in canonical form.
pub(crate) fn isa_from_canonical(exts: &[String]) -> String {
    let mut s = String::from("rv64");
    for e in exts.iter().filter(|e| e.len() == 1) {
        s.push_str(e);
    }
    for e in exts.iter().filter(|e| e.len() > 1) {
        s.push('_');
        s.push_str(e);
    }
    s
}

/// Strips a trailing `<major>p<minor>` version from a multi-letter name
/// (`zicsr2p0` -> `zicsr`). Plain trailing digits are part of many names
/// (`zve32x` is not affected, `zic64b` neither), so only the `NpM` form is
/// removed.
fn strip_version(name: &str) -> &str {
    let b = name.as_bytes();
    let mut i = b.len();
    let digits = |i: &mut usize| {
        let start = *i;
        while *i > 0 && b.get(*i - 1).is_some_and(u8::is_ascii_digit) {
            *i -= 1;
        }
        *i < start
    };
    if !digits(&mut i) {
        return name;
    }
    if i == 0 || b.get(i - 1) != Some(&b'p') {
        return name;
    }
    i -= 1;
    if !digits(&mut i) || i < 2 {
        return name;
    }
    name.get(..i).unwrap_or(name)
}

/// Derives the extension list from a `riscv,isa` string such as
/// `rv64imafdch_zicsr_zifencei_sstc`: each single letter after the base,
/// then each multi-letter extension, lowercase, without version suffixes.
/// `g` expands to `i m a f d zicsr zifencei`. A multi-letter extension may
/// follow the single letters without an underscore (`rv64imaczicsr`). The
/// bogus `s`/`u` letters of old QEMU strings (`rv64imafdcsu`) are dropped.
pub(crate) fn extensions_from_isa(isa: &str) -> Vec<String> {
    let isa = isa.trim().to_ascii_lowercase();
    let rest = ["rv128", "rv64", "rv32"]
        .iter()
        .find_map(|p| isa.strip_prefix(p))
        .unwrap_or(&isa);

    let mut out: Vec<String> = Vec::new();
    let mut push = |e: &str| {
        if !e.is_empty() && !out.iter().any(|x| x == e) {
            out.push(e.to_string());
        }
    };

    let mut parts = rest.split('_');
    let singles = parts.next().unwrap_or("");
    let mut chars = singles.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        match c {
            'z' | 'x' | 's' => {
                let tail = singles.get(pos..).unwrap_or("");
                if c != 's' || !matches!(tail, "s" | "su") {
                    push(strip_version(tail));
                }
                break;
            }
            'g' => {
                for e in ["i", "m", "a", "f", "d", "zicsr", "zifencei"] {
                    push(e);
                }
            }
            c if c.is_ascii_lowercase() => {
                let mut buf = [0u8; 4];
                push(c.encode_utf8(&mut buf));
            }
            _ => {}
        }
        // Skip a version suffix such as `2p1` after a single letter.
        while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            chars.next();
        }
        let mut look = chars.clone();
        if look.next().is_some_and(|(_, p)| p == 'p')
            && look.peek().is_some_and(|(_, d)| d.is_ascii_digit())
        {
            chars.next();
            while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                chars.next();
            }
        }
    }
    for multi in parts {
        push(strip_version(multi));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn isa_string_canonical() {
        assert_eq!(
            isa_string(&[
                "i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei", "zihpm", "sstc"
            ]),
            "rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc"
        );
        // Out of order, duplicated, mixed case.
        assert_eq!(
            isa_string(&["sstc", "C", "zifencei", "a", "i", "m", "zicsr", "d", "f", "h", "m", ""]),
            "rv64imafdch_zicsr_zifencei_sstc"
        );
        assert_eq!(isa_string(&["i"]), "rv64i");
        assert_eq!(isa_string(&[]), "rv64");
    }

    #[test]
    fn isa_string_multi_letter_categories() {
        // Z by category of second letter (i < m < a < f < c < b), S after Z,
        // X last; alphabetical inside a category.
        assert_eq!(
            isa_string(&[
                "xfoo", "svpbmt", "zba", "zca", "zfa", "zaamo", "zmmul", "zihpm", "zicsr", "sstc",
                "i"
            ]),
            "rv64i_zicsr_zihpm_zmmul_zaamo_zfa_zca_zba_sstc_svpbmt_xfoo"
        );
    }

    #[test]
    fn isa_string_matches_qemu_order() {
        let qemu = "rv64imafdch_zic64b_zicbom_zicbop_zicboz_ziccamoa_ziccif_zicclsm_ziccrse_zicntr_zicsr_zifencei_zihintntl_zihintpause_zihpm_zmmul_za64rs_zaamo_zalrsc_zawrs_zfa_zca_zcd_zba_zbb_zbc_zbs_shcounterenw_shgatpa_shtvala_shvsatpa_shvstvala_shvstvecd_ssccptr_sscounterenw_sstc_sstvala_sstvecd_ssu64xl_svadu_svvptc";
        let exts = extensions_from_isa(qemu);
        let refs: Vec<&str> = exts.iter().map(String::as_str).collect();
        assert_eq!(isa_string(&refs), qemu);
    }

    #[test]
    fn extensions_from_plain_isa() {
        assert_eq!(
            extensions_from_isa("rv64imafdch_zicsr_zifencei_sstc"),
            vec!["i", "m", "a", "f", "d", "c", "h", "zicsr", "zifencei", "sstc"]
        );
        assert_eq!(extensions_from_isa("RV64IMAC"), vec!["i", "m", "a", "c"]);
        assert_eq!(extensions_from_isa("rv32i"), vec!["i"]);
    }

    #[test]
    fn extensions_from_odd_isa() {
        assert_eq!(
            extensions_from_isa("rv64gc"),
            vec!["i", "m", "a", "f", "d", "zicsr", "zifencei", "c"]
        );
        assert_eq!(
            extensions_from_isa("rv64imafdcsu"),
            vec!["i", "m", "a", "f", "d", "c"]
        );
        assert_eq!(
            extensions_from_isa("rv64i2p1m2p0a_zicsr2p0_zve32x_zic64b"),
            vec!["i", "m", "a", "zicsr", "zve32x", "zic64b"]
        );
        assert_eq!(
            extensions_from_isa("rv64imaczicsr_zifencei"),
            vec!["i", "m", "a", "c", "zicsr", "zifencei"]
        );
        assert_eq!(
            extensions_from_isa("rv64imac_sstc__"),
            vec!["i", "m", "a", "c", "sstc"]
        );
        assert_eq!(extensions_from_isa(""), Vec::<String>::new());
        assert_eq!(extensions_from_isa("rv64"), Vec::<String>::new());
        assert_eq!(extensions_from_isa("rv64ip"), vec!["i", "p"]);
    }

    #[test]
    fn strip_version_forms() {
        assert_eq!(strip_version("zicsr2p0"), "zicsr");
        assert_eq!(strip_version("zve32x"), "zve32x");
        assert_eq!(strip_version("zvl128b"), "zvl128b");
        assert_eq!(strip_version("zba1"), "zba1");
        assert_eq!(strip_version("p2p0"), "p2p0");
        assert_eq!(strip_version(""), "");
    }

    #[test]
    fn canonical_sorting() {
        assert_eq!(
            canonical_extensions(&["h", "v", "c", "i", "e", "zkt", "q"]),
            vec!["i", "e", "q", "c", "v", "h", "zkt"]
        );
    }
}
