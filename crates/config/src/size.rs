//! Memory sizes as written in the file: `"512M"`, `"2G"` (also `MiB`, `GiB`,
//! any letter case). A size always has a unit; the value is kept in MiB.

use crate::MAX_MEMORY_MB;

/// Parses a memory size into MiB: a whole number followed by `M`, `MiB`, `G`
/// or `GiB` (case-insensitive), at most 1 TiB.
pub fn parse_size_mb(s: &str) -> Result<u64, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let hint = "write a whole number of MiB or GiB, e.g. \"512M\" or \"2G\"";
    if num.is_empty() {
        return Err(format!("bad size {s:?}: {hint}"));
    }
    let mul: u64 = match unit.to_ascii_lowercase().as_str() {
        "m" | "mib" => 1,
        "g" | "gib" => 1024,
        "" => return Err(format!("size {s:?} has no unit: {hint}")),
        _ => return Err(format!("bad size {s:?}: unknown unit {unit:?}; {hint}")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .filter(|&mb| mb <= MAX_MEMORY_MB)
        .ok_or_else(|| format!("size {s:?} is too large (at most 1024G)"))
}

/// Formats MiB the way the file writes them: `"2G"` when a whole number of
/// GiB, else `"512M"`.
pub fn format_mb(mb: u64) -> String {
    if mb != 0 && mb.is_multiple_of(1024) {
        format!("{}G", mb / 1024)
    } else {
        format!("{mb}M")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size_mb("512M").unwrap(), 512);
        assert_eq!(parse_size_mb("512m").unwrap(), 512);
        assert_eq!(parse_size_mb("512MiB").unwrap(), 512);
        assert_eq!(parse_size_mb("2G").unwrap(), 2048);
        assert_eq!(parse_size_mb("2gib").unwrap(), 2048);
        assert_eq!(parse_size_mb("1024G").unwrap(), 1 << 20);
    }

    #[test]
    fn rejects() {
        assert!(parse_size_mb("512").unwrap_err().contains("no unit"));
        assert!(parse_size_mb("M").unwrap_err().contains("bad size"));
        assert!(parse_size_mb("").unwrap_err().contains("bad size"));
        assert!(parse_size_mb("1.5G").unwrap_err().contains("unknown unit"));
        assert!(parse_size_mb("512K").unwrap_err().contains("unknown unit"));
        assert!(parse_size_mb(" 512M").unwrap_err().contains("bad size"));
        assert!(parse_size_mb("-1M").is_err());
        assert!(parse_size_mb("1025G").unwrap_err().contains("too large"));
        assert!(parse_size_mb("99999999999999999999999M")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_mb(512), "512M");
        assert_eq!(format_mb(2048), "2G");
        assert_eq!(format_mb(1536), "1536M");
        assert_eq!(format_mb(0), "0M");
    }
}
