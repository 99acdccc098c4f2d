"""confluent-kafka's AdminClient against rafka: topics (create, validate-only, refused
creations, describe, configs, partitions, delete), the cluster, and consumer groups (list,
describe while a member is in and after it left, delete).

`rafka group describe` describes the same group while its member is in.

Prints one JSON object with what the admin client saw; the Rust test checks it.
Usage: confluent_admin.py BOOTSTRAP RAFKA_CLI
"""
import json
import subprocess
import sys
import time
import warnings

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

# AlterConfigs is deprecated in favour of IncrementalAlterConfigs, and tested here too.
warnings.simplefilter("ignore", DeprecationWarning)
bootstrap, cli = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
out = {}
T = 30


def outcome(future):
    """None on success, else the Kafka error's name."""
    try:
        future.result(timeout=T)
        return None
    except KafkaException as e:
        return e.args[0].name()


def wait_until(what, check, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def topics():
    return admin.list_topics(timeout=T).topics


def configs(topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res], request_timeout=T)[res].result(timeout=T)
    return {k: [v.value, v.source, v.is_read_only] for k, v in entries.items()}


# Topics: two created, one only validated, three refused.
fs = admin.create_topics(
    [
        NewTopic("adm-a", 3, 3, config={"retention.ms": "60000"}),
        NewTopic("adm-b", 2, -1),
    ],
    request_timeout=T,
)
out["created"] = {t: outcome(f) for t, f in fs.items()}
fs = admin.create_topics([NewTopic("adm-v", 4, 1)], validate_only=True, request_timeout=T)
out["validated"] = outcome(fs["adm-v"])
fs = admin.create_topics(
    [
        NewTopic("adm-a", 1, 1),
        NewTopic("bad/name", 1, 1),
        NewTopic("adm-c", 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic("adm-d", 1, 9),
    ],
    request_timeout=T,
)
out["refused"] = {t: outcome(f) for t, f in fs.items()}
wait_until("the new topics in metadata", lambda: {"adm-a", "adm-b"} <= set(topics()))
md = topics()
out["partitions"] = {t: len(md[t].partitions) for t in ("adm-a", "adm-b")}
out["replicas"] = {t: len(md[t].partitions[0].replicas) for t in ("adm-a", "adm-b")}
out["validated_exists"] = "adm-v" in md
out["refused_exist"] = sorted(t for t in ("bad/name", "adm-c", "adm-d") if t in md)

# Configs: describe, alter incrementally, alter (replace).
out["configs"] = configs("adm-a")
res = ConfigResource(
    ResourceType.TOPIC,
    "adm-a",
    incremental_configs=[
        ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ],
)
out["incremental"] = outcome(admin.incremental_alter_configs([res])[res])
wait_until(
    "the incremental change",
    lambda: configs("adm-a")["retention.bytes"][0] == "1048576",
)
out["configs_incremental"] = configs("adm-a")
bad = ConfigResource(
    ResourceType.TOPIC,
    "adm-a",
    incremental_configs=[
        ConfigEntry("retention.ms", "0", incremental_operation=AlterConfigOpType.SET)
    ],
)
out["incremental_bad"] = outcome(admin.incremental_alter_configs([bad])[bad])
res = ConfigResource(ResourceType.TOPIC, "adm-a", set_config={"max.message.bytes": "2000000"})
out["replace"] = outcome(admin.alter_configs([res])[res])
wait_until("the replacement", lambda: configs("adm-a")["max.message.bytes"][0] == "2000000")
out["configs_replaced"] = configs("adm-a")
broker = ConfigResource(ResourceType.BROKER, "1")
try:
    entries = admin.describe_configs([broker])[broker].result(timeout=T)
    out["broker_configs"] = {k: v.value for k, v in entries.items()}
except KafkaException as e:
    out["broker_configs"] = e.args[0].name()

# Partitions.
fs = admin.create_partitions([NewPartitions("adm-a", 5)], request_timeout=T)
out["grown"] = outcome(fs["adm-a"])
fs = admin.create_partitions([NewPartitions("adm-b", 1)], request_timeout=T)
out["shrunk"] = outcome(fs["adm-b"])
wait_until("5 partitions", lambda: len(topics()["adm-a"].partitions) == 5)
out["partitions_after"] = len(topics()["adm-a"].partitions)

# The cluster.
cluster = admin.describe_cluster(request_timeout=T).result(timeout=T)
out["cluster"] = {
    "id": cluster.cluster_id,
    "controller": cluster.controller.id if cluster.controller else None,
    "nodes": sorted(n.id for n in cluster.nodes),
}

# Groups: one member commits, then leaves; the group is listed, described and deleted.
p = Producer({"bootstrap.servers": bootstrap})
for i in range(10):
    p.produce("adm-b", key=f"k{i}", value=f"v{i}", partition=i % 2)
p.flush(T)
c = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "adm-g",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
)
c.subscribe(["adm-b"])
read = 0
end = time.time() + 60
while read < 10 and time.time() < end:
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        read += 1
c.commit(asynchronous=False)
out["group_read"] = read


def describe(group):
    d = admin.describe_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
    return {
        "state": d.state.name,
        "members": [
            sorted(
                (tp.topic, tp.partition)
                for tp in (m.assignment.topic_partitions if m.assignment else [])
            )
            for m in d.members
        ],
    }


def listed():
    r = admin.list_consumer_groups(request_timeout=T).result(timeout=T)
    return {g.group_id: g.state.name for g in r.valid}


out["described_in"] = describe("adm-g")
out["listed_in"] = listed().get("adm-g")
described = subprocess.run(
    [cli, "--bootstrap", bootstrap, "group", "describe", "adm-g", "--output", "json"],
    check=True,
    capture_output=True,
    text=True,
    timeout=T,
)
out["rafka_describe_in"] = json.loads(described.stdout)
out["delete_with_member"] = outcome(admin.delete_consumer_groups(["adm-g"])["adm-g"])
c.close()
wait_until("the group to empty", lambda: describe("adm-g")["state"] == ConsumerGroupState.EMPTY.name)
out["described_out"] = describe("adm-g")
out["listed_out"] = listed().get("adm-g")
out["deleted"] = outcome(admin.delete_consumer_groups(["adm-g"])["adm-g"])
out["listed_after_delete"] = listed().get("adm-g")
out["delete_unknown"] = outcome(admin.delete_consumer_groups(["adm-none"])["adm-none"])

# Deletion.
fs = admin.delete_topics(["adm-a", "adm-b", "adm-none"], request_timeout=T)
out["deleted_topics"] = {t: outcome(f) for t, f in fs.items()}
wait_until("the topics to go", lambda: not ({"adm-a", "adm-b"} & set(topics())))
out["left"] = sorted(t for t in topics() if t.startswith("adm-"))
print(json.dumps(out))
