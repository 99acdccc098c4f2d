"""confluent-kafka (librdkafka) against rafka: an idempotent producer writes N keyed records
with headers and lz4, then a consumer reads every partition from the beginning (assigned,
no group). Prints the records read as JSON lines: partition, offset, key, value, headers.

Usage: confluent_roundtrip.py BOOTSTRAP TOPIC N
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

failed = []


def report(err, msg):
    if err is not None:
        failed.append(str(err))


producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 5,
})
for i in range(n):
    producer.produce(topic, key=f"k{i}", value=f"v{i}", headers=[("i", str(i).encode())],
                     on_delivery=report)
    producer.poll(0)
left = producer.flush(60)
if left or failed:
    sys.exit(f"not delivered: {left} left, errors {failed[:5]}")

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rafka-test-unused",
                     "enable.auto.commit": False})
partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
got = []
deadline = time.time() + 60
while len(got) < n and time.time() < deadline:
    m = consumer.poll(1.0)
    if m is None:
        continue
    if m.error():
        sys.exit(f"consume error: {m.error()}")
    got.append({
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key().decode(),
        "value": m.value().decode(),
        "headers": [[k, v.decode()] for k, v in (m.headers() or [])],
    })
consumer.close()
for r in got:
    print(json.dumps(r, sort_keys=True))
