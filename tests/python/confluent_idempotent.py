"""An idempotent confluent-kafka producer writing N numbered records to partition 0 while the
test kills the partition's leader: every delivery report must succeed. Prints one JSON object:
delivered, failed (with the first errors), and seen_at: how many records had been handed to
the producer when the file KILLED (which the test creates right after the kill) was first
seen, or null.

Usage: confluent_idempotent.py BOOTSTRAP TOPIC N KILLED
"""
import json
import os
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, n, killed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
delivered, failed = [], []
seen_at = None


def report(err, msg):
    if err is None:
        delivered.append(msg.offset())
    else:
        failed.append(str(err))


producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "linger.ms": 5,
    "message.timeout.ms": 120000,
    "retry.backoff.ms": 100,
})
for i in range(n):
    while True:
        try:
            producer.produce(topic, value=str(i).encode(), partition=0, on_delivery=report)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)
    if i % 100 == 0:
        # Spread the sends over several seconds, so the leader dies mid-stream.
        time.sleep(0.2)
        if seen_at is None and os.path.exists(killed):
            seen_at = i
producer.flush(180)
print(json.dumps({
    "delivered": len(delivered),
    "failed": len(failed),
    "errors": failed[:5],
    "seen_at": seen_at,
}))
