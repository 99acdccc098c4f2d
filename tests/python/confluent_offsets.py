"""confluent-kafka's admin ListOffsets against rafka: earliest, latest, max timestamp and by
timestamp for partition 0. Prints one JSON object: spec -> [offset, timestamp].

Usage: confluent_offsets.py BOOTSTRAP TOPIC TIMESTAMP
"""
import json
import sys

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

bootstrap, topic, ts = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": bootstrap})
specs = {
    "earliest": OffsetSpec.earliest(),
    "latest": OffsetSpec.latest(),
    "max_timestamp": OffsetSpec.max_timestamp(),
    "for_timestamp": OffsetSpec.for_timestamp(ts),
}
out = {}
for name, spec in specs.items():
    futures = admin.list_offsets({TopicPartition(topic, 0): spec}, request_timeout=30)
    info = list(futures.values())[0].result()
    out[name] = [info.offset, info.timestamp]
print(json.dumps(out))
