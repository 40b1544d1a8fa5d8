//! Keys spread over several window threads (`window.threads`), each holding its keys' windows,
//! with the rows and late records of one operator that saw them all.
//!
//! A [`ShardedWindows`] is the router, on the writer's thread. For every batch it
//! - runs the *clock*: an operator that places nothing but keeps the partitions and the
//!   watermark ([`WindowOperator::watermarks`]), giving the watermark before each row and
//!   after the batch, as one operator would have had them;
//! - sends each shard the rows of its keys (a key's hash, fixed across runs, modulo the shard
//!   count) with those watermarks ([`WindowOperator::push_driven`]), so every shard decides
//!   lateness against the watermark of the whole stream, not of its own keys;
//! - waits for every shard's answer (window rows, rejected rows by their index in the batch)
//!   and puts the rows together in the order one operator emits them (by window start, then
//!   key).
//!
//! Idle partitions, a partition's end and the flush go through the clock too: the shards only
//! move to the watermark it gives (or close everything, when every partition is quiet, and
//! the clock then takes the highest of their watermarks). Each shard runs [`run_shard`] on a
//! thread of its own that the pipeline spawns (and pins): this module starts no thread.
//!
//! What differs from one operator: `max_open` is split evenly over the shards, so which pair
//! is closed early (or which record is refused) when the state is full depends on the shard
//! count; and the saved state (a checkpoint's) holds one snapshot per shard, so a resumed run
//! needs the same count.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, Sender};

use super::operator::{PartitionId, Rejected, WindowGauges, WindowOperator};
use super::output::WindowOutput;
use super::spec::WindowSpec;
use crate::error::Error;

const MAGIC: &[u8; 4] = b"PFWN";
const VERSION: u8 = 1;

/// What the router asks of a shard; every job gets exactly one [`ShardReply`].
pub enum ShardJob {
    /// Make the shard's operator for rows of `input`, empty or restored from `saved`.
    Start {
        /// The rows' schema.
        input: SchemaRef,
        /// The shard's snapshot, for a resumed run.
        saved: Option<Vec<u8>>,
    },
    /// Rows of the shard's keys, with the watermark before each and after the batch.
    Push {
        /// The rows.
        rows: RecordBatch,
        /// Each row's index in the batch the router was given (for rejections).
        index: Vec<u32>,
        /// The watermark before each row.
        before: Vec<i64>,
        /// The watermark after the batch.
        after: i64,
    },
    /// Move to this watermark.
    Advance(i64),
    /// Close every open window (all partitions quiet, end of input).
    CloseAll,
    /// The shard's state as bytes.
    Snapshot,
}

/// A shard's answer.
#[derive(Default)]
pub struct ShardReply {
    rows: Option<RecordBatch>,
    rejected: Vec<Rejected>,
    watermark: i64,
    gauges: WindowGauges,
    snapshot: Option<Vec<u8>>,
    error: Option<String>,
}

/// The channels to one shard's thread.
pub struct ShardLink {
    /// Jobs to the shard.
    pub jobs: Sender<ShardJob>,
    /// Its replies.
    pub replies: Receiver<ShardReply>,
}

/// A shard's thread: takes jobs until the router drops its end. `spec` is the run's, with
/// `max_open` already divided by the shard count ([`shard_spec`]); `waiting(true)` is called
/// before it waits for a job, `waiting(false)` when one came (for the thread's metrics).
pub fn run_shard(
    spec: Arc<WindowSpec>,
    jobs: Receiver<ShardJob>,
    replies: Sender<ShardReply>,
    waiting: impl Fn(bool),
) {
    let mut op: Option<(WindowOperator, WindowOutput)> = None;
    loop {
        waiting(true);
        let Ok(job) = jobs.recv() else { return };
        waiting(false);
        let mut reply = ShardReply::default();
        match (job, op.as_mut()) {
            (ShardJob::Start { input, saved }, _) => {
                let made = match saved {
                    Some(bytes) => WindowOperator::restore(Arc::clone(&spec), &input, &bytes),
                    None => WindowOperator::new(Arc::clone(&spec), &input),
                };
                match made {
                    Ok(o) => {
                        let out = o.new_output();
                        op = Some((o, out));
                    }
                    Err(e) => reply.error = Some(e.to_string()),
                }
            }
            (_, None) => reply.error = Some("window shard used before it was started".into()),
            (job, Some((o, out))) => {
                match job {
                    ShardJob::Push {
                        rows,
                        index,
                        before,
                        after,
                    } => {
                        o.push_driven(&rows, &before, after, out);
                        reply.rejected = out.take_rejected();
                        for r in &mut reply.rejected {
                            r.row = index[r.row] as usize;
                        }
                    }
                    ShardJob::Advance(wm) => o.advance_to(wm, out),
                    ShardJob::CloseAll => {
                        o.close_every_window(out);
                    }
                    ShardJob::Snapshot => reply.snapshot = Some(o.snapshot()),
                    ShardJob::Start { .. } => unreachable!("matched above"),
                }
                reply.rows = out.take_rows().filter(|r| r.num_rows() > 0);
                reply.watermark = o.watermark();
                reply.gauges = o.gauges();
            }
        }
        if replies.send(reply).is_err() {
            return;
        }
    }
}

/// The spec each of `n` shards runs: the run's, with `max_open` split evenly.
pub fn shard_spec(spec: &WindowSpec, n: usize) -> WindowSpec {
    let mut s = spec.clone();
    s.max_open = (spec.max_open / n.max(1)).max(1);
    s
}

/// The router over several window threads; see the module docs.
pub struct ShardedWindows {
    clock: WindowOperator,
    clock_out: WindowOutput,
    links: Vec<ShardLink>,
    output: SchemaRef,
    gauges: Vec<WindowGauges>,
    shards: Vec<u32>,
    before: Vec<i64>,
}

fn gone() -> Error {
    Error::Stage {
        stage: "window".into(),
        why: "a window thread ended before the run did".into(),
    }
}

/// What one step gave back: window rows, and rows of the batch rejected (index, reason).
pub type Step = (Option<RecordBatch>, Vec<Rejected>);

impl ShardedWindows {
    /// A router over `links` (one per shard, each running [`run_shard`] with
    /// [`shard_spec`]) for rows of `input`; `saved` is what [`ShardedWindows::snapshot`] gave
    /// in an earlier run.
    pub fn new(
        spec: Arc<WindowSpec>,
        input: &SchemaRef,
        links: Vec<ShardLink>,
        saved: Option<&[u8]>,
    ) -> Result<ShardedWindows, Error> {
        let (clock, parts) = match saved {
            Some(bytes) => {
                let (clock, parts) = decode(bytes)?;
                if parts.len() != links.len() {
                    return Err(Error::Stage {
                        stage: "window state".into(),
                        why: format!(
                            "saved by a run with {} window threads, this run has {} \
                             (window.threads): run with the same count to resume",
                            parts.len(),
                            links.len()
                        ),
                    });
                }
                let clock = WindowOperator::restore(Arc::clone(&spec), input, clock)?;
                (clock, parts.into_iter().map(|p| Some(p.to_vec())).collect())
            }
            None => (
                WindowOperator::new(Arc::clone(&spec), input)?,
                vec![None; links.len()],
            ),
        };
        let clock_out = clock.new_output();
        let output = clock.output_schema();
        let mut me = ShardedWindows {
            clock,
            clock_out,
            gauges: vec![WindowGauges::default(); links.len()],
            links,
            output,
            shards: Vec::new(),
            before: Vec::new(),
        };
        let jobs = parts
            .into_iter()
            .map(|saved| ShardJob::Start {
                input: Arc::clone(input),
                saved,
            })
            .collect();
        me.round(jobs)?;
        Ok(me)
    }

    /// [`WindowOperator::push`] over the shards.
    pub fn push(
        &mut self,
        partition: PartitionId,
        rows: &RecordBatch,
        now: Instant,
    ) -> Result<Step, Error> {
        let n = self.links.len();
        let after = self
            .clock
            .watermarks(partition, rows, now, &mut self.before);
        self.clock.shards_of(rows, n, &mut self.shards);
        let mut index: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (row, &s) in self.shards.iter().enumerate() {
            index[s as usize].push(row as u32);
        }
        let mut jobs = Vec::with_capacity(n);
        for idx in index {
            if idx.is_empty() {
                jobs.push(ShardJob::Advance(after));
                continue;
            }
            let take = UInt32Array::from(idx.clone());
            let part =
                arrow_select::take::take_record_batch(rows, &take).map_err(|e| Error::Stage {
                    stage: "window".into(),
                    why: format!("splitting a batch over the window threads: {e}"),
                })?;
            let before = idx.iter().map(|&i| self.before[i as usize]).collect();
            jobs.push(ShardJob::Push {
                rows: part,
                index: idx,
                before,
                after,
            });
        }
        self.round(jobs)
    }

    /// [`WindowOperator::tick`] over the shards.
    pub fn tick(&mut self, now: Instant) -> Result<Option<RecordBatch>, Error> {
        let Some(all_quiet) = self.clock.mark_idle(now) else {
            return Ok(None);
        };
        self.clock.recompute(&mut self.clock_out);
        let wm = self.clock.watermark();
        let (mut rows, _) = self.round(self.all(|| ShardJob::Advance(wm)))?;
        if all_quiet {
            let (closed, _) = self.close_all()?;
            rows = self.concat(rows.into_iter().chain(closed).collect())?;
        }
        Ok(rows)
    }

    /// [`WindowOperator::partition_ended`] over the shards.
    pub fn partition_ended(
        &mut self,
        partition: PartitionId,
    ) -> Result<Option<RecordBatch>, Error> {
        self.clock.partition_ended(partition, &mut self.clock_out);
        let wm = self.clock.watermark();
        Ok(self.round(self.all(|| ShardJob::Advance(wm)))?.0)
    }

    /// [`WindowOperator::flush`] over the shards.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, Error> {
        Ok(self.close_all()?.0)
    }

    /// [`WindowOperator::next_deadline`]: the clock's.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clock.next_deadline()
    }

    /// The shards' gauges added up, with the clock's watermark and highest event time.
    pub fn gauges(&self) -> WindowGauges {
        let clock = self.clock.gauges();
        let mut g = WindowGauges {
            watermark_us: clock.watermark_us,
            max_event_us: clock.max_event_us,
            ..WindowGauges::default()
        };
        for s in &self.gauges {
            g.open += s.open;
            g.emitted += s.emitted;
            g.late += s.late;
            g.evicted += s.evicted;
            g.rejected += s.rejected;
        }
        g
    }

    /// The state of the clock and of every shard, as versioned bytes with a CRC (restore with
    /// [`ShardedWindows::new`]).
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Error> {
        let n = self.links.len();
        for l in &self.links {
            l.jobs.send(ShardJob::Snapshot).map_err(|_| gone())?;
        }
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        let mut put = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        put(&self.clock.snapshot());
        for l in &self.links {
            let reply = l.replies.recv().map_err(|_| gone())?;
            put(&reply.snapshot.unwrap_or_default());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    fn all(&self, job: impl Fn() -> ShardJob) -> Vec<ShardJob> {
        (0..self.links.len()).map(|_| job()).collect()
    }

    /// Every shard closes its windows; the clock takes the highest watermark they reach.
    fn close_all(&mut self) -> Result<Step, Error> {
        let step = self.round(self.all(|| ShardJob::CloseAll))?;
        let wm = self.gauges.iter().filter_map(|g| g.watermark_us).max();
        if let Some(wm) = wm {
            self.clock.advance_to(wm, &mut self.clock_out);
        }
        Ok(step)
    }

    /// Sends one job to each shard, then takes their replies: the rows by window start, the
    /// rejections by row.
    fn round(&mut self, jobs: Vec<ShardJob>) -> Result<Step, Error> {
        for (l, job) in self.links.iter().zip(jobs) {
            l.jobs.send(job).map_err(|_| gone())?;
        }
        let (mut rows, mut rejected) = (Vec::new(), Vec::new());
        for (i, l) in self.links.iter().enumerate() {
            let reply = l.replies.recv().map_err(|_| gone())?;
            if let Some(why) = reply.error {
                return Err(Error::Stage {
                    stage: format!("window thread {i}"),
                    why,
                });
            }
            self.gauges[i] = reply.gauges;
            rows.extend(reply.rows);
            rejected.extend(reply.rejected);
        }
        rejected.sort_by_key(|r| r.row);
        Ok((self.concat(rows)?, rejected))
    }

    /// The shards' rows as one batch, in the order one operator emits them (by window
    /// start, then key).
    fn concat(&self, rows: Vec<RecordBatch>) -> Result<Option<RecordBatch>, Error> {
        let failed = |e: arrow_schema::ArrowError| Error::Stage {
            stage: "window".into(),
            why: format!("putting the window threads' rows together: {e}"),
        };
        match rows.len() {
            0 => return Ok(None),
            1 => return Ok(rows.into_iter().next()),
            _ => {}
        }
        let all = arrow_select::concat::concat_batches(&self.output, &rows).map_err(failed)?;
        let order = self.clock.emission_order(&all);
        if order.iter().enumerate().all(|(i, &o)| i as u32 == o) {
            return Ok(Some(all));
        }
        let take = UInt32Array::from(order);
        let sorted = arrow_select::take::take_record_batch(&all, &take).map_err(failed)?;
        Ok(Some(sorted))
    }
}

/// Splits saved bytes into the clock's snapshot and each shard's.
fn decode(bytes: &[u8]) -> Result<(&[u8], Vec<&[u8]>), Error> {
    let broken = |why: &str| Error::Stage {
        stage: "window state".into(),
        why: format!("saved state of several window threads is broken: {why}"),
    };
    if bytes.len() < 13 || &bytes[..4] != MAGIC {
        return Err(broken("no PFWN header (saved by one window thread?)"));
    }
    if bytes[4] != VERSION {
        return Err(broken(&format!(
            "version {}, this pinflow reads {VERSION}",
            bytes[4]
        )));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err(broken("CRC mismatch"));
    }
    let mut rest = &body[5..];
    let u32_at = |rest: &mut &[u8]| -> Result<usize, Error> {
        if rest.len() < 4 {
            return Err(broken("cut short"));
        }
        let v = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
        *rest = &rest[4..];
        Ok(v as usize)
    };
    let n = u32_at(&mut rest)?;
    let mut parts = Vec::with_capacity(n + 1);
    for _ in 0..=n {
        let len = u32_at(&mut rest)?;
        if rest.len() < len {
            return Err(broken("cut short"));
        }
        parts.push(&rest[..len]);
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(broken("bytes after the last shard"));
    }
    let clock = parts.remove(0);
    Ok((clock, parts))
}

/// Whether saved window state is of several window threads (else of one operator).
pub fn is_sharded_state(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}
