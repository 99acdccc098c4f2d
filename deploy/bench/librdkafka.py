"""What librdkafka (through confluent-kafka) reaches against a cluster: produce N records of
SIZE bytes as fast as the producer allows (acks=all, idempotent, linger 5 ms, batches of up
to 1 MiB), then consume them all from the beginning. Prints one JSON object.

With --sync: N records one at a time instead (linger 0, each delivery awaited before the
next send), reporting the latency percentiles of one acks=all produce; nothing is consumed.

Usage: librdkafka.py BOOTSTRAP TOPIC N SIZE [--sync]
       (in the venv `deploy/prereqs.sh --test` makes)
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer

bootstrap, topic, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
value = b"x" * size
if sys.argv[5:] == ["--sync"]:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
        }
    )
    p.produce(topic, value=value)  # metadata and connections before the clock starts
    p.flush(30)
    lat = []
    errors = []
    for _ in range(n):
        t = time.perf_counter()
        p.produce(topic, value=value, on_delivery=lambda err, _m: err and errors.append(err))
        p.flush(30)
        lat.append(time.perf_counter() - t)
    lat.sort()

    def q(f):
        return round(lat[min(len(lat) - 1, int(f * len(lat)))] * 1000, 3)

    print(
        json.dumps(
            {
                "records": n,
                "record_size": size,
                "failed": len(errors),
                "records_per_sec": round(n / sum(lat)),
                "latency_ms": {"p50": q(0.5), "p99": q(0.99), "max": q(1.0)},
            }
        )
    )
    sys.exit(1 if errors else 0)
p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "queue.buffering.max.kbytes": 1 << 20,
    }
)
failed = 0


def report(err, _msg):
    global failed
    if err is not None:
        failed += 1


start = time.time()
for _ in range(n):
    while True:
        try:
            p.produce(topic, value=value, on_delivery=report)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
p.flush(300)
produce_s = time.time() - start

c = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": f"perf-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52428800,
    }
)
c.subscribe([topic])
read = 0
first = None
deadline = time.time() + 300
while read < n and time.time() < deadline:
    batch = c.consume(10000, 1.0)
    if batch and first is None:
        first = time.time()
    read += sum(1 for m in batch if m.error() is None)
consume_s = time.time() - (first or time.time())
c.close()
mb = n * size / 1e6
print(
    json.dumps(
        {
            "records": n,
            "record_size": size,
            "failed": failed,
            "produce_records_per_sec": round(n / produce_s),
            "produce_mb_per_sec": round(mb / produce_s, 1),
            "consumed": read,
            "consume_records_per_sec": round(read / max(consume_s, 1e-9)),
            "consume_mb_per_sec": round(read * size / 1e6 / max(consume_s, 1e-9), 1),
        }
    )
)
