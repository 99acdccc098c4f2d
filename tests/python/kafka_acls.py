"""ACLs and what they allow, with real Kafka clients over SASL_SSL (SCRAM-SHA-256 unless
MECH is given by the caller's environment variable KAFKA_ACLS_MECH). Prints one line: JSON for
the admin operations, `ok` or Kafka's error name (e.g. TOPIC_AUTHORIZATION_FAILED) for the
client operations.

Usage: kafka_acls.py BOOTSTRAP CA USER PW create TYPE NAME PATTERN PRINCIPAL OP PERMISSION
       kafka_acls.py BOOTSTRAP CA USER PW delete TYPE NAME PATTERN PRINCIPAL OP PERMISSION
       kafka_acls.py BOOTSTRAP CA USER PW describe
       kafka_acls.py BOOTSTRAP CA USER PW produce TOPIC VALUE        (confluent-kafka)
       kafka_acls.py BOOTSTRAP CA USER PW commit TOPIC GROUP         (confluent-kafka)
       kafka_acls.py BOOTSTRAP CA USER PW kp-produce TOPIC VALUE     (kafka-python)
       kafka_acls.py BOOTSTRAP CA USER PW kp-commit TOPIC GROUP      (kafka-python)
       kafka_acls.py BOOTSTRAP CA USER PW kp-topics                  (kafka-python)
TYPE, PATTERN, OP, PERMISSION: Kafka's names (TOPIC, LITERAL, WRITE, ALLOW); NAME `-` is none.
"""
import json
import os
import sys

bootstrap, ca, user, pw, op = sys.argv[1:6]
args = sys.argv[6:]
mech = os.environ.get("KAFKA_ACLS_MECH", "SCRAM-SHA-256")
conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "ssl.ca.location": ca,
        "sasl.mechanism": mech, "sasl.username": user, "sasl.password": pw}
kp = {"bootstrap_servers": bootstrap, "security_protocol": "SASL_SSL", "ssl_cafile": ca,
      "sasl_mechanism": mech, "sasl_plain_username": user, "sasl_plain_password": pw}


def binding(a):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    kind, name, pattern, principal, operation, permission = a
    return AclBinding(ResourceType[kind], name, ResourcePatternType[pattern], principal, "*",
                      AclOperation[operation], AclPermissionType[permission])


def listed(b):
    return [b.restype.name, b.name, b.resource_pattern_type.name, b.principal, b.host,
            b.operation.name, b.permission_type.name]


def error_name(e):
    err = e.args[0] if e.args else e
    return err.name() if hasattr(err, "name") else type(e).__name__


if op in ("create", "delete", "describe"):
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                       AdminClient, ResourcePatternType, ResourceType)
    admin = AdminClient(conf)
    try:
        if op == "create":
            for f in admin.create_acls([binding(args)]).values():
                f.result(30)
            print(json.dumps("ok"))
        elif op == "delete":
            b = binding(args)
            flt = AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal,
                                   b.host, b.operation, b.permission_type)
            deleted = [listed(x) for f in admin.delete_acls([flt]).values() for x in f.result(30)]
            print(json.dumps(deleted))
        else:
            flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                   AclOperation.ANY, AclPermissionType.ANY)
            print(json.dumps(sorted(listed(b) for b in admin.describe_acls(flt).result(30))))
    except Exception as e:  # the refusal is the answer
        print(json.dumps(error_name(e)))
elif op == "produce":
    from confluent_kafka import Producer
    topic, value = args
    errors = []
    p = Producer({**conf, "message.timeout.ms": 20000})
    p.produce(topic, value=value, on_delivery=lambda e, m: e and errors.append(e.name()))
    left = p.flush(30)
    print(errors[0] if errors else ("ok" if not left else "UNDELIVERED"))
elif op == "commit":
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    topic, group = args
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        print("ok")
    except KafkaException as e:
        print(error_name(e))
    finally:
        c.close()
elif op == "kp-produce":
    from kafka import KafkaProducer
    topic, value = args
    p = KafkaProducer(**kp, retries=0, max_block_ms=20000)
    try:
        p.send(topic, value.encode()).get(timeout=30)
        print("ok")
    except Exception as e:
        print(type(e).__name__)
    finally:
        p.close(timeout=5)
elif op == "kp-commit":
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    topic, group = args
    c = KafkaConsumer(**kp, group_id=group, enable_auto_commit=False)
    try:
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
        print("ok")
    except Exception as e:
        print(type(e).__name__)
    finally:
        c.close()
elif op == "kp-topics":
    from kafka import KafkaConsumer
    c = KafkaConsumer(**kp)
    print(json.dumps(sorted(c.topics())))
    c.close()
else:
    sys.exit(f"unknown operation {op}")
