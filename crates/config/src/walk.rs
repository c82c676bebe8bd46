//! Walking the parsed TOML tree with line numbers: typed lookups that report
//! wrong types, unknown-key checks, and the error list they all feed.
//!
//! Standard tables (`[machine]`), inline tables (`machine = { .. }`) and
//! dotted keys (`machine.harts = 2`) are all accepted wherever a table is
//! expected; arrays of tables likewise as `[[vm]]` or `vm = [{ .. }]`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike, Value};

use crate::ConfigError;

/// The error list and the text's line table.
pub(crate) struct Ctx {
    line_starts: Vec<usize>,
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

/// A table with the line to blame for it and its dotted field path.
pub(crate) struct Node<'d> {
    pub t: &'d dyn TableLike,
    pub line: usize,
    pub path: String,
}

/// A key that is present: its value, where it is, and its field path.
pub(crate) struct Entry<'d> {
    pub item: &'d Item,
    /// Line of the value (of the key when the value has no span).
    pub line: usize,
    pub field: String,
}

/// The outcome of a typed lookup.
pub(crate) enum Got<T> {
    /// The key is not there.
    Absent,
    /// The key is there but wrong; already reported.
    Bad,
    /// The value and its line.
    Val(T, usize),
}

impl Ctx {
    pub fn new(text: &str, file: &Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            line_starts,
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    /// 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    pub fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|s| self.line_of(s.start))
    }

    pub fn error(&mut self, line: usize, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    /// `key` in `node`, if present.
    pub fn get<'d>(&self, node: &Node<'d>, key: &str) -> Option<Entry<'d>> {
        let (k, item) = node.t.get_key_value(key)?;
        let key_line = self.line(k.span()).unwrap_or(node.line);
        let line = self.line(item.span()).unwrap_or(key_line);
        Some(Entry {
            item,
            line,
            field: node.field(key),
        })
    }

    fn wrong_type(&mut self, e: &Entry<'_>, expected: &str) {
        let found = e.item.type_name();
        self.error(
            e.line,
            e.field.clone(),
            format!("expected {expected}, found {found}"),
        );
    }

    /// Reports every key of `node` not in `allowed`.
    pub fn unknown_keys(&mut self, node: &Node<'_>, allowed: &[&str]) {
        let mut found = Vec::new();
        for (key, item) in node.t.iter() {
            if allowed.contains(&key) {
                continue;
            }
            let line = node
                .t
                .key(key)
                .and_then(|k| self.line(k.span()))
                .or_else(|| self.line(item.span()))
                .unwrap_or(node.line);
            let mut msg = format!("unknown key; expected one of {}", allowed.join(", "));
            if let Some(best) = suggest(key, allowed) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            found.push((line, node.field(key), msg));
        }
        for (line, field, msg) in found {
            self.error(line, field, msg);
        }
    }

    pub fn int(&mut self, node: &Node<'_>, key: &str) -> Got<i64> {
        match self.get(node, key) {
            None => Got::Absent,
            Some(e) => match e.item.as_integer() {
                Some(v) => Got::Val(v, e.line),
                None => {
                    self.wrong_type(&e, "an integer");
                    Got::Bad
                }
            },
        }
    }

    /// An integer in `range`, reporting `what` (e.g. "1..=8") when outside.
    pub fn int_in(&mut self, node: &Node<'_>, key: &str, lo: i64, hi: i64) -> Got<i64> {
        match self.int(node, key) {
            Got::Val(v, line) if !(lo..=hi).contains(&v) => {
                let range = if hi == i64::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo}..={hi}")
                };
                self.error(
                    line,
                    node.field(key),
                    format!("{v} is out of range: must be {range}"),
                );
                Got::Bad
            }
            other => other,
        }
    }

    pub fn boolean(&mut self, node: &Node<'_>, key: &str) -> Got<bool> {
        match self.get(node, key) {
            None => Got::Absent,
            Some(e) => match e.item.as_bool() {
                Some(v) => Got::Val(v, e.line),
                None => {
                    self.wrong_type(&e, "true or false");
                    Got::Bad
                }
            },
        }
    }

    pub fn string<'d>(&mut self, node: &Node<'d>, key: &str) -> Got<&'d str> {
        match self.get(node, key) {
            None => Got::Absent,
            Some(e) => match e.item.as_str() {
                Some(v) => Got::Val(v, e.line),
                None => {
                    self.wrong_type(&e, "a string");
                    Got::Bad
                }
            },
        }
    }

    /// An array of values: each with its own line.
    pub fn array<'d>(&mut self, node: &Node<'d>, key: &str) -> Got<Vec<(&'d Value, usize)>> {
        match self.get(node, key) {
            None => Got::Absent,
            Some(e) => match e.item.as_array() {
                Some(a) => {
                    let vals = a
                        .iter()
                        .map(|v| (v, self.line(v.span()).unwrap_or(e.line)))
                        .collect();
                    Got::Val(vals, e.line)
                }
                None => {
                    self.wrong_type(&e, "an array");
                    Got::Bad
                }
            },
        }
    }

    /// A sub-table (`[key]`, `key = { .. }` or dotted keys).
    pub fn table<'d>(&mut self, node: &Node<'d>, key: &str) -> Got<Node<'d>> {
        let Some(e) = self.get(node, key) else {
            return Got::Absent;
        };
        match e.item.as_table_like() {
            Some(t) if !e.item.is_array_of_tables() => Got::Val(
                Node {
                    t,
                    line: e.line,
                    path: e.field.clone(),
                },
                e.line,
            ),
            _ => {
                let expected = format!("a table ([{}])", e.field);
                self.wrong_type(&e, &expected);
                Got::Bad
            }
        }
    }

    /// An array of tables (`[[key]]` or `key = [{ .. }, ..]`); element `i`
    /// gets the field path `{field}[i]`. `header` names the syntax in errors.
    pub fn tables<'d>(&mut self, node: &Node<'d>, key: &str, header: &str) -> Got<Vec<Node<'d>>> {
        let Some(e) = self.get(node, key) else {
            return Got::Absent;
        };
        let expected = format!("an array of tables ({header})");
        match e.item {
            Item::ArrayOfTables(aot) => {
                let nodes = aot
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Node {
                        t: t as &dyn TableLike,
                        line: self.line(t.span()).unwrap_or(e.line),
                        path: format!("{}[{i}]", e.field),
                    })
                    .collect();
                Got::Val(nodes, e.line)
            }
            Item::Value(Value::Array(a)) => {
                let mut nodes = Vec::new();
                let mut ok = true;
                for (i, v) in a.iter().enumerate() {
                    let line = self.line(v.span()).unwrap_or(e.line);
                    let field = format!("{}[{i}]", e.field);
                    match v.as_inline_table() {
                        Some(t) => nodes.push(Node {
                            t,
                            line,
                            path: field,
                        }),
                        None => {
                            self.error(
                                line,
                                field,
                                format!("expected a table, found {}", v.type_name()),
                            );
                            ok = false;
                        }
                    }
                }
                if ok {
                    Got::Val(nodes, e.line)
                } else {
                    Got::Bad
                }
            }
            _ => {
                self.wrong_type(&e, &expected);
                Got::Bad
            }
        }
    }
}

impl Node<'_> {
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// The allowed key closest to `key`, if it is a likely typo.
fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(&key.to_ascii_lowercase(), a), *a))
        .filter(|&(d, a)| d <= 2 && d < a.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, a)| a)
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * w + j] = if i == 0 {
                j
            } else if j == 0 {
                i
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * w + j] + 1)
                    .min(d[i * w + j - 1] + 1)
                    .min(d[(i - 1) * w + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * w + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("vpcus", "vcpus"), 1);
        assert_eq!(
            suggest("vpcus", &["name", "vcpus", "memory"]),
            Some("vcpus")
        );
        assert_eq!(
            suggest("memroy", &["name", "vcpus", "memory"]),
            Some("memory")
        );
        assert_eq!(suggest("colour", &["name", "vcpus", "memory"]), None);
        assert_eq!(suggest("x", &["pin"]), None);
    }

    #[test]
    fn lines() {
        let c = Ctx::new("a\nbb\n\nc", Path::new("f"));
        assert_eq!(c.line_of(0), 1);
        assert_eq!(c.line_of(1), 1);
        assert_eq!(c.line_of(2), 2);
        assert_eq!(c.line_of(5), 3);
        assert_eq!(c.line_of(6), 4);
        assert_eq!(c.line_of(100), 4);
    }
}
