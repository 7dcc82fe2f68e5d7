#!/usr/bin/env python3
"""Writes the binary files of the hostile-input corpus: hostile Go module zips (bodies/go/)
and hostile archives for the staging upstream (upstream/hostile/1/).

The files are committed; this script documents how each was made and rebuilds them
byte for byte (fixed timestamps, no randomness): `python3 make_binaries.py`.

Zips are assembled by hand rather than with `zipfile`, so headers can lie (sizes, CRCs,
flags, names with NUL or invalid UTF-8, many directory entries sharing one local file).
"""

import bz2
import gzip
import io
import os
import struct
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
GO = os.path.join(HERE, "bodies", "go")
UPSTREAM = os.path.join(HERE, "upstream", "hostile", "1")

# Every escape attempt is named like this, so the runner can look for it anywhere.
ESCAPE = "intact-corpus-escape"
PREFIX = "example.com/corpus@v1.0.0/"
GO_MOD = b"module example.com/corpus\n"
GO_SRC = b"package corpus\n"
DOS_TIME, DOS_DATE = 0, (1 << 5) | 1  # 1980-01-01 00:00


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


class Entry:
    """One zip entry; every header field can be overridden to lie."""

    def __init__(self, name, data=b"", method=8, **lie):
        self.name = name.encode() if isinstance(name, str) else name
        self.method = method
        self.stored = deflate(data) if method == 8 else data
        self.crc = lie.get("crc", zlib.crc32(data))
        self.size = lie.get("size", len(data))
        self.flags = lie.get("flags", 0)
        self.extra = lie.get("extra", b"")
        # Unix mode in the high 16 bits of the external attributes, "made by" Unix (3).
        self.mode = lie.get("mode", 0o100644)


def build_zip(entries, shared_local=False):
    """The zip bytes. With `shared_local`, every directory entry points at the first
    entry's local header and data (the overlapping-files bomb)."""
    out = io.BytesIO()
    offsets = []
    for i, e in enumerate(entries):
        if shared_local and i > 0:
            offsets.append(offsets[0])
            continue
        offsets.append(out.tell())
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, e.flags, e.method, DOS_TIME, DOS_DATE,
                              e.crc, len(e.stored), e.size, len(e.name), len(e.extra)))
        out.write(e.name + e.extra + e.stored)
    cd_start = out.tell()
    for e, off in zip(entries, offsets):
        stored = entries[0].stored if shared_local else e.stored
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, e.flags, e.method,
                              DOS_TIME, DOS_DATE, e.crc, len(stored), e.size, len(e.name),
                              len(e.extra), 0, 0, 0, e.mode << 16, off))
        out.write(e.name + e.extra)
    cd_size = out.tell() - cd_start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), cd_size,
                          cd_start, 0))
    return out.getvalue()


def module(*extra, gomod=True):
    entries = [Entry(PREFIX + "go.mod", GO_MOD)] if gomod else []
    return build_zip(entries + [Entry(PREFIX + "a.go", GO_SRC)] + list(extra))


def go_zips():
    zeros = b"\0" * (10 << 20)
    unicode_path = struct.pack("<HHB", 0x7075, 5 + len(b"b.go"), 1) + struct.pack("<I", zlib.crc32(b"x.go")) + b"b.go"
    return {
        "valid.zip": module(),
        "slip-dotdot.zip": module(Entry(PREFIX + "../../" + ESCAPE, b"x")),
        "slip-dotdot-inner.zip": module(Entry(PREFIX + "a/../../" + ESCAPE, b"x")),
        "slip-dot.zip": module(Entry(PREFIX + "./b.go", GO_SRC)),
        "slip-absolute.zip": module(Entry("/tmp/" + ESCAPE, b"x")),
        "slip-backslash.zip": module(Entry(PREFIX + "..\\..\\" + ESCAPE, b"x")),
        "slip-drive.zip": module(Entry(PREFIX + "C:/" + ESCAPE, b"x")),
        "slip-nul.zip": module(Entry((PREFIX + "b.go\0/../../" + ESCAPE).encode(), b"x")),
        "slip-overlong-utf8.zip": module(Entry(PREFIX.encode() + b"\xc0\xae\xc0\xae/" + ESCAPE.encode(), b"x")),
        "slip-invalid-utf8.zip": module(Entry(PREFIX.encode() + b"\xff\xfe.go", b"x")),
        "slip-empty-element.zip": module(Entry(PREFIX + "a//b.go", GO_SRC)),
        "wrong-prefix.zip": build_zip([Entry("example.com/other@v1.0.0/go.mod", GO_MOD)]),
        "wrong-version-prefix.zip": build_zip([Entry("example.com/corpus@v1.0.1/go.mod", GO_MOD)]),
        "no-prefix.zip": build_zip([Entry("go.mod", GO_MOD), Entry("a.go", GO_SRC)]),
        "case-collision.zip": module(Entry(PREFIX + "A.go", GO_SRC)),
        "duplicate-name.zip": module(Entry(PREFIX + "a.go", GO_SRC)),
        "file-and-dir.zip": module(Entry(PREFIX + "a.go/b.go", GO_SRC)),
        "gomod-in-subdir.zip": module(Entry(PREFIX + "sub/go.mod", b"module example.com/corpus/sub\n")),
        "gomod-uppercase.zip": build_zip([Entry(PREFIX + "GO.MOD", GO_MOD), Entry(PREFIX + "a.go", GO_SRC)]),
        "gomod-other-module.zip": build_zip([Entry(PREFIX + "go.mod", b"module example.com/other\n")]),
        "gomod-garbage.zip": build_zip([Entry(PREFIX + "go.mod", b"module \"unterminated\n(((\n")]),
        "gomod-declared-huge.zip": build_zip([Entry(PREFIX + "go.mod", GO_MOD, size=17 << 20)]),
        "symlink.zip": module(Entry(PREFIX + "link.go", b"/etc/passwd", mode=0o120777)),
        "windows-reserved.zip": module(Entry(PREFIX + "con.go", GO_SRC)),
        "trailing-dot.zip": module(Entry(PREFIX + "b.", GO_SRC)),
        "colon-name.zip": module(Entry(PREFIX + "a:b.go", GO_SRC)),
        # Bombs: declared sizes over the 500 MiB module limit (nothing is inflated)...
        "bomb-declared.zip": module(Entry(PREFIX + "big1.bin", b"x", size=300 << 20),
                                    Entry(PREFIX + "big2.bin", b"x", size=300 << 20)),
        # ... a small declared size over a stream that inflates to 10 MiB ...
        "bomb-lying-size.zip": module(Entry(PREFIX + "big.bin", zeros, size=100, crc=zlib.crc32(zeros[:100]))),
        # ... and 600 directory entries sharing one local file of 1 MiB each (overlapping files).
        "bomb-overlapping.zip": build_zip(
            [Entry(PREFIX + "z0000.bin", b"\0" * (1 << 20))]
            + [Entry(PREFIX + "z%04d.bin" % i, b"", size=1 << 20, crc=zlib.crc32(b"\0" * (1 << 20)))
               for i in range(1, 600)],
            shared_local=True),
        "crc-mismatch.zip": module(Entry(PREFIX + "b.go", GO_SRC, crc=0xDEADBEEF)),
        "unsupported-method.zip": module(Entry(PREFIX + "b.go", GO_SRC, method=14)),
        "encrypted.zip": module(Entry(PREFIX + "b.go", GO_SRC, flags=1)),
        "unicode-path-field.zip": module(Entry(PREFIX + "x.go", GO_SRC, extra=unicode_path)),
        "truncated.zip": module()[:60],
        "not-a-zip.zip": b"this is not a zip file at all\n" * 4,
        "gzip-not-zip.zip": gzip.compress(GO_MOD, mtime=0),
    }


def tar_bytes(members, compress=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compress == "gz":
        return gzip.compress(raw, mtime=0)
    return raw


def member(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def staging_archives():
    slip_zip = build_zip([Entry("ok.txt", b"ok"), Entry("../../" + ESCAPE, b"x")])
    return {
        "slip.tar": tar_bytes([member("ok.txt"), member("../../" + ESCAPE)]),
        "absolute.tar": tar_bytes([member("/tmp/" + ESCAPE)]),
        "symlink-out.tar": tar_bytes([member("link", kind=tarfile.SYMTYPE, link="/tmp"),
                                      member("link/" + ESCAPE)]),
        "symlink-up.tar": tar_bytes([member("up", kind=tarfile.SYMTYPE, link="../../.."),
                                     member("up/" + ESCAPE)]),
        "hardlink-out.tar": tar_bytes([member("passwd", kind=tarfile.LNKTYPE, link="/etc/passwd")]),
        "device.tar": tar_bytes([member("null", kind=tarfile.CHRTYPE)]),
        "slip.zip": slip_zip,
        "unsupported-method.zip": build_zip([Entry("a.txt", b"a", method=14)]),
        "encrypted.zip": build_zip([Entry("a.txt", b"a", flags=1)]),
        "bomb.tar.gz": tar_bytes([member("zeros.bin", b"\0" * (40 << 20))], compress="gz"),
        "bomb.tar.bz2": bz2.compress(tar_bytes([member("zeros.bin", b"\0" * (40 << 20))]), 9),
        "garbage.tar.gz": b"\x1f\x8b\x08\x00garbage that is not deflate" * 3,
        "truncated.tar.gz": tar_bytes([member("a.txt", b"a" * 5000)], compress="gz")[:40],
    }


def write_all(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write_all(GO, go_zips())
    write_all(UPSTREAM, staging_archives())
