# Negative tests driven through libnbd (nbdsh provides the handle `h`).
# Strict mode off, so libnbd sends what it would normally refuse; every
# error must come back with the right errno and the connection must stay
# usable. Run by tests/interop_libnbd.rs with NBD_URI set.
import errno
import os

import nbd

uri = os.environ["NBD_URI"]


def expect_err(what, fn, errnum):
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum == errnum, f"{what}: errnum {e.errnum} ({e}), wanted {errnum}"
        print(f"{what}: errno {e.errnum} ok")
        return
    raise AssertionError(f"{what}: no error")


def usable(c, seed):
    data = bytes([seed]) * 4096
    c.pwrite(data, 8192)
    assert c.pread(4096, 8192) == data, "connection not usable after an error"


h.set_strict_mode(0)
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(uri)
size = h.get_size()
assert h.can_fua() and h.can_flush() and h.can_trim() and h.can_zero() and h.can_df()
assert h.can_meta_context("base:allocation")

expect_err("pread past end", lambda: h.pread(512, size), errno.EINVAL)
usable(h, 1)
expect_err("pread straddling end", lambda: h.pread(1024, size - 512), errno.EINVAL)
usable(h, 2)
expect_err("pwrite past end", lambda: h.pwrite(b"x" * 1024, size - 512), errno.ENOSPC)
usable(h, 3)
expect_err("zero past end", lambda: h.zero(1024, size - 512), errno.ENOSPC)
expect_err("trim past end", lambda: h.trim(1024, size), errno.EINVAL)
expect_err("cache past end", lambda: h.cache(1024, size), errno.EINVAL)
expect_err("block_status past end", lambda: h.block_status(512, size, lambda *a: 0), errno.EINVAL)
usable(h, 4)
expect_err("pread unknown flag", lambda: h.pread(512, 0, flags=0x8000), errno.EINVAL)
expect_err("pwrite with REQ_ONE", lambda: h.pwrite(b"y" * 512, 0, flags=nbd.CMD_FLAG_REQ_ONE), errno.EINVAL)
expect_err("pread unaligned", lambda: h.pread(1, 1), errno.EINVAL)
usable(h, 5)
assert h.pread(0, 0) == b"", "zero-length read"
h.pwrite(b"", 0)
print("zero-length read/write: ok")
h.pwrite(b"\xcd" * 4096, 0, flags=nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0, flags=nbd.CMD_FLAG_DF) == b"\xcd" * 4096
h.flush()
h.zero(4096, 0, flags=nbd.CMD_FLAG_FAST_ZERO)
h.zero(4096, 0, flags=nbd.CMD_FLAG_NO_HOLE)
assert h.pread(4096, 0) == bytes(4096)
seen = []
h.block_status(65536, 0, lambda ctx, off, ents, err: seen.append((ctx, list(ents))) or 0)
assert seen and seen[0][0] == "base:allocation", seen
print("block status:", seen)
usable(h, 6)
h.shutdown()

# Simple replies only: errors still come back, READ data still flows.
s = nbd.NBD()
s.set_strict_mode(0)
s.set_request_structured_replies(False)
s.connect_uri(uri)
assert not s.get_structured_replies_negotiated()
expect_err("simple: pread past end", lambda: s.pread(512, size), errno.EINVAL)
usable(s, 7)
s.shutdown()

# Old-style handshake flags: EXPORT_NAME path.
o = nbd.NBD()
o.set_handshake_flags(0)
o.connect_uri(uri)
assert o.get_protocol() == "newstyle"
usable(o, 8)
o.shutdown()

# Driving negotiation by hand.
m = nbd.NBD()
m.set_opt_mode(True)
m.connect_uri(uri)
names = []
m.opt_list(lambda name, desc: names.append((name, desc)) or 0)
assert ("disk", "test disk") in names, names
m.set_export_name("nope")
expect_err("opt_info unknown export", lambda: m.opt_info(), errno.ENOENT)
m.set_export_name("disk")
m.opt_info()
assert m.get_size() == size
m.opt_go()
usable(m, 9)
m.shutdown()
print("ALL OK")
