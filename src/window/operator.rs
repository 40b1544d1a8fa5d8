//! The window operator: keys, panes, the watermark, lateness, idle partitions, the state cap.
//!
//! Per record the work is a key lookup over borrowed column values (the key's bytes are
//! encoded into one reused buffer and looked up in a hash table of key ids: no allocation
//! unless the key is new), a pane lookup in the key's short sorted list of panes (with a
//! one-entry cache: in-order input hits it), and the watermark update. The aggregates are
//! then applied a column at a time over the rows placed so far ("pending" rows), just before
//! anything that reads or frees a pane (an emission, an eviction) and at the end of the batch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, DictionaryArray, LargeStringArray,
    PrimitiveArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::aggregate::{output_type, Acc, Kind, Needs};
use super::output::OutRow;
use super::output::WindowOutput;
use super::spec::{Agg, Overflow, WindowSpec};
use crate::error::Error;

/// A source partition (a file, a Kafka partition, "the URL list"): the watermark is the
/// minimum over the partitions that are seen, not ended and not idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u32);

/// A row of a pushed batch that was not windowed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The row's index in the batch passed to [`WindowOperator::push`].
    pub row: usize,
    /// Why: late (names the event time, the watermark and the window, in RFC 3339), no
    /// event time, or the window state full.
    pub reason: String,
}

/// The operator's gauges and counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowGauges {
    /// Open (key, window) pairs.
    pub open: u64,
    /// The watermark in µs since the epoch (`None` before the first record).
    pub watermark_us: Option<i64>,
    /// The highest event time seen, µs since the epoch.
    pub max_event_us: Option<i64>,
    /// Window rows emitted (closed early ones included).
    pub emitted: u64,
    /// Late records rejected.
    pub late: u64,
    /// (key, window) pairs closed early because the state was full.
    pub evicted: u64,
    /// Records rejected for another reason (no or bad event time, state full under
    /// [`Overflow::DeadLetter`], a batch whose columns do not match).
    pub rejected: u64,
}

/// Earliest and latest event times accepted (years 0000 and 9999): the window arithmetic
/// stays far from i64's ends.
pub(crate) const MIN_T: i64 = -62_167_219_200_000_000;
pub(crate) const MAX_T: i64 = 253_402_300_799_999_999;
/// The watermark before any record.
pub(crate) const NO_WM: i64 = i64::MIN;
/// Sentinels in the per-row event times.
const NULL_T: i64 = i64::MIN;
const BAD_T: i64 = i64::MIN + 1;
const NO_SLOT: u32 = u32::MAX;

/// How a key column's values are encoded (and ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Str,
    Signed,
    Unsigned,
    Bool,
}

impl KeyKind {
    fn of(t: &DataType) -> Option<KeyKind> {
        Some(match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => KeyKind::Str,
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                KeyKind::Str
            }
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => KeyKind::Signed,
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                KeyKind::Unsigned
            }
            DataType::Boolean => KeyKind::Bool,
            _ => return None,
        })
    }
}

/// How the event-time column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    Timestamp(TimeUnit),
    /// An epoch number whose unit is decided by its magnitude, as a `timestamp` field reads
    /// a JSON number ([`crate::time::EpochUnit::by_magnitude`]): what schema inference makes
    /// of epoch numbers (an int64 column).
    EpochInt,
    /// The same with a fraction (a float64 column), rounded to the µs.
    EpochFloat,
}

/// One aggregated field.
#[derive(Debug, Clone)]
pub(crate) struct FieldPlan {
    pub name: String,
    pub col: usize,
    pub data_type: DataType,
    pub kind: Kind,
    pub aggs: Vec<Agg>,
    pub needs: Needs,
}

/// A key: its encoded bytes and its panes.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyEntry {
    pub live: bool,
    pub bytes: Box<[u8]>,
    pub hash: u64,
    /// Windows of this key that start before this were closed early (the state was full).
    pub closed_below: i64,
    /// (pane index, slot), sorted by pane index.
    pub panes: VecDeque<(i64, u32)>,
}

/// One (key, pane): records counted and the fields' accumulators at
/// `accs[slot * fields .. (slot + 1) * fields]`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pane {
    pub count: u64,
}

/// A partition's progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    /// Highest event time seen; `NO_WM` before the first.
    pub max: i64,
    pub last_seen: Instant,
    pub ended: bool,
    pub idle: bool,
}

impl Part {
    fn active(&self) -> bool {
        self.max != NO_WM && !self.ended && !self.idle
    }
}

/// Per-key windows on event time over a stream of record batches. See the module docs.
#[derive(Debug)]
pub struct WindowOperator {
    pub(crate) spec: Arc<WindowSpec>,
    output: SchemaRef,
    time_col: usize,
    /// The schema of the last batch, whose column indexes are in `time_col`, `key_cols` and
    /// `fields`.
    batch_schema: Option<SchemaRef>,
    time_kind: TimeKind,
    time_type: DataType,
    pub(crate) key_cols: Vec<(usize, DataType)>,
    pub(crate) key_kinds: Vec<KeyKind>,
    pub(crate) fields: Vec<FieldPlan>,
    /// Window geometry in µs.
    size: i64,
    hop: i64,
    pane: i64,

    pub(crate) keys: Vec<KeyEntry>,
    pub(crate) free_keys: Vec<u32>,
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    pub(crate) panes: Vec<Pane>,
    pub(crate) accs: Vec<Acc>,
    free_slots: Vec<u32>,
    /// Open (key, window) pairs: (window start, key id).
    pub(crate) open: BTreeSet<(i64, u32)>,
    pub(crate) parts: BTreeMap<u32, Part>,
    /// The watermark: monotonic (it never goes back, even when a new partition appears
    /// behind it, so that no window is emitted twice).
    pub(crate) wm: i64,
    pub(crate) counters: Counters,

    // Scratch, reused across batches.
    key_buf: Vec<u8>,
    times: Vec<i64>,
    pending: Vec<(u32, u32)>,
    /// Key ids by dictionary entry (the last slot: null; a single slot for the global key).
    dict_cache: Vec<u32>,
    /// A key was forgotten (its id may be reused): the cache must be refilled.
    dict_stale: bool,
}

/// The operator's counters (saved with its state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub emitted: u64,
    pub late: u64,
    pub evicted: u64,
    pub rejected: u64,
}

/// Why a record was not placed.
enum Refusal {
    /// Every window of the record has ended at or before the watermark.
    Late { window: i64 },
    /// Its window was closed early (state full).
    ClosedEarly { window: i64 },
    /// The state is full and the policy is to reject.
    Full,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Config {
        what: "window".into(),
        why: why.into(),
    }
}

impl WindowOperator {
    /// Checks the spec against the rows' schema and makes an operator with no state.
    ///
    /// The time field must be a Timestamp of any unit, or Int64 or Float64 epoch numbers
    /// (their unit by magnitude, as pinflow reads a number in a `timestamp` field); `by` columns
    /// Utf8/LargeUtf8/Utf8View/Dictionary(Int32, Utf8), any integer, or Boolean; aggregated
    /// fields any integer or float type. Errors are [`Error::Config`] naming the column.
    pub fn new(spec: Arc<WindowSpec>, input: &SchemaRef) -> Result<Self, Error> {
        spec.validate().map_err(bad)?;
        let find = |name: &str, role: &str| {
            input.index_of(name).map_err(|_| {
                bad(format!(
                    "the {role} `{name}` is not a column of the records (columns: {})",
                    input
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        let time_col = find(&spec.time_field, "time field")?;
        let time_type = input.field(time_col).data_type().clone();
        let time_kind = match &time_type {
            DataType::Timestamp(u, _) => TimeKind::Timestamp(*u),
            DataType::Int64 => TimeKind::EpochInt,
            DataType::Float64 => TimeKind::EpochFloat,
            other => {
                return Err(bad(format!(
                    "the time field `{}` is {other}, not a timestamp (declare it \
                     `{}:timestamp` in schema.fields)",
                    spec.time_field, spec.time_field
                )))
            }
        };
        let mut key_cols = Vec::new();
        let mut key_kinds = Vec::new();
        for b in &spec.by {
            let col = find(b, "`by` column")?;
            let t = input.field(col).data_type().clone();
            let kind = KeyKind::of(&t).ok_or_else(|| {
                bad(format!(
                    "the `by` column `{b}` is {t}: keys are strings, integers or booleans"
                ))
            })?;
            key_cols.push((col, t));
            key_kinds.push(kind);
        }
        let mut fields = Vec::new();
        for (name, aggs) in &spec.aggregates {
            let col = find(name, "aggregated field")?;
            let t = input.field(col).data_type().clone();
            let kind = Kind::of(&t).ok_or_else(|| {
                bad(format!(
                    "the aggregated field `{name}` is {t}: aggregates need a number column \
                     (integer or float; lists are not aggregated)"
                ))
            })?;
            fields.push(FieldPlan {
                name: name.clone(),
                col,
                data_type: t,
                kind,
                aggs: aggs.clone(),
                needs: Needs::of(aggs),
            });
        }
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut cols = vec![
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ];
        for (b, (col, t)) in spec.by.iter().zip(&key_cols) {
            let _ = col;
            cols.push(Field::new(b, t.clone(), true));
        }
        cols.push(Field::new("count", DataType::Int64, false));
        for f in &fields {
            for a in &f.aggs {
                cols.push(Field::new(
                    format!("{}_{}", f.name, a.suffix()),
                    output_type(*a, &f.data_type),
                    true,
                ));
            }
        }
        if spec.overflow == Overflow::CloseOldest {
            cols.push(Field::new("partial", DataType::Boolean, false));
        }
        let (size, hop, pane) = (spec.size_us, spec.hop_us, spec.pane_us());
        Ok(WindowOperator {
            output: Arc::new(Schema::new(cols)),
            time_col,
            batch_schema: Some(input.clone()),
            time_kind,
            time_type,
            key_cols,
            key_kinds,
            fields,
            size,
            hop,
            pane,
            keys: Vec::new(),
            free_keys: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            panes: Vec::new(),
            accs: Vec::new(),
            free_slots: Vec::new(),
            open: BTreeSet::new(),
            parts: BTreeMap::new(),
            wm: NO_WM,
            counters: Counters::default(),
            key_buf: Vec::new(),
            times: Vec::new(),
            pending: Vec::new(),
            dict_cache: Vec::new(),
            dict_stale: false,
            spec,
        })
    }

    /// The schema of the window rows: `window_start`, `window_end` (Timestamp µs "UTC"),
    /// the key columns (their names and types), `count` (Int64), `<field>_<agg>` in the
    /// spec's order (count Int64; sum, mean, var, pNN Float64; min, max, first, last the
    /// field's type), then `partial` (Boolean) under [`Overflow::CloseOldest`].
    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    /// An empty [`WindowOutput`] for this operator's rows.
    pub fn new_output(&self) -> WindowOutput {
        WindowOutput::new(self.output.clone())
    }

    /// The spec.
    pub fn spec(&self) -> &Arc<WindowSpec> {
        &self.spec
    }

    /// Feeds rows in source order (all rows of `rows` belong to `partition`). Late rows and
    /// rows that cannot be windowed (null or out-of-range event time, over the cap under
    /// [`Overflow::DeadLetter`]) are reported in `out.rejected` with a reason; windows the
    /// watermark passed are appended to `out`. A push to an ended or idle partition makes it
    /// active again. The operator's columns are found in `rows` by name; a batch that lacks
    /// one, or has it with another type, has every row rejected, with the reason.
    pub fn push(
        &mut self,
        partition: PartitionId,
        rows: &RecordBatch,
        now: Instant,
        out: &mut WindowOutput,
    ) {
        if !self.fits(rows, out) {
            return;
        }
        let (mut pmax, others) = self.enter_partition(partition, now);
        self.fill_times(rows);
        let keys = KeyColumns::new(rows, &self.key_cols);
        self.begin_batch(&keys);
        let lateness = self.spec.lateness_us;
        for row in 0..rows.num_rows() {
            self.take_row(&keys, row, rows, out);
            let t = self.times[row];
            if t != NULL_T && t != BAD_T && t > pmax {
                pmax = t;
                let cand = pmax.min(others) - lateness;
                if cand > self.wm {
                    self.wm = cand;
                    if self.first_open_end().is_some_and(|e| e <= self.wm) {
                        self.apply_pending(rows);
                        self.emit_closed(out);
                    }
                }
            }
        }
        self.apply_pending(rows);
        if let Some(p) = self.parts.get_mut(&partition.0) {
            p.max = pmax;
        }
    }

    /// Whether the batch's columns fit the operator; when not, every row is rejected with the
    /// reason.
    fn fits(&mut self, rows: &RecordBatch, out: &mut WindowOutput) -> bool {
        let Err(why) = self.resolve_batch(rows) else {
            return true;
        };
        for row in 0..rows.num_rows() {
            out.rejected.push(Rejected {
                row,
                reason: why.clone(),
            });
        }
        self.counters.rejected += rows.num_rows() as u64;
        false
    }

    /// Notes a push to `partition` at `now` (active again); returns its highest event time
    /// so far and the other active partitions' minimum (fixed during a batch).
    fn enter_partition(&mut self, partition: PartitionId, now: Instant) -> (i64, i64) {
        let part = self.parts.entry(partition.0).or_insert(Part {
            max: NO_WM,
            last_seen: now,
            ended: false,
            idle: false,
        });
        (part.last_seen, part.ended, part.idle) = (now, false, false);
        let pmax = part.max;
        let others = self
            .parts
            .iter()
            .filter(|(id, p)| **id != partition.0 && p.active())
            .map(|(_, p)| p.max)
            .min()
            .unwrap_or(i64::MAX);
        (pmax, others)
    }

    /// Readies the per-batch scratch for rows with these key columns.
    fn begin_batch(&mut self, keys: &KeyColumns<'_>) {
        let cache_len = match keys {
            KeyColumns::Dict(d) => d.values().len() + 1,
            KeyColumns::Global => 1,
            KeyColumns::Cols(_) => 0,
        };
        self.dict_cache.clear();
        self.dict_cache.resize(cache_len, NO_SLOT);
        self.dict_stale = false;
        self.pending.clear();
    }

    /// One row of a push, against the watermark as it stands: rejected when its event time is
    /// null or out of range, otherwise placed in its key's open windows or refused (late,
    /// closed early, state full), with the reason.
    fn take_row(
        &mut self,
        keys: &KeyColumns<'_>,
        row: usize,
        rows: &RecordBatch,
        out: &mut WindowOutput,
    ) {
        let t = self.times[row];
        if t == NULL_T || t == BAD_T {
            let reason = if t == NULL_T {
                format!("no event time: `{}` is null", self.spec.time_field)
            } else {
                format!(
                    "event time out of range: `{}` is {} (years 0000 to 9999 are accepted)",
                    self.spec.time_field,
                    raw_time(rows.column(self.time_col), row)
                )
            };
            out.rejected.push(Rejected { row, reason });
            self.counters.rejected += 1;
            return;
        }
        let key = self.key_id(keys, row);
        match self.place(key, t, rows, out) {
            Ok(slot) => self.pending.push((row as u32, slot)),
            Err(r) => {
                let reason = self.refusal_reason(r, t);
                out.rejected.push(Rejected { row, reason });
            }
        }
    }

    // --- driven by a router (several window threads: `super::sharded`) ------------------

    /// The watermark side of [`WindowOperator::push`] alone, for a router that spreads keys
    /// over several operators: notes the batch's event times in `partition` and gives, per
    /// row, the watermark before it (into `before`); returns the watermark after the batch.
    /// Places nothing. A batch whose columns do not fit moves nothing (the operators that
    /// get its rows reject them, with the reason).
    pub(crate) fn watermarks(
        &mut self,
        partition: PartitionId,
        rows: &RecordBatch,
        now: Instant,
        before: &mut Vec<i64>,
    ) -> i64 {
        before.clear();
        if self.resolve_batch(rows).is_err() {
            before.resize(rows.num_rows(), self.wm);
            return self.wm;
        }
        let (mut pmax, others) = self.enter_partition(partition, now);
        self.fill_times(rows);
        let lateness = self.spec.lateness_us;
        for &t in &self.times {
            before.push(self.wm);
            if t != NULL_T && t != BAD_T && t > pmax {
                pmax = t;
                self.wm = self.wm.max(pmax.min(others) - lateness);
            }
        }
        if let Some(p) = self.parts.get_mut(&partition.0) {
            p.max = pmax;
        }
        self.wm
    }

    /// The shard of each row (into `shards`: its key's hash modulo `n`), by a hash fixed
    /// across runs, so that a key's windows are on the same shard after a restart. Every row
    /// to shard 0 when the columns do not fit.
    pub(crate) fn shards_of(&mut self, rows: &RecordBatch, n: usize, shards: &mut Vec<u32>) {
        use std::hash::BuildHasher;
        shards.clear();
        if self.resolve_batch(rows).is_err() {
            shards.resize(rows.num_rows(), 0);
            return;
        }
        let keys = KeyColumns::new(rows, &self.key_cols);
        let hasher = foldhash::fast::FixedState::with_seed(0x7069_6e66_6c6f_7721);
        for row in 0..rows.num_rows() {
            self.key_buf.clear();
            encode_key(&keys, row, &mut self.key_buf);
            shards.push((hasher.hash_one(&self.key_buf) % n as u64) as u32);
        }
    }

    /// [`WindowOperator::push`] with the watermark given per row by a router
    /// ([`WindowOperator::watermarks`] over the whole batch): `before[i]` is the watermark
    /// before row `i`, `after` the one after the batch. The rows' lateness is then decided as
    /// by one operator that saw every key.
    pub(crate) fn push_driven(
        &mut self,
        rows: &RecordBatch,
        before: &[i64],
        after: i64,
        out: &mut WindowOutput,
    ) {
        if !self.fits(rows, out) {
            return;
        }
        self.fill_times(rows);
        let keys = KeyColumns::new(rows, &self.key_cols);
        self.begin_batch(&keys);
        for (row, &wm) in before.iter().enumerate().take(rows.num_rows()) {
            if wm > self.wm {
                self.wm = wm;
                if self.first_open_end().is_some_and(|e| e <= self.wm) {
                    self.apply_pending(rows);
                    self.emit_closed(out);
                }
            }
            self.take_row(&keys, row, rows, out);
        }
        self.apply_pending(rows);
        self.advance_to(after, out);
    }

    /// Moves the watermark to `wm` (never back) and emits what it passes.
    pub(crate) fn advance_to(&mut self, wm: i64, out: &mut WindowOutput) {
        self.wm = self.wm.max(wm);
        self.emit_closed(out);
    }

    /// The watermark (`i64::MIN` before the first event time).
    pub(crate) fn watermark(&self) -> i64 {
        self.wm
    }

    /// Marks partitions silent for `idle` as idle; `None` when none changed, else whether
    /// every partition seen is quiet now (idle or ended). See [`WindowOperator::tick`].
    pub(crate) fn mark_idle(&mut self, now: Instant) -> Option<bool> {
        let idle = self.spec.idle?;
        let mut changed = false;
        for p in self.parts.values_mut() {
            if p.active() && now.saturating_duration_since(p.last_seen) >= idle {
                p.idle = true;
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        let seen = self.parts.values().filter(|p| p.max != NO_WM);
        let (mut any, mut all_quiet) = (false, true);
        for p in seen {
            any = true;
            all_quiet &= p.idle || p.ended;
        }
        Some(any && all_quiet)
    }

    /// Recomputes the watermark from the partitions (after [`WindowOperator::mark_idle`] or
    /// a partition's end) and emits what it passes.
    pub(crate) fn recompute(&mut self, out: &mut WindowOutput) {
        self.advance(out);
    }

    /// Closes every open window (see [`WindowOperator::flush`]); returns the watermark then.
    pub(crate) fn close_every_window(&mut self, out: &mut WindowOutput) -> i64 {
        self.close_all(out);
        self.wm
    }

    /// Processing-time step: partitions silent for `idle` stop holding the watermark back;
    /// when no partition is active any more (every one seen is idle or ended, at least one
    /// idle), every open window closes, and the watermark moves to the end of the last of
    /// them (a record for a closed window is then late).
    pub fn tick(&mut self, now: Instant, out: &mut WindowOutput) {
        let Some(all_quiet) = self.mark_idle(now) else {
            return;
        };
        self.advance(out);
        if all_quiet {
            self.close_all(out);
        }
    }

    /// When the next [`tick`](WindowOperator::tick) can change anything (the writer sleeps
    /// until then); `None` without `idle` or with no active partition.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self.spec.idle?;
        self.parts
            .values()
            .filter(|p| p.active())
            .map(|p| crate::time::after(p.last_seen, idle))
            .min()
    }

    /// A partition reached its end (a file fully read): it no longer holds the watermark
    /// back. Windows the new watermark passes are emitted.
    pub fn partition_ended(&mut self, partition: PartitionId, out: &mut WindowOutput) {
        if let Some(p) = self.parts.get_mut(&partition.0) {
            p.ended = true;
        }
        self.advance(out);
    }

    /// End of input or SIGTERM: closes every open window (in window order, not partial), and
    /// moves the watermark to the end of the last of them.
    pub fn flush(&mut self, out: &mut WindowOutput) {
        self.close_all(out);
    }

    /// Gauges and counters.
    pub fn gauges(&self) -> WindowGauges {
        let max = self
            .parts
            .values()
            .map(|p| p.max)
            .filter(|m| *m != NO_WM)
            .max();
        WindowGauges {
            open: self.open.len() as u64,
            watermark_us: (self.wm != NO_WM).then_some(self.wm),
            max_event_us: max,
            emitted: self.counters.emitted,
            late: self.counters.late,
            evicted: self.counters.evicted,
            rejected: self.counters.rejected,
        }
    }

    // --- the record path ---------------------------------------------------------------

    /// Finds the operator's columns in the batch by name (a batch may have its columns in
    /// another order, or more of them, than the schema the operator was made with) and checks
    /// their types; the answer is kept until a batch comes with another schema.
    fn resolve_batch(&mut self, rows: &RecordBatch) -> Result<(), String> {
        let schema = rows.schema();
        if self
            .batch_schema
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &schema) || **s == *schema)
        {
            return Ok(());
        }
        self.batch_schema = None;
        let find = |name: &str, want: &DataType| -> Result<usize, String> {
            let i = schema
                .index_of(name)
                .map_err(|_| format!("window: the records have no column `{name}`"))?;
            let t = schema.field(i).data_type();
            if t != want {
                return Err(format!(
                    "window: column `{name}` is {t}, not the {want} the window was set up for"
                ));
            }
            Ok(i)
        };
        self.time_col = find(&self.spec.time_field, &self.time_type)?;
        for (name, (col, t)) in self.spec.by.iter().zip(self.key_cols.iter_mut()) {
            *col = find(name, t)?;
        }
        for f in &mut self.fields {
            f.col = find(&f.name, &f.data_type)?;
        }
        self.batch_schema = Some(schema);
        Ok(())
    }

    /// Event times of the batch in µs into `self.times` (`NULL_T`, `BAD_T` for null and out of
    /// range).
    fn fill_times(&mut self, rows: &RecordBatch) {
        let col = rows.column(self.time_col);
        self.times.clear();
        self.times.reserve(col.len());
        fn fill<T: ArrowPrimitiveType>(
            col: &ArrayRef,
            out: &mut Vec<i64>,
            conv: impl Fn(T::Native) -> Option<i64>,
        ) {
            let a = col.as_primitive::<T>();
            let nulls = a.nulls();
            for (i, v) in a.values().iter().enumerate() {
                if nulls.is_some_and(|n| n.is_null(i)) {
                    out.push(NULL_T);
                } else {
                    out.push(match conv(*v) {
                        Some(t) if (MIN_T..=MAX_T).contains(&t) => t,
                        _ => BAD_T,
                    });
                }
            }
        }
        let out = &mut self.times;
        match self.time_kind {
            TimeKind::Timestamp(TimeUnit::Second) => {
                fill::<TimestampSecondType>(col, out, |v| v.checked_mul(1_000_000))
            }
            TimeKind::Timestamp(TimeUnit::Millisecond) => {
                fill::<TimestampMillisecondType>(col, out, |v| v.checked_mul(1_000))
            }
            TimeKind::Timestamp(TimeUnit::Microsecond) => {
                fill::<TimestampMicrosecondType>(col, out, Some)
            }
            TimeKind::Timestamp(TimeUnit::Nanosecond) => {
                fill::<TimestampNanosecondType>(col, out, |v| Some(v.div_euclid(1_000)))
            }
            TimeKind::EpochInt => fill::<Int64Type>(col, out, epoch_micros),
            TimeKind::EpochFloat => fill::<Float64Type>(col, out, epoch_micros_f64),
        }
    }

    fn key_id(&mut self, keys: &KeyColumns<'_>, row: usize) -> u32 {
        let slot = match keys {
            KeyColumns::Cols(_) => {
                self.key_buf.clear();
                encode_key(keys, row, &mut self.key_buf);
                return self.intern();
            }
            KeyColumns::Global => 0,
            KeyColumns::Dict(d) if d.is_null(row) => self.dict_cache.len() - 1,
            KeyColumns::Dict(d) => d.keys().value(row) as usize,
        };
        if self.dict_stale {
            self.dict_cache.fill(NO_SLOT);
            self.dict_stale = false;
        }
        match self.dict_cache.get(slot) {
            Some(&id) if id != NO_SLOT => id,
            _ => {
                self.key_buf.clear();
                encode_key(keys, row, &mut self.key_buf);
                let id = self.intern();
                if let Some(c) = self.dict_cache.get_mut(slot) {
                    *c = id;
                }
                id
            }
        }
    }

    /// The id of the key in `key_buf`, made if new.
    fn intern(&mut self) -> u32 {
        let hash = self.hasher.hash_one(&self.key_buf[..]);
        let keys = &self.keys;
        let buf = &self.key_buf;
        if let Some(id) = self
            .index
            .find(hash, |&id| *keys[id as usize].bytes == buf[..])
        {
            return *id;
        }
        let entry = KeyEntry {
            live: true,
            bytes: self.key_buf.clone().into_boxed_slice(),
            hash,
            closed_below: i64::MIN,
            panes: VecDeque::new(),
        };
        let id = match self.free_keys.pop() {
            Some(id) => {
                self.keys[id as usize] = entry;
                id
            }
            None => {
                self.keys.push(entry);
                (self.keys.len() - 1) as u32
            }
        };
        let keys = &self.keys;
        self.index
            .insert_unique(hash, id, |&i| keys[i as usize].hash);
        id
    }

    /// Finds or opens the pane of record (key, t); `Err` when the record is not placed.
    fn place(
        &mut self,
        key: u32,
        t: i64,
        rows: &RecordBatch,
        out: &mut WindowOutput,
    ) -> Result<u32, Refusal> {
        let (size, hop) = (self.size, self.hop);
        let latest = t.div_euclid(hop) * hop;
        if latest + size <= self.wm {
            self.counters.late += 1;
            return Err(Refusal::Late { window: latest });
        }
        let p = t.div_euclid(self.pane);
        loop {
            let k = &self.keys[key as usize];
            if latest < k.closed_below {
                self.counters.late += 1;
                return Err(Refusal::ClosedEarly { window: latest });
            }
            if let Ok(i) = k.panes.binary_search_by_key(&p, |&(idx, _)| idx) {
                return Ok(k.panes[i].1);
            }
            let first = self.first_window(t).max(ceil_to(k.closed_below, hop));
            let first = first.max(self.first_open_start());
            let mut new = 0usize;
            let mut s = first;
            while s <= latest {
                if !self.open.contains(&(s, key)) {
                    new += 1;
                }
                s += hop;
            }
            // (An empty state always takes the record: `validate` keeps `max_open` at least
            // the windows of one record, and this keeps a loop from spinning if not.)
            if self.open.len() + new <= self.spec.max_open || self.open.is_empty() {
                let mut s = first;
                while s <= latest {
                    self.open.insert((s, key));
                    s += hop;
                }
                return Ok(self.new_pane(key, p));
            }
            match self.spec.overflow {
                Overflow::DeadLetter => {
                    self.counters.rejected += 1;
                    return Err(Refusal::Full);
                }
                Overflow::CloseOldest => {
                    self.apply_pending(rows);
                    self.evict_oldest(out);
                }
            }
        }
    }

    /// The start of the first window containing `t`.
    fn first_window(&self, t: i64) -> i64 {
        (t - self.size).div_euclid(self.hop) * self.hop + self.hop
    }

    /// The smallest window start whose window is still open by the watermark.
    fn first_open_start(&self) -> i64 {
        if self.wm == NO_WM {
            return i64::MIN;
        }
        // end > wm  ⇔  start > wm − size
        (self.wm - self.size).div_euclid(self.hop) * self.hop + self.hop
    }

    fn first_open_end(&self) -> Option<i64> {
        self.open.first().map(|(s, _)| s + self.size)
    }

    fn new_pane(&mut self, key: u32, p: i64) -> u32 {
        let nf = self.fields.len();
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.panes[s as usize] = Pane::default();
                for (i, f) in self.fields.iter().enumerate() {
                    self.accs[s as usize * nf + i] = Acc::new(f.needs);
                }
                s
            }
            None => {
                self.panes.push(Pane::default());
                for f in &self.fields {
                    self.accs.push(Acc::new(f.needs));
                }
                (self.panes.len() - 1) as u32
            }
        };
        let panes = &mut self.keys[key as usize].panes;
        let at = panes.partition_point(|&(idx, _)| idx < p);
        panes.insert(at, (p, slot));
        slot
    }

    fn refusal_reason(&self, r: Refusal, t: i64) -> String {
        match r {
            Refusal::Late { window } => format!(
                "late: event time {} is behind the watermark {}; its window [{}, {}) closed",
                rfc3339(t),
                rfc3339(self.wm),
                rfc3339(window),
                rfc3339(window + self.size)
            ),
            Refusal::ClosedEarly { window } => format!(
                "late: event time {}: its window [{}, {}) was closed early because the window \
                 state was full (max_open {} open (key, window) pairs)",
                rfc3339(t),
                rfc3339(window),
                rfc3339(window + self.size),
                self.spec.max_open
            ),
            Refusal::Full => format!(
                "window state full: {} open (key, window) pairs (max_open)",
                self.open.len()
            ),
        }
    }

    /// Applies the pending rows' values to their panes, a column at a time.
    fn apply_pending(&mut self, rows: &RecordBatch) {
        if self.pending.is_empty() {
            return;
        }
        for &(_, slot) in &self.pending {
            self.panes[slot as usize].count += 1;
        }
        let nf = self.fields.len();
        for (fi, f) in self.fields.iter().enumerate() {
            let col = rows.column(f.col);
            let ctx = Apply {
                pending: &self.pending,
                times: &self.times,
                accs: &mut self.accs,
                nf,
                fi,
                kind: f.kind,
                needs: f.needs,
            };
            match col.data_type() {
                DataType::Float64 => ctx.run::<Float64Type>(col, |v| (v.to_bits(), v)),
                DataType::Float32 => {
                    ctx.run::<Float32Type>(col, |v| (f64::from(v).to_bits(), f64::from(v)))
                }
                DataType::Int64 => ctx.run::<Int64Type>(col, |v| (v as u64, v as f64)),
                DataType::Int32 => ctx.run::<Int32Type>(col, |v| (i64::from(v) as u64, v.into())),
                DataType::Int16 => ctx.run::<Int16Type>(col, |v| (i64::from(v) as u64, v.into())),
                DataType::Int8 => ctx.run::<Int8Type>(col, |v| (i64::from(v) as u64, v.into())),
                DataType::UInt64 => ctx.run::<UInt64Type>(col, |v| (v, v as f64)),
                DataType::UInt32 => ctx.run::<UInt32Type>(col, |v| (v.into(), v.into())),
                DataType::UInt16 => ctx.run::<UInt16Type>(col, |v| (v.into(), v.into())),
                DataType::UInt8 => ctx.run::<UInt8Type>(col, |v| (v.into(), v.into())),
                // resolve_batch and new() admit only the types above.
                _ => {}
            }
        }
        self.pending.clear();
    }

    // --- watermark and emission --------------------------------------------------------

    /// Recomputes the watermark from the partitions and emits what it passes.
    fn advance(&mut self, out: &mut WindowOutput) {
        let lateness = self.spec.lateness_us;
        let active = self
            .parts
            .values()
            .filter(|p| p.active())
            .map(|p| p.max)
            .min();
        let cand = active.or_else(|| {
            self.parts
                .values()
                .map(|p| p.max)
                .filter(|m| *m != NO_WM)
                .max()
        });
        if let Some(c) = cand {
            self.wm = self.wm.max(c - lateness);
        }
        self.emit_closed(out);
    }

    /// Emits every open pair whose window ended at or before the watermark, by (window start,
    /// key order).
    fn emit_closed(&mut self, out: &mut WindowOutput) {
        debug_assert!(self.pending.is_empty());
        let mut group = Vec::new();
        while let Some(&(s, _)) = self.open.first() {
            if s + self.size > self.wm {
                break;
            }
            group.clear();
            while let Some(&(s2, k)) = self.open.first() {
                if s2 != s {
                    break;
                }
                self.open.pop_first();
                group.push(k);
            }
            self.sort_keys(&mut group);
            for &k in &group {
                self.emit(k, s, false, out);
                self.free_panes_before(k, s + self.hop);
                self.maybe_forget(k);
            }
        }
    }

    /// Closes every open window (end of input, all partitions idle).
    fn close_all(&mut self, out: &mut WindowOutput) {
        debug_assert!(self.pending.is_empty());
        if let Some(&(s, _)) = self.open.last() {
            self.wm = self.wm.max(s + self.size);
        }
        self.emit_closed(out);
    }

    /// CloseOldest: emits the oldest open pair early and closes that window and every earlier
    /// window of its key.
    fn evict_oldest(&mut self, out: &mut WindowOutput) {
        let Some((s, k)) = self.open.pop_first() else {
            return;
        };
        self.emit(k, s, true, out);
        self.counters.evicted += 1;
        self.free_panes_before(k, s + self.hop);
        let e = &mut self.keys[k as usize];
        e.closed_below = e.closed_below.max(s + self.hop);
    }

    /// The order of `rows` (window rows of operators with this spec, several shards' put
    /// together) in which one operator emits them: by window start, then by key value.
    pub(crate) fn emission_order(&self, rows: &RecordBatch) -> Vec<u32> {
        // The key columns follow window_start and window_end, with the input's types.
        let cols: Vec<(usize, DataType)> = (self.key_cols.iter().enumerate())
            .map(|(i, (_, t))| (2 + i, t.clone()))
            .collect();
        let keys = KeyColumns::new(rows, &cols);
        let starts = rows.column(0).as_primitive::<TimestampMicrosecondType>();
        let encoded: Vec<Vec<u8>> = (0..rows.num_rows())
            .map(|r| {
                let mut buf = Vec::new();
                encode_key(&keys, r, &mut buf);
                buf
            })
            .collect();
        let mut order: Vec<u32> = (0..rows.num_rows() as u32).collect();
        order.sort_by_cached_key(|&i| {
            let i = i as usize;
            (starts.value(i), decode_key(&self.key_kinds, &encoded[i]))
        });
        order
    }

    /// Sorts key ids by their values (the emission order within one window start).
    fn sort_keys(&self, ids: &mut [u32]) {
        if ids.len() < 2 || self.key_kinds.is_empty() {
            return;
        }
        // Each key decoded once (a window start can have a million keys).
        let keys = &self.keys;
        ids.sort_by_cached_key(|id| decode_key(&self.key_kinds, &keys[*id as usize].bytes));
    }

    /// Emits window `[s, s + size)` of key `k` from its panes.
    fn emit(&mut self, k: u32, s: i64, partial: bool, out: &mut WindowOutput) {
        let nf = self.fields.len();
        let (lo, hi) = (
            s.div_euclid(self.pane),
            (s + self.size).div_euclid(self.pane),
        );
        let panes = &self.keys[k as usize].panes;
        let from = panes.partition_point(|&(idx, _)| idx < lo);
        let mut count = 0u64;
        let mut merged: Vec<Acc> = Vec::new();
        for &(idx, slot) in panes.range(from..) {
            if idx >= hi {
                break;
            }
            count += self.panes[slot as usize].count;
            let accs = &self.accs[slot as usize * nf..(slot as usize + 1) * nf];
            if merged.is_empty() {
                merged.extend(accs.iter().cloned());
            } else {
                for (i, f) in self.fields.iter().enumerate() {
                    merged[i].merge(f.kind, f.needs, &accs[i]);
                }
            }
        }
        let mut values = Vec::new();
        for (i, f) in self.fields.iter().enumerate() {
            for a in &f.aggs {
                values.push(merged.get(i).and_then(|m| m.value(*a)).or(match a {
                    Agg::Count => Some(0),
                    _ => None,
                }));
            }
        }
        out.push_row(OutRow {
            start: s,
            end: s + self.size,
            key: &self.keys[k as usize].bytes,
            count,
            values: &values,
            partial: (self.spec.overflow == Overflow::CloseOldest).then_some(partial),
        });
        self.counters.emitted += 1;
    }

    /// Frees key `k`'s panes that start before `bound` (no open window needs them).
    fn free_panes_before(&mut self, k: u32, bound: i64) {
        let p_bound = bound.div_euclid(self.pane);
        let panes = &mut self.keys[k as usize].panes;
        while let Some(&(idx, slot)) = panes.front() {
            if idx >= p_bound {
                break;
            }
            panes.pop_front();
            self.free_slots.push(slot);
            for a in &mut self.accs[slot as usize * self.fields.len()..][..self.fields.len()] {
                // Drop the sketch's bins now rather than when the slot is reused.
                a.sketch = None;
            }
        }
    }

    /// Forgets key `k` when nothing of it is left that a later record could need: no panes,
    /// and every window it closed early has ended by the watermark.
    fn maybe_forget(&mut self, k: u32) {
        let e = &self.keys[k as usize];
        if !e.panes.is_empty() {
            return;
        }
        if e.closed_below != i64::MIN && e.closed_below - self.hop + self.size > self.wm {
            return;
        }
        let hash = e.hash;
        if let Ok(entry) = self.index.find_entry(hash, |&id| id == k) {
            entry.remove();
        }
        self.keys[k as usize] = KeyEntry::default();
        self.free_keys.push(k);
        self.dict_stale = true;
    }

    // --- snapshot support ----------------------------------------------------------------

    pub(crate) fn rebuild_index(&mut self) {
        let mut index = hashbrown::HashTable::with_capacity(self.keys.len());
        for e in self.keys.iter_mut().filter(|e| e.live) {
            e.hash = self.hasher.hash_one(&e.bytes[..]);
        }
        let keys = &self.keys;
        for (id, e) in keys.iter().enumerate().filter(|(_, e)| e.live) {
            index.insert_unique(e.hash, id as u32, |&i| keys[i as usize].hash);
        }
        self.index = index;
        self.dict_stale = true;
    }

    /// A new pane slot for restoring (accumulators filled in by the caller).
    pub(crate) fn restore_pane(&mut self, key: u32, p: i64, count: u64, accs: Vec<Acc>) {
        self.panes.push(Pane { count });
        self.accs.extend(accs);
        let slot = (self.panes.len() - 1) as u32;
        self.keys[key as usize].panes.push_back((p, slot));
    }

    /// The pane's (count, accumulators).
    pub(crate) fn pane_state(&self, slot: u32) -> (u64, &[Acc]) {
        let nf = self.fields.len();
        (
            self.panes[slot as usize].count,
            &self.accs[slot as usize * nf..(slot as usize + 1) * nf],
        )
    }

    /// A digest of everything the saved state's meaning depends on: the window geometry,
    /// the columns and their types, the aggregates, the overflow policy.
    pub(crate) fn fingerprint(&self) -> String {
        let s = &self.spec;
        let mut f = format!(
            "size={} hop={} lateness={} time={}:{} overflow={} by=",
            s.size_us,
            s.hop_us,
            s.lateness_us,
            s.time_field,
            self.time_type,
            s.overflow.name()
        );
        for (b, (_, t)) in s.by.iter().zip(&self.key_cols) {
            f.push_str(&format!("{b}:{t},"));
        }
        f.push_str(" aggs=");
        for p in &self.fields {
            f.push_str(&format!("{}:{}:", p.name, p.data_type));
            for a in &p.aggs {
                f.push_str(&format!("{a},"));
            }
            f.push(';');
        }
        f
    }
}

/// A µs time as RFC 3339 (for reasons).
fn rfc3339(us: i64) -> String {
    let mut b = Vec::with_capacity(crate::time::RFC3339_MICROS_LEN);
    crate::time::format_rfc3339_micros(us, &mut b);
    String::from_utf8(b).unwrap_or_default()
}

/// The smallest multiple of `m` at or above `v` (`v` = i64::MIN stays i64::MIN).
fn ceil_to(v: i64, m: i64) -> i64 {
    if v == i64::MIN {
        return v;
    }
    -((-v).div_euclid(m) * m)
}

/// An epoch number of unknown unit in µs, the unit by magnitude as pinflow reads a number in
/// a `timestamp` field.
fn epoch_micros(v: i64) -> Option<i64> {
    use crate::time::EpochUnit;
    match EpochUnit::by_magnitude(v as f64) {
        EpochUnit::Seconds => v.checked_mul(1_000_000),
        EpochUnit::Millis => v.checked_mul(1_000),
        EpochUnit::Micros => Some(v),
        EpochUnit::Nanos => Some(v.div_euclid(1_000)),
    }
}

/// [`epoch_micros`] of a number with a fraction, rounded to the µs.
fn epoch_micros_f64(v: f64) -> Option<i64> {
    use crate::time::EpochUnit;
    let us = match EpochUnit::by_magnitude(v) {
        EpochUnit::Seconds => v * 1e6,
        EpochUnit::Millis => v * 1e3,
        EpochUnit::Micros => v,
        EpochUnit::Nanos => v / 1e3,
    }
    .round();
    // NaN, ±∞ and values past i64 fail here; the range check follows.
    (us.is_finite() && us.abs() < 9.2e18).then_some(us as i64)
}

/// The raw value of a time column at `row`, for a reason.
fn raw_time(col: &ArrayRef, row: usize) -> String {
    match col.data_type() {
        DataType::Timestamp(u, _) => {
            let v = match u {
                TimeUnit::Second => col.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => col.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => col.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => col.as_primitive::<TimestampNanosecondType>().value(row),
            };
            format!("{v} ({u:?} since the epoch)")
        }
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float64 => col.as_primitive::<Float64Type>().value(row).to_string(),
        _ => "?".into(),
    }
}

/// One field's column applied to the pending rows.
struct Apply<'a> {
    pending: &'a [(u32, u32)],
    times: &'a [i64],
    accs: &'a mut [Acc],
    nf: usize,
    fi: usize,
    kind: Kind,
    needs: Needs,
}

impl Apply<'_> {
    #[inline]
    fn run<T: ArrowPrimitiveType>(self, col: &ArrayRef, conv: impl Fn(T::Native) -> (u64, f64)) {
        let a = col.as_primitive::<T>();
        let values = a.values();
        let nulls = a.nulls().filter(|n| n.null_count() > 0);
        for &(row, slot) in self.pending {
            let row = row as usize;
            if nulls.is_some_and(|n| n.is_null(row)) {
                continue;
            }
            let (bits, x) = conv(values[row]);
            self.accs[slot as usize * self.nf + self.fi].add(
                self.kind,
                self.needs,
                bits,
                x,
                self.times[row],
            );
        }
    }
}

/// A batch's key columns, borrowed and downcast once per batch.
enum KeyColumns<'a> {
    Global,
    /// One Dictionary(Int32, Utf8) column: key ids are cached per dictionary entry.
    Dict(&'a DictionaryArray<Int32Type>),
    Cols(Vec<KeyCol<'a>>),
}

/// One key column, downcast.
enum KeyCol<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    View(&'a StringViewArray),
    Dict(&'a DictionaryArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I8(&'a PrimitiveArray<Int8Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    Bool(&'a BooleanArray),
}

impl<'a> KeyColumns<'a> {
    fn new(rows: &'a RecordBatch, cols: &[(usize, DataType)]) -> KeyColumns<'a> {
        match cols {
            [] => KeyColumns::Global,
            [(c, DataType::Dictionary(_, _))] => {
                KeyColumns::Dict(rows.column(*c).as_dictionary::<Int32Type>())
            }
            _ => KeyColumns::Cols(
                cols.iter()
                    .map(|(c, _)| KeyCol::new(rows.column(*c)))
                    .collect(),
            ),
        }
    }
}

impl<'a> KeyCol<'a> {
    /// `c` must be of a type `KeyKind::of` admits (checked against the batch by
    /// `resolve_batch`).
    fn new(c: &'a ArrayRef) -> KeyCol<'a> {
        match c.data_type() {
            DataType::Utf8 => KeyCol::Utf8(c.as_string::<i32>()),
            DataType::LargeUtf8 => KeyCol::LargeUtf8(c.as_string::<i64>()),
            DataType::Utf8View => KeyCol::View(c.as_string_view()),
            DataType::Dictionary(_, _) => KeyCol::Dict(c.as_dictionary::<Int32Type>()),
            DataType::Int64 => KeyCol::I64(c.as_primitive()),
            DataType::Int32 => KeyCol::I32(c.as_primitive()),
            DataType::Int16 => KeyCol::I16(c.as_primitive()),
            DataType::Int8 => KeyCol::I8(c.as_primitive()),
            DataType::UInt64 => KeyCol::U64(c.as_primitive()),
            DataType::UInt32 => KeyCol::U32(c.as_primitive()),
            DataType::UInt16 => KeyCol::U16(c.as_primitive()),
            DataType::UInt8 => KeyCol::U8(c.as_primitive()),
            _ => KeyCol::Bool(c.as_boolean()),
        }
    }

    /// Appends row `row`'s value: a tag (0 null, 1 value), then integers as 8 bytes
    /// little-endian, booleans as 1 byte, strings as a 4-byte length and the bytes.
    #[inline]
    fn encode(&self, row: usize, buf: &mut Vec<u8>) {
        fn int(a: &impl Array, row: usize, v: impl FnOnce() -> [u8; 8], buf: &mut Vec<u8>) {
            if a.is_null(row) {
                buf.push(0);
            } else {
                buf.push(1);
                buf.extend_from_slice(&v());
            }
        }
        fn string<'b>(a: &impl Array, row: usize, v: impl FnOnce() -> &'b [u8], buf: &mut Vec<u8>) {
            if a.is_null(row) {
                buf.push(0);
            } else {
                push_str(buf, v());
            }
        }
        match self {
            KeyCol::Utf8(a) => string(*a, row, || a.value(row).as_bytes(), buf),
            KeyCol::LargeUtf8(a) => string(*a, row, || a.value(row).as_bytes(), buf),
            KeyCol::View(a) => string(*a, row, || a.value(row).as_bytes(), buf),
            KeyCol::Dict(d) => encode_dict(d, row, buf),
            KeyCol::I64(a) => int(*a, row, || a.value(row).to_le_bytes(), buf),
            KeyCol::I32(a) => int(*a, row, || i64::from(a.value(row)).to_le_bytes(), buf),
            KeyCol::I16(a) => int(*a, row, || i64::from(a.value(row)).to_le_bytes(), buf),
            KeyCol::I8(a) => int(*a, row, || i64::from(a.value(row)).to_le_bytes(), buf),
            KeyCol::U64(a) => int(*a, row, || a.value(row).to_le_bytes(), buf),
            KeyCol::U32(a) => int(*a, row, || u64::from(a.value(row)).to_le_bytes(), buf),
            KeyCol::U16(a) => int(*a, row, || u64::from(a.value(row)).to_le_bytes(), buf),
            KeyCol::U8(a) => int(*a, row, || u64::from(a.value(row)).to_le_bytes(), buf),
            KeyCol::Bool(a) => {
                if a.is_null(row) {
                    buf.push(0);
                } else {
                    buf.push(1);
                    buf.push(u8::from(a.value(row)));
                }
            }
        }
    }
}

/// Appends row `row`'s key to `buf` (see [`KeyCol::encode`]).
fn encode_key(keys: &KeyColumns<'_>, row: usize, buf: &mut Vec<u8>) {
    match keys {
        KeyColumns::Global => {}
        KeyColumns::Dict(d) => encode_dict(d, row, buf),
        KeyColumns::Cols(cols) => {
            for c in cols {
                c.encode(row, buf);
            }
        }
    }
}

fn encode_dict(d: &DictionaryArray<Int32Type>, row: usize, buf: &mut Vec<u8>) {
    if d.is_null(row) {
        buf.push(0);
        return;
    }
    let values = d.values().as_string::<i32>();
    let k = d.keys().value(row) as usize;
    if values.is_null(k) {
        buf.push(0);
        return;
    }
    push_str(buf, values.value(k).as_bytes());
}

fn push_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(1);
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s);
}

/// One decoded key value. The derived order is the emission order of keys: per column, null
/// first, then numbers, booleans (`false` first) and strings (by bytes) in their natural order
/// (a column holds one kind, so kinds are never compared with each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KeyValue<'a> {
    Null,
    Signed(i64),
    Unsigned(u64),
    Bool(bool),
    Str(&'a [u8]),
}

/// Splits an encoded key into its values (`kinds` says each column's encoding).
pub(crate) fn decode_key<'a>(kinds: &[KeyKind], mut b: &'a [u8]) -> Vec<KeyValue<'a>> {
    let mut out = Vec::with_capacity(kinds.len());
    for k in kinds {
        let Some((&tag, rest)) = b.split_first() else {
            out.push(KeyValue::Null);
            continue;
        };
        b = rest;
        if tag == 0 {
            out.push(KeyValue::Null);
            continue;
        }
        let take = |b: &mut &'a [u8], n: usize| -> &'a [u8] {
            let n = n.min(b.len());
            let (h, t) = b.split_at(n);
            *b = t;
            h
        };
        out.push(match k {
            KeyKind::Signed => KeyValue::Signed(i64::from_le_bytes(
                take(&mut b, 8).try_into().unwrap_or([0; 8]),
            )),
            KeyKind::Unsigned => KeyValue::Unsigned(u64::from_le_bytes(
                take(&mut b, 8).try_into().unwrap_or([0; 8]),
            )),
            KeyKind::Bool => KeyValue::Bool(take(&mut b, 1) == [1]),
            KeyKind::Str => {
                let n = u32::from_le_bytes(take(&mut b, 4).try_into().unwrap_or([0; 4]));
                KeyValue::Str(take(&mut b, n as usize))
            }
        });
    }
    out
}
