"""A Kafka client over TLS, optionally with SASL, against rafka: produce N records to TOPIC,
then read them back from the beginning (assigned, no group). Prints the values read, one per
line.

Usage: secure_roundtrip.py CLIENT BOOTSTRAP TOPIC N CA [--cert CERT KEY] [--sasl MECH USER PW]
CLIENT: confluent (confluent-kafka, librdkafka) or kafka-python.
"""
import sys
import time

client, bootstrap, topic, n, ca = sys.argv[1:6]
n = int(n)
rest = sys.argv[6:]
cert = key = sasl = None
while rest:
    if rest[0] == "--cert":
        cert, key, rest = rest[1], rest[2], rest[3:]
    elif rest[0] == "--sasl":
        sasl, rest = (rest[1], rest[2], rest[3]), rest[4:]
    else:
        sys.exit(f"unknown argument {rest[0]}")
values = [f"v{i}" for i in range(n)]

if client == "confluent":
    from confluent_kafka import Consumer, Producer, TopicPartition

    tls = {"security.protocol": "SSL", "ssl.ca.location": ca}
    if cert:
        tls.update({"ssl.certificate.location": cert, "ssl.key.location": key})
    if sasl:
        tls.update({"security.protocol": "SASL_SSL", "sasl.mechanism": sasl[0],
                    "sasl.username": sasl[1], "sasl.password": sasl[2]})
    failed = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **tls})
    for v in values:
        producer.produce(topic, value=v, on_delivery=lambda e, m: e and failed.append(str(e)))
        producer.poll(0)
    left = producer.flush(60)
    if left or failed:
        sys.exit(f"not delivered: {left} left, errors {failed[:5]}")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, **tls})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 60
    while len(got) < n and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            sys.exit(f"consume error: {msg.error()}")
        got.append(msg.value().decode())
    consumer.close()
elif client == "kafka-python":
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    tls = {"security_protocol": "SSL", "ssl_cafile": ca, "ssl_check_hostname": True}
    if cert:
        tls.update({"ssl_certfile": cert, "ssl_keyfile": key})
    if sasl:
        tls.update({"security_protocol": "SASL_SSL", "sasl_mechanism": sasl[0],
                    "sasl_plain_username": sasl[1], "sasl_plain_password": sasl[2]})
    producer = KafkaProducer(bootstrap_servers=bootstrap, **tls)
    for f in [producer.send(topic, v.encode()) for v in values]:
        f.get(timeout=60)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=60000, **tls)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek(TopicPartition(topic, 0), 0)
    got = []
    for msg in consumer:
        got.append(msg.value.decode())
        if len(got) >= n:
            break
    consumer.close()
else:
    sys.exit(f"unknown client {client}")

for v in got:
    print(v)
