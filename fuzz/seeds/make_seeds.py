#!/usr/bin/env python3
"""Writes the hand-made seed inputs of Rivet's fuzz targets.

    python3 fuzz/seeds/make_seeds.py

Each target's seeds go to fuzz/seeds/<target>/ (files are overwritten,
others are left alone). The encodings follow the targets' input formats:
`rivet_fuzz::Input` (little-endian values from the front, opcode bytes) for
most, `arbitrary` for `gstage` and modes 1/2 of `devtree`. Raw-format seeds
(device trees, bundles, TOML) are copied from the repository.
"""

import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def out(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


# `Input::interesting`: selector 0 = raw u64, 2 = small byte.
def raw(v):
    return u8(0) + u64(v)


def small(v):
    assert v < 256
    return u8(2) + u8(v)


# ---------------------------------------------------------------- insn_decode
def insn_seeds():
    insns = [
        0x0005A503,  # lw a0, 0(a1)
        0x00B52023,  # sw a1, 0(a0)
        0x0085B283,  # ld t0, 8(a1)
        0x0005C503,  # lbu a0, 0(a1)
        0x0005E503,  # lwu a0, 0(a1)
        0x00059503,  # lh a0, 0(a1)
        0x00007003,  # funct3 7: reserved
        0x0005A007,  # flw
        0x0805A52F,  # amoswap.w
        0x00000013,  # nop
        0x4188,      # c.lw a0, 0(a1)
        0xE188,      # c.sd a0, 0(a1)
        0x4502,      # c.lwsp a0, 0(sp)
        0xE02A,      # c.sdsp a0, 0(sp)
        0x8188,      # c.lbu a0, 0(a1)
        0x85C8,      # c.lh a0, 0(a1)
        0x8D88,      # c.sh (Zcb)
        0x2188,      # c.fld
        0x0005A501,  # htinst: transformed c.lw (bit 1 clear)
        0x00002000,  # htinst pseudoinstruction
    ]
    data = b"".join(u32(i) + u64(0x80FF_7F80_8000_00FF) for i in insns)
    out("insn_decode", "loads-stores", data)
    out("insn_decode", "sign-edges", u32(0x00058503) + u64(0x80) + u32(0x00059503) + u64(0x7FFF))


# ---------------------------------------------------------------- sbi_dispatch
EID_INDEX = {
    "set_timer": 0, "putchar": 1, "getchar": 2, "clear_ipi": 3, "send_ipi": 4,
    "fence_i": 5, "sfence_vma": 6, "sfence_vma_asid": 7, "shutdown": 8,
    "BASE": 10, "TIME": 11, "IPI": 12, "RFENCE": 13, "HSM": 14, "SRST": 15,
    "DBCN": 16, "PMU": 17,
}


def sbi_env(base_idx=0, size_idx=3, vcpus=4, states=(0, 1, 1, 3), flags=0, current=0):
    b = u8(base_idx) + u8(size_idx) + u8(vcpus)
    for s in states[: min(vcpus, 64)]:
        b += u8(s)
    b += u8(flags)
    if vcpus:
        b += u8(current)
    return b


def sbi_call(eid, fid, args):
    b = u8(EID_INDEX[eid]) + u8(fid)
    args = list(args) + [0] * (6 - len(args))
    for a in args:
        b += small(a) if 0 <= a < 256 else raw(a)
    return b


def sbi_seeds():
    RAM = 0x8000_0000
    env = sbi_env()
    calls = [
        ("BASE", 0, []), ("BASE", 3, [0x4442_434E]), ("BASE", 3, [0x5350_4D55]),
        ("HSM", 2, [1]), ("HSM", 0, [1, RAM + 0x100, 7]), ("HSM", 0, [1, RAM, 7]),
        ("HSM", 0, [3, RAM, 0]), ("HSM", 0, [2, RAM + 0x1_0000 - 2, 0]),
        ("HSM", 3, [0x8000_0000, RAM + 8, 9]), ("HSM", 3, [0, 0, 0]), ("HSM", 1, []),
        ("DBCN", 0, [16, RAM + 0x20, 0]), ("DBCN", 0, [5000, RAM, 0]),
        ("DBCN", 0, [16, RAM + 0xFFF8, 0]), ("DBCN", 2, [0x41]),
        ("IPI", 0, [0b1011, 0]), ("IPI", 0, [1, 3]), ("IPI", 0, [0, 0xFFFF_FFFF_FFFF_FFFF]),
        ("RFENCE", 1, [0b11, 0, 0x1000, 0x2000]), ("RFENCE", 2, [1, 1, 0, 0, 0x1_0000]),
        ("RFENCE", 1, [1, 0, 0xFFFF_FFFF_FFFF_F000, 0x2000]),
        ("SRST", 0, [1, 0]), ("SRST", 0, [0, 0xE000_0001]), ("TIME", 0, [12345]),
        ("set_timer", 0, [99]), ("putchar", 0, [0x42]), ("getchar", 0, []),
        ("send_ipi", 0, [0]), ("fence_i", 0, [0x1234]), ("clear_ipi", 0, []), ("shutdown", 0, []),
    ]
    body = env + b"".join(sbi_call(*c) for c in calls)
    # Host actions: console input (0xf0 n bytes), a legacy mask (0xf1).
    read = u8(0xF0) + u8(12) + b"hello, rivet" + sbi_call("DBCN", 1, [64, RAM + 0x40, 0]) + sbi_call("getchar", 0, [])
    mask = u8(0xF1) + raw(0x1000) + u64(0b110) + sbi_call("send_ipi", 0, [0x1000]) + sbi_call("sfence_vma", 0, [0x1000, 0, 0x1000])
    out("sbi_dispatch", "tour", body)
    out("sbi_dispatch", "console-read", env + read)
    out("sbi_dispatch", "legacy-mask", env + mask)
    # RAM at the top of the address space, 64 vCPUs all stopped.
    top = sbi_env(base_idx=3, size_idx=3, vcpus=64, states=[1] * 64, flags=1, current=5)
    out("sbi_dispatch", "top-of-memory", top + b"".join(sbi_call(*c) for c in [
        ("HSM", 0, [63, 0xFFFF_FFFF_FFFF_FFFC, 0]), ("DBCN", 0, [16, 0xFFFF_FFFF_FFFF_FFF0, 0]),
        ("DBCN", 1, [4, 0xFFFF_FFFF_FFFF_FFFC, 0]), ("IPI", 0, [1 << 63, 0])]))


# ---------------------------------------------------------------- virtqueue
def vq_init(features_sel=2, sizes=(3,)):
    """Op 0: handshake; per queue: size exponent, layout byte (<0xe0 = standard)."""
    b = u8(0) + u8(features_sel)
    for s in sizes:
        b += u8(s) + u8(0)
    return b


def vq_blk_request(t_idx, sector, hdr_slot, data_slot, dlen_idx, status_off, q=0, indirect=False):
    b = u8(12) + u8(0) + u8(t_idx)      # type: pick from the list
    b += u8(1) + u8(sector)             # sector: below(40)
    b += u8(hdr_slot) + u8(data_slot) + u8(dlen_idx)
    if t_idx in (4, 5, 7):              # discard-like: two segments
        b += (u8(0) + u8(1) + u8(0)) * 2
    b += u8(status_off)
    if dlen_idx != 0:
        b += u8(0)                      # keep the data direction
    # chain(): queue, indirect?, [indirect table slot], kick?
    b += u8(q) + u8(0x10 if indirect else 0xFF)
    if indirect:
        b += u8(3)
    b += u8(0)
    return b


def vq_chain(q, segs, kick=True):
    """Op 11: segments of (heap offset, len, writable), then queue, direct, kick."""
    b = u8(11) + u8(len(segs) - 1)
    for off, ln, wr in segs:
        b += u8(5) + u32(off)  # address: HEAP + below(0x10000)
        b += u8(7) + u32(ln)   # length: below(0x2000)
        b += u8(1 if wr else 0)
    b += u8(q) + u8(0xFF) + u8(0 if kick else 0xFF)
    return b


def virtqueue_seeds():
    # blk: 8 sectors, read-write with discard.
    blk = u8(0) + u8(7) + u8(0) + u8(2)
    reqs = b"".join([
        vq_blk_request(1, 2, 0, 0, 1, 0),   # write sector 2
        vq_blk_request(0, 2, 1, 1, 1, 1),   # read it back
        vq_blk_request(3, 0, 2, 2, 5, 2),   # GET_ID
        vq_blk_request(2, 0, 3, 3, 0, 3),   # FLUSH
        vq_blk_request(4, 0, 4, 4, 7, 4),   # DISCARD
        vq_blk_request(0, 7, 5, 5, 2, 5, indirect=True),  # read past the end
    ])
    out("virtqueue", "blk-requests", blk + vq_init(1, (4,)) + reqs + u8(13) + u8(1))
    out("virtqueue", "blk-readonly", u8(0) + u8(3) + u8(0) + u8(1) + vq_init(2, (2,)) + vq_blk_request(1, 0, 0, 0, 1, 0))
    # console: TX on queue 1, RX on queue 0 with host input.
    con = u8(1) + u8(1)
    tx = vq_chain(1, [(0x100, 13, False), (0x200, 7, False)])
    rx = vq_chain(0, [(0x400, 64, True)]) + u8(14) + u8(10) + b"0123456789" + u8(9)
    out("virtqueue", "console", con + vq_init(2, (3, 3)) + tx + rx)
    # rng: one request, entropy source seeded.
    rng = u8(2) + u64(0x1234_5678)
    out("virtqueue", "rng", rng + vq_init(0, (1,)) + vq_chain(0, [(0x800, 64, True)]) + u8(9))


# ---------------------------------------------------------------- vplic_uart
def vp_plic_write(kind, idx_bytes, value):
    # step op 2: offset kind byte + its fields, size byte (<0xf0 = 4), value selector 0 = raw u32.
    return u8(2) + u8(kind) + idx_bytes + u8(0) + u8(0) + u32(value)


def vplic_seeds():
    hdr = u8(2) + u8(31) + u8(1) + u8(2)  # 31 sources, 2 contexts
    ops = b""
    ops += u8(2) + u8(0) + u32(10) + u8(0) + u8(0) + u32(5)         # priority[10] = 5
    ops += u8(2) + u8(2) + u8(0) + u8(0) + u8(0) + u8(0) + u32(1 << 10)  # ctx0 enable word0
    ops += u8(2) + u8(3) + u8(0) + u8(0) + u8(0) + u32(1)            # ctx0 threshold = 1
    ops += u8(8) + u8(1) + u8(0x01)                                  # UART IER = ERBFI
    ops += u8(10) + u8(5) + b"hello"                                 # input -> irq 10
    ops += u8(5) + u8(0) + u8(0)                                     # claim + complete ctx 0
    ops += u8(6) + u8(0) + u8(6) + u8(5) + u8(6) + u8(2)             # RBR, LSR, IIR
    ops += u8(8) + u8(4) + u8(0x10) + u8(8) + u8(0) + u8(0x55)       # loopback, THR
    ops += u8(6) + u8(0) + u8(0) + u8(6) + u8(0) + u8(1)             # read, read ctx1 enable
    ops += u8(4) + u8(1) + u8(3) + u8(1)                             # level src 3 high
    ops += u8(11) + u8(0)                                            # PLIC reset
    out("vplic_uart", "uart-into-plic", hdr + ops)
    out("vplic_uart", "many-contexts", u8(2) + u8(95) + u8(0) + u8(3) + ops)


# ---------------------------------------------------------------- devtree
def devtree_seeds():
    fix = os.path.join(ROOT, "crates", "devtree", "tests", "fixtures")
    for f in sorted(os.listdir(fix)):
        if f.endswith(".dtb"):
            with open(os.path.join(fix, f), "rb") as fh:
                out("devtree", "host-" + f[:-4], b"\x00" + fh.read())


# ---------------------------------------------------------------- bundle_loader
VERSION = 3
HEADER = 40
RECORD = 384
PIN_OFFSET = 96
DEV_OFFSET = 160


def linux_image(text_offset=0x20_0000, image_size=0x40_0000, body=256):
    h = bytearray(64)
    struct.pack_into("<QQQ", h, 8, text_offset, image_size, 0)
    struct.pack_into("<I", h, 32, 2)
    struct.pack_into("<Q", h, 48, 0x5643_5349_52)
    struct.pack_into("<I", h, 56, 0x0543_5352)
    return bytes(h) + bytes(range(256)) * (body // 256)


def bundle(vms, flags=0, log=3):
    payload = bytearray()
    start = HEADER + RECORD * len(vms)
    recs = []

    def place(b):
        while (start + len(payload)) % 8:
            payload.append(0)
        off = start + len(payload)
        payload.extend(b)
        return (off if b else 0, len(b))

    for vm in vms:
        r = bytearray(RECORD)
        name = vm["name"].encode()
        r[: len(name)] = name
        struct.pack_into("<IIQ", r, 32, vm["vcpus"], vm.get("flags", 0), vm["memory"])
        for off, b in ((48, vm["kernel"]), (64, vm.get("initrd", b"")), (80, vm.get("bootargs", "").encode())):
            struct.pack_into("<QQ", r, off, *place(b))
        r[PIN_OFFSET : PIN_OFFSET + 64] = b"\xff" * 64
        for i, p in enumerate(vm.get("pins", [])):
            r[PIN_OFFSET + i] = p
        disks = vm.get("disks", [])
        struct.pack_into("<II", r, DEV_OFFSET, len(disks), vm.get("devices", 0))
        for i, (disk, ro, first, n) in enumerate(disks):
            struct.pack_into("<IIQQ", r, DEV_OFFSET + 8 + 24 * i, disk, ro, first, n)
        recs.append(bytes(r))
    total = start + len(payload)
    head = b"RIVETBND" + struct.pack("<IIQQII", VERSION, len(vms), total, flags, log, 0)
    return head + b"".join(recs) + bytes(payload)


def bundle_seeds():
    rivet = os.path.join(ROOT, "target", "rivet")
    for name in ("bundle-run.bin", "bundle-bad-image-is-refused.bin"):
        p = os.path.join(rivet, name)
        if os.path.exists(p):
            shutil.copyfile(p, os.path.join(HERE, "bundle_loader", name[:-4]))
    out("bundle_loader", "two-vms", bundle([
        {"name": "linux", "vcpus": 2, "memory": 64 << 20, "kernel": linux_image(), "initrd": b"\x07" * 300,
         "bootargs": "console=ttyS0", "pins": [1, 0], "disks": [(0, 1, 8, 16)], "devices": 3, "flags": 1},
        {"name": "tk", "vcpus": 1, "memory": 4 << 20, "kernel": b"\x13\x00\x00\x00" * 8, "bootargs": "mode=suite"},
    ], flags=1, log=4))
    out("bundle_loader", "tight-fit", bundle([
        {"name": "fit", "vcpus": 64, "memory": 6 << 20, "kernel": linux_image(0, 0x20_0000 - 0x1000),
         "initrd": b"\x01" * 4097},
    ]))
    out("bundle_loader", "bare-image", linux_image(0x20_0000, 0x140_0000, 512))


# ---------------------------------------------------------------- gstage
def variant(v, n):
    """The u32 that derive(Arbitrary) maps to variant v of n."""
    return u32(-((-v << 32) // n))


def gs_addr_gib(g, p=0):
    return variant(2, 5) + u16(g) + u16(p)


def gs_addr_mib2(m, p=0):
    return variant(1, 5) + u16(m) + u16(p)


def gs_addr_page(p):
    return variant(0, 5) + u16(p)


def gs_size_pages(n):
    return variant(0, 4) + u8(n)


def gs_size_mib2(n, p=0):
    return variant(1, 4) + u8(n) + u8(p)


def gs_size_gib(n):
    return variant(2, 4) + u8(n)


def gs_map(gpa, hpa, size, r=1, w=1, x=1):
    return variant(0, 5) + gpa + hpa + size + u8(r) + u8(w) + u8(x)


def gs_unmap(gpa, size):
    return variant(1, 5) + gpa + size


def gs_translate(gpa, off=0):
    return variant(2, 5) + gpa + u16(off)


def gs_budget(n):
    return variant(3, 5) + (u8(1) + u8(n) if n is not None else u8(0))


def gstage_seeds():
    for mode in range(3):
        ops = b"".join([
            gs_map(gs_addr_gib(2), gs_addr_gib(4), gs_size_gib(2)),           # two 1 GiB pages
            gs_map(gs_addr_mib2(10), gs_addr_mib2(30), gs_size_mib2(3, 5)),   # 2 MiB + 4 KiB pages
            gs_map(gs_addr_page(3), gs_addr_page(9), gs_size_pages(4), 1, 0, 0),
            gs_unmap(gs_addr_gib(2, 17), gs_size_mib2(1, 3)),                 # split a gigapage
            gs_translate(gs_addr_gib(2, 16), 0x123),
            gs_budget(1),
            gs_map(gs_addr_gib(9), gs_addr_page(1), gs_size_pages(3)),        # runs out of frames
            gs_budget(None),
            gs_unmap(gs_addr_mib2(10), gs_size_mib2(3, 5)),
            gs_map(gs_addr_page(0), gs_addr_page(0), gs_size_pages(1), 0, 1, 0),  # W without R
        ])
        out("gstage", "tour-mode%d" % mode, u8(mode) + u8(0) + ops)
    out("gstage", "evil-root", u8(0) + u8(1) + variant(1, 3) + gs_map(gs_addr_page(0), gs_addr_page(0), gs_size_pages(1)))


# ---------------------------------------------------------------- config
def config_seeds():
    cfgs = os.path.join(ROOT, "configs")
    for f in sorted(os.listdir(cfgs)):
        if f.endswith(".toml"):
            shutil.copyfile(os.path.join(cfgs, f), os.path.join(HERE, "config", f[:-5]))
    out("config", "disks-and-pins", b"""[machine]
harts = 4
memory = "2G"
keep_running = true
log = "debug"

[[vm]]
name = "pinned"
vcpus = 2
memory = "128M"
kernel = "./images/Image"
initrd = "/abs/initrd.cpio"
bootargs = "console=hvc0 quote=\\"x\\" tab=\\t"
pin = [2, 3]
console = true

[[vm.disk]]
image = "disk.img"
start = 2048
sectors = 4096
read_only = true

[[vm]]
name = "t-2"
vcpus = 1
memory = "4M"
kernel = "testkernel"
""")
    out("config", "inline-vms", b'vm = [{name = "a", vcpus = 1, memory = "64M", kernel = "linux"}, '
                                b'{name = "b", vcpus = 64, memory = "1T", kernel = "busybox"}]\n[machine]\nharts = 8\n')
    out("config", "errors", b'[machine]\nharts = 0\nfoo = 1\n[[vm]]\nname = "bad name!"\nvcpus = 65\nmemory = "3M"\n')


# ---------------------------------------------------------------- virtio_net_fs
def below(n, v):
    """`Input::below(n)` returning `v`: one byte up to 256, else four."""
    assert 0 <= v < n
    return u8(v) if n <= 256 else u32(v)


def vnf_init(features_sel, sizes=(3, 3), features=0):
    """Op 0 with the standard ring layout (see `Driver::init`)."""
    b = u8(0) + u8(features_sel)
    if features_sel == 3:
        b += u64(features)
    for sz in sizes:
        b += u8(sz) + u8(0)
    return b


def vnf_tail(indirect=False, kick=True, slot=0):
    """`Driver::chain_to`: indirect?, [table slot], kick?"""
    b = u8(0x10 if indirect else 0xFF)
    if indirect:
        b += u8(slot)
    return b + u8(0 if kick else 0xFF)


def vnf_payload(n, seed):
    """What `bytes()` takes from the input for an n-byte frame/body."""
    return bytes(((i * 7 + seed) & 0xFF) for i in range(min(n, 64)))


def net_frame_len(n):
    fixed = {0: 0, 13: 1, 14: 2, 15: 3, 1514: 4, 1518: 5, 1519: 6, 64: 8}
    if n in fixed:
        return u8(fixed[n])
    if 14 <= n < 214:
        return u8(9) + u8(n - 14)
    return u8(7) + below(2100, n)


def net_tx(n, at, flags_idx=0, gso_idx=0, indirect=False, seed=1):
    b = u8(12) + u8(0) + u8(flags_idx) + u8(gso_idx) + u16(0) + u16(0)
    b += net_frame_len(n) + vnf_payload(n, seed)
    b += below(0x3C0, at) + u8(0) + u8(0xFF) + u8(0)  # 1 piece, no junk, transmitq
    return b + vnf_tail(indirect)


def net_rx(total_idx, slot, pieces=1, cuts=(), indirect=False, kick=True):
    b = u8(12) + u8(1) + u8(total_idx) + u8(slot) + u8(pieces - 1) + u8(0xFF)
    for c in cuts:
        b += c
    return b + u8(0) + vnf_tail(indirect, kick)


def net_recv(n, seed=5, poll=False):
    return u8(14) + u8(7 if poll else 0) + net_frame_len(n) + vnf_payload(n, seed)


FUSE_OPS = {"INIT": 0, "LOOKUP": 1, "GETATTR": 2, "READ": 3, "WRITE": 4, "FORGET": 5,
            "BATCH_FORGET": 6, "DESTROY": 7, "INTERRUPT": 8, "NOTIFY_REPLY": 9, "SETLKW": 10,
            "SETUPMAPPING": 11, "CUSE_INIT": 12, "STATFS": 13, "OPEN": 14, "RELEASE": 15}


def fs_body(op, **kw):
    if op == "INIT":
        major_idx, minor_idx = kw.get("major_idx", 0), kw.get("minor_idx", 1)
        return (u8(major_idx) + u8(minor_idx) + u32(0x2_0000) + u32(kw.get("flags", 0x4000_0001))
                + u32(kw.get("flags2", 0)) + u8(kw.get("n_idx", 0)))
    if op == "FORGET":
        return u8(0) + u64(1)
    if op == "BATCH_FORGET":
        k = kw.get("k", 2)
        b = u8(k) + u8(1)  # honest count
        return b + vnf_payload(16 * k, 9)
    if op == "WRITE":
        n = kw.get("n", 20)
        return below(300, n) + vnf_payload(n, 3)
    return u8(kw.get("n_idx", 1)) + vnf_payload(8 if kw.get("n_idx", 1) == 1 else 0, 4)


def fs_req(op, unique, len_mode=0, out_idx=8, at=0, out_slot=0, other_queue=False, indirect=False,
           readable=None, **kw):
    b = u8(12) + u8(0) + u8(FUSE_OPS[op]) + fs_body(op, **kw)
    b += u8(len_mode)
    if len_mode == 4:
        b += u8(3)
    elif len_mode == 5:
        b += u8(20)
    elif len_mode == 6:
        b += u32(0xFFFF_FFF0)
    elif len_mode == 7:
        b += u8(4)
    b += u8(1) + u8(unique) + u8(1) + u8(0)  # unique below(64), nodeid 1, no extensions
    if readable is None:
        b += u8(0)
    else:
        b += u8(0xF0) + u8(readable)
    b += u8(at) + u8(0)  # request slot, 1 piece
    b += u8(out_idx)
    if out_idx == 7:
        b += u32(0x3000)
    b += u8(out_slot) + u8(0)  # reply slot, 1 piece
    b += u8(0xFF if other_queue else 0)
    return b + vnf_tail(indirect)


def fs_spec(kind, body=0, error_idx=0, lie_idx=0, xor_idx=0):
    return u8(kind) + u8(1) + u32(body) + u8(error_idx) + u8(lie_idx) + u8(xor_idx)


def fs_script(*specs):
    assert 1 <= len(specs) <= 4
    return u8(14) + u8(0) + u8(len(specs) - 1) + b"".join(specs)


def virtio_net_fs_seeds():
    poll = u8(9)
    # net: single buffers, transmit of every length class, loopback.
    net = u8(0) + bytes([1, 2, 3, 4, 5]) + u8(4)
    rx = b"".join(net_rx(0, i) for i in range(4))
    tx = b"".join([net_tx(60, 0x200), net_tx(1514, 0x240, seed=2), net_tx(13, 0x280),
                   net_tx(1519, 0x2C0), net_tx(64, 0x300, flags_idx=4), net_tx(64, 0x340, gso_idx=4),
                   net_tx(100, 0x380, indirect=True)])
    loop = u8(14) + u8(3) + poll
    out("virtio_net_fs", "net-single", net + vnf_init(1) + rx + net_recv(60) + net_recv(1514, 6, poll=True)
        + tx + loop + net_rx(4, 5) + net_rx(3, 6) + net_recv(100, poll=True) + u8(13) + u8(1))
    # net: MRG_RXBUF (features selector 2 offers everything), small buffers.
    mrg = b"".join(net_rx(6, i) for i in range(8)) + net_rx(4, 9) + net_rx(5, 10)
    out("virtio_net_fs", "net-mergeable", net + vnf_init(2, (4, 4)) + mrg + net_recv(1514, poll=True)
        + net_recv(300, poll=True) + u8(14) + u8(2) + u8(70) + u8(9) + poll + mrg + poll)
    # net: backpressure (outbox of 1), gate closed, link down.
    tight = u8(0) + bytes([9, 9, 9, 9, 9]) + u8(1)
    out("virtio_net_fs", "net-backpressure", tight + vnf_init(1) + tx + u8(14) + u8(4) + poll
        + u8(14) + u8(5) + tx + u8(14) + u8(5) + poll + u8(14) + u8(6) + u8(0xFF) + net_rx(0, 1)
        + net_recv(60, poll=True) + tx + u8(14) + u8(6) + u8(0) + net_recv(60, poll=True))

    # fs: a session, relayed requests answered by every kind of reply.
    fs = u8(1) + u64(0x1234) + u8(0) + u8(0) + u32(0x1000)
    session = vnf_init(1, (4, 4)) + fs_req("INIT", 1)
    relays = b"".join(fs_req("GETATTR", 10 + k, out_idx=5, out_slot=k % 8) for k in range(10))
    script = (fs_script(fs_spec(0, 40), fs_spec(1), fs_spec(2, 8, error_idx=0), fs_spec(3, 8, lie_idx=0))
              + fs_script(fs_spec(4, 8), fs_spec(5, 7), fs_spec(6, 3), fs_spec(7))
              + fs_script(fs_spec(8), fs_spec(9, 100), fs_spec(2, 0, error_idx=4), fs_spec(2, 0, error_idx=6)))
    tail = b"".join([
        fs_req("FORGET", 30), fs_req("BATCH_FORGET", 31, k=2), fs_req("INTERRUPT", 32),
        fs_req("LOOKUP", 33, out_idx=5, other_queue=True), fs_req("SETLKW", 34), fs_req("SETUPMAPPING", 35),
        fs_req("READ", 36, out_idx=5), fs_req("WRITE", 37, n=40), fs_req("DESTROY", 38),
        fs_req("GETATTR", 39, out_idx=5), fs_req("INIT", 40, major_idx=3), fs_req("INIT", 41, minor_idx=4),
        fs_req("INIT", 42, minor_idx=2, flags=0x4040_0001, flags2=0xFFFF_FFFF), fs_req("OPEN", 43, out_idx=5),
    ])
    out("virtio_net_fs", "fs-session", fs + session + script + relays + tail + poll)
    # fs: headers that lie, truncated requests, reply buffers too small.
    lies = b"".join([
        fs_req("GETATTR", 50, len_mode=4), fs_req("GETATTR", 51, len_mode=5), fs_req("GETATTR", 52, len_mode=6),
        fs_req("GETATTR", 53, len_mode=7), fs_req("GETATTR", 54, readable=30), fs_req("GETATTR", 55, readable=10),
        fs_req("GETATTR", 56, out_idx=1), fs_req("GETATTR", 57, out_idx=0), fs_req("INIT", 58, out_idx=3),
        fs_req("INIT", 59, n_idx=4), fs_req("BATCH_FORGET", 60, k=1, len_mode=7),
        fs_req("GETATTR", 61, out_idx=7, indirect=True),
    ])
    out("virtio_net_fs", "fs-malformed", fs + session + lies + poll)
    # fs: the backend session from a parsed FUSE_INIT reply (mode 3).
    parsed = u8(1) + u64(2) + u8(2) + u8(3) + u8(0) + u8(0) + u32(0x2_0000) + u32(0x4040_0001) + u16(16) \
        + u16(12) + u32(0x10_0000) + u16(256) + u16(0) + u32(0) + u8(0) + u8(0) + u8(0xFF) + u32(0)
    out("virtio_net_fs", "fs-parsed-init", parsed + session + relays + poll)


def main():
    for t in ("insn_decode", "sbi_dispatch", "virtqueue", "vplic_uart", "devtree", "bundle_loader", "gstage",
              "config", "virtio_net_fs"):
        os.makedirs(os.path.join(HERE, t), exist_ok=True)
    insn_seeds()
    sbi_seeds()
    virtqueue_seeds()
    vplic_seeds()
    devtree_seeds()
    bundle_seeds()
    gstage_seeds()
    config_seeds()
    virtio_net_fs_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
