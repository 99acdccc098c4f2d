"""kafka-python's KafkaAdminClient against rafka: topics (create, refused creation,
configs, partitions, delete), the cluster, and a consumer group (list, describe, offsets,
delete). Prints one JSON object; the Rust test checks it.

Usage: kafka_python_admin.py BOOTSTRAP
"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

bootstrap = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
out = {}


def wait_until(what, check, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def modified(topic):
    """The topic's overridden configs: name -> value."""
    r = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)])
    return {k: v["value"] for k, v in r["topic"][topic].items()}


r = admin.create_topics(
    {
        "kp-a": {"num_partitions": 2, "replication_factor": 3, "configs": {"retention.ms": "50000"}},
        "kp-b": {},
    }
)
out["created"] = {t["name"]: [t["error_code"], t["num_partitions"], t["replication_factor"]] for t in r["topics"]}
r = admin.create_topics({"kp-a": {"num_partitions": 2}}, raise_errors=False)
out["again"] = r["topics"][0]["error_code"]
wait_until("the topics", lambda: {"kp-a", "kp-b"} <= set(admin.list_topics()))
out["modified"] = modified("kp-a")
admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-a", {"retention.bytes": "2000000"})])
wait_until("the alteration", lambda: "retention.bytes" in modified("kp-a"))
out["modified_after"] = modified("kp-a")
admin.create_partitions({"kp-a": 4})
wait_until(
    "4 partitions",
    lambda: len(admin.describe_topics(["kp-a"])[0]["partitions"]) == 4,
)
out["partitions"] = len(admin.describe_topics(["kp-a"])[0]["partitions"])
c = admin.describe_cluster()
out["cluster"] = {"controller": c["controller_id"], "brokers": sorted(x["broker_id"] for x in c["brokers"])}

p = KafkaProducer(bootstrap_servers=bootstrap)
for i in range(6):
    p.send("kp-b", key=b"k", value=b"v%d" % i)
p.flush()
consumer = KafkaConsumer(
    "kp-b",
    bootstrap_servers=bootstrap,
    group_id="kp-g",
    auto_offset_reset="earliest",
    enable_auto_commit=False,
)
n = 0
end = time.time() + 60
while n < 6 and time.time() < end:
    for _, records in consumer.poll(500).items():
        n += len(records)
consumer.commit()
out["read"] = n
out["listed"] = [[g["group_id"], g["protocol_type"], g["group_state"]] for g in admin.list_groups()]
d = admin.describe_groups(["kp-g"])["kp-g"]
out["described"] = {
    "state": d["group_state"],
    "protocol": d["protocol_data"],
    "subscriptions": [m["member_metadata"]["topics"] for m in d["members"]],
    "assignments": [
        [[a["topic"], a["partitions"]] for a in m["member_assignment"]["assigned_partitions"]]
        for m in d["members"]
    ],
}
offsets = admin.list_group_offsets("kp-g")["kp-g"]
out["offsets"] = sorted([tp.topic, tp.partition, o.offset] for tp, o in offsets.items())
consumer.close()
wait_until("the group to empty", lambda: admin.describe_groups(["kp-g"])["kp-g"]["group_state"] == "Empty")
out["deleted_groups"] = {g: str(e) for g, e in admin.delete_groups(["kp-g", "kp-none"]).items()}
r = admin.delete_topics(["kp-a", "kp-b"])
out["deleted_topics"] = sorted([t["name"], t["error_code"]] for t in r["topics"])
wait_until("the topics to go", lambda: not ({"kp-a", "kp-b"} & set(admin.list_topics())))
out["left"] = sorted(t for t in admin.list_topics() if t.startswith("kp-"))
print(json.dumps(out))
