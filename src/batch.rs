//! The messages that travel between stages. Every message carries many records: a queue hop
//! costs the same for one record or a thousand, so hops are paid per batch.
//!
//! Body batches are recycled: the parse threads (and the writer, for a batch of the short
//! path, [`ToWriter::Bodies`](crate::handoff::ToWriter::Bodies)) clear them and send them back to the fetcher through a small
//! return queue, so in steady state no buffer is allocated per response.

// An internal module (hidden from the API docs): its docs may link to other internals.
#![allow(rustdoc::private_intra_doc_links)]

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;

/// Bytes of padding after each body in a [`BodyBatch`] arena: simd-json parses in place and
/// reads up to this many bytes past the end of a document.
pub const BODY_PADDING: usize = simd_json::INPUT_PADDING;

/// Counts batches alive anywhere in the pipeline and remembers the most seen at once: the
/// evidence that memory is bounded by configuration, not by input size.
#[derive(Debug, Default)]
pub struct LiveBatches {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl LiveBatches {
    /// A ticket for one new batch; the count drops when the ticket is dropped.
    pub fn ticket(self: &Arc<Self>) -> BatchTicket {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(n, Ordering::Relaxed);
        BatchTicket(Arc::clone(self))
    }

    /// Batches alive right now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// The most batches that were alive at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Held by a batch while it is in flight; see [`LiveBatches`].
#[derive(Debug)]
pub struct BatchTicket(Arc<LiveBatches>);

impl Drop for BatchTicket {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one work item ended in the fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response; the body is in the arena.
    Body,
    /// The request failed for good (after retries); the reason names status or error.
    Failed(String),
}

/// One finished work item inside a [`BodyBatch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL, as a range of [`BodyBatch::urls`].
    pub url: Range<usize>,
    /// The body, as a range of [`BodyBatch::arena`] (empty for failures).
    pub body: Range<usize>,
    /// Delivered or failed.
    pub outcome: Outcome,
    /// Attempts made (1 when the first try succeeded).
    pub attempts: u32,
    /// When the last body byte arrived (or the request was given up).
    pub done_at: Instant,
    /// The body's `Content-Encoding`; the parse threads decode it (never the I/O thread).
    pub encoding: ContentEncoding,
    /// Cursor pagination: this body is page number `n` (0 for a source URL) of its chain, and
    /// the fetcher waits for a [`CursorReply`] about it.
    pub cursor_page: Option<u32>,
    /// Cursor pagination: the fetcher's number for this page's chain, given back in the
    /// [`CursorReply`] (the chain's pages so far are how a cycle is found).
    pub cursor_chain: u64,
    /// The work item's position in its source ([`NO_SEQ`] when not tracked), which the resume
    /// journal records once the item's rows are in finalized files.
    pub seq: u64,
}

/// [`Fetched::seq`] of an item the journal does not track (a next page, say).
pub const NO_SEQ: u64 = u64::MAX;

/// What a parse thread tells the fetcher about a page fetched with cursor pagination on
/// (`fetch.cursor_field`): the cursor of the next page, or `None` at the end of the chain.
/// Exactly one reply is sent per page body, whatever its content, so the fetcher knows when
/// no further page can come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorReply {
    /// The page's URL.
    pub url: String,
    /// The page's number in its chain.
    pub page: u32,
    /// The chain's number ([`Fetched::cursor_chain`]).
    pub chain: u64,
    /// The next page's cursor.
    pub cursor: Option<String>,
}

/// A body's `Content-Encoding`, among those pinflow asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentEncoding {
    /// As is.
    #[default]
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// HTTP's "deflate": zlib format (RFC 1950).
    Deflate,
}

impl ContentEncoding {
    /// Reads a `Content-Encoding` header value; an encoding pinflow cannot decode comes back
    /// as its (lower-cased) name.
    pub fn from_header(value: &str) -> Result<ContentEncoding, String> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "identity" => Ok(ContentEncoding::Identity),
            "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
            "deflate" => Ok(ContentEncoding::Deflate),
            _ => Err(v),
        }
    }
}

/// Responses from the fetcher: bodies back to back in one arena, each followed by
/// [`BODY_PADDING`] bytes, so the parse threads can run simd-json on them in place.
#[derive(Debug, Default)]
pub struct BodyBatch {
    /// Bodies, each followed by padding.
    pub arena: Vec<u8>,
    /// URLs, back to back.
    pub urls: String,
    /// One entry per finished work item.
    pub items: Vec<Fetched>,
    /// Keeps the live-batch count while this batch is in the pipeline.
    pub ticket: Option<BatchTicket>,
    /// Records pushed ready-made ([`crate::push`]), passed through the parse stage as they are.
    pub prebuilt: Vec<arrow_array::RecordBatch>,
    /// The batch's number in the order the ingest thread shipped it (see [`SourceOrder`]),
    /// plus one (so that the field stays 8 bytes), set when it is first shipped; read it with
    /// [`BodyBatch::order`].
    pub order_plus_one: Option<std::num::NonZeroU64>,
    /// The source partition every item of this batch comes from (see [`SourceOrder`]).
    pub partition: u32,
    /// Set on the last batch of a partition that has ended (a file read to its end): no row
    /// of `partition` comes after this batch's.
    pub partition_ended: bool,
    /// Set by the Kafka source: every item is one message, named `TOPIC/PARTITION@OFFSET`;
    /// the parser then says which messages gave rows ([`RecordsBatch::kafka`]).
    pub kafka_messages: bool,
}

impl BodyBatch {
    /// Appends a delivered body.
    pub fn push_body(&mut self, url: &str, body: &[u8], attempts: u32, done_at: Instant) {
        self.push_encoded_body(url, body, ContentEncoding::Identity, attempts, done_at);
    }

    /// Appends a delivered body in a content encoding the parse threads will decode.
    pub fn push_encoded_body(
        &mut self,
        url: &str,
        body: &[u8],
        encoding: ContentEncoding,
        attempts: u32,
        done_at: Instant,
    ) {
        let u = self.push_url(url);
        let start = self.arena.len();
        // One reservation for body and padding: `resize` past an exactly fitted `extend` would
        // double the arena (a 900 KB page would take 1.8 MB, and a block that size comes from
        // its own mmap in the binary, see `fix_mmap_threshold`).
        self.arena.reserve(body.len() + BODY_PADDING);
        self.arena.extend_from_slice(body);
        let end = self.arena.len();
        self.arena.resize(end + BODY_PADDING, 0);
        self.items.push(Fetched {
            url: u,
            body: start..end,
            outcome: Outcome::Body,
            attempts,
            done_at,
            encoding,
            cursor_page: None,
            cursor_chain: 0,
            seq: NO_SEQ,
        });
    }

    /// Appends a failed work item.
    pub fn push_failure(&mut self, url: &str, reason: String, attempts: u32, done_at: Instant) {
        let u = self.push_url(url);
        let at = self.arena.len();
        self.items.push(Fetched {
            url: u,
            body: at..at,
            outcome: Outcome::Failed(reason),
            attempts,
            done_at,
            encoding: ContentEncoding::Identity,
            cursor_page: None,
            cursor_chain: 0,
            seq: NO_SEQ,
        });
    }

    /// The batch's number in shipping order, once shipped (see [`SourceOrder`]).
    pub fn order(&self) -> Option<u64> {
        self.order_plus_one.map(|n| n.get() - 1)
    }

    /// Numbers the batch (see [`BodyBatch::order`]); `n` below `u64::MAX`.
    pub fn set_order(&mut self, n: u64) {
        self.order_plus_one = std::num::NonZeroU64::new(n.saturating_add(1));
    }

    /// Sets the source position of the item appended last (see [`Fetched::seq`]).
    pub fn set_seq(&mut self, seq: u64) {
        if let Some(item) = self.items.last_mut() {
            item.seq = seq;
        }
    }

    /// Marks the body appended last as page `page` of a cursor-paginated chain: the parse
    /// thread will send a [`CursorReply`] for it.
    pub fn expect_cursor(&mut self, page: u32) {
        self.expect_cursor_in(0, page);
    }

    /// [`expect_cursor`](Self::expect_cursor) for a page of the fetcher's chain `chain`.
    pub fn expect_cursor_in(&mut self, chain: u64, page: u32) {
        if let Some(item) = self.items.last_mut() {
            item.cursor_page = Some(page);
            item.cursor_chain = chain;
        }
    }

    fn push_url(&mut self, url: &str) -> Range<usize> {
        let start = self.urls.len();
        self.urls.push_str(url);
        start..self.urls.len()
    }

    /// The URL of an item.
    pub fn url(&self, item: &Fetched) -> &str {
        &self.urls[item.url.clone()]
    }

    /// Body bytes held (without padding).
    pub fn body_bytes(&self) -> usize {
        self.items.iter().map(|i| i.body.len()).sum()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no item has been added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Gives back arena memory above `keep` bytes (an empty batch only), so that one huge body
    /// does not pin a huge arena for the rest of the run.
    pub fn shrink_arena(&mut self, keep: usize) {
        if self.arena.is_empty() && self.arena.capacity() > keep {
            self.arena.shrink_to(keep);
        }
    }

    /// Moves `other`'s items (bodies, URLs, records) to the end of this batch, leaving `other`
    /// empty with its allocations kept. `other`'s ticket is dropped: the two are one batch now.
    pub fn append(&mut self, other: &mut BodyBatch) {
        let (arena_base, url_base) = (self.arena.len(), self.urls.len());
        self.arena.extend_from_slice(&other.arena);
        self.urls.push_str(&other.urls);
        self.items.extend(other.items.drain(..).map(|mut item| {
            item.body = item.body.start + arena_base..item.body.end + arena_base;
            item.url = item.url.start + url_base..item.url.end + url_base;
            item
        }));
        self.prebuilt.append(&mut other.prebuilt);
        // Only batches of one partition join (push and HTTP sources have one); an end mark
        // travels with the rows before it.
        self.partition_ended |= other.partition_ended;
        self.kafka_messages |= other.kafka_messages;
        other.clear();
    }

    /// Whether a body in this batch is a page of cursor pagination, whose cursor the fetcher
    /// waits for from a parse thread (such a batch never takes the short path).
    pub fn has_cursor_pages(&self) -> bool {
        self.items.iter().any(|item| item.cursor_page.is_some())
    }

    /// Empties the batch for reuse, keeping its allocations.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.urls.clear();
        self.items.clear();
        self.ticket = None;
        self.prebuilt.clear();
        self.order_plus_one = None;
        self.partition = 0;
        self.partition_ended = false;
        self.kafka_messages = false;
    }
}

/// A record (or a whole body) that could not be turned into a row, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// `record` for one bad record, `body` for a body that is not JSON at all, `request` for a
    /// request that failed (status, connection error).
    pub kind: &'static str,
    /// Where it came from.
    pub url: String,
    /// Why it was rejected, naming the field where there is one.
    pub reason: String,
    /// The original text, cut to a bounded excerpt.
    pub excerpt: String,
    /// Attempts the request took.
    pub attempts: u32,
}

/// Rows plus everything else the writer must account for.
#[derive(Debug)]
pub struct RecordsBatch {
    /// The rows: the record columns from the parse stage, plus the statistics columns once the
    /// compute stage has run. `None` when a batch holds only dead letters.
    pub rows: Option<RecordBatch>,
    /// The layout `rows` follows, and the statistics the compute stage adds (`None` when the
    /// batch was not made by a parser).
    pub layout: Option<std::sync::Arc<crate::schema::Layout>>,
    /// Records, bodies and requests that did not become rows.
    pub dead_letters: Vec<DeadLetter>,
    /// The source positions of the delivered items in this batch (those tracked): once the
    /// batch is in finalized files, these items are done.
    pub items: Vec<u64>,
    /// Requests delivered in this batch (bodies received).
    pub delivered: u64,
    /// Body bytes received in this batch.
    pub body_bytes: u64,
    /// The earliest fetch completion among the batch's bodies, for end-to-end latency.
    pub oldest: Option<Instant>,
    /// Keeps the live-batch count while this batch is in the pipeline.
    pub ticket: Option<BatchTicket>,
    /// Where this batch stands in source order: the number and partition of the body batch
    /// it was parsed from.
    pub source: SourceOrder,
    /// From a Kafka source: which of its messages gave rows and which only dead letters
    /// (empty for other sources).
    pub kafka: crate::kafka::offsets::MessageOutcomes,
}

/// Where a batch stands in source order, for the stages that must see rows in the order the
/// source gave them (time windows decide lateness in that order, so the same input gives the
/// same rows whatever the thread counts and batch sizes).
///
/// The ingest thread numbers every batch it ships, from 0 and without gaps, whether it goes
/// through the parse threads or the short path (a batch that joins the one waiting in the short
/// path's mailbox takes that one's number: nothing can come between them). Parse and compute
/// threads finish batches out of order; the writer puts them back in number order.
///
/// A source *partition* is a stream whose records are in order among themselves: one file of a
/// file source (its index in the list), or the whole of an HTTP or push source (partition 0).
/// A file source ships a batch at the end of each file when source order is asked for
/// ([`IngestChannels::source_order`](crate::handoff::IngestChannels::source_order)), so every
/// batch's rows come from one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceOrder {
    /// The body batch's number ([`BodyBatch::order`]); `None` for a batch made outside the
    /// pipeline (a test, a benchmark).
    pub number: Option<u64>,
    /// The partition of every row of the batch.
    pub partition: u32,
    /// No row of `partition` comes after this batch's.
    pub partition_ended: bool,
}

/// Cuts `text` to at most `max` bytes on a character boundary, for dead-letter excerpts.
pub fn excerpt(text: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&text[..text.len().min(max)]);
    let mut s = s.into_owned();
    if text.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(urls_and_bodies: &[(&str, &str)]) -> BodyBatch {
        let mut b = BodyBatch::default();
        for (url, body) in urls_and_bodies {
            b.push_body(url, body.as_bytes(), 1, Instant::now());
        }
        b
    }

    /// Each item's URL and body, read back through its ranges.
    fn contents(b: &BodyBatch) -> Vec<(String, String)> {
        b.items
            .iter()
            .map(|i| {
                let body = String::from_utf8(b.arena[i.body.clone()].to_vec()).unwrap();
                (b.url(i).to_string(), body)
            })
            .collect()
    }

    #[test]
    fn an_appended_batch_keeps_its_items_readable_and_in_order() {
        let live = Arc::new(LiveBatches::default());
        let mut a = bodies(&[("http://h/1", "{\"id\":1}")]);
        a.ticket = Some(live.ticket());
        let mut b = bodies(&[("http://h/22", "{\"id\":22}"), ("http://h/3", "[3]")]);
        b.ticket = Some(live.ticket());
        let capacity = b.arena.capacity();
        a.append(&mut b);
        assert_eq!(
            contents(&a),
            [
                ("http://h/1".into(), "{\"id\":1}".into()),
                ("http://h/22".into(), "{\"id\":22}".into()),
                ("http://h/3".into(), "[3]".into()),
            ]
        );
        // Every body still has its padding after it, for simd-json.
        assert!(a
            .items
            .iter()
            .all(|i| i.body.end + BODY_PADDING <= a.arena.len()));
        // `b` is empty, keeps its buffer for reuse, and no longer counts as a live batch.
        assert!(b.is_empty() && b.arena.is_empty() && b.ticket.is_none());
        assert_eq!(b.arena.capacity(), capacity);
        assert_eq!(live.now(), 1);
    }

    #[test]
    fn live_batches_counts_and_peaks() {
        let live = Arc::new(LiveBatches::default());
        let a = live.ticket();
        let b = live.ticket();
        assert_eq!((live.now(), live.peak()), (2, 2));
        drop(a);
        drop(b);
        let _c = live.ticket();
        assert_eq!((live.now(), live.peak()), (1, 2));
    }

    #[test]
    fn arena_keeps_padding_and_ranges() {
        let mut b = BodyBatch::default();
        let t = Instant::now();
        b.push_body("http://x/1", b"{\"a\":1}", 1, t);
        b.push_failure("http://x/2", "HTTP 503".into(), 3, t);
        b.push_body("http://x/3", b"[]", 1, t);
        assert_eq!(b.len(), 3);
        assert_eq!(&b.arena[b.items[0].body.clone()], b"{\"a\":1}");
        assert_eq!(b.items[2].body.start, 7 + BODY_PADDING);
        assert_eq!(b.url(&b.items[1]), "http://x/2");
        assert_eq!(b.body_bytes(), 9);
        b.clear();
        assert!(b.is_empty() && b.arena.is_empty());
    }

    #[test]
    fn an_arena_inflated_by_a_huge_body_is_shrunk_only_when_empty() {
        let mut b = BodyBatch::default();
        b.push_body("http://x/big", &vec![b'x'; 8 << 20], 1, Instant::now());
        b.shrink_arena(1 << 20);
        assert!(
            b.arena.capacity() >= 8 << 20,
            "a batch in use keeps its bytes"
        );
        b.clear();
        b.shrink_arena(1 << 20);
        assert!(b.arena.capacity() <= 1 << 20, "{}", b.arena.capacity());
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt(b"abc", 10), "abc");
        assert_eq!(excerpt("héllo".as_bytes(), 2), "h\u{fffd}…");
    }
}
