"""The actor <-> replay session's two state machines, without sockets: what each returns to send, and counters."""
from __future__ import annotations

import numpy as np
import pytest

from wire import shared_memory
from wire.protocol import Kind
from wire.session import REGISTER_RETRY_S, ClientSession, ServiceSession, SessionRefused

CREDITS = 2


def chunk(nbytes: int = 400) -> dict:
    return {"obs": np.zeros(nbytes // 4, np.float32)}


def client(resend_mb: float = 1.0, slots=None) -> ClientSession:
    return ClientSession("actor-0", {"spec": {}}, resend_buffer_bytes=resend_mb * 2**20, heartbeat_s=1.0, slots=slots)


def service(snapshots: bool = True, max_actors: int = 4, can_grant=lambda: True) -> ServiceSession:
    return ServiceSession(credits=CREDITS, max_actors=max_actors, heartbeat_timeout_s=10.0, snapshots=snapshots,
                          can_grant=can_grant)


class Link:
    """A client and a service session joined by hand: what one returns, the other takes."""

    def __init__(self, c: ClientSession, s: ServiceSession):
        self.c, self.s, self.now = c, s, 0.0

    def register(self) -> dict:
        [out] = self.c.register(self.now)
        assert out.kind == Kind.REGISTER
        registration = self.s.register(self.c.name, [b"r"], self.now)
        return self.reply(registration.reply.meta)

    def reply(self, meta: dict) -> dict:
        self.resends = self.c.on_reply(meta, self.now)
        return meta

    def deliver(self, out, outcome: str | None = None) -> dict | None:
        """The service files one chunk message; the client takes the reply (None: the credit is owed)."""
        actor = self.s.seen(self.c.name, [b"r"], self.now)
        duplicate = self.s.duplicate(actor, out.seq)
        if duplicate:
            return self.reply(duplicate.meta)
        replies, _ = self.s.filed(actor, out.seq, outcome)
        return self.reply(replies[0].meta) if replies else None

    def send(self, n: int = 1) -> list:
        return [out for _ in range(n) for out in self.c.add(chunk(), {"episodes": []}, policy_version=3)]


def test_register_grants_credits_and_chunks_return_them():
    link = Link(client(), service())
    reply = link.register()
    assert reply["registered"] and reply["credits"] == CREDITS and reply["last_seq"] == 0
    assert link.c.registered and link.c.credits == CREDITS
    [out] = link.send()
    assert out.kind == Kind.CHUNK and out.seq == 1 and out.policy_version == 3 and link.c.credits == CREDITS - 1
    reply = link.deliver(out)
    assert reply["credits"] == 1 and reply["last_seq"] == 1 and link.c.credits == CREDITS
    assert link.c.stored_seq == 1 and link.s.actors["actor-0"].chunks == 1


def test_duplicate_is_acknowledged_not_filed_and_a_gap_is_counted():
    link = Link(client(), service())
    link.register()
    link.deliver(link.send()[0])
    again = link.c.add(chunk(), {}, policy_version=0, seq=1)[0]  # the narrow test door: a chosen number
    reply = link.deliver(again)
    assert reply["outcome"] == "duplicate" and reply["last_seq"] == 1
    assert link.s.duplicates == 1 and link.s.actors["actor-0"].chunks == 1
    jump = link.c.add(chunk(), {}, policy_version=0, seq=5)[0]
    actor = link.s.seen("actor-0", [b"r"], 0.0)
    _, gap = link.s.filed(actor, jump.seq)
    assert gap == 3 and link.s.lost_chunks == 3 and actor.lost == 3
    assert link.c.add(chunk(), {}, policy_version=0)[0].seq == 6  # numbering continues after the highest used


def test_rejected_chunk_frees_its_credit_and_leaves_the_resend_buffer():
    link = Link(client(), service())
    link.register()
    [out] = link.send()
    actor = link.s.seen("actor-0", [b"r"], 0.0)
    reply = link.reply(link.s.rejected(actor, out.seq, "bad").meta)
    assert reply["rejected_seq"] == 1 and reply["last_seq"] == 0 and link.s.rejected_chunks == 1
    assert link.c.credits == CREDITS and 1 not in link.c.resend_buffer and link.c.outcomes["rejected"] == 1


def test_restarted_service_from_a_snapshot_gets_the_chunks_it_lacks_again():
    s = service()
    link = Link(client(), s)
    link.register()
    for out in link.send(2):
        link.deliver(out)
    s.snapshot_written(s.state())  # a snapshot holds #1..#2
    assert link.c.durable_seq == 0  # the next reply says so
    for out in link.send(3):
        link.deliver(out)
    assert link.c.durable_seq == 2 and sorted(link.c.resend_buffer) == [3, 4, 5]
    saved = s.state()
    saved["actors"]["actor-0"].update(last_seq=2, chunks=2)  # the service dies; its newest snapshot held #1..#2
    restarted = service()
    restarted.load_state(saved, 0.0)
    link.s = restarted
    out = link.c.add(chunk(), {}, policy_version=0)[0]  # sent to the new service before it knows us
    reply = restarted.seen("actor-0", [b"r"], 0.0)
    assert reply.meta == {"credits": 0, "reregister": True}
    [register] = link.c.on_reply(reply.meta, 5.0)
    assert register.kind == Kind.REGISTER and not link.c.registered
    assert link.c.on_reply(reply.meta, 5.5) == []  # a second "reregister" within a second: registered once only
    registration = restarted.register("actor-0", [b"r"], 6.0)
    assert registration.rejoined and registration.reply.meta["last_seq"] == 2
    resends = link.c.on_reply(registration.reply.meta, 6.0)
    assert [o.seq for o in resends] == [3, 4, 5, out.seq] and all(o.resend for o in resends)
    assert link.c.resent == 4
    for o in resends:
        link.deliver(o)
    actor = restarted.actors["actor-0"]
    assert (actor.chunks, actor.last_seq, restarted.lost_chunks, restarted.duplicates) == (6, 6, 0, 0)


def test_durable_acknowledgement_releases_and_the_bound_drops_only_stored_chunks():
    link = Link(client(resend_mb=1000 / 2**20), service())  # room for two 400-byte chunks
    link.register()
    outs = link.send(2)
    link.c.credits = 10
    outs += link.send(2)  # four chunks in flight, none stored: none may be dropped
    assert sorted(link.c.resend_buffer) == [1, 2, 3, 4] and link.c.released_unsnapshotted == 0
    for out in outs[:3]:
        link.deliver(out)
    # #1..#3 stored, none durable: over the bound, the oldest stored ones go
    assert sorted(link.c.resend_buffer) == [3, 4] and link.c.released_unsnapshotted == 2
    link.s.snapshot_written(link.s.state())
    link.deliver(outs[3])
    assert link.c.durable_seq == 3 and sorted(link.c.resend_buffer) == [4]
    assert link.c.resend_buffer_nbytes == 400


def test_without_snapshots_stored_is_durable():
    link = Link(client(), service(snapshots=False))
    link.register()
    reply = link.deliver(link.send()[0], outcome="accepted")
    assert reply["durable_seq"] == 1 and reply["outcome"] == "accepted" and not link.c.resend_buffer


def test_rate_limited_credits_are_owed_then_granted():
    allowed = [False]
    link = Link(client(), service(can_grant=lambda: allowed[0]))
    link.register()
    assert link.deliver(link.send()[0]) is None
    actor = link.s.actors["actor-0"]
    assert actor.owed_credits == 1 and actor.waiting_since is not None and link.c.credits == CREDITS - 1
    assert link.s.grant_owed() == []
    allowed[0] = True
    [grant] = link.s.grant_owed()
    link.reply(grant.meta)
    assert actor.owed_credits == 0 and actor.waiting_since is None and link.c.credits == CREDITS


def test_heartbeat_timeout_then_rejoin_keeps_the_sequence():
    s = service()
    link = Link(client(), s)
    link.register()
    link.deliver(link.send()[0])
    s.seen("actor-0", [b"r"], 1.0)
    assert s.drop_silent(5.0) == [] and s.drop_silent(11.5) == ["actor-0"]
    assert not s.actors["actor-0"].connected
    assert s.seen("actor-0", [b"r"], 12.0).meta["reregister"]
    registration = s.register("actor-0", [b"r"], 12.0)
    assert registration.rejoined and registration.reply.meta["last_seq"] == 1


def test_max_actors_refuses_and_departed_names_are_forgotten_beyond_it():
    s = service(max_actors=2)
    for i in range(2):
        assert s.register(f"a{i}", [b"r"], float(i)).actor is not None
    refused = s.register("a2", [b"r"], 3.0)
    assert refused.actor is None and "max_actors=2" in refused.reply.meta["refused"]
    with pytest.raises(SessionRefused):
        client().on_reply(refused.reply.meta, 0.0)
    s.leave("a0")
    s.leave("a1")
    assert s.register("a2", [b"r"], 4.0).forgotten == []
    s.leave("a2")
    assert s.register("a3", [b"r"], 5.0).forgotten == ["a0"]  # three departed, two kept: the longest gone goes
    assert set(s.actors) == {"a1", "a2", "a3"}


def test_heartbeats_and_registration_retries_fall_due():
    c = client()
    due = c.poll(0.0)
    assert [o.kind for o in due] == [Kind.HEARTBEAT, Kind.REGISTER]
    assert c.poll(0.5) == []
    assert [o.kind for o in c.poll(1.0)] == [Kind.HEARTBEAT]
    assert [o.kind for o in c.poll(REGISTER_RETRY_S + 0.1)] == [Kind.HEARTBEAT, Kind.REGISTER]


def test_unsent_chunks_stop_production_and_are_resent_after_registering():
    link = Link(client(), service())
    link.register()
    outs = link.send()
    link.c.send_failed(outs)
    assert link.c.credits == 0 and not link.c.registered
    link.register()
    assert [o.seq for o in link.resends] == [1]


@pytest.mark.skipif(not shared_memory.available(), reason="no /dev/shm")
def test_slots_are_used_once_confirmed_and_freed_by_acknowledgements():
    writer = shared_memory.SlotWriter(f"zarl-test-session-{np.random.randint(1 << 30)}", CREDITS + 1,
                                      shared_memory.slot_bytes_for([1 << 20]))
    try:
        c = client(slots=writer)
        [register] = c.register(0.0)
        assert register.meta["shm"]["segment"] == writer.name
        c.on_reply({"registered": True, "credits": CREDITS, "last_seq": 0, "durable_seq": 0, "shm": True}, 0.0)
        assert c.slots_confirmed
        big = {"obs": np.ones(1 << 18, np.float32)}  # 1 MiB: into a slot
        out = c.add(big, {}, policy_version=0)[0]
        assert "shm" in out.meta and "obs" not in out.arrays and writer.in_use() == 1
        c.on_reply({"credits": 1, "last_seq": 1, "durable_seq": 0}, 0.0)
        assert writer.in_use() == 0 and 1 in c.resend_buffer  # stored: slot free; not durable: still kept
        out = c.add(big, {}, policy_version=0)[0]
        c.send_failed([out])
        assert writer.in_use() == 0
        refused = client(slots=writer)
        refused.on_reply({"registered": True, "credits": 1, "last_seq": 0, "durable_seq": 0, "shm": False,
                          "shm_problem": "other host"}, 0.0)
        assert refused.slots_confirmed is False and refused.shm_problem == "other host"
        assert "shm" not in refused.add(big, {}, policy_version=0)[0].meta
    finally:
        writer.close()
