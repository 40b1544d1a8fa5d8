//! The operator's state as bytes: versioned, self-checking, compact.
//!
//! Layout (integers little-endian): `PFWS` (magic), a version byte (1), the body, then the
//! CRC-32 of everything before it. The body starts with the settings' fingerprint (window
//! geometry, columns and their types, aggregates, overflow policy: state saved under other
//! settings is refused, not misread), then the watermark, the counters, the partitions
//! (id, highest event time, ended, idle), the keys (every id slot, so that ids, and with them
//! every tie-break, come back the same: live keys with their bytes, early-close bound and
//! panes), the free key ids, and the open (key, window) pairs. A pane is its index, its
//! record count and, per field, only the accumulators its aggregates need (a sketch in
//! DDSketch's standard binary encoding, which keeps every bin's count exactly).
//!
//! Processing-time state is not saved as such: a restored partition that was not idle counts
//! as just seen (its idle clock starts at the restore).

use std::sync::Arc;
use std::time::Instant;

use arrow_schema::SchemaRef;
use sketches_ddsketch::DDSketch;

use super::aggregate::{Acc, Needs};
use super::operator::{KeyEntry, Part, WindowOperator};
use super::spec::WindowSpec;
use crate::error::Error;

const MAGIC: &[u8; 4] = b"PFWS";
const VERSION: u8 = 1;

fn broken(why: impl Into<String>) -> Error {
    Error::Stage {
        stage: "window state".into(),
        why: why.into(),
    }
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(broken("the saved window state ends early"));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn i64(&mut self) -> Result<i64, Error> {
        Ok(self.u64()? as i64)
    }
    fn f64(&mut self) -> Result<f64, Error> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items at least `min_size` bytes each: bounded by what is left, so a
    /// damaged count cannot make a huge allocation.
    fn count(&mut self, min_size: usize) -> Result<usize, Error> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.0.len() {
            return Err(broken(
                "the saved window state is damaged (a count past its end)",
            ));
        }
        Ok(n)
    }
}

fn write_acc(w: &mut W, needs: Needs, a: &Acc) {
    w.u64(a.n);
    if needs.sum {
        w.f64(a.sum);
    }
    if needs.moments {
        w.f64(a.shift);
        w.f64(a.mean);
        w.f64(a.m2);
    }
    if needs.min {
        w.u64(a.min);
    }
    if needs.max {
        w.u64(a.max);
    }
    if needs.first {
        w.i64(a.first_t);
        w.u64(a.first);
    }
    if needs.last {
        w.i64(a.last_t);
        w.u64(a.last);
    }
    if needs.sketch {
        match &a.sketch {
            Some(s) if s.count() > 0 => w.bytes(&s.to_java_bytes()),
            _ => w.bytes(&[]),
        }
    }
}

fn read_acc(r: &mut R<'_>, needs: Needs) -> Result<Acc, Error> {
    let mut a = Acc::new(needs);
    a.n = r.u64()?;
    if needs.sum {
        a.sum = r.f64()?;
    }
    if needs.moments {
        a.shift = r.f64()?;
        a.mean = r.f64()?;
        a.m2 = r.f64()?;
    }
    if needs.min {
        a.min = r.u64()?;
    }
    if needs.max {
        a.max = r.u64()?;
    }
    if needs.first {
        a.first_t = r.i64()?;
        a.first = r.u64()?;
    }
    if needs.last {
        a.last_t = r.i64()?;
        a.last = r.u64()?;
    }
    if needs.sketch {
        let b = r.bytes()?;
        if !b.is_empty() {
            let s = DDSketch::from_java_bytes(b)
                .map_err(|e| broken(format!("a saved percentile sketch is damaged: {e:?}")))?;
            a.sketch = Some(Box::new(s));
        }
    }
    Ok(a)
}

impl WindowOperator {
    /// The state as versioned, self-checking bytes: open panes, keys, per-partition highest
    /// event times, the watermark, the counters (see the module docs of `snapshot.rs` for the
    /// layout). Restoring them with [`WindowOperator::restore`] and going on gives exactly
    /// the rows an operator that never stopped gives.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(64 + self.panes.len() * 64));
        w.0.extend_from_slice(MAGIC);
        w.u8(VERSION);
        w.bytes(self.fingerprint().as_bytes());
        w.i64(self.wm);
        let c = &self.counters;
        for v in [c.emitted, c.late, c.evicted, c.rejected] {
            w.u64(v);
        }
        w.u32(self.parts.len() as u32);
        for (id, p) in &self.parts {
            w.u32(*id);
            w.i64(p.max);
            w.u8(u8::from(p.ended) | u8::from(p.idle) << 1);
        }
        w.u32(self.keys.len() as u32);
        for k in &self.keys {
            w.u8(u8::from(k.live));
            if !k.live {
                continue;
            }
            w.bytes(&k.bytes);
            w.i64(k.closed_below);
            w.u32(k.panes.len() as u32);
            for &(idx, slot) in &k.panes {
                w.i64(idx);
                let (count, accs) = self.pane_state(slot);
                w.u64(count);
                for (f, a) in self.fields.iter().zip(accs) {
                    write_acc(&mut w, f.needs, a);
                }
            }
        }
        w.u32(self.free_keys.len() as u32);
        for &k in &self.free_keys {
            w.u32(k);
        }
        w.u32(self.open.len() as u32);
        for &(s, k) in &self.open {
            w.i64(s);
            w.u32(k);
        }
        let crc = crc32fast::hash(&w.0);
        w.u32(crc);
        w.0
    }

    /// An operator with the state of [`WindowOperator::snapshot`]'s bytes, for `spec` over
    /// rows of `input`. Damaged bytes, another version, or state saved under other settings
    /// (window size or hop, lateness, time field, keys, aggregates, column types, overflow
    /// policy) are an [`Error::Stage`] (stage `window state`) saying which; `idle` and
    /// `max_open` may change between runs (a lower `max_open` applies from the next new pair).
    pub fn restore(spec: Arc<WindowSpec>, input: &SchemaRef, bytes: &[u8]) -> Result<Self, Error> {
        let mut op = WindowOperator::new(spec, input)?;
        if bytes.len() < MAGIC.len() + 1 + 4 || &bytes[..4] != MAGIC {
            return Err(broken("not saved window state (no PFWS header)"));
        }
        if bytes[4] != VERSION {
            return Err(broken(format!(
                "saved window state of version {}, this pinflow reads version {VERSION}",
                bytes[4]
            )));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        if crc32fast::hash(body) != crc {
            return Err(broken(
                "the saved window state is damaged (its checksum does not match)",
            ));
        }
        let mut r = R(&body[5..]);
        let fp = r.bytes()?;
        let want = op.fingerprint();
        if fp != want.as_bytes() {
            return Err(broken(format!(
                "the window settings changed since the state was saved (saved: {}; now: {want}); \
                 start afresh without the saved state",
                String::from_utf8_lossy(fp)
            )));
        }
        op.wm = r.i64()?;
        op.counters.emitted = r.u64()?;
        op.counters.late = r.u64()?;
        op.counters.evicted = r.u64()?;
        op.counters.rejected = r.u64()?;
        let now = Instant::now();
        for _ in 0..r.count(13)? {
            let id = r.u32()?;
            let max = r.i64()?;
            let flags = r.u8()?;
            op.parts.insert(
                id,
                Part {
                    max,
                    last_seen: now,
                    ended: flags & 1 != 0,
                    idle: flags & 2 != 0,
                },
            );
        }
        let n_keys = r.count(1)?;
        for id in 0..n_keys {
            if r.u8()? == 0 {
                op.keys.push(KeyEntry::default());
                continue;
            }
            let bytes = r.bytes()?.to_vec().into_boxed_slice();
            let closed_below = r.i64()?;
            op.keys.push(KeyEntry {
                live: true,
                bytes,
                hash: 0,
                closed_below,
                panes: Default::default(),
            });
            let mut last = None;
            for _ in 0..r.count(16)? {
                let idx = r.i64()?;
                if last.is_some_and(|l| l >= idx) {
                    return Err(broken(
                        "the saved window state is damaged (panes out of order)",
                    ));
                }
                last = Some(idx);
                let count = r.u64()?;
                let needs: Vec<Needs> = op.fields.iter().map(|f| f.needs).collect();
                let accs = needs
                    .into_iter()
                    .map(|n| read_acc(&mut r, n))
                    .collect::<Result<Vec<_>, _>>()?;
                op.restore_pane(id as u32, idx, count, accs);
            }
        }
        for _ in 0..r.count(4)? {
            let k = r.u32()?;
            if op.keys.get(k as usize).is_none_or(|e| e.live) {
                return Err(broken(
                    "the saved window state is damaged (a free key in use)",
                ));
            }
            op.free_keys.push(k);
        }
        for _ in 0..r.count(12)? {
            let s = r.i64()?;
            let k = r.u32()?;
            if op.keys.get(k as usize).is_none_or(|e| !e.live) {
                return Err(broken(
                    "the saved window state is damaged (a window of no key)",
                ));
            }
            op.open.insert((s, k));
        }
        if !r.0.is_empty() {
            return Err(broken(
                "the saved window state is damaged (bytes after its end)",
            ));
        }
        op.rebuild_index();
        Ok(op)
    }
}
