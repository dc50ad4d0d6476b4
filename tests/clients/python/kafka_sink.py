"""The Kafka sink end to end (run by tests/kafka.rs): a Strata server started
here with --kafka-brokers; 4 writers commit 10,000 transactions; the server
is killed with SIGKILL in the middle and restarted on the same data; a real
Kafka client (kafka-python) reads the topic and must find every acknowledged
transaction, each key's changes in commit order, and duplicates only where
the (position, index) in the envelope says so. An ERASE arrives as a delete
envelope and a tombstone.

Environment: STRATA_BIN, STRATA_DATA (a fresh directory), KAFKA_BROKER
(host:port of a running broker)."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import psycopg
from kafka import KafkaConsumer

BIN = os.environ["STRATA_BIN"]
DATA = os.environ["STRATA_DATA"]
BROKER = os.environ["KAFKA_BROKER"]
TOPIC = "strata.changes"
WRITERS = 4
PER_WRITER = 2500
KEYS_PER_WRITER = 25


def check(cond, what, got=None):
    if not cond:
        print(f"FAILED: {what}" + ("" if got is None else f"; got {got!r}"), file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


PORT = free_port()
DSN = f"host=127.0.0.1 port={PORT} user=strata dbname=strata connect_timeout=5"


def start_server():
    log = open(os.path.join(os.path.dirname(DATA), f"strata-{time.time_ns()}.log"), "w")
    p = subprocess.Popen(
        [BIN, "serve", "--data-dir", DATA, "--pg-port", str(PORT), "--flight-port", "0",
         "--kafka-brokers", BROKER],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            psycopg.connect(DSN).close()
            return p
        except psycopg.OperationalError:
            time.sleep(0.1)
    check(False, "the server starts")


server = start_server()
acked = set()  # tokens of transactions whose COMMIT returned
attempted = set()  # every token sent
lock = threading.Lock()


def writer(w):
    conn = None
    i = 0
    while i < PER_WRITER:
        token = uuid.uuid4().hex
        with lock:
            attempted.add(token)
        try:
            if conn is None:
                conn = psycopg.connect(DSN, autocommit=True)
            conn.execute(
                "INSERT INTO ev (_id, writer, seq, token) VALUES (%s, %s, %s, %s)",
                (f"w{w}-k{i % KEYS_PER_WRITER}", w, i, token),
            )
            with lock:
                acked.add(token)
            i += 1
        except psycopg.Error:
            # The server went away (SIGKILL): the outcome of this
            # transaction is unknown; retry it under a new token.
            try:
                conn and conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.2)


threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
for t in threads:
    t.start()
# Kill the server with SIGKILL halfway, then start it again on the same data.
while len(acked) < WRITERS * PER_WRITER // 2:
    time.sleep(0.01)
server.send_signal(signal.SIGKILL)
server.wait()
killed_at = len(acked)
time.sleep(0.5)
server = start_server()
for t in threads:
    t.join()
check(killed_at < WRITERS * PER_WRITER, f"the server was killed after {killed_at} acknowledged transactions")
check(len(acked) == WRITERS * PER_WRITER, "every writer finished its transactions", len(acked))

# An ERASE of one key: a delete envelope, then a tombstone.
with psycopg.connect(DSN, autocommit=True) as c:
    c.execute("ERASE FROM ev WHERE _id = 'w0-k0'")

consumer = KafkaConsumer(
    TOPIC, bootstrap_servers=BROKER, auto_offset_reset="earliest", enable_auto_commit=False,
    consumer_timeout_ms=5000, group_id=None,
)
def without_ts(value):
    if value is None:
        return None
    v = json.loads(value)
    v.pop("ts_ms", None)
    return v


seen = {}  # (key, position, index) -> value bytes
last = {}  # key -> (position, index) of the last record taken
seqs = {}  # key -> seq values taken, in order
tokens = set()
duplicates = 0
records = 0
erase_envelope = tombstone = False
sample = None
deadline = time.time() + 180
while time.time() < deadline:
    got_any = False
    for m in consumer:
        got_any = True
        records += 1
        key = m.key.decode()
        h = dict(m.headers)
        pos, idx = int(h["strata.position"]), int(h["strata.index"])
        if (key, pos, idx) in seen:
            # Sent again after the restart: the same change (only the
            # envelope's top-level ts_ms, the time it was sent, differs).
            if without_ts(seen[(key, pos, idx)]) != without_ts(m.value):
                check(False, f"a duplicate of {key} at ({pos}, {idx}) is the same record again")
            duplicates += 1
            continue
        if not last.get(key, (-1, -1)) < (pos, idx):
            check(False, f"{key}'s records arrive in (position, index) order", (last.get(key), (pos, idx)))
        seen[(key, pos, idx)] = m.value
        last[key] = (pos, idx)
        if m.value is None:
            if json.loads(key)["_id"] == "w0-k0":
                tombstone = True
            continue
        v = json.loads(m.value)
        if v["strata_op"] == "erase":
            erase_envelope = erase_envelope or (v["op"] == "d" and v["before"]["_id"] == "w0-k0")
            continue
        after = v["after"]
        if sample is None:
            sample = v
        tokens.add(after["token"])
        seqs.setdefault(key, []).append(after["seq"])
        if acked <= tokens and tombstone:
            break
    if acked <= tokens and tombstone:
        break
    if not got_any:
        time.sleep(0.5)
consumer.close()
server.send_signal(signal.SIGTERM)
server.wait()

missing = acked - tokens
check(not missing, f"every acknowledged transaction is on the topic ({len(acked)})", f"{len(missing)} missing")
check(tokens <= attempted, "nothing on the topic that no writer sent")
check(all(s == sorted(s) for s in seqs.values()), "each key's changes arrive in commit order")
check(duplicates < 2000, f"duplicates only from the resume ({duplicates} of {records} records)")
check(erase_envelope, "the ERASE arrives as a delete envelope (strata_op erase)")
check(tombstone, "and a tombstone for the erased key")
check(sample["op"] == "c" and sample["before"] is None, "a put is op c with no before", sample)
check(sample["source"]["table"] == "ev" and sample["source"]["connector"] == "strata", "source names the table")
check(isinstance(sample["source"]["position"], int) and "system_time" in sample["source"], "source carries position and system time")
check("_valid_from" in sample["after"] and "_valid_to" in sample["after"], "after carries the valid period")
print(f"kafka sink: {len(acked)} transactions, {records} records read, {duplicates} duplicates, killed at {killed_at}")
print("kafka sink: all checks passed")
