"""kafka-python against rafka: its producer (idempotent by default in 3.x) writes N keyed
records with gzip, then a consumer assigned every partition reads them from the beginning.
Prints the records read as JSON lines: partition, offset, key, value.

Usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC N
"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip",
                         enable_idempotence=True)
futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(n)]
producer.flush(60)
for f in futures:
    f.get(timeout=60)
producer.close()

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
partitions = consumer.partitions_for_topic(topic)
deadline = time.time() + 60
while not partitions and time.time() < deadline:
    time.sleep(0.2)
    partitions = consumer.partitions_for_topic(topic)
tps = [TopicPartition(topic, p) for p in sorted(partitions)]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
got = []
while len(got) < n and time.time() < deadline:
    for _, records in consumer.poll(timeout_ms=1000).items():
        for m in records:
            got.append({"partition": m.partition, "offset": m.offset,
                        "key": m.key.decode(), "value": m.value.decode()})
consumer.close()
for r in got:
    print(json.dumps(r, sort_keys=True))
