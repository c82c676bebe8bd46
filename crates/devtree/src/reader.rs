//! A bounds-checked flattened-device-tree reader.
//!
//! [`Tree::parse`] validates the whole blob once (header, memory reservation
//! block, every token of the structure block, every property name in the
//! strings block) and builds a small arena of nodes that borrow names and
//! values from the blob. Every read goes through `get`, every sum through
//! `checked_add`, and nothing recurses, so no input can make it panic or
//! overflow the stack; anything inconsistent is an [`Error`].
//!
//! Accepted: header version >= 17 with `last_comp_version` <= 17 (what dtc,
//! libfdt, QEMU and OpenSBI write), `FDT_NOP` anywhere between tokens,
//! properties after child nodes (libfdt never writes that, but it is
//! harmless), and any number of nodes up to a nesting depth of
//! [`MAX_DEPTH`].

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{Error, Region};

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Size of the v17 header in bytes.
pub(crate) const HEADER_LEN: usize = 40;
/// Deepest node nesting accepted (the same limit as Linux and vm-fdt).
pub(crate) const MAX_DEPTH: usize = 64;

/// Reads a big-endian `u32` at `off`, if the four bytes are there.
fn be32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads a big-endian `u64` at `off`, if the eight bytes are there.
fn be64(b: &[u8], off: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Rounds `n` up to a multiple of four.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// Returns the blob size recorded in a DTB header (`totalsize`), after
/// checking the magic number.
///
/// `header` needs only the first 8 bytes of the blob (passing the whole
/// 40-byte header is fine). The hypervisor uses this to size the slice it
/// hands to [`parse_host`](crate::parse_host):
///
/// ```
/// # let blob = [0xd0u8, 0x0d, 0xfe, 0xed, 0, 0, 0x10, 0];
/// let len = rivet_devtree::total_size(&blob[..8]).unwrap();
/// assert_eq!(len, 0x1000);
/// ```
pub fn total_size(header: &[u8]) -> Result<usize, Error> {
    let magic = be32(header, 0).ok_or(Error::Truncated)?;
    if magic != FDT_MAGIC {
        return Err(Error::BadMagic);
    }
    let size = be32(header, 4).ok_or(Error::Truncated)?;
    let size = usize::try_from(size).map_err(|_| Error::BadHeader("totalsize"))?;
    if size < HEADER_LEN {
        return Err(Error::BadHeader("totalsize smaller than the header"));
    }
    Ok(size)
}

/// One property: name from the strings block, raw value bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prop<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// One node of the arena.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    /// Full name including any `@unit-address` (empty for the root).
    pub name: &'a str,
    pub parent: Option<usize>,
    pub props: Vec<Prop<'a>>,
    pub children: Vec<usize>,
}

/// A validated device tree: nodes in document (depth-first) order, the root
/// at index 0, plus the header's memory reservation entries.
#[derive(Debug)]
pub(crate) struct Tree<'a> {
    pub nodes: Vec<Node<'a>>,
    pub reservations: Vec<Region>,
    phandles: BTreeMap<u32, usize>,
}

impl<'a> Tree<'a> {
    /// Validates `blob` and builds the node arena.
    pub fn parse(blob: &'a [u8]) -> Result<Self, Error> {
        if blob.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let total = total_size(blob)?;
        let blob = blob.get(..total).ok_or(Error::Truncated)?;

        let hdr = |i: usize| be32(blob, i * 4).ok_or(Error::Truncated);
        let off_struct = hdr(2)? as usize;
        let off_strings = hdr(3)? as usize;
        let off_rsvmap = hdr(4)? as usize;
        let version = hdr(5)?;
        let last_comp_version = hdr(6)?;
        let size_strings = hdr(8)? as usize;
        let size_struct = hdr(9)? as usize;
        if version < 17 || last_comp_version > 17 {
            return Err(Error::BadVersion {
                version,
                last_comp_version,
            });
        }

        let block = |off: usize, size: usize, what: &'static str| -> Result<&'a [u8], Error> {
            if off < HEADER_LEN {
                return Err(Error::BadHeader(what));
            }
            let end = off.checked_add(size).ok_or(Error::BadHeader(what))?;
            blob.get(off..end).ok_or(Error::BadHeader(what))
        };
        let structs = block(off_struct, size_struct, "structure block outside the blob")?;
        let strings = block(off_strings, size_strings, "strings block outside the blob")?;
        if off_rsvmap < HEADER_LEN || off_rsvmap >= total {
            return Err(Error::BadHeader(
                "memory reservation block outside the blob",
            ));
        }
        let rsvmap = blob.get(off_rsvmap..).ok_or(Error::BadHeader(
            "memory reservation block outside the blob",
        ))?;

        let reservations = parse_rsvmap(rsvmap)?;
        let nodes = parse_structs(structs, strings)?;

        let mut phandles = BTreeMap::new();
        for (idx, node) in nodes.iter().enumerate() {
            let value = node
                .props
                .iter()
                .find(|p| p.name == "phandle")
                .or_else(|| node.props.iter().find(|p| p.name == "linux,phandle"));
            if let Some(p) = value {
                let ph = cell_value(p.value).ok_or_else(|| bad(node, "phandle", "not one cell"))?;
                if ph == 0 || ph == u32::MAX {
                    return Err(bad(node, "phandle", "reserved value"));
                }
                if phandles.insert(ph, idx).is_some() {
                    return Err(bad(node, "phandle", "duplicate phandle"));
                }
            }
        }

        Ok(Self {
            nodes,
            reservations,
            phandles,
        })
    }

    /// The node at `idx` (indices come from this tree, so this is total for
    /// them; an out-of-range index is reported as a structure error).
    pub fn node(&self, idx: usize) -> Result<&Node<'a>, Error> {
        self.nodes
            .get(idx)
            .ok_or(Error::BadStructure("node index out of range"))
    }

    /// The child of `parent` called `name`. A `name` without `@` also matches
    /// children that have a unit address (`"memory"` matches `memory@8000`).
    pub fn child(&self, parent: usize, name: &str) -> Option<usize> {
        let node = self.nodes.get(parent)?;
        node.children.iter().copied().find(|&c| {
            self.nodes
                .get(c)
                .is_some_and(|n| n.name == name || (!name.contains('@') && n.base_name() == name))
        })
    }

    /// Node indices whose `compatible` list contains `compat`, in document
    /// order.
    pub fn compatible<'t>(&'t self, compat: &'t str) -> impl Iterator<Item = usize> + 't {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.is_compatible(compat))
            .map(|(i, _)| i)
    }

    /// The node that carries `phandle`.
    pub fn by_phandle(&self, phandle: u32) -> Option<usize> {
        self.phandles.get(&phandle).copied()
    }

    /// `#address-cells` of `node` (default 2), limited to 0..=4.
    pub fn address_cells(&self, node: usize) -> Result<u32, Error> {
        self.cells(node, "#address-cells", 2)
    }

    /// `#size-cells` of `node` (default 1), limited to 0..=4.
    pub fn size_cells(&self, node: usize) -> Result<u32, Error> {
        self.cells(node, "#size-cells", 1)
    }

    fn cells(&self, node: usize, name: &'static str, default: u32) -> Result<u32, Error> {
        let n = self.node(node)?;
        match n.prop_u32(name)? {
            None => Ok(default),
            Some(v) if v <= 4 => Ok(v),
            Some(_) => Err(bad(n, name, "more than 4 cells")),
        }
    }

    /// Decodes the `reg` property of `node` into CPU physical `(address,
    /// size)` pairs, honouring the parent's `#address-cells`/`#size-cells`
    /// and translating through every ancestor bus's `ranges`. Returns `None`
    /// when there is no `reg`.
    pub fn reg(&self, node: usize) -> Result<Option<Vec<Region>>, Error> {
        let n = self.node(node)?;
        let Some(value) = n.prop("reg") else {
            return Ok(None);
        };
        let parent = n
            .parent
            .ok_or_else(|| bad(n, "reg", "root node has no parent bus"))?;
        let ac = self.address_cells(parent)? as usize;
        let sc = self.size_cells(parent)? as usize;
        if ac == 0 || ac > 2 || sc > 2 {
            return Err(bad(n, "reg", "unsupported #address-cells/#size-cells"));
        }
        let entry = (ac + sc) * 4;
        if value.is_empty() || value.len() % entry != 0 {
            return Err(bad(n, "reg", "length is not a whole number of entries"));
        }
        let mut out = Vec::with_capacity(value.len() / entry);
        for chunk in value.chunks_exact(entry) {
            let addr = read_cells(chunk, 0, ac).ok_or_else(|| bad(n, "reg", "short entry"))?;
            let size = read_cells(chunk, ac * 4, sc).ok_or_else(|| bad(n, "reg", "short entry"))?;
            let addr = self.translate(parent, addr)?;
            out.push(Region::new(addr, size));
        }
        Ok(Some(out))
    }

    /// Translates `addr`, an address on the bus that `bus`'s children live
    /// on, to a root (CPU physical) address by walking `ranges` upwards. An
    /// empty or absent `ranges` is treated as identity.
    fn translate(&self, mut bus: usize, mut addr: u64) -> Result<u64, Error> {
        for _ in 0..=MAX_DEPTH {
            let b = self.node(bus)?;
            let Some(parent) = b.parent else {
                return Ok(addr);
            };
            match b.prop("ranges") {
                None | Some([]) => {}
                Some(ranges) => {
                    let child_ac = self.address_cells(bus)? as usize;
                    let parent_ac = self.address_cells(parent)? as usize;
                    let child_sc = self.size_cells(bus)? as usize;
                    if child_ac == 0 || child_ac > 2 || parent_ac == 0 || parent_ac > 2 {
                        return Err(bad(b, "ranges", "unsupported cell counts"));
                    }
                    if child_sc == 0 || child_sc > 2 {
                        return Err(bad(b, "ranges", "unsupported cell counts"));
                    }
                    let entry = (child_ac + parent_ac + child_sc) * 4;
                    if ranges.len() % entry != 0 {
                        return Err(bad(b, "ranges", "length is not a whole number of entries"));
                    }
                    let mut hit = None;
                    for chunk in ranges.chunks_exact(entry) {
                        let short = || bad(b, "ranges", "short entry");
                        let child = read_cells(chunk, 0, child_ac).ok_or_else(short)?;
                        let paddr = read_cells(chunk, child_ac * 4, parent_ac).ok_or_else(short)?;
                        let size = read_cells(chunk, (child_ac + parent_ac) * 4, child_sc)
                            .ok_or_else(short)?;
                        if addr >= child && addr - child < size {
                            hit = Some(
                                paddr
                                    .checked_add(addr - child)
                                    .ok_or_else(|| bad(b, "ranges", "translation overflows"))?,
                            );
                            break;
                        }
                    }
                    addr = hit.ok_or_else(|| bad(b, "ranges", "address outside every range"))?;
                }
            }
            bus = parent;
        }
        Err(Error::BadStructure("bus nesting too deep"))
    }
}

impl<'a> Node<'a> {
    /// Name without the `@unit-address` part.
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    /// Raw value of the first property called `name`.
    pub fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.props.iter().find(|p| p.name == name).map(|p| p.value)
    }

    /// A one-cell property.
    pub fn prop_u32(&self, name: &'static str) -> Result<Option<u32>, Error> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) => cell_value(v)
                .map(Some)
                .ok_or_else(|| bad(self, name, "not one cell")),
        }
    }

    /// A one- or two-cell property.
    pub fn prop_u64(&self, name: &'static str) -> Result<Option<u64>, Error> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(be32(v, 0).map(u64::from)),
            Some(v) if v.len() == 8 => Ok(be64(v, 0)),
            Some(_) => Err(bad(self, name, "not one or two cells")),
        }
    }

    /// A property holding exactly one NUL-terminated UTF-8 string.
    pub fn prop_str(&self, name: &'static str) -> Result<Option<&'a str>, Error> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) => {
                let list = stringlist(v).ok_or_else(|| bad(self, name, "not a string"))?;
                match list.as_slice() {
                    [s] => Ok(Some(*s)),
                    _ => Err(bad(self, name, "not exactly one string")),
                }
            }
        }
    }

    /// A property holding a list of NUL-terminated UTF-8 strings.
    pub fn prop_strings(&self, name: &'static str) -> Result<Option<Vec<&'a str>>, Error> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) => stringlist(v)
                .map(Some)
                .ok_or_else(|| bad(self, name, "not a string list")),
        }
    }

    /// A property holding big-endian cells.
    pub fn prop_cells(&self, name: &'static str) -> Result<Option<Vec<u32>>, Error> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) if v.len() % 4 == 0 => Ok(Some(
                v.chunks_exact(4)
                    .filter_map(|c| be32(c, 0))
                    .collect::<Vec<u32>>(),
            )),
            Some(_) => Err(bad(self, name, "length is not a multiple of 4")),
        }
    }

    /// Whether `compat` is one of the `compatible` strings (a malformed
    /// `compatible` matches nothing).
    pub fn is_compatible(&self, compat: &str) -> bool {
        self.prop("compatible")
            .and_then(stringlist)
            .is_some_and(|l| l.contains(&compat))
    }

    /// `status` absent, `"okay"` or `"ok"`.
    pub fn is_enabled(&self) -> bool {
        match self.prop("status") {
            None => true,
            Some(v) => matches!(stringlist(v).as_deref(), Some(["okay"] | ["ok"])),
        }
    }
}

/// Builds a [`Error::BadProperty`] for `node`.
pub(crate) fn bad(node: &Node<'_>, property: &'static str, reason: &'static str) -> Error {
    Error::BadProperty {
        node: node_label(node),
        property,
        reason,
    }
}

/// The node's name, `/` for the root.
pub(crate) fn node_label(node: &Node<'_>) -> String {
    if node.name.is_empty() {
        "/".to_string()
    } else {
        node.name.to_string()
    }
}

/// A value of exactly one cell.
fn cell_value(v: &[u8]) -> Option<u32> {
    if v.len() == 4 {
        be32(v, 0)
    } else {
        None
    }
}

/// Reads `cells` (0..=2) big-endian cells at `off` as one number.
pub(crate) fn read_cells(b: &[u8], off: usize, cells: usize) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(b, off).map(u64::from),
        2 => be64(b, off),
        _ => None,
    }
}

/// Splits a stringlist value. It must be non-empty, end in NUL and be UTF-8.
fn stringlist(v: &[u8]) -> Option<Vec<&str>> {
    let body = v.strip_suffix(&[0])?;
    let text = core::str::from_utf8(body).ok()?;
    Some(text.split('\0').collect())
}

/// Reads the memory reservation block up to its `(0, 0)` terminator.
fn parse_rsvmap(rsvmap: &[u8]) -> Result<Vec<Region>, Error> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        let addr = be64(rsvmap, off).ok_or(Error::BadHeader(
            "memory reservation block is not terminated",
        ))?;
        let size = be64(rsvmap, off.saturating_add(8)).ok_or(Error::BadHeader(
            "memory reservation block is not terminated",
        ))?;
        if addr == 0 && size == 0 {
            return Ok(out);
        }
        if addr.checked_add(size).is_none() {
            // Same rule as `/reserved-memory` `reg` entries: a range whose
            // end does not fit in 64 bits is refused, not passed on.
            return Err(Error::BadHeader(
                "memory reservation entry wraps around the address space",
            ));
        }
        if size != 0 {
            out.push(Region::new(addr, size));
        }
        off = off.saturating_add(16);
    }
}

/// Walks the structure block and builds the node arena.
fn parse_structs<'a>(structs: &'a [u8], strings: &'a [u8]) -> Result<Vec<Node<'a>>, Error> {
    let mut nodes: Vec<Node<'a>> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut root_done = false;
    let mut off = 0usize;

    loop {
        let token = be32(structs, off).ok_or(Error::BadStructure("missing FDT_END"))?;
        off = off.saturating_add(4);
        match token {
            FDT_NOP => {}
            FDT_BEGIN_NODE => {
                if root_done {
                    return Err(Error::BadStructure("more than one root node"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::BadStructure("nodes nested too deeply"));
                }
                let rest = structs
                    .get(off..)
                    .ok_or(Error::BadStructure("node name past the block"))?;
                let len = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(Error::BadStructure("node name is not terminated"))?;
                let name = rest
                    .get(..len)
                    .and_then(|n| core::str::from_utf8(n).ok())
                    .ok_or(Error::BadStructure("node name is not UTF-8"))?;
                if name.contains('/') && !stack.is_empty() {
                    return Err(Error::BadStructure("node name contains '/'"));
                }
                off = off
                    .checked_add(len + 1)
                    .and_then(align4)
                    .ok_or(Error::BadStructure("node name past the block"))?;
                let idx = nodes.len();
                let parent = stack.last().copied();
                if let Some(p) = parent {
                    nodes
                        .get_mut(p)
                        .ok_or(Error::BadStructure("dangling parent"))?
                        .children
                        .push(idx);
                }
                nodes.push(Node {
                    name: if parent.is_none() { "" } else { name },
                    parent,
                    props: Vec::new(),
                    children: Vec::new(),
                });
                stack.push(idx);
            }
            FDT_END_NODE => {
                stack
                    .pop()
                    .ok_or(Error::BadStructure("FDT_END_NODE without a node"))?;
                if stack.is_empty() {
                    root_done = true;
                }
            }
            FDT_PROP => {
                let &cur = stack
                    .last()
                    .ok_or(Error::BadStructure("property outside a node"))?;
                let len = be32(structs, off).ok_or(Error::BadStructure("truncated property"))?;
                let nameoff = be32(structs, off.saturating_add(4))
                    .ok_or(Error::BadStructure("truncated property"))?;
                let start = off.saturating_add(8);
                let end = start
                    .checked_add(len as usize)
                    .ok_or(Error::BadStructure("property value past the block"))?;
                let value = structs
                    .get(start..end)
                    .ok_or(Error::BadStructure("property value past the block"))?;
                let name_bytes = strings.get(nameoff as usize..).ok_or(Error::BadStructure(
                    "property name outside the strings block",
                ))?;
                let name_len = name_bytes
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(Error::BadStructure("property name is not terminated"))?;
                let name = name_bytes
                    .get(..name_len)
                    .and_then(|n| core::str::from_utf8(n).ok())
                    .ok_or(Error::BadStructure("property name is not UTF-8"))?;
                off = align4(end).ok_or(Error::BadStructure("property value past the block"))?;
                nodes
                    .get_mut(cur)
                    .ok_or(Error::BadStructure("dangling node"))?
                    .props
                    .push(Prop { name, value });
            }
            FDT_END => {
                if !stack.is_empty() {
                    return Err(Error::BadStructure("FDT_END inside a node"));
                }
                if !root_done {
                    return Err(Error::BadStructure("no root node"));
                }
                return Ok(nodes);
            }
            _ => return Err(Error::BadStructure("unknown token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stringlist_shapes() {
        assert_eq!(stringlist(b"a\0bc\0"), Some(alloc::vec!["a", "bc"]));
        assert_eq!(stringlist(b"\0"), Some(alloc::vec![""]));
        assert_eq!(stringlist(b""), None);
        assert_eq!(stringlist(b"abc"), None);
        assert_eq!(stringlist(b"\xff\0"), None);
    }

    #[test]
    fn read_cells_widths() {
        let b = [0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(read_cells(&b, 0, 0), Some(0));
        assert_eq!(read_cells(&b, 0, 1), Some(1));
        assert_eq!(read_cells(&b, 0, 2), Some(0x1_0000_0002));
        assert_eq!(read_cells(&b, 4, 2), None);
        assert_eq!(read_cells(&b, 0, 3), None);
        assert_eq!(read_cells(&b, usize::MAX - 1, 1), None);
    }

    #[test]
    fn total_size_checks() {
        assert_eq!(total_size(&[]), Err(Error::Truncated));
        assert_eq!(total_size(&[0xd0, 0x0d, 0xfe, 0xed]), Err(Error::Truncated));
        assert_eq!(total_size(&[0, 0, 0, 0, 0, 0, 1, 0]), Err(Error::BadMagic));
        assert_eq!(
            total_size(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 8]),
            Err(Error::BadHeader("totalsize smaller than the header"))
        );
        assert_eq!(total_size(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 1, 0]), Ok(256));
    }

    #[test]
    fn rsvmap_terminator_required() {
        let mut b = alloc::vec![0u8; 16];
        assert_eq!(parse_rsvmap(&b), Ok(Vec::new()));
        b.splice(0..0, [0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(
            parse_rsvmap(&b),
            Ok(alloc::vec![Region::new(0x8000_0000, 0x1000)])
        );
        assert!(parse_rsvmap(b.get(..24).unwrap_or_default()).is_err());
    }
}
