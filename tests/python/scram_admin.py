"""Manages SCRAM users of rafka with confluent-kafka's admin client over SASL_SSL, signed in
as an administrator. Prints JSON.

Usage: scram_admin.py BOOTSTRAP CA ADMIN ADMIN_PW upsert USER MECH PASSWORD
       scram_admin.py BOOTSTRAP CA ADMIN ADMIN_PW delete USER MECH
       scram_admin.py BOOTSTRAP CA ADMIN ADMIN_PW describe [USER...]
MECH: SCRAM-SHA-256 or SCRAM-SHA-512. Errors per user are printed, not raised.
"""
import json
import sys

from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

bootstrap, ca, admin, admin_pw, op = sys.argv[1:6]
args = sys.argv[6:]
client = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
                      "ssl.ca.location": ca, "sasl.mechanism": "SCRAM-SHA-256",
                      "sasl.username": admin, "sasl.password": admin_pw})
mech = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}

out = {}
if op in ("upsert", "delete"):
    user, m = args[0], mech[args[1]]
    if op == "upsert":
        change = UserScramCredentialUpsertion(user, ScramCredentialInfo(m, 4096), args[2].encode())
    else:
        change = UserScramCredentialDeletion(user, m)
    for u, f in client.alter_user_scram_credentials([change]).items():
        try:
            f.result(30)
            out[u] = None
        except Exception as e:  # per-user failures are the answer
            out[u] = str(e)
elif op == "describe":
    futures = client.describe_user_scram_credentials(args or None)
    if not isinstance(futures, dict):
        futures = futures.result(30)
        futures = {u: None for u in futures} if futures is None else futures
    for u, f in futures.items():
        try:
            d = f.result(30) if hasattr(f, "result") else f
            out[u] = sorted(ci.mechanism.name for ci in d.scram_credential_infos)
        except Exception as e:
            out[u] = str(e)
else:
    sys.exit(f"unknown operation {op}")
print(json.dumps(out))
