"""What a backup-software team's first test looks like: boot a virtual
subsystem, write through NBD, take a point-in-time copy, check the copy keeps
the old bytes while the source moves on, then crash the subsystem in the
middle of a backup session and see the IPL end the session.

Run: pip install ./python && FIRMWARE_SIM_BIN=target/release/firmware-sim pytest examples/python-consumer
"""

import nbd

# NBD requests are whole 512-byte sectors.
MONDAY = b"monday".ljust(512, b".") * 12
TUESDAY = b"tuesday".ljust(512, b".") * 12


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def test_snapshot_then_backup_session_survives_nothing_half_way(subsystem):
    api = subsystem.client
    src = connect(subsystem.uri("FB02"))
    src.pwrite(MONDAY, 4096, nbd.CMD_FLAG_FUA)

    # A nocopy snapshot of FB02 on FB03: its time zero is now.
    snap = api.create_map("FB02", "FB03", copy_type="nocopy")
    api.start_map(snap["id"])
    src.pwrite(TUESDAY, 4096, nbd.CMD_FLAG_FUA)
    image = connect(subsystem.uri("FB03"))
    assert image.pread(len(MONDAY), 4096) == MONDAY

    # A backup session over FB00's first tracks, interrupted by a crash.
    api.start_session("NIGHTLY1", ["FB00:0-63"], ["FB01"], program="BACKUP")
    src.shutdown()
    image.shutdown()
    subsystem.crash()
    subsystem.ipl()
    # The IPL boots on the same ports; the session did not survive it.
    s = subsystem.client.session("NIGHTLY1")
    assert s["state"] == "terminated" and s["reason"] == "ipl"
    # The snapshot map came back with the subsystem; its image too.
    image = connect(subsystem.uri("FB03"))
    assert image.pread(len(MONDAY), 4096) == MONDAY
    image.shutdown()
