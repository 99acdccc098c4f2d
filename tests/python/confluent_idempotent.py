"""An idempotent confluent-kafka producer writing N numbered records to partition 0 while the
test kills the partition's leader: every delivery report must succeed. Prints one JSON object:
delivered, failed (with the first errors).

Usage: confluent_idempotent.py BOOTSTRAP TOPIC N
"""
import json
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
delivered, failed = [], []


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
        # Spread the sends over a few seconds, so the leader dies mid-stream.
        time.sleep(0.05)
producer.flush(180)
print(json.dumps({"delivered": len(delivered), "failed": len(failed), "errors": failed[:5]}))
