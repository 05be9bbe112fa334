"""A loader worker's resource sharer keeps quiet about batches the main process abandoned."""

import os
import socket
import sys
from multiprocessing import resource_sharer

from detect.data.quiet_handoffs import is_abandoned_handoff, quiet_abandoned_handoffs


def reported_errors(monkeypatch) -> list:
    """Installs the quiet hook over a recorder of what reaches the previous hook."""
    reported = []
    monkeypatch.setattr(sys, "excepthook", lambda error_type, error, tb: reported.append(error_type))
    quiet_abandoned_handoffs()
    return reported


def test_a_client_that_hangs_up_mid_handshake_prints_nothing_and_the_next_handoff_works(monkeypatch):
    reported = reported_errors(monkeypatch)
    read_end, write_end = os.pipe()
    try:
        handle = resource_sharer.DupFd(write_end)  # starts this process's sharer thread
        address = resource_sharer._resource_sharer._address
        with socket.socket(socket.AF_UNIX) as abandoning_client:  # the interrupted main process
            abandoning_client.connect(address)
        # The sharer serves one connection at a time: once this handoff is done, the one that was
        # abandoned before it has been reported (or not) through sys.excepthook.
        received = handle.detach()
        os.write(received, b"x")
        os.close(received)
        assert os.read(read_end, 1) == b"x"
    finally:
        os.close(read_end)
        os.close(write_end)
    assert reported == []


def test_other_errors_still_reach_the_previous_hook(monkeypatch):
    reported = reported_errors(monkeypatch)
    for error in (ValueError("a bug"), ConnectionResetError("outside the sharer")):
        try:
            raise error
        except Exception:
            sys.excepthook(*sys.exc_info())
    assert reported == [ValueError, ConnectionResetError]


def test_only_connection_errors_inside_the_sharer_count_as_abandoned_handoffs():
    sharer = "/usr/lib/python3.11/multiprocessing/resource_sharer.py"
    for filename, error, expected in [(sharer, EOFError(), True), (sharer, ConnectionResetError(), True),
                                      (sharer, ValueError(), False), ("/x/detect/data/loader.py", EOFError(), False)]:
        try:
            exec(compile("raise error", filename, "exec"), {"error": error})
        except Exception:
            traceback_ = sys.exc_info()[2]
        assert is_abandoned_handoff(type(error), traceback_) is expected, (filename, error)
