"""confluent-kafka consumer groups with the consumer protocol (KIP-848,
group.protocol=consumer) against rafka.

1. Two members subscribe by name to a 4-partition topic holding N records per partition:
   they share the partitions, read everything between them (a partition that moves before
   its first reader committed is read again by the next), and commit; one leaves and the
   other takes over all four partitions.
2. A member subscribes by regex: it gets the partitions of every topic the regex matches,
   and of a matching topic created while it runs.
3. The admin client describes the group (ConsumerGroupDescribe), and so does `rafka group
   describe` while the regex member is in.

Prints one JSON object; the Rust test checks it.
Usage: confluent_consumer_protocol.py BOOTSTRAP N RAFKA_CLI
"""
import json
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, n, cli = sys.argv[1], int(sys.argv[2]), sys.argv[3]
admin = AdminClient({"bootstrap.servers": bootstrap})
out = {}
T = 30


def create(name, partitions):
    f = admin.create_topics([NewTopic(name, partitions, 3)], request_timeout=T)[name]
    f.result(timeout=T)


def produce(topic, partitions):
    p = Producer({"bootstrap.servers": bootstrap})
    for part in range(partitions):
        for i in range(n):
            p.produce(topic, value=f"{topic}-{part}-{i}", partition=part)
    assert p.flush(T) == 0


def consumer(group):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def assigned(c):
    return sorted([tp.topic, tp.partition] for tp in c.assignment())


def at_end(c):
    """Whether c has read every partition it owns up to the N records each holds."""
    return all(tp.offset == n for tp in c.position(c.assignment()))


def poll_all(members, until, deadline=90):
    """Polls every member until until() holds; returns what each read."""
    read = [[] for _ in members]
    end = time.time() + deadline
    while time.time() < end and not until(read):
        for i, c in enumerate(members):
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                read[i].append(m.value().decode())
    return read


create("kip-a", 4)
create("kip-b", 2)
produce("kip-a", 4)
produce("kip-b", 2)

# 1. Two members share kip-a.
a, b = consumer("kip"), consumer("kip")
a.subscribe(["kip-a"])
b.subscribe(["kip-a"])
# Until both own partitions, all four between them, and each has read its own to the end:
# a partition moved from one member to the other after the first read it is read again
# by the second (nothing was committed yet), so commits below cover all four.
read = poll_all(
    [a, b],
    lambda r: len(set(r[0]) | set(r[1])) >= 4 * n and assigned(a) and assigned(b)
    and len(assigned(a)) + len(assigned(b)) == 4 and at_end(a) and at_end(b),
)
out["shared_assignments"] = [assigned(a), assigned(b)]
out["shared_read"] = sum(map(len, read))
out["shared_distinct"] = len(set(read[0]) | set(read[1]))
a.commit(asynchronous=False)
b.commit(asynchronous=False)
d = admin.describe_consumer_groups(["kip"], request_timeout=T)["kip"].result(timeout=T)
out["described"] = {
    "state": d.state.name,
    "members": len(d.members),
    "assigned": sorted(
        [tp.topic, tp.partition] for m in d.members for tp in m.assignment.topic_partitions
    ),
}
b.close()
poll_all([a], lambda r: len(assigned(a)) == 4)
out["after_leave"] = assigned(a)
a.close()

# 2. A regex subscription, and a matching topic created while it runs.
r = consumer("kip-re")
r.subscribe(["^kip-[ab]$|^kip-later$"])
read = poll_all([r], lambda x: len(x[0]) >= 6 * n)
out["regex_assigned"] = assigned(r)
out["regex_read"] = len(set(read[0]))
create("kip-later", 1)
produce("kip-later", 1)
read = poll_all([r], lambda x: len(x[0]) >= n)
out["regex_assigned_later"] = assigned(r)
out["regex_read_later"] = sorted(set(read[0]))[:1] + [len(set(read[0]))]
described = subprocess.run(
    [cli, "--bootstrap", bootstrap, "group", "describe", "kip-re", "--output", "json"],
    check=True,
    capture_output=True,
    text=True,
    timeout=T,
)
out["rafka_describe_re"] = json.loads(described.stdout)
r.close()
print(json.dumps(out))
