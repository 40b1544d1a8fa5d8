//! Requests that come from responses: the next page (by `Link: rel="next"` or by cursor) and
//! redirects, with the resolution of the references they carry.
//!
//! A next page is a new work item (its own request, counted in flight, under its own URL,
//! carrying its source item's position); a redirect is the same work item sent again to the
//! new location, reported under its original URL. Both stay on the same host unless
//! `fetch.redirect_other_hosts`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::event_loop::Fetcher;
use super::pool::Host;
use super::schedule::{Request, RequestPath};
use crate::ingest::source::HttpUrl;

/// Cursor pagination's state: the parse threads' replies and how many are still to come.
pub(super) struct Pagination {
    /// The parse threads' [`CursorReply`](crate::batch::CursorReply) for every page body,
    /// when `fetch.cursor_field` is set.
    pub(super) cursors: Option<Receiver<crate::batch::CursorReply>>,
    /// Page bodies delivered with cursor pagination on whose reply has not come back: while any
    /// is out, a next page may still appear, so the pass is not over.
    pub(super) awaiting: usize,
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
            return self.finish_failed(&req.url, class, &detail, attempts);
        };
        if req.redirects >= self.cfg.max_redirects {
            let detail = format!(
                "more than {} redirects (last to {location})",
                self.cfg.max_redirects
            );
            return self.finish_failed(&req.url, class, &detail, attempts);
        }
        let here = &self.pool.hosts[req.host];
        let (host_name, port, tls) = (here.name.clone(), here.port, here.tls);
        let target = match resolve_reference(here, &req, &location) {
            Ok(t) => t,
            Err(why) => {
                let detail = format!("redirect to `{location}` cannot be followed: {why}");
                return self.finish_failed(&req.url, class, &detail, attempts);
            }
        };
        if (target.host != host_name || target.port != port || target.tls != tls)
            && !self.cfg.redirect_other_hosts
        {
            let detail = format!(
                "redirect to another host refused ({location}); set fetch.redirect_other_hosts"
            );
            return self.finish_failed(&req.url, class, &detail, attempts);
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
    /// from one source URL). A next link that cannot be followed is logged, and the pages so
    /// far stand.
    pub(super) fn follow_next(&mut self, req: &Request, next: &str) {
        if req.page + 1 >= self.cfg.max_link_pages {
            tracing::warn!(url = %req.url, pages = req.page + 1, "pagination stopped at fetch.max_link_pages");
            return;
        }
        let h = &self.pool.hosts[req.host];
        let target = match resolve_reference(h, req, next) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(url = %req.url, next, %why, "next-page link cannot be followed");
                return;
            }
        };
        if (&target.host, target.port, target.tls) != (&h.name, h.port, h.tls)
            && !self.cfg.redirect_other_hosts
        {
            tracing::warn!(url = %req.url, next, "next-page link to another host not followed");
            return;
        }
        self.enqueue_page(target.to_string(), target, req.page + 1);
    }

    /// Adds a next page (found by `Link` or by cursor) as a new work item. Pages are not
    /// tracked by the resume journal (a journal cannot be combined with pagination).
    fn enqueue_page(&mut self, url: String, target: HttpUrl, page: u32) {
        let host = self
            .pool
            .host_for(&target.host, target.port, target.tls, &self.cfg);
        self.schedule.in_flight += 1;
        self.report.stats.requests += 1;
        self.pool.hosts[host].queue.push_back(Request {
            url,
            seq: crate::batch::NO_SEQ,
            path: RequestPath::Own(target.path),
            host,
            failures: 0,
            stale_resends: 0,
            admitted_at: Instant::now(),
            redirects: 0,
            page,
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
                    break;
                }
            }
        }
        for reply in next {
            let Some(cursor) = reply.cursor else { continue };
            if self.stop.load(Ordering::Relaxed) {
                continue;
            }
            if reply.page + 1 >= self.cfg.max_link_pages {
                tracing::warn!(url = %reply.url, pages = reply.page + 1, "pagination stopped at fetch.max_link_pages");
                continue;
            }
            let url = crate::ingest::source::with_query_param(
                &reply.url,
                &self.cfg.cursor_param,
                &cursor,
            );
            if url == reply.url {
                tracing::warn!(url = %reply.url, cursor, "the next cursor repeats this page's; pagination stopped");
                continue;
            }
            let target = match HttpUrl::parse(&url) {
                Ok(t) => t,
                Err(why) => {
                    tracing::warn!(url, %why, "next page cannot be requested");
                    continue;
                }
            };
            self.enqueue_page(url, target, reply.page + 1);
        }
    }
}

/// Resolves a `Location` or `Link` target against the request's URL (on host `here`):
/// absolute, root-relative or relative to the path's directory.
fn resolve_reference(
    here: &Host,
    req: &Request,
    target: &str,
) -> std::result::Result<HttpUrl, String> {
    let (host, port, tls) = (here.name.clone(), here.port, here.tls);
    if target.starts_with('/') {
        Ok(HttpUrl {
            host,
            port,
            tls,
            path: target.to_string(),
        })
    } else if target.contains("://") {
        HttpUrl::parse(target)
    } else {
        let dir = req.path().rsplit_once('/').map_or("", |(d, _)| d);
        Ok(HttpUrl {
            host,
            port,
            tls,
            path: format!("{dir}/{target}"),
        })
    }
}
