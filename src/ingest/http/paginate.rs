//! Requests that come from responses: the next page (by `Link: rel="next"` or by cursor) and
//! redirects, with the resolution of the references they carry (RFC 3986, §5.2).
//!
//! A next page is a new work item (its own request, counted in flight, under its own URL,
//! carrying its source item's position); a redirect is the same work item sent again to the
//! new location, reported under its original URL. Both stay on the same host unless
//! `fetch.redirect_other_hosts`, and carry their work item's credentials only while on its
//! origin ([`credentials`](super::credentials)).
//!
//! The pages that follow one another from a source URL form a chain. A chain remembers every
//! page it has requested; a next page it has already requested (a Link or cursor cycle,
//! A → B → A) stops the chain and is recorded as a failed request with that reason, so a cycle
//! costs one request, not `max_link_pages` copies of its rows.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::event_loop::Fetcher;
use super::pool::{Host, Pool};
use super::schedule::{Request, RequestPath};
use crate::ingest::source::{HttpUrl, UrlParts};
use crate::ingest::url;

/// Cursor pagination's state: the parse threads' replies and how many are still to come.
pub(super) struct Pagination {
    /// The parse threads' [`CursorReply`](crate::batch::CursorReply) for every page body,
    /// when `fetch.cursor_field` is set.
    pub(super) cursors: Option<Receiver<crate::batch::CursorReply>>,
    /// Page bodies delivered with cursor pagination on whose reply has not come back: while any
    /// is out, a next page may still appear, so the pass is not over.
    pub(super) awaiting: usize,
    /// What a page awaiting its cursor reply leaves for its next page, by chain number.
    parked: HashMap<u64, Parked>,
    next_chain: u64,
}

/// A cursor page's chain, origin and credentials while the parse threads read its cursor.
struct Parked {
    chain: Box<Chain>,
    /// The work item's admission number (source order).
    order: u64,
    origin: usize,
    auth: Option<Arc<str>>,
}

/// What a next page takes over from the page before it.
struct NextPage {
    /// Its number in the chain (0 is the source URL's page).
    page: u32,
    /// The work item's admission number (source order).
    order: u64,
    origin: usize,
    auth: Option<Arc<str>>,
    chain: Box<Chain>,
}

/// The pages one chain has requested, as hashes of their URLs (8 bytes a page: the default
/// limit of pages keeps a chain under a few MB).
#[derive(Default)]
pub(super) struct Chain {
    seen: HashSet<u64>,
}

impl Chain {
    /// A chain that starts at `req`: its URL as written and the one it was fetched from (after
    /// redirects) count as requested.
    fn starting(req: &Request, pool: &Pool) -> Box<Chain> {
        let mut chain = Box::<Chain>::default();
        if let Ok(u) = UrlParts::split(&req.url) {
            chain.first_visit(u.host, u.port, u.tls, &u.path);
        }
        let h = &pool.hosts[req.host];
        chain.first_visit(&h.name, h.port, h.tls, req.path());
        chain
    }

    /// Notes a page; false when the chain has requested it before.
    fn first_visit(&mut self, host: &str, port: u16, tls: bool, path: &str) -> bool {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (host, port, tls, path).hash(&mut h);
        self.seen.insert(h.finish())
    }
}

impl Pagination {
    pub(super) fn new(cursors: Option<Receiver<crate::batch::CursorReply>>) -> Pagination {
        Pagination {
            cursors,
            awaiting: 0,
            parked: HashMap::new(),
            next_chain: 1,
        }
    }

    /// Cursor pagination: a page of `req` is being delivered, and a parse thread will reply
    /// with its cursor. Keeps its chain until then; returns the chain's number and the page's,
    /// for the batch. `None` without cursor pagination.
    pub(super) fn park(&mut self, req: &mut Request, pool: &Pool) -> Option<(u64, u32)> {
        self.cursors.as_ref()?;
        let chain = req
            .chain
            .take()
            .unwrap_or_else(|| Chain::starting(req, pool));
        let id = self.next_chain;
        self.next_chain += 1;
        let parked = Parked {
            chain,
            order: req.order,
            origin: req.origin,
            auth: req.auth.clone(),
        };
        self.parked.insert(id, parked);
        self.awaiting += 1;
        Some((id, req.page))
    }
}

impl Fetcher {
    /// Follows a redirect: the same work item (reported under its original URL) is sent to
    /// the new location, on the same host unless `fetch.redirect_other_hosts`, at most
    /// `fetch.max_redirects` times.
    pub(super) fn redirect(
        &mut self,
        mut req: Request,
        status: u16,
        location: Option<String>,
        attempts: u32,
    ) {
        let class = "redirect";
        let Some(location) = location else {
            let detail = format!("HTTP status {status} without a Location header");
            return self.finish_failed(req.order, &req.url, class, &detail, attempts);
        };
        // The target as messages show it: a server may put credentials in it.
        let shown = url::redact(&location);
        if req.redirects >= self.cfg.max_redirects {
            let detail = format!(
                "more than {} redirects (last to {shown})",
                self.cfg.max_redirects
            );
            return self.finish_failed(req.order, &req.url, class, &detail, attempts);
        }
        let here = &self.pool.hosts[req.host];
        let target = match resolve_reference(here, &req, &location) {
            Ok(t) => t,
            Err(why) => {
                let detail = format!("redirect to `{shown}` cannot be followed: {why}");
                return self.finish_failed(req.order, &req.url, class, &detail, attempts);
            }
        };
        if !same_origin(here, &target) && !self.cfg.redirect_other_hosts {
            let detail = format!(
                "redirect to another host refused ({shown}); set fetch.redirect_other_hosts"
            );
            return self.finish_failed(req.order, &req.url, class, &detail, attempts);
        }
        // A page that redirects back to a page of its chain closes a cycle too.
        if let Some(chain) = req.chain.as_mut() {
            if !chain.first_visit(&target.host, target.port, target.tls, &target.path) {
                let detail = cycle(req.page, &target.to_string());
                return self.finish_failed(
                    req.order,
                    &req.url,
                    "pagination cycle",
                    &detail,
                    attempts,
                );
            }
        }
        req.redirects += 1;
        req.path = RequestPath::Own(target.path);
        req.host = self
            .pool
            .host_for(&target.host, target.port, target.tls, &self.cfg);
        let h = req.host;
        self.pool.hosts[h].queue.push_back(req);
    }

    /// Pagination: a delivered page whose `Link` header has `rel="next"` adds the next page as
    /// a new work item (same host unless `redirect_other_hosts`; at most `max_link_pages` pages
    /// from one source URL; never a page its chain has requested before). A next link that
    /// cannot be followed is logged, and the pages so far stand. Returns whether a next page
    /// was added (or failed as a cycle, which ends the chain): when not, the chain ended here.
    pub(super) fn follow_next(&mut self, req: &mut Request, next: &str) -> bool {
        if req.page + 1 >= self.cfg.max_link_pages {
            tracing::warn!(url = %req.url, pages = req.page + 1, "pagination stopped at fetch.max_link_pages");
            return false;
        }
        let h = &self.pool.hosts[req.host];
        let target = match resolve_reference(h, req, next) {
            Ok(t) => t,
            Err(why) => {
                let next = url::redact(next);
                tracing::warn!(url = %req.url, %next, %why, "next-page link cannot be followed");
                return false;
            }
        };
        if !same_origin(h, &target) && !self.cfg.redirect_other_hosts {
            let next = url::redact(next);
            tracing::warn!(url = %req.url, %next, "next-page link to another host not followed");
            return false;
        }
        let chain = req
            .chain
            .take()
            .unwrap_or_else(|| Chain::starting(req, &self.pool));
        let (origin, auth) = (req.origin, req.auth.clone());
        let next = NextPage {
            page: req.page + 1,
            order: req.order,
            origin,
            auth,
            chain,
        };
        self.next_page(target.to_string(), target, next);
        true
    }

    /// Adds a next page (found by `Link` or by cursor) as a new work item, unless its chain has
    /// requested it before: then the chain ends there, and the page is a failed request that
    /// says so. Pages are not tracked by the resume journal (a journal cannot be combined with
    /// pagination).
    fn next_page(&mut self, url: String, target: HttpUrl, next: NextPage) {
        let NextPage {
            page,
            order,
            origin,
            auth,
            mut chain,
        } = next;
        self.schedule.in_flight += 1;
        self.report.stats.requests += 1;
        if !chain.first_visit(&target.host, target.port, target.tls, &target.path) {
            return self.finish_failed(order, &url, "pagination cycle", &cycle(page, &url), 0);
        }
        let host = self
            .pool
            .host_for(&target.host, target.port, target.tls, &self.cfg);
        self.pool.hosts[host].queue.push_back(Request {
            url,
            seq: crate::batch::NO_SEQ,
            order,
            path: RequestPath::Own(target.path),
            host,
            failures: 0,
            stale_resends: 0,
            admitted_at: Instant::now(),
            redirects: 0,
            page,
            origin,
            auth,
            chain: Some(chain),
        });
    }

    /// Cursor pagination: takes the parse threads' replies; each cursor makes the next page of
    /// its chain a work item (the page's URL with `cursor_param` set to it), within
    /// `max_link_pages` and unless the run is stopping.
    pub(super) fn take_cursors(&mut self) {
        let Some(rx) = &self.pages.cursors else {
            return;
        };
        let mut next = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(reply) => {
                    self.pages.awaiting = self.pages.awaiting.saturating_sub(1);
                    next.push(reply);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // The parse threads are gone: no reply will come (the run is failing).
                    self.pages.awaiting = 0;
                    self.pages.parked.clear();
                    break;
                }
            }
        }
        // Stopping, replies still due are waited for as requests on the wire are, until the
        // shutdown timeout; then the chains end here (a parse thread that failed while the
        // others go on never replies, and the run would wait for it forever).
        let timed_out = self
            .schedule
            .stopping_since
            .is_some_and(|since| since.elapsed() >= self.cfg.shutdown_timeout);
        if timed_out && self.pages.awaiting > 0 {
            tracing::warn!(
                pages = self.pages.awaiting,
                "stop: cursor pages whose next cursor did not come within the shutdown timeout end their chains"
            );
            self.pages.awaiting = 0;
            self.pages.parked.clear();
        }
        for reply in next {
            // The chain ends here unless a next page follows.
            let Some(parked) = self.pages.parked.remove(&reply.chain) else {
                continue;
            };
            let order = parked.order;
            if !self.next_cursor_page(reply, parked) {
                self.end_item(order);
            }
        }
    }

    /// The next page a cursor reply names, when there is one and it may be requested. Returns
    /// whether one was added (or failed as a cycle, which ends the chain).
    fn next_cursor_page(&mut self, reply: crate::batch::CursorReply, parked: Parked) -> bool {
        let Some(cursor) = reply.cursor else {
            return false;
        };
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if reply.page + 1 >= self.cfg.max_link_pages {
            tracing::warn!(url = %reply.url, pages = reply.page + 1, "pagination stopped at fetch.max_link_pages");
            return false;
        }
        // The page's URL as shown (its password redacted): the credentials travel with the
        // chain, not in the URL.
        let url =
            crate::ingest::source::with_query_param(&reply.url, &self.cfg.cursor_param, &cursor);
        let target = match UrlParts::split(&url) {
            Ok(u) => u.into_owned(),
            Err(why) => {
                tracing::warn!(url, %why, "next page cannot be requested");
                return false;
            }
        };
        let next = NextPage {
            page: reply.page + 1,
            order: parked.order,
            origin: parked.origin,
            auth: parked.auth,
            chain: parked.chain,
        };
        self.next_page(url, target, next);
        true
    }
}

/// Why a chain stops at page `page`, which would fetch `url` again.
fn cycle(page: u32, url: &str) -> String {
    format!(
        "pagination cycle: page {page} of this chain would fetch {url} again; \
         the chain stops here (its earlier pages are kept)"
    )
}

/// Whether `target` is on host `here` (the same origin: scheme, name and port).
fn same_origin(here: &Host, target: &HttpUrl) -> bool {
    (target.host.as_str(), target.port, target.tls) == (here.name.as_str(), here.port, here.tls)
}

/// Resolves a `Location` or `Link` target against the URL of `req` (on host `here`): see
/// [`url::resolve_http`].
fn resolve_reference(
    here: &Host,
    req: &Request,
    target: &str,
) -> std::result::Result<HttpUrl, String> {
    let base = HttpUrl {
        host: here.name.clone(),
        port: here.port,
        tls: here.tls,
        path: req.path().to_string(),
    };
    url::resolve_http(&base, target)
}
