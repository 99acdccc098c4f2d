"""confluent-kafka's side of the cross-protocol tests. Bytes travel as hex, null as null.

  produce BOOTSTRAP TOPIC      produce a fixed set of records (keys, null keys and values,
                               binary values, headers with null values, set timestamps) to
                               partitions 0 and 1, lz4-compressed; print each as sent, with
                               the offset its delivery report gave
  consume BOOTSTRAP TOPIC N    read N records from the beginning of partitions 0 and 1
  committed BOOTSTRAP GROUP TOPIC P
                               print the committed offsets of partitions 0..P-1 of TOPIC

Each prints one JSON document on stdout.
"""
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

T = 30


def hx(b):
    return None if b is None else bytes(b).hex()


def record(partition, offset, timestamp, key, value, headers):
    return {
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "key": hx(key),
        "value": hx(value),
        "headers": [[k, hx(v)] for k, v in (headers or [])],
    }


def produce(bootstrap, topic):
    p = Producer(
        {"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 5}
    )
    base = 1_700_000_000_000
    sent = []
    for i in range(40):
        partition = i % 2
        key = None if i % 7 == 0 else f"key-{i}".encode()
        value = None if i % 11 == 5 else (bytes(range(256)) if i % 5 == 0 else f"value-{i}".encode())
        headers = [("trace", f"t{i}".encode()), ("empty", None)] if i % 3 == 0 else None
        if i % 9 == 0:
            headers = (headers or []) + [("trace", b"again")]
        ts = base + i * 1000

        def report(err, msg, key=key, value=value, headers=headers, ts=ts):
            if err is not None:
                raise SystemExit(f"delivery failed: {err}")
            sent.append(record(msg.partition(), msg.offset(), ts, key, value, headers))

        p.produce(
            topic,
            key=key,
            value=value,
            partition=partition,
            headers=headers,
            timestamp=ts,
            on_delivery=report,
        )
    if p.flush(T) != 0:
        raise SystemExit("records left unsent")
    print(json.dumps(sorted(sent, key=lambda r: (r["partition"], r["offset"]))))


def consume(bootstrap, topic, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cross-reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    got = []
    end = time.time() + 60
    while len(got) < n and time.time() < end:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            raise SystemExit(f"consume failed: {m.error()}")
        got.append(record(m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), m.headers()))
    c.close()
    print(json.dumps(sorted(got, key=lambda r: (r["partition"], r["offset"]))))


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=T)
    c.close()
    print(json.dumps([[tp.partition, tp.offset] for tp in tps]))


mode = sys.argv[1]
if mode == "produce":
    produce(sys.argv[2], sys.argv[3])
elif mode == "consume":
    consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif mode == "committed":
    committed(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
else:
    raise SystemExit(f"unknown mode {mode}")
