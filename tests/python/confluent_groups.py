"""confluent-kafka consumer groups (classic protocol) against rafka.

1. Three members subscribe to a 6-partition topic holding N records: they share the
   partitions (each gets some, none twice), consume everything exactly once between them,
   and commit; one leaves and the others take over its partitions (a rebalance).
2. Static membership: two members with group.instance.id; one is closed (a static member
   sends no LeaveGroup) and comes back under the same instance id: it gets the same
   partitions, and the other member sees no rebalance.

Prints one JSON object with what happened; the Rust test checks it.
Usage: confluent_groups.py BOOTSTRAP TOPIC N
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


def consumer(group, instance=None, log=None):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    if instance:
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    events = log if log is not None else []

    def on_assign(c, parts):
        events.append(("assign", sorted(p.partition for p in parts)))

    def on_revoke(c, parts):
        events.append(("revoke", sorted(p.partition for p in parts)))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    return c, events


read = []


def poll_once(consumers):
    """One poll of each member; records go to `read`."""
    for i, c in enumerate(consumers):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            sys.exit(f"consume error: {m.error()}")
        read.append((i, m.partition(), m.offset(), m.value().decode()))


def poll_all(consumers, want, seconds):
    end = time.time() + seconds
    while time.time() < end and len(read) < want:
        poll_once(consumers)
    return read


def commit(c):
    """Commits what `c` consumed (nothing consumed is not an error)."""
    try:
        c.commit(asynchronous=False)
    except KafkaException as e:
        if e.args[0].code() != KafkaError._NO_OFFSET:
            raise


def assignment(c):
    return sorted(p.partition for p in c.assignment())


def settle(consumers, seconds):
    """Polls until every member has a non-empty assignment covering all 6 partitions once."""
    end = time.time() + seconds
    while time.time() < end:
        poll_once(consumers)
        parts = [assignment(c) for c in consumers]
        flat = sorted(p for a in parts for p in a)
        if flat == list(range(6)) and all(parts):
            return parts
    sys.exit(f"no stable assignment: {[assignment(c) for c in consumers]}")


out = {}
members = [consumer("shared")[0] for _ in range(3)]
out["shared_assignments"] = settle(members, 60)
poll_all(members, n, 60)
out["shared_read"] = len(read)
out["shared_distinct"] = len({(p, o) for _, p, o, _ in read})
out["shared_readers"] = sorted({i for i, _, _, _ in read})
for c in members:
    commit(c)
members[2].close()
read.clear()
out["after_leave"] = settle(members[:2], 60)
for c in members[:2]:
    c.close()

log_a, log_b = [], []
a, _ = consumer("static", "instance-a", log_a)
b, _ = consumer("static", "instance-b", log_b)
before = settle([a, b], 60)
b_events = len(log_b)
read.clear()
a.close()
a2, _ = consumer("static", "instance-a", [])
end = time.time() + 30
while time.time() < end and not assignment(a2):
    poll_once([a2, b])
out["static_before"] = before
out["static_after"] = [assignment(a2), assignment(b)]
out["static_b_rebalances"] = len(log_b) - b_events
a2.close()
b.close()
print(json.dumps(out))
