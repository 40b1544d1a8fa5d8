//! Source order for the HTTP fetcher: bodies go downstream in the order of the URL list, not
//! in the order their responses completed.
//!
//! Time windows decide lateness in source order
//! ([`IngestChannels::source_order`](crate::handoff::IngestChannels::source_order)); the writer
//! puts batches back in the order the fetcher shipped them, so the fetcher only has to put its
//! bodies into batches in list order. With several requests in flight a later URL often
//! completes first: its body is *held* here until every earlier work item has ended, then
//! released into the batch in order.
//!
//! Every admitted work item gets the next admission number (admission takes the feed in list
//! order, so numbers follow it; items skipped by the journal or another shard get none), and
//! its next pages carry the same number: a pagination chain is one item, its pages released in
//! page order. An item *ends* when nothing more can come of it: its last page was delivered
//! (no `Link: rel="next"` followed, the parse threads' cursor reply named no next page), or
//! it failed, or a stop cancelled it. The *head* is the oldest item not yet ended; what the
//! head delivers goes into the batch at once, what a later item delivers is held, and when the
//! head ends, the held bodies of the items after it are released in turn, up to the first item
//! still unended.
//!
//! Held bodies count against `fetch.max_in_flight` with the requests in flight, so memory
//! stays bounded as before; the price is head-of-line blocking: one slow response holds back
//! the ones after it (and, once `max_in_flight` are held or in flight, admission). Failures
//! carry no records and are never held; they only end their item.

use std::collections::BTreeMap;
use std::time::Instant;

use super::event_loop::Fetcher;
use super::schedule::Request;
use crate::batch::ContentEncoding;

/// Spare body buffers kept for reuse: enough for a poll's worth of held bodies.
const SPARE_BODIES: usize = 64;

/// The items admitted and not yet released, and the bodies held for them.
#[derive(Default)]
pub(super) struct InOrder {
    /// The oldest item not ended: its bodies are not held.
    head: u64,
    /// The number the next admitted item gets.
    next: u64,
    /// Items after the head with bodies held or that have ended, by admission number.
    held: BTreeMap<u64, HeldItem>,
    /// Bodies in `held`, plus items in it (an ended item without bodies still takes memory).
    held_count: usize,
    spare: Vec<Vec<u8>>,
}

#[derive(Default)]
struct HeldItem {
    bodies: Vec<HeldBody>,
    ended: bool,
}

/// A delivered page, as [`Batcher::push_body`](super::batching::Batcher::push_body) takes it.
pub(super) struct HeldBody {
    pub(super) url: String,
    pub(super) seq: u64,
    pub(super) attempts: u32,
    pub(super) body: Vec<u8>,
    pub(super) encoding: ContentEncoding,
    pub(super) cursor_page: Option<(u64, u32)>,
    pub(super) at: Instant,
}

impl InOrder {
    /// The admission number of the next work item.
    pub(super) fn admit(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// How many bodies and items are held: they count against `max_in_flight`.
    pub(super) fn held(&self) -> usize {
        self.held_count
    }

    /// Whether a body of item `order` must wait: for earlier items, or behind its own bodies
    /// held before it became the head and not released yet.
    pub(super) fn must_hold(&self, order: u64) -> bool {
        order > self.head || self.held.get(&order).is_some_and(|i| !i.bodies.is_empty())
    }

    /// Holds a body of item `order` (after the head) until the items before it have ended.
    pub(super) fn hold(
        &mut self,
        order: u64,
        req: &Request,
        body: &[u8],
        encoding: ContentEncoding,
        cursor_page: Option<(u64, u32)>,
        at: Instant,
    ) {
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(body);
        let item = self.held.entry(order).or_insert_with(|| {
            self.held_count += 1;
            HeldItem::default()
        });
        item.bodies.push(HeldBody {
            url: req.url.clone(),
            seq: req.seq,
            attempts: req.failures + 1,
            body: copy,
            encoding,
            cursor_page,
            at,
        });
        self.held_count += 1;
    }

    /// Item `order` has ended; [`InOrder::release`] moves the head past it.
    pub(super) fn end(&mut self, order: u64) {
        if order < self.head {
            // Already released: ended twice (a chain's last page failing after its delivery).
            return;
        }
        let item = self.held.entry(order).or_insert_with(|| {
            self.held_count += 1;
            HeldItem::default()
        });
        item.ended = true;
    }

    /// Takes the bodies that may go downstream now, in order, into `out`: those of the head,
    /// and while the head has ended, the next item's, up to the first item still unended
    /// (whose bodies so far are taken too: it is the head now, and delivers straight to the
    /// batch from here on).
    pub(super) fn release(&mut self, out: &mut Vec<HeldBody>) {
        while let Some(mut entry) = self.held.first_entry() {
            if *entry.key() != self.head {
                break;
            }
            let item = entry.get_mut();
            self.held_count -= item.bodies.len();
            out.append(&mut item.bodies);
            if !item.ended {
                // The head delivers straight to the batch from here on: nothing to keep.
                entry.remove();
                self.held_count -= 1;
                break;
            }
            entry.remove();
            self.held_count -= 1;
            self.head += 1;
        }
    }

    /// A body buffer back after its bytes went into the batch.
    pub(super) fn recycle(&mut self, mut body: Vec<u8>) {
        if self.spare.len() < SPARE_BODIES && body.capacity() <= 4 << 20 {
            body.clear();
            self.spare.push(body);
        }
    }

    /// Everything still held, in order, whatever has ended: for the end of the run, which
    /// must not lose a body (nothing should be held then, every item having ended).
    pub(super) fn drain(&mut self, out: &mut Vec<HeldBody>) {
        for (_, item) in std::mem::take(&mut self.held) {
            out.extend(item.bodies);
        }
        self.held_count = 0;
        self.head = self.next;
    }
}

impl Fetcher {
    /// Item `order` has ended (source order only); the bodies held behind it go at the next
    /// [`Fetcher::release_held`].
    pub(super) fn end_item(&mut self, order: u64) {
        if let Some(o) = self.order.as_mut() {
            o.end(order);
        }
    }

    /// Puts the bodies that may go now (or, with `all`, every one held) into the batch, in
    /// order, shipping each batch that fills on the way. Called where the loop may ship:
    /// after each socket event and once a turn.
    pub(super) fn release_held(&mut self, all: bool) -> crate::error::Result<()> {
        let Some(o) = self.order.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::new();
        match all {
            true => o.drain(&mut out),
            false => o.release(&mut out),
        }
        for held in out {
            self.batcher.push_held(&held, &self.chans.live);
            if let Some(o) = self.order.as_mut() {
                o.recycle(held.body);
            }
            self.ship_if_full()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> Request {
        Request::for_test(url)
    }

    fn urls(out: &[HeldBody]) -> Vec<&str> {
        out.iter().map(|h| h.url.as_str()).collect()
    }

    #[test]
    fn later_items_wait_for_the_head_then_go_in_admission_order() {
        let mut o = InOrder::default();
        let (a, b, c) = (o.admit(), o.admit(), o.admit());
        let now = Instant::now();
        assert!(!o.must_hold(a));
        assert!(o.must_hold(c));
        o.hold(c, &req("c"), b"3", ContentEncoding::Identity, None, now);
        o.end(c);
        o.hold(b, &req("b1"), b"2", ContentEncoding::Identity, None, now);
        o.hold(b, &req("b2"), b"2", ContentEncoding::Identity, None, now);
        assert_eq!(o.held(), 5, "two items, three bodies");
        let mut out = Vec::new();
        o.release(&mut out);
        assert!(out.is_empty(), "nothing goes before the head ends");
        o.end(a);
        // Until the release, a page b delivers waits behind the ones it has held.
        assert!(o.must_hold(b));
        o.release(&mut out);
        // b is the head now but has not ended (a chain with pages to come): c still waits.
        assert_eq!(urls(&out), ["b1", "b2"]);
        assert!(!o.must_hold(b) && o.must_hold(c));
        assert_eq!(
            o.held(),
            2,
            "b (unended, nothing held) and c (ended, one body)"
        );
        out.clear();
        o.end(b);
        o.release(&mut out);
        assert_eq!(urls(&out), ["c"]);
        assert_eq!(o.held(), 0);
        o.end(a);
        o.release(&mut out);
        assert_eq!(
            (o.held(), out.len()),
            (0, 1),
            "ending an item twice changes nothing"
        );
    }

    #[test]
    fn items_ended_without_bodies_advance_the_head_past_them() {
        let mut o = InOrder::default();
        let n: Vec<u64> = (0..4).map(|_| o.admit()).collect();
        let now = Instant::now();
        o.end(n[1]); // failed
        o.end(n[2]); // cancelled
        o.hold(n[3], &req("d"), b"4", ContentEncoding::Identity, None, now);
        let mut out = Vec::new();
        o.end(n[0]);
        o.release(&mut out);
        assert_eq!(urls(&out), ["d"]);
        assert!(!o.must_hold(n[3]));
        assert_eq!(o.held(), 0);
    }

    #[test]
    fn drain_gives_everything_held_in_order() {
        let mut o = InOrder::default();
        let n: Vec<u64> = (0..3).map(|_| o.admit()).collect();
        let now = Instant::now();
        o.hold(n[2], &req("z"), b"", ContentEncoding::Identity, None, now);
        o.hold(n[1], &req("y"), b"", ContentEncoding::Identity, None, now);
        let mut out = Vec::new();
        o.drain(&mut out);
        assert_eq!(urls(&out), ["y", "z"]);
        assert_eq!(o.held(), 0);
        let next = o.admit();
        assert!(!o.must_hold(next));
    }
}
