//! Every kind of configuration error, with its exact line and field.
//!
//! Texts are written as slices of lines, so element `i` is line `i + 1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use rivet_config::{parse, ConfigError};

fn text(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn errors(lines: &[&str]) -> Vec<ConfigError> {
    match parse(&text(lines), Path::new("conf/m.toml")) {
        Ok(cfg) => panic!("expected errors, parsed {cfg:#?}"),
        Err(e) => e,
    }
}

/// The only error: its line, field and message.
fn one(lines: &[&str]) -> (usize, String, String) {
    let e = errors(lines);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    let e = e.into_iter().next().unwrap();
    (e.line, e.field, e.message)
}

fn assert_one(lines: &[&str], line: usize, field: &str, msg_part: &str) {
    let (l, f, m) = one(lines);
    assert_eq!((l, f.as_str()), (line, field), "message: {m}");
    assert!(m.contains(msg_part), "{m:?} does not contain {msg_part:?}");
}

fn valid(lines: &[&str]) -> rivet_config::MachineConfig {
    match parse(&text(lines), Path::new("conf/m.toml")) {
        Ok(cfg) => cfg,
        Err(e) => panic!("expected valid, got {e:#?}"),
    }
}

const VM_A: [&str; 5] = [
    "[[vm]]",
    "name = \"a\"",
    "vcpus = 1",
    "memory = \"64M\"",
    "kernel = \"testkernel\"",
];
const VM_B: [&str; 5] = [
    "[[vm]]",
    "name = \"b\"",
    "vcpus = 1",
    "memory = \"64M\"",
    "kernel = \"testkernel\"",
];

fn with(parts: &[&[&str]]) -> Vec<&'static str> {
    // Leaks are fine in tests; keeps call sites short.
    parts
        .iter()
        .flat_map(|p| {
            p.iter()
                .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
        })
        .collect()
}

// ---- syntax, unknown keys, types ------------------------------------------

#[test]
fn syntax_error_has_the_parser_line() {
    assert_one(
        &["[machine]", "harts = 2", "log = = \"info\""],
        3,
        "syntax",
        "",
    );
    assert_one(
        &["[machine]", "harts = 2", "", "[[vm]", "name = \"a\""],
        4,
        "syntax",
        "",
    );
    // A duplicate key is a TOML error too.
    assert_one(
        &["[machine]", "harts = 2", "harts = 3"],
        3,
        "syntax",
        "duplicate key",
    );
}

#[test]
fn unknown_key_in_vm() {
    let lines = with(&[&VM_A, &["vpcus = 2"]]);
    let (l, f, m) = one(&lines);
    assert_eq!((l, f.as_str()), (6, "vm[0].vpcus"));
    assert!(
        m.starts_with("unknown key; expected one of name, vcpus, memory, kernel"),
        "{m}"
    );
    assert!(m.contains("did you mean `vcpus`?"), "{m}");
}

#[test]
fn unknown_keys_everywhere() {
    let lines = with(&[
        &["colour = 1", "[machine]", "harts = 1", "keep_runing = true"],
        &VM_A,
        &[
            "",
            "[[vm.disk]]",
            "image = \"d.img\"",
            "readonly = true",
            "",
            "[mashine]",
            "harts = 2",
        ],
    ]);
    let e = errors(&lines);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "colour"),
            (4, "machine.keep_runing"),
            (13, "vm[0].disk[0].readonly"),
            (15, "mashine")
        ],
        "{e:#?}"
    );
    assert!(e[1].message.contains("did you mean `keep_running`?"));
    assert!(e[2]
        .message
        .contains("expected one of image, start, sectors, read_only"));
    assert!(e[3].message.contains("expected one of machine, vm"));
}

#[test]
fn wrong_types() {
    assert_one(
        &with(&[&["[machine]", "harts = \"2\""], &VM_A]),
        2,
        "machine.harts",
        "expected an integer, found string",
    );
    assert_one(
        &with(&[&["[machine]", "keep_running = 1"], &VM_A]),
        2,
        "machine.keep_running",
        "expected true or false, found integer",
    );
    assert_one(
        &with(&[&["machine = 3"], &VM_A]),
        1,
        "machine",
        "expected a table ([machine]), found integer",
    );
    assert_one(
        &with(&[&VM_A, &["console = \"yes\""]]),
        6,
        "vm[0].console",
        "expected true or false, found string",
    );
    assert_one(
        &with(&[&VM_A, &["bootargs = 5"]]),
        6,
        "vm[0].bootargs",
        "expected a string, found integer",
    );
    assert_one(
        &with(&[&VM_A, &["pin = 0"]]),
        6,
        "vm[0].pin",
        "expected an array, found integer",
    );
    assert_one(
        &[
            "[[vm]]",
            "name = \"a\"",
            "vcpus = 1",
            "memory = 64",
            "kernel = \"testkernel\"",
        ],
        4,
        "vm[0].memory",
        "expected a string, found integer",
    );
    assert_one(
        &with(&[&VM_A, &["pin = [\"0\"]"]]),
        6,
        "vm[0].pin[0]",
        "expected a hart number, found string",
    );
    assert_one(
        &["[vm]", "name = \"a\""],
        1,
        "vm",
        "expected an array of tables ([[vm]]), found table",
    );
    assert_one(&["vm = [1]"], 1, "vm[0]", "expected a table, found integer");
    assert_one(
        &with(&[&VM_A, &["[vm.disk]", "image = \"d.img\""]]),
        6,
        "vm[0].disk",
        "expected an array of tables ([[vm.disk]]), found table",
    );
    assert_one(
        &with(&[&VM_A, &["", "[[vm.disk]]", "image = 7"]]),
        8,
        "vm[0].disk[0].image",
        "expected a string, found integer",
    );
    assert_one(
        &with(&[&VM_A, &["", "[[vm.disk]]", "image = \"d\"", "start = -1"]]),
        9,
        "vm[0].disk[0].start",
        "at least 0",
    );
    assert_one(
        &with(&[&VM_A, &["", "[[vm.disk]]", "image = \"d\"", "sectors = 0"]]),
        9,
        "vm[0].disk[0].sectors",
        "at least 1",
    );
}

// ---- machine ---------------------------------------------------------------

#[test]
fn harts_range() {
    assert_one(
        &with(&[&["[machine]", "harts = 0"], &VM_A]),
        2,
        "machine.harts",
        "0 is out of range: must be 1..=8",
    );
    assert_one(
        &with(&[&["[machine]", "harts = 9"], &VM_A]),
        2,
        "machine.harts",
        "9 is out of range: must be 1..=8",
    );
}

#[test]
fn log_levels() {
    for (v, n) in [
        ("\"off\"", 0),
        ("\"error\"", 1),
        ("\"warn\"", 2),
        ("\"info\"", 3),
        ("\"debug\"", 4),
        ("\"trace\"", 5),
        ("4", 4),
    ] {
        let line = format!("log = {v}");
        let cfg = valid(&with(&[&["[machine]", &line], &VM_A]));
        assert_eq!(cfg.log, n, "{v}");
    }
    assert_one(
        &with(&[&["[machine]", "log = \"loud\""], &VM_A]),
        2,
        "machine.log",
        "expected one of off, error, warn, info, debug, trace (or 0..=5), found \"loud\"",
    );
    assert_one(
        &with(&[&["[machine]", "log = 6"], &VM_A]),
        2,
        "machine.log",
        "found 6",
    );
    assert_one(
        &with(&[&["[machine]", "log = true"], &VM_A]),
        2,
        "machine.log",
        "found boolean",
    );
}

#[test]
fn machine_memory_syntax() {
    assert_one(
        &with(&[&["[machine]", "memory = \"2\""], &VM_A]),
        2,
        "machine.memory",
        "has no unit",
    );
    assert_one(
        &with(&[&["[machine]", "memory = \"2T\""], &VM_A]),
        2,
        "machine.memory",
        "unknown unit \"T\"",
    );
}

#[test]
fn too_little_machine_memory() {
    let lines = with(&[
        &["[machine]", "memory = \"1G\""],
        &[
            "[[vm]]",
            "name = \"web\"",
            "vcpus = 1",
            "memory = \"512M\"",
            "kernel = \"linux\"",
        ],
        &[
            "[[vm]]",
            "name = \"db\"",
            "vcpus = 1",
            "memory = \"256M\"",
            "kernel = \"linux\"",
        ],
    ]);
    assert_one(
        &lines,
        2,
        "machine.memory",
        "too little memory: VMs web (512M) + db (256M) = 768M, plus 512M for the hypervisor = 1280M, but machine.memory is 1G",
    );
    // Exactly enough is fine.
    let lines = with(&[
        &["[machine]", "memory = \"1280M\""],
        &[
            "[[vm]]",
            "name = \"web\"",
            "vcpus = 1",
            "memory = \"512M\"",
            "kernel = \"linux\"",
        ],
        &[
            "[[vm]]",
            "name = \"db\"",
            "vcpus = 1",
            "memory = \"256M\"",
            "kernel = \"linux\"",
        ],
    ]);
    assert_eq!(valid(&lines).memory_mb, Some(1280));
}

// ---- VMs -------------------------------------------------------------------

#[test]
fn no_vm() {
    assert_one(&["[machine]", "harts = 2"], 1, "vm", "no VM defined");
    assert_one(&[""], 1, "vm", "no VM defined");
    assert_one(&["vm = []"], 1, "vm", "no VM defined");
}

#[test]
fn too_many_vms() {
    let mut lines = Vec::new();
    let names: Vec<String> = (0..17).map(|i| format!("name = \"vm{i}\"")).collect();
    for n in &names {
        lines.extend([
            "[[vm]]",
            n.as_str(),
            "vcpus = 1",
            "memory = \"4M\"",
            "kernel = \"testkernel\"",
        ]);
    }
    // The 17th [[vm]] starts at line 16 * 5 + 1.
    assert_one(&lines, 81, "vm", "too many VMs: 17 defined, at most 16");
    lines.truncate(80);
    assert_eq!(valid(&lines).vms.len(), 16);
}

#[test]
fn missing_required_fields_point_at_the_header() {
    let lines = with(&[&VM_A, &["", "[[vm]]", "name = \"b\"", "vcpus = 1"]]);
    let e = errors(&lines);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(got, [(7, "vm[1].memory"), (7, "vm[1].kernel")]);
    assert!(e[0]
        .message
        .starts_with("missing; every [[vm]] needs name, vcpus, memory and kernel"));
    assert_one(
        &with(&[
            &VM_A,
            &[
                "",
                "[[vm]]",
                "vcpus = 1",
                "memory = \"4M\"",
                "kernel = \"linux\"",
            ],
        ]),
        7,
        "vm[1].name",
        "missing",
    );
    assert_one(
        &with(&[&VM_A, &["", "[[vm.disk]]", "start = 1"]]),
        7,
        "vm[0].disk[0].image",
        "missing",
    );
}

#[test]
fn duplicate_names() {
    let lines = with(&[
        &VM_A,
        &[
            "",
            "[[vm]]",
            "name = \"a\"",
            "vcpus = 1",
            "memory = \"4M\"",
            "kernel = \"testkernel\"",
        ],
    ]);
    assert_one(
        &lines,
        8,
        "vm[1].name",
        "duplicate VM name \"a\": vm[0] at line 2 has it too",
    );
}

#[test]
fn invalid_names() {
    let vm = |name: &str| {
        let n = format!("name = {name}");
        with(&[&[
            "[[vm]]",
            &n,
            "vcpus = 1",
            "memory = \"4M\"",
            "kernel = \"testkernel\"",
        ]])
    };
    assert_one(&vm("\"\""), 2, "vm[0].name", "empty");
    assert_one(&vm("\"web server\""), 2, "vm[0].name", "contains ' '");
    assert_one(&vm("\"wéb\""), 2, "vm[0].name", "contains 'é'");
    assert_one(
        &vm(&format!("\"{}\"", "x".repeat(33))),
        2,
        "vm[0].name",
        "33 bytes long; at most 32",
    );
    valid(&vm(&format!("\"{}\"", "x".repeat(32))));
    valid(&vm("\"Web_01-a\""));
}

#[test]
fn vcpus_range() {
    let vm = |n: &str| {
        let v = format!("vcpus = {n}");
        with(&[&[
            "[[vm]]",
            "name = \"a\"",
            &v,
            "memory = \"4M\"",
            "kernel = \"testkernel\"",
        ]])
    };
    assert_one(
        &vm("0"),
        3,
        "vm[0].vcpus",
        "0 is out of range: must be 1..=64",
    );
    assert_one(
        &vm("65"),
        3,
        "vm[0].vcpus",
        "65 is out of range: must be 1..=64",
    );
    assert_one(&vm("-1"), 3, "vm[0].vcpus", "out of range");
    assert_eq!(valid(&vm("64")).vms[0].vcpus, 64);
}

#[test]
fn vm_memory_size() {
    let vm = |m: &str| {
        let v = format!("memory = \"{m}\"");
        with(&[&[
            "[[vm]]",
            "name = \"a\"",
            "vcpus = 1",
            &v,
            "kernel = \"testkernel\"",
        ]])
    };
    assert_one(
        &vm("3M"),
        4,
        "vm[0].memory",
        "3M is too little: at least 4M",
    );
    assert_one(&vm("5M"), 4, "vm[0].memory", "5M is not a multiple of 2M");
    assert_one(&vm("lots"), 4, "vm[0].memory", "bad size \"lots\"");
    assert_one(&vm("512"), 4, "vm[0].memory", "no unit");
    assert_eq!(valid(&vm("4M")).vms[0].memory_mb, 4);
    assert_eq!(valid(&vm("1G")).vms[0].memory_mb, 1024);
}

#[test]
fn kernel_and_initrd_keywords() {
    let vm = |k: &str, i: &str| {
        let k = format!("kernel = \"{k}\"");
        let i = format!("initrd = \"{i}\"");
        with(&[&[
            "[[vm]]",
            "name = \"a\"",
            "vcpus = 1",
            "memory = \"4M\"",
            &k,
            &i,
        ]])
    };
    assert_one(
        &vm("busybox", "busybox"),
        5,
        "vm[0].kernel",
        "\"busybox\" is an initramfs, not a kernel",
    );
    assert_one(
        &vm("linux", "linux"),
        6,
        "vm[0].initrd",
        "\"linux\" is a kernel, not an initramfs",
    );
    assert_one(&vm("", "busybox"), 5, "vm[0].kernel", "empty");
    assert_one(&vm("linux", ""), 6, "vm[0].initrd", "empty");
    assert_one(
        &with(&[&VM_A, &["", "[[vm.disk]]", "image = \"\""]]),
        8,
        "vm[0].disk[0].image",
        "empty path",
    );
}

#[test]
fn bootargs_limits() {
    let long = format!("bootargs = \"{}\"", "x".repeat(1024));
    assert_one(
        &with(&[&VM_A, &[&long]]),
        6,
        "vm[0].bootargs",
        "1024 bytes long; Linux takes at most 1023",
    );
    assert_one(
        &with(&[&VM_A, &["bootargs = \"a\\u0000b\""]]),
        6,
        "vm[0].bootargs",
        "NUL",
    );
}

#[test]
fn more_than_one_console() {
    let lines = with(&[
        &VM_A,
        &["console = true"],
        &VM_B,
        &["console = true"],
        &[
            "[[vm]]",
            "name = \"c\"",
            "vcpus = 1",
            "memory = \"4M\"",
            "kernel = \"linux\"",
            "console = true",
        ],
    ]);
    let e = errors(&lines);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(got, [(12, "vm[1].console"), (18, "vm[2].console")]);
    assert!(
        e[0].message
            .contains("console = true on more than one VM (vm[0] at line 6 too)"),
        "{}",
        e[0].message
    );
    // console = false twice is fine.
    valid(&with(&[
        &VM_A,
        &["console = false"],
        &VM_B,
        &["console = false"],
    ]));
}

// ---- pinning ---------------------------------------------------------------

fn pinned(harts: u32, vms: &[(&str, u32, &str)]) -> Vec<String> {
    let mut lines = vec!["[machine]".to_string(), format!("harts = {harts}")];
    for (name, vcpus, pin) in vms {
        lines.push("[[vm]]".into());
        lines.push(format!("name = \"{name}\""));
        lines.push(format!("vcpus = {vcpus}"));
        lines.push("memory = \"4M\"".into());
        lines.push("kernel = \"testkernel\"".into());
        if !pin.is_empty() {
            lines.push(format!("pin = {pin}"));
        }
    }
    lines
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn pin_to_missing_hart() {
    // Lines: 1-2 machine, 3-8 vm a (pin at 8).
    let l = pinned(2, &[("a", 2, "[0, 2]")]);
    assert_one(
        &refs(&l),
        8,
        "vm[0].pin[1]",
        "hart 2 does not exist: machine.harts = 2 (harts 0..=1)",
    );
    // A multi-line pin array reports the entry's own line.
    let l = pinned(2, &[("a", 2, "[\n  0,\n  7,\n]")]);
    assert_one(&refs(&l), 10, "vm[0].pin[1]", "hart 7 does not exist");
}

#[test]
fn pin_length_must_match_vcpus() {
    let l = pinned(4, &[("a", 2, "[0]")]);
    assert_one(
        &refs(&l),
        8,
        "vm[0].pin",
        "1 entries for 2 vCPUs; pin needs exactly one hart per vCPU",
    );
    let l = pinned(4, &[("a", 1, "[0, 1]")]);
    assert_one(&refs(&l), 8, "vm[0].pin", "2 entries for 1 vCPUs");
    let l = pinned(4, &[("a", 1, "[]")]);
    assert_one(&refs(&l), 8, "vm[0].pin", "0 entries for 1 vCPUs");
}

#[test]
fn hart_pinned_twice() {
    // Across VMs: vm a at 3-8, vm b at 9-14.
    let l = pinned(4, &[("a", 2, "[0, 1]"), ("b", 1, "[1]")]);
    assert_one(
        &refs(&l),
        14,
        "vm[1].pin[0]",
        "hart 1 pinned twice: vCPU 1 of vm[0] at line 8 is pinned to it already",
    );
    // Within one VM.
    let l = pinned(4, &[("a", 2, "[3, 3]")]);
    assert_one(
        &refs(&l),
        8,
        "vm[0].pin[1]",
        "hart 3 pinned twice: vCPU 0 of vm[0]",
    );
    assert_one(
        &refs(&pinned(4, &[("a", 1, "[-1]")])),
        8,
        "vm[0].pin[0]",
        "-1 is not a hart number",
    );
}

#[test]
fn more_pinned_vcpus_than_harts() {
    let l = pinned(2, &[("a", 2, "[0, 1]"), ("b", 1, "[0]")]);
    let e = errors(&refs(&l));
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(got, [(14, "vm[1].pin"), (14, "vm[1].pin[0]")], "{e:#?}");
    assert!(e[0]
        .message
        .contains("more pinned vCPUs than harts: 3 vCPUs pinned up to here, machine.harts = 2"));
    assert!(e[1].message.contains("hart 0 pinned twice"));
}

#[test]
fn unpinned_vm_needs_a_free_hart() {
    let l = pinned(2, &[("a", 2, "[0, 1]"), ("b", 2, "")]);
    assert_one(
        &refs(&l),
        9,
        "vm[1]",
        "not pinned, but all 2 harts are pinned",
    );
    // One free hart is enough for any number of unpinned vCPUs.
    let cfg = valid(&refs(&pinned(
        3,
        &[("a", 2, "[0, 1]"), ("b", 4, ""), ("c", 1, "")],
    )));
    assert_eq!(cfg.vms[0].pin, Some(vec![0, 1]));
    assert_eq!(cfg.vms[1].pin, None);
}

#[test]
fn harts_default_to_one() {
    let cfg = valid(&with(&[&VM_A, &["pin = [0]"]]));
    assert_eq!(cfg.harts, 1);
    assert_one(
        &with(&[&VM_A, &["pin = [1]"]]),
        6,
        "vm[0].pin[0]",
        "machine.harts = 1",
    );
}

// ---- disks -----------------------------------------------------------------

fn disks(specs: &[(&str, &str)]) -> Vec<String> {
    // (vm name, disk body) — each disk in its own VM unless the name repeats.
    let mut lines = Vec::new();
    let mut last = "";
    for (vm, body) in specs {
        if *vm != last {
            lines.extend(
                [
                    "[[vm]]",
                    &format!("name = \"{vm}\""),
                    "vcpus = 1",
                    "memory = \"4M\"",
                    "kernel = \"testkernel\"",
                ]
                .map(String::from),
            );
            last = vm;
        }
        lines.push("[[vm.disk]]".into());
        lines.push(body.to_string());
    }
    lines
}

#[test]
fn disk_windows_on_one_image_must_not_overlap() {
    // vm a: 1-5, disk 6-7; vm b: 8-12, disk 13-14.
    let l = disks(&[
        ("a", "image = \"d.img\"\nsectors = 2048"),
        ("b", "image = \"d.img\"\nstart = 1024\nsectors = 100"),
    ]);
    let e = errors(&refs(&l));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].line, e[0].field.as_str()), (14, "vm[1].disk[0]"));
    assert!(
        e[0].message.starts_with("memory overlap: sectors 1024..1124 of conf/d.img intersects sectors 0..2048 of vm[0].disk[0] at line 6"),
        "{}",
        e[0].message
    );
    // A window without `sectors` runs to the end of the image.
    let l = disks(&[
        ("a", "image = \"d.img\"\nsectors = 2048"),
        ("b", "image = \"./sub/../d.img\"\nstart = 100"),
    ]);
    assert_one(
        &refs(&l),
        14,
        "vm[1].disk[0]",
        "memory overlap: sectors 100..end of conf/./sub/../d.img",
    );
    let l = disks(&[
        ("a", "image = \"d.img\""),
        ("b", "image = \"d.img\"\nstart = 4096\nsectors = 8"),
    ]);
    assert_one(&refs(&l), 13, "vm[1].disk[0]", "memory overlap");
    // Two windows in the same VM count too.
    let l = disks(&[("a", "image = \"d.img\""), ("a", "image = \"d.img\"")]);
    assert_one(
        &refs(&l),
        8,
        "vm[0].disk[1]",
        "intersects sectors 0..end of vm[0].disk[0] at line 6",
    );
}

#[test]
fn disk_windows_that_may_share_an_image() {
    // Adjacent windows.
    valid(&refs(&disks(&[
        ("a", "image = \"d.img\"\nsectors = 2048"),
        ("b", "image = \"d.img\"\nstart = 2048"),
    ])));
    // Both read-only.
    valid(&refs(&disks(&[
        ("a", "image = \"d.img\"\nread_only = true"),
        ("b", "image = \"d.img\"\nread_only = true"),
    ])));
    // Different images.
    valid(&refs(&disks(&[
        ("a", "image = \"d.img\""),
        ("b", "image = \"e.img\""),
    ])));
    // One writer is enough to forbid overlap.
    let l = disks(&[
        ("a", "image = \"d.img\"\nread_only = true"),
        ("b", "image = \"d.img\""),
    ]);
    assert_one(&refs(&l), 14, "vm[1].disk[0]", "memory overlap");
}

#[test]
fn disk_window_end_overflow() {
    let l = disks(&[(
        "a",
        "image = \"d.img\"\nstart = 9223372036854775807\nsectors = 1",
    )]);
    assert_one(
        &refs(&l),
        9,
        "vm[0].disk[0].sectors",
        "past the largest sector number",
    );
}

// ---- several at once, display ----------------------------------------------

#[test]
fn all_errors_are_reported_together_sorted_by_line() {
    let lines = [
        "[machine]",           // 1
        "harts = 12",          // 2
        "log = \"chatty\"",    // 3
        "[[vm]]",              // 4
        "name = \"bad name\"", // 5
        "vcpus = 0",           // 6
        "memory = \"3M\"",     // 7
        "kernel = \"linux\"",  // 8
        "vpcus = 1",           // 9
        "[[vm]]",              // 10
        "name = \"b\"",        // 11
        "memory = \"64M\"",    // 12
        "kernel = \"linux\"",  // 13
    ];
    let e = errors(&lines);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "machine.harts"),
            (3, "machine.log"),
            (5, "vm[0].name"),
            (6, "vm[0].vcpus"),
            (7, "vm[0].memory"),
            (9, "vm[0].vpcus"),
            (10, "vm[1].vcpus"),
        ]
    );
}

#[test]
fn display_format() {
    let e = errors(&with(&[&VM_A, &["vpcus = 2"]]));
    let shown = e[0].to_string();
    assert!(
        shown.starts_with("conf/m.toml:6: vm[0].vpcus: unknown key; expected one of "),
        "{shown}"
    );
    let e = rivet_config::load(Path::new("/nonexistent/rivet.toml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 0);
    assert!(
        e[0].to_string()
            .starts_with("/nonexistent/rivet.toml: file: cannot read: "),
        "{}",
        e[0]
    );
}

// ---- other spellings of tables -----------------------------------------------

#[test]
fn inline_and_dotted_tables_have_lines_too() {
    let lines = [
        "machine.harts = 2",                                                          // 1
        "machine.log = \"loud\"",                                                     // 2
        "vm = [",                                                                     // 3
        "  { name = \"a\", vcpus = 1, memory = \"4M\", kernel = \"testkernel\" },",   // 4
        "  { name = \"b\", vcpus = 1, memory = \"4M\" },",                            // 5
        "  { name = \"c\", vcpus = 1, memory = \"4M\", kernel = \"linux\", x = 1 },", // 6
        "]",
    ];
    let e = errors(&lines);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [(2, "machine.log"), (5, "vm[1].kernel"), (6, "vm[2].x")]
    );
    let cfg = valid(&[
        "machine = { harts = 3 }",
        "vm = [{ name = \"a\", vcpus = 1, memory = \"4M\", kernel = \"linux\", pin = [2] }]",
    ]);
    assert_eq!(cfg.harts, 3);
    assert_eq!(cfg.vms[0].pin, Some(vec![2]));
    assert_eq!(cfg.vms[0].line, 2);
}

#[test]
fn nic_needs_a_valid_network_name() {
    let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n[[vm.nic]]\nnetwork = \"bad name\"\n[[vm.nic]]\nnet = \"lan\"\n";
    let errs = rivet_config::parse(text, std::path::Path::new("n.toml")).unwrap_err();
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("n.toml:7: ") && e.contains("network")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("n.toml:9: ") && e.contains("unknown key")),
        "{shown:?}"
    );
}

#[test]
fn nics_parse_and_round_trip() {
    let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n[[vm.nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:ab:cd:ef\"\n";
    let cfg = rivet_config::parse(text, std::path::Path::new("n.toml")).unwrap();
    assert_eq!(cfg.vms[0].nics.len(), 1);
    assert_eq!(
        cfg.vms[0].nics[0].mac,
        Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef])
    );
    assert_eq!(cfg.vms[0].nics[0].network, "lan");
    assert_eq!(cfg.vms[0].nics[0].line, 6);
    let again = rivet_config::parse(&cfg.to_toml(), std::path::Path::new("n.toml")).unwrap();
    assert_eq!(again.vms[0].nics[0].network, "lan");
    assert_eq!(again.vms[0].nics[0].mac, cfg.vms[0].nics[0].mac);
}

#[test]
fn uplink_and_forwards_parse_and_are_checked() {
    let ok = "[machine]\nuplink = \"lan\"\nforward = [\"5555:10.0.2.15:8080\"]\n[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n";
    let cfg = rivet_config::parse(ok, std::path::Path::new("u.toml")).unwrap();
    assert_eq!(cfg.uplink.as_deref(), Some("lan"));
    assert_eq!(
        cfg.forwards,
        vec![rivet_config::Forward {
            host_port: 5555,
            guest_ip: [10, 0, 2, 15],
            guest_port: 8080
        }]
    );
    let again = rivet_config::parse(&cfg.to_toml(), std::path::Path::new("u.toml")).unwrap();
    assert_eq!(again.forwards, cfg.forwards);
    let bad = "[machine]\nuplink = \"lan\"\nforward = [\"5555:10.0.2:8080\"]\n[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n";
    let errs = rivet_config::parse(bad, std::path::Path::new("u.toml")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.to_string().starts_with("u.toml:3: machine.forward")),
        "{errs:?}"
    );
}

#[test]
fn shared_directories_parse_and_are_checked() {
    let dir = std::env::temp_dir();
    let text = format!(
        "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n[[vm.fs]]\ntag = \"host\"\npath = \"{}\"\n[[vm.fs]]\ntag = \"x\"\npath = \"/no/such/dir\"\n",
        dir.display()
    );
    let errs = rivet_config::parse(&text, std::path::Path::new("f.toml")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.to_string().starts_with("f.toml:11: vm[0].fs[1].path")
                || e.to_string().starts_with("f.toml:11:")),
        "{errs:?}"
    );
    let ok = format!("[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n[[vm.fs]]\ntag = \"host\"\npath = \"{}\"\n", dir.display());
    let cfg = rivet_config::parse(&ok, std::path::Path::new("f.toml")).unwrap();
    assert_eq!(cfg.vms[0].fs[0].tag, "host");
}
