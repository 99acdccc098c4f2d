"""kafka-python consumer group (classic protocol) against rafka: two members, each on its own
thread (a kafka-python consumer rejoins a rebalance only inside its own poll), share a
topic's partitions, read every record between them (a rebalance while they start may
deliver some twice: at least once, as Kafka promises without commits), and commit.

Prints one JSON object: records read, distinct offsets, which members read, assignments.
Usage: kafka_python_groups.py BOOTSTRAP TOPIC GROUP N
"""
import json
import sys
import threading
import time

from kafka import KafkaConsumer
from kafka import errors

bootstrap, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
read = []
committed = []
assignments = {}
deadline = time.time() + 120


def distinct():
    with lock:
        return len({(p, o) for _, p, o in read})


def member(i):
    c = KafkaConsumer(topic, group_id=group, bootstrap_servers=bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=500)
    done = False
    while time.time() < deadline:
        for _, records in c.poll(timeout_ms=200).items():
            with lock:
                read.extend((i, m.partition, m.offset) for m in records)
        if not done and distinct() >= n and c.assignment():
            try:
                c.commit()
                done = True
                with lock:
                    committed.append(i)
                    assignments[i] = sorted(p.partition for p in c.assignment())
            except (errors.RebalanceInProgressError, errors.CommitFailedError) as e:
                print(f"member {i}: commit: {e!r}; polling on", file=sys.stderr)
        with lock:
            if len(committed) == 2:
                break
    c.close()


threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if len(committed) != 2:
    sys.exit(f"not every member committed: {committed}, read {distinct()} of {n}")
print(json.dumps({
    "read": len(read),
    "distinct": distinct(),
    "readers": sorted({i for i, _, _ in read}),
    "assignments": [assignments[0], assignments[1]],
}))
