"""The embedded server's shared_buffers: sized to the machine, set once with ALTER SYSTEM."""
from __future__ import annotations

from ledger import db


def test_shared_buffers_is_a_quarter_of_memory_within_bounds(monkeypatch):
    pages = {"SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(db.os, "sysconf", lambda k: pages[k])
    for mem_mb, want in ((256, "128MB"), (4096, "1024MB"), (24 * 1024, "2048MB")):
        pages["SC_PHYS_PAGES"] = mem_mb * 2**20 // 4096
        assert db.shared_buffers() == want


class _Server:
    def __init__(self):
        self.sent = []

    def psql(self, command):
        self.sent.append(command)
        return ""


def test_set_once_then_left_alone(tmp_path):
    server = _Server()
    db._size_buffers(server, tmp_path)                 # no auto.conf yet: set
    assert server.sent == [f"ALTER SYSTEM SET shared_buffers = '{db.shared_buffers()}';"]
    (tmp_path / "postgresql.auto.conf").write_text(f"shared_buffers = '{db.shared_buffers()}'\n")
    db._size_buffers(server, tmp_path)                 # already there: nothing sent
    assert len(server.sent) == 1


def test_a_failing_server_only_warns(tmp_path, caplog):
    class Broken:
        def psql(self, command):
            raise OSError("psql not found")
    db._size_buffers(Broken(), tmp_path)
    assert "could not set shared_buffers" in caplog.text
