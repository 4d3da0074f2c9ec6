"""The rebuild's lean fold (seat events folded from their raw data, no model validation) gives exactly
what the decoded fold gives: the temporal Writer's rows and the licence fold's tables."""
from __future__ import annotations

import os
import sys
from datetime import timedelta

import orjson

from ledger.canonical import to_micros
from ledger.licences import SeatQueued
from projections import temporal as tp
from projections.rebuild import LicenceFold

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from bench_history import synthesize  # noqa: E402


def _events():
    out = []
    for i, (stream, ne, t) in enumerate(synthesize(6000, 300, 4, seed=11)):
        if not stream.startswith(("pool-", "product-")):
            continue
        eff = ne.effective_at or t
        out.append((i + 1, stream, ne.event.type_name, eff, ne.event))
        if i % 97 == 0 and stream.startswith("pool-") and hasattr(ne.event, "user_id"):   # some waiting users
            ev = SeatQueued(pool_id=stream[5:], user_id=ne.event.user_id + "w", grants=["b", "a", "a"], priority=3)
            out.append((i + 1_000_000, stream, "SeatQueued", eff + timedelta(seconds=1), ev))
    return out


def test_lean_fold_equals_the_decoded_fold():
    hist: dict[tuple[str, str], list] = {}

    def apply(w, seq, pid, typ, eff, ev):
        h = None
        if typ in tp.SEAT_TYPES:
            need = w.needs_history(pid, ev.user_id, eff, typ)
            if need is not None:
                h = [x for x in hist.get((pid, ev.user_id), []) if x[0] in set(need)]
        w.apply(seq, pid, typ, eff, ev, h)

    slow_w, lean_w = tp.Writer("t"), tp.Writer("t")
    slow_f, lean_f = LicenceFold(), LicenceFold()
    lean_used = 0
    for seq, stream, typ, eff, ev in _events():
        data = orjson.loads(orjson.dumps(ev.model_dump(mode="json")))
        pid = stream[5:]
        slow_f.apply(stream, typ, eff, ev)
        if stream.startswith("pool-"):
            apply(slow_w, seq, pid, typ, eff, ev)
        if stream.startswith("pool-") and tp.lean_ok(typ, ev.version):
            lean_f.apply_raw(typ, to_micros(eff), data)
            if lean_w.apply_raw(seq, pid, typ, to_micros(eff), data):
                lean_used += 1
            else:
                apply(lean_w, seq, pid, typ, eff, ev)
        else:
            lean_f.apply(stream, typ, eff, ev)
            if stream.startswith("pool-"):
                apply(lean_w, seq, pid, typ, eff, ev)
        if typ in tp.SEAT_TYPES:
            hist.setdefault((pid, ev.user_id), []).append((seq, eff, ev, typ))
    assert lean_used > 1000
    assert slow_f.tables() == lean_f.tables()
    assert sorted(map(repr, slow_w.inserts())) == sorted(map(repr, lean_w.inserts()))
    assert slow_w.pair_rows() == lean_w.pair_rows()


def test_a_lazy_pair_is_folded_from_its_history_before_any_event_it_applies():
    """A lazy pair tracks only its sequences and latest instant (in microseconds): an event that needs
    `apply` - backdated or not - gets the pair's history first, and the pair then holds datetimes."""
    from datetime import datetime, timezone
    from ledger.licences import SeatAssigned, SeatGrantsChanged
    w = tp.Writer("t", lazy=True)
    w.products["p"] = "x"
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assigned = SeatAssigned(pool_id="p", user_id="u", grants=["a"], priority=1)
    assert w.apply_raw(1, "p", "SeatAssigned", to_micros(t0), assigned.model_dump(mode="json"))
    p = w.pairs[("p", "u")]
    assert not p.folded and p.seqs == [1] and p.last_eff == to_micros(t0)
    later = t0 + timedelta(hours=1)
    assert w.needs_history("p", "u", later, "SeatGrantsChanged") == [1]
    w.apply(2, "p", "SeatGrantsChanged", later,
            SeatGrantsChanged(pool_id="p", user_id="u", grants=["b"], priority=1), [(1, t0, assigned, "SeatAssigned")])
    assert p.folded and p.seqs == [1, 2] and p.last_eff == later
    assert {(r[4], r[5]) for r in w.inserts()} == {("active", ("a",)), ("active", ("b",))}
