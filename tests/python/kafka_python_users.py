"""Manages SCRAM users of rafka with kafka-python's admin client over SASL_SSL, signed in as
an administrator (its requests go to any broker, not only the controller). Prints JSON.

Usage: kafka_python_users.py BOOTSTRAP CA ADMIN ADMIN_PW upsert USER MECH PASSWORD
       kafka_python_users.py BOOTSTRAP CA ADMIN ADMIN_PW describe USER
MECH: SCRAM-SHA-256 or SCRAM-SHA-512.
"""
import json
import sys

from kafka.admin import KafkaAdminClient, UserScramCredentialUpsertion

bootstrap, ca, admin, admin_pw, op = sys.argv[1:6]
args = sys.argv[6:]
client = KafkaAdminClient(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                          ssl_cafile=ca, sasl_mechanism="SCRAM-SHA-256",
                          sasl_plain_username=admin, sasl_plain_password=admin_pw)
if op == "upsert":
    result = client.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(args[0], args[1], args[2])])
    print(json.dumps(result))
elif op == "describe":
    described = client.describe_user_scram_credentials([args[0]])
    print(json.dumps({u: sorted(ci["mechanism"].name for ci in d["credential_infos"])
                      for u, d in described.items()}))
else:
    sys.exit(f"unknown operation {op}")
client.close()
