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
//!   four worker cores). On fewer than four worker cores there are no compute threads: each
//!   parse thread computes the statistics of its own batches, because a compute thread sharing
//!   a core with a parse thread only adds a queue hop and a context switch per batch.
//!
//! Threads are pinned only when each gets a core of its own. When threads outnumber cores (one
//! to three cores, or explicit thread counts), nothing is pinned and the plan says so
//! (`partial`): a pinned thread sharing its core cannot move to another core that is idle, and
//! on two cores shared with an HTTP server pinning cost a third of the request rate (113k
//! against 168k requests/s, CHANGELOG.md, measurement history). Any explicit thread counts or CPU list
//! override the defaults.

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
    /// Window thread `n` (`window.threads` > 1): the windows of its share of the keys.
    Window(usize),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Fetch => write!(f, "fetch"),
            Role::Parse(n) => write!(f, "parse-{n}"),
            Role::Compute(n) => write!(f, "compute-{n}"),
            Role::Writer => write!(f, "writer"),
            Role::Window(n) => write!(f, "window-{n}"),
        }
    }
}

/// Cores per role, as derived from the machine and the configuration.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    /// Every thread and its core (`None`: not pinned).
    pub threads: Vec<(Role, Option<usize>)>,
    /// Whether threads outnumber cores, so that nothing is pinned although pinning was asked
    /// (unless `pin_shared`: then they are pinned and share cores).
    pub partial: bool,
    /// The cores the plan was made for.
    pub cores: usize,
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

    /// The plan for a run whose writer only aggregates time windows (`windowed`): on two
    /// cores, unless `parse` is set, both cores parse. The writer then writes a few window
    /// rows, not every record, and left its shared core mostly idle: a second parse thread
    /// made the window benchmark's file run about 20 % faster (docs/performance.md, "Time
    /// windows"). With Parquet to encode it is not worth its memory (the File → Parquet
    /// comparison: the same speed, 3.5 MiB more).
    ///
    /// A run whose source is a Kafka consumer group (`kafka_source`) gets the same two parse
    /// threads on two cores: its poll loop hands over batches of messages librdkafka already
    /// fetched, and the one parse thread was the busiest (42 % of the samples) with the
    /// cores full; a second made a 1M-message read 4–7 % faster in two days' measurements
    /// (docs/performance.md, "Kafka source").
    ///
    /// With `window_threads` > 1 the plan adds that many window threads (`Role::Window`), on
    /// the parse and compute threads' cores in turn: they share those cores, as the work
    /// moves from parsing to aggregating.
    pub fn for_run(
        cfg: &ThreadConfig,
        windowed: bool,
        window_threads: usize,
        kafka_source: bool,
    ) -> ThreadPlan {
        let mut plan = ThreadPlan::for_this_machine(cfg);
        if (windowed || kafka_source) && cfg.parse.is_none() && plan.cores == 2 {
            let both = ThreadConfig {
                parse: Some(2),
                ..cfg.clone()
            };
            plan = ThreadPlan::for_this_machine(&both);
        }
        if windowed && window_threads > 1 {
            plan.add_window_threads(window_threads, cfg);
        }
        plan
    }

    /// Adds `n` window threads on the workers' cores (see [`ThreadPlan::for_run`]).
    fn add_window_threads(&mut self, n: usize, cfg: &ThreadConfig) {
        // The cores as `derive` assigned them, pinned or not.
        let mut assigned = ThreadPlan::for_this_machine(&ThreadConfig {
            pin: true,
            pin_shared: true,
            parse: Some(self.parse_threads()),
            compute: Some(self.compute_threads()),
            ..cfg.clone()
        });
        let workers: Vec<usize> = assigned
            .threads
            .iter()
            .filter(|t| matches!(t.0, Role::Parse(_) | Role::Compute(_)))
            .filter_map(|t| t.1)
            .collect();
        for i in 0..n {
            let core = workers.get(i % workers.len().max(1)).copied();
            assigned.threads.push((Role::Window(i), core));
        }
        let mut used: Vec<usize> = assigned.threads.iter().filter_map(|t| t.1).collect();
        used.sort_unstable();
        used.dedup();
        self.partial = cfg.pin && used.len() < assigned.threads.len();
        if !cfg.pin || (self.partial && !cfg.pin_shared) {
            for t in &mut assigned.threads {
                t.1 = None;
            }
        }
        self.threads = assigned.threads;
    }

    /// The plan for a given core list (exposed for tests and for `--cpus`).
    ///
    /// ```
    /// use pinflow::plan::{Role, ThreadPlan};
    /// let plan = ThreadPlan::derive(&[0, 1], &Default::default());
    /// assert_eq!(plan.compute_threads(), 0); // parse-0 computes the statistics itself
    /// assert_eq!(plan.core_of(Role::Parse(0)), None); // 3 threads on 2 cores: none pinned
    /// assert!(plan.partial);
    ///
    /// let plan = ThreadPlan::derive(&[0, 1, 2, 3], &Default::default());
    /// assert_eq!(plan.core_of(Role::Fetch), Some(0));
    /// assert_eq!(plan.core_of(Role::Writer), Some(1));
    /// assert_eq!(plan.core_of(Role::Parse(1)), Some(3));
    /// ```
    pub fn derive(cores: &[usize], cfg: &ThreadConfig) -> ThreadPlan {
        let n = cores.len().max(1);
        let (writer_core, workers): (usize, &[usize]) = match n {
            1 => (cores[0], cores),
            2 | 3 => (cores[0], &cores[1..]),
            _ => (cores[1], &cores[2..]),
        };
        let w = workers.len();
        let compute = cfg.compute.unwrap_or(if w >= 4 { w / 4 } else { 0 });
        let parse = cfg.parse.unwrap_or(if w >= 4 {
            w.saturating_sub(compute).max(1)
        } else {
            w
        });
        let mut threads = vec![(Role::Fetch, Some(cores[0]))];
        for i in 0..parse {
            threads.push((Role::Parse(i), Some(workers[i % w])));
        }
        for j in 0..compute {
            threads.push((Role::Compute(j), Some(workers[(parse + j) % w])));
        }
        threads.push((Role::Writer, Some(writer_core)));
        let mut used: Vec<usize> = threads.iter().filter_map(|t| t.1).collect();
        used.sort_unstable();
        used.dedup();
        let partial = cfg.pin && used.len() < threads.len();
        if !cfg.pin || (partial && !cfg.pin_shared) {
            for t in &mut threads {
                t.1 = None;
            }
        }
        ThreadPlan {
            threads,
            partial,
            cores: n,
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
        } else if self.partial && self.threads.iter().any(|t| t.1.is_some()) {
            s.push(format!(
                "(pinned, sharing cores: {} threads on {} cores)",
                self.threads.len(),
                self.cores
            ));
        } else if self.partial {
            s.push(format!(
                "(not pinned: {} threads on {} cores; pinned threads sharing a core could not \
                 move to an idle one)",
                self.threads.len(),
                self.cores
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
        assert_eq!((p.parse_threads(), p.compute_threads()), (1, 0));
    }

    #[test]
    fn few_cores_compute_on_the_parse_threads_and_pin_only_with_a_core_each() {
        let two = ThreadPlan::derive(&[0, 1], &ThreadConfig::default());
        assert_eq!((two.parse_threads(), two.compute_threads()), (1, 0));
        assert!(two.partial && two.threads.iter().all(|t| t.1.is_none()));
        assert!(two.describe().contains("not pinned: 3 threads on 2 cores"));
        let four = ThreadPlan::derive(&[4, 5, 6, 7], &ThreadConfig::default());
        assert_eq!((four.parse_threads(), four.compute_threads()), (2, 0));
        assert!(!four.partial, "{}", four.describe());
        let cores: Vec<Option<usize>> = four.threads.iter().map(|t| t.1).collect();
        assert_eq!(cores, [Some(4), Some(6), Some(7), Some(5)]);
        // Six cores: four workers, one of them a compute thread.
        let six = ThreadPlan::derive(&[0, 1, 2, 3, 4, 5], &ThreadConfig::default());
        assert_eq!((six.parse_threads(), six.compute_threads()), (3, 1));
        assert!(!six.partial);
        // An explicit compute thread on two cores comes on top of the one parse thread.
        let cfg = ThreadConfig {
            compute: Some(1),
            ..ThreadConfig::default()
        };
        let two = ThreadPlan::derive(&[0, 1], &cfg);
        assert_eq!((two.parse_threads(), two.compute_threads()), (1, 1));
    }

    /// Parse threads of `for_run` on `cpus`, windowed or with a Kafka source (`kafka`).
    fn parse_threads_on(
        cpus: &[usize],
        parse: Option<usize>,
        windowed: bool,
        kafka: bool,
    ) -> usize {
        let cfg = ThreadConfig {
            cpus: Some(cpus.to_vec()),
            parse,
            ..ThreadConfig::default()
        };
        ThreadPlan::for_run(&cfg, windowed, 1, kafka).parse_threads()
    }

    #[test]
    fn a_windowed_run_parses_on_both_of_two_cores_unless_told_otherwise() {
        let on = |cpus: &[usize], parse, windowed| parse_threads_on(cpus, parse, windowed, false);
        assert_eq!(on(&[0, 1], None, false), 1);
        assert_eq!(on(&[0, 1], None, true), 2);
        assert_eq!(on(&[0, 1], Some(1), true), 1);
        assert_eq!(on(&[0], None, true), 1);
        assert_eq!(
            on(&[0, 1, 2, 3], None, true),
            on(&[0, 1, 2, 3], None, false)
        );
    }

    #[test]
    fn a_kafka_source_parses_on_both_of_two_cores_unless_told_otherwise() {
        let on = |cpus: &[usize], parse| parse_threads_on(cpus, parse, false, true);
        assert_eq!(on(&[0, 1], None), 2);
        assert_eq!(on(&[0, 1], Some(1)), 1);
        assert_eq!(on(&[0], None), 1);
        assert_eq!(
            on(&[0, 1, 2, 3], None),
            parse_threads_on(&[0, 1, 2, 3], None, false, false)
        );
    }

    #[test]
    fn window_threads_go_on_the_workers_cores_in_turn() {
        let cfg = |pin_shared| ThreadConfig {
            cpus: Some((0..8).collect()),
            pin_shared,
            ..ThreadConfig::default()
        };
        let plan = ThreadPlan::for_run(&cfg(true), true, 3, false);
        let window: Vec<_> = plan
            .threads
            .iter()
            .filter(|t| matches!(t.0, Role::Window(_)))
            .collect();
        assert_eq!(window.len(), 3);
        // 8 cores: fetch 0, writer 1, workers 2..8 (parse 2..7, compute 7).
        assert_eq!(plan.core_of(Role::Window(0)), Some(2));
        assert_eq!(plan.core_of(Role::Window(2)), Some(4));
        assert!(plan.partial, "window threads share the workers' cores");
        assert_eq!(plan.core_of(Role::Fetch), Some(0));
        // Not asked to share cores: nothing is pinned, as for any plan with more threads.
        let plan = ThreadPlan::for_run(&cfg(false), true, 3, false);
        assert!(plan.threads.iter().all(|t| t.1.is_none()));
        // One window thread is the writer's: no thread added.
        let plan = ThreadPlan::for_run(&cfg(true), true, 1, false);
        assert!(!plan.threads.iter().any(|t| matches!(t.0, Role::Window(_))));
    }

    #[test]
    fn overrides_and_oversubscription() {
        let cfg = ThreadConfig {
            parse: Some(4),
            compute: Some(2),
            cpus: None,
            pin: true,
            pin_shared: false,
        };
        let p = ThreadPlan::derive(&[0, 1, 2], &cfg);
        assert_eq!((p.parse_threads(), p.compute_threads()), (4, 2));
        assert!(p.partial);
        assert!(p.threads.iter().all(|t| t.1.is_none()));
        assert!(p.describe().contains("not pinned: 8 threads on 3 cores"));
        let shared = ThreadConfig {
            pin_shared: true,
            ..cfg.clone()
        };
        let p = ThreadPlan::derive(&[0, 1, 2], &shared);
        assert_eq!(p.core_of(Role::Fetch), Some(0));
        assert_eq!(p.core_of(Role::Parse(3)), Some(2));
        assert!(p
            .describe()
            .contains("pinned, sharing cores: 8 threads on 3 cores"));
        let off = ThreadPlan::derive(&[0, 1, 2], &ThreadConfig { pin: false, ..cfg });
        assert!(off.threads.iter().all(|t| t.1.is_none()));
        assert!(off.describe().contains("pinning off"));
    }
}
