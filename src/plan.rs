//! The thread plan: which core each stage thread runs on.
//!
//! The core list is read once, before any thread is pinned (`core_affinity::get_core_ids`
//! reports only the *calling* thread's allowed cores, so asking later, from a pinned thread,
//! would see one core). Then:
//!
//! - the fetch thread takes the first core;
//! - the writer takes the second core on machines with four or more cores, otherwise it shares
//!   the fetch thread's core (both mostly wait: one on sockets, one on the queue);
//! - the remaining "worker" cores go to parse threads, one each, and to compute threads (one per
//!   four worker cores, at least one; on fewer than four worker cores they share with parsers).
//!
//! On one core nothing is pinned. Any explicit thread counts or CPU list override the defaults;
//! when threads outnumber cores the plan says so (`partial`), and still runs correctly.

use core_affinity::CoreId;

use crate::config::ThreadConfig;

/// A stage thread's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The mio I/O thread.
    Fetch,
    /// Parse thread `n`.
    Parse(usize),
    /// Compute thread `n`.
    Compute(usize),
    /// The Parquet writer.
    Writer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Fetch => write!(f, "fetch"),
            Role::Parse(n) => write!(f, "parse-{n}"),
            Role::Compute(n) => write!(f, "compute-{n}"),
            Role::Writer => write!(f, "writer"),
        }
    }
}

/// Cores per role, as derived from the machine and the configuration.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    /// Every thread and its core (`None`: not pinned).
    pub threads: Vec<(Role, Option<usize>)>,
    /// Whether some core carries more than one pinned thread, or pinning is off for lack of
    /// cores.
    pub partial: bool,
    /// Whether pinning was asked for.
    pub pin: bool,
}

impl ThreadPlan {
    /// The plan for this machine: the cores this process may run on, filtered by `cfg.cpus`.
    pub fn for_this_machine(cfg: &ThreadConfig) -> ThreadPlan {
        let mut cores: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        if let Some(wanted) = &cfg.cpus {
            cores = wanted.clone();
        }
        if cores.is_empty() {
            cores = vec![0];
        }
        ThreadPlan::derive(&cores, cfg)
    }

    /// The plan for a given core list (exposed for tests and for `--cpus`).
    ///
    /// ```
    /// use pinflow::plan::{Role, ThreadPlan};
    /// let plan = ThreadPlan::derive(&[0, 1], &Default::default());
    /// assert_eq!(plan.core_of(Role::Fetch), Some(0));
    /// assert_eq!(plan.core_of(Role::Parse(0)), Some(1));
    /// assert!(plan.partial); // compute shares core 1, writer shares core 0
    /// ```
    pub fn derive(cores: &[usize], cfg: &ThreadConfig) -> ThreadPlan {
        let n = cores.len().max(1);
        let (writer_core, workers): (usize, &[usize]) = match n {
            1 => (cores[0], cores),
            2 | 3 => (cores[0], &cores[1..]),
            _ => (cores[1], &cores[2..]),
        };
        let w = workers.len();
        let compute = cfg
            .compute
            .unwrap_or(if w >= 4 { (w / 4).max(1) } else { 1 });
        let parse = cfg.parse.unwrap_or(if w >= 4 { w - compute } else { w });
        let pin = cfg.pin && n > 1;
        let at = |core: usize| pin.then_some(core);
        let mut threads = vec![(Role::Fetch, at(cores[0]))];
        for i in 0..parse {
            threads.push((Role::Parse(i), at(workers[i % w])));
        }
        for j in 0..compute {
            threads.push((Role::Compute(j), at(workers[(parse + j) % w])));
        }
        threads.push((Role::Writer, at(writer_core)));
        let mut pinned: Vec<usize> = threads.iter().filter_map(|t| t.1).collect();
        pinned.sort_unstable();
        let before = pinned.len();
        pinned.dedup();
        let partial = (cfg.pin && n == 1) || pinned.len() < before;
        ThreadPlan {
            threads,
            partial,
            pin: cfg.pin,
        }
    }

    /// The core a role runs on, if pinned.
    pub fn core_of(&self, role: Role) -> Option<usize> {
        self.threads.iter().find(|t| t.0 == role).and_then(|t| t.1)
    }

    /// Number of parse threads.
    pub fn parse_threads(&self) -> usize {
        self.threads
            .iter()
            .filter(|t| matches!(t.0, Role::Parse(_)))
            .count()
    }

    /// Number of compute threads.
    pub fn compute_threads(&self) -> usize {
        self.threads
            .iter()
            .filter(|t| matches!(t.0, Role::Compute(_)))
            .count()
    }

    /// One line for logs: `fetch→cpu0 parse-0→cpu1 ... (partial: ...)`.
    pub fn describe(&self) -> String {
        let mut s: Vec<String> = self
            .threads
            .iter()
            .map(|(r, c)| match c {
                Some(c) => format!("{r}→cpu{c}"),
                None => format!("{r}→any"),
            })
            .collect();
        if !self.pin {
            s.push("(pinning off)".into());
        } else if self.partial {
            let n = self
                .threads
                .iter()
                .filter_map(|t| t.1)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            s.push(format!(
                "(pinning partial: {} threads on {} cores, some share a core)",
                self.threads.len(),
                n.max(1)
            ));
        }
        s.join(" ")
    }
}

/// Pins the calling thread; returns whether that worked.
pub(crate) fn pin_current(core: Option<usize>) -> bool {
    match core {
        Some(id) => core_affinity::set_for_current(CoreId { id }),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_cores_need_no_sharing() {
        let cores: Vec<usize> = (0..16).collect();
        let p = ThreadPlan::derive(&cores, &ThreadConfig::default());
        assert!(!p.partial, "{}", p.describe());
        assert_eq!((p.parse_threads(), p.compute_threads()), (11, 3));
        assert_eq!(p.core_of(Role::Writer), Some(1));
    }

    #[test]
    fn one_core_runs_unpinned() {
        let p = ThreadPlan::derive(&[3], &ThreadConfig::default());
        assert!(p.partial);
        assert!(p.threads.iter().all(|t| t.1.is_none()));
        assert_eq!((p.parse_threads(), p.compute_threads()), (1, 1));
    }

    #[test]
    fn overrides_and_oversubscription() {
        let cfg = ThreadConfig {
            parse: Some(4),
            compute: Some(2),
            cpus: None,
            pin: true,
        };
        let p = ThreadPlan::derive(&[0, 1, 2], &cfg);
        assert_eq!((p.parse_threads(), p.compute_threads()), (4, 2));
        assert!(p.partial);
        assert!(p.describe().contains("partial"));
        let off = ThreadPlan::derive(&[0, 1, 2], &ThreadConfig { pin: false, ..cfg });
        assert!(off.threads.iter().all(|t| t.1.is_none()));
        assert!(off.describe().contains("pinning off"));
    }
}
