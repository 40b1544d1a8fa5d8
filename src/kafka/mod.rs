//! Kafka: the `kafka://HOST:PORT[,HOST:PORT]/TOPIC` output (feature `kafka`), and the client
//! setup it shares with the consumer-group source (`ingest::kafka`).
//!
//! - [`KafkaTarget`] is what a `kafka://` URL and the `[kafka]` options name: brokers, topic,
//!   the message key's field, librdkafka properties. Parsed in every build, so that a build
//!   without the feature refuses such an `--out` with a clear error instead of writing a file
//!   named `kafka:`.
//! - `client_config` (feature `kafka`) turns it into librdkafka's configuration (the properties passed
//!   through, never logged).
//! - `KafkaOutput` (in `output/kafka.rs`) is the writer's output for it: a
//!   `BaseProducer` polled from the writer thread itself (no async runtime, no thread of its
//!   own), idempotent, whose delivery reports settle each record: delivered, it is counted
//!   written; failed, it is a dead letter with the broker's reason.
//! - [`offsets`]: which messages of the Kafka source a batch or a file holds (the
//!   `pinflow.kafka.offsets` metadata of each Parquet file, and the per-partition ledger).

pub mod offsets;

use std::path::Path;

use crate::error::{Error, Result};

/// The URL scheme of the Kafka output.
pub const SCHEME: &str = "kafka://";

/// Where a Kafka output writes, and how.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    /// `HOST:PORT[,HOST:PORT]`: librdkafka's `bootstrap.servers`.
    pub brokers: String,
    /// The topic every record goes to.
    pub topic: String,
    /// The column whose value (as text; JSON for non-strings) is each message's key; `None`:
    /// no key (librdkafka spreads the messages over the partitions).
    pub key_field: Option<String>,
    /// librdkafka properties, passed through as given (`acks`, `compression.type`,
    /// `security.protocol`, `sasl.username`, ...). Their values are never logged.
    pub properties: Vec<(String, String)>,
    /// After a stop (SIGTERM), the output waits half of this for outstanding deliveries
    /// (`fetch.shutdown_timeout`), then dead-letters what is left.
    pub shutdown_timeout: std::time::Duration,
}

// By hand: the properties may hold secrets (`sasl.password`), so only their names show.
impl std::fmt::Debug for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaTarget")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key_field", &self.key_field)
            .field("properties", &names)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Whether `out` is a `kafka://` URL.
pub fn is_kafka_url(out: &Path) -> bool {
    out.to_str().is_some_and(|s| s.starts_with(SCHEME))
}

/// Parses `kafka://HOST:PORT[,HOST:PORT]/TOPIC` into (brokers, topic). Errors name what is
/// wrong with it, for the `out` option.
///
/// ```
/// let (brokers, topic) = pinflow::kafka::parse_url("kafka://a:9092,b:9093/logs").unwrap();
/// assert_eq!((brokers.as_str(), topic.as_str()), ("a:9092,b:9093", "logs"));
/// assert!(pinflow::kafka::parse_url("kafka://a:9092/").is_err());
/// assert!(pinflow::kafka::parse_url("kafka://a/logs").is_err());
/// ```
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let bad = |why: String| Error::config("out", format!("`{url}`: {why}"));
    let rest = url
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad(format!("does not start with {SCHEME}")))?;
    let (brokers, topic) = rest
        .split_once('/')
        .ok_or_else(|| bad("has no /TOPIC after the brokers".into()))?;
    if brokers.is_empty() {
        return Err(bad("names no broker (kafka://HOST:PORT/TOPIC)".into()));
    }
    check_brokers(brokers).map_err(bad)?;
    check_topic(topic).map_err(bad)?;
    Ok((brokers.to_string(), topic.to_string()))
}

/// Checks `HOST:PORT[,HOST:PORT]`: why it is not such a list, if it is not.
///
/// ```
/// assert!(pinflow::kafka::check_brokers("a:9092,b:9093").is_ok());
/// assert!(pinflow::kafka::check_brokers("a:9092,b").is_err());
/// ```
pub fn check_brokers(brokers: &str) -> std::result::Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("names no broker (HOST:PORT[,HOST:PORT])".into());
    }
    for b in brokers.split(',') {
        let port = b.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p > 0) {
            return Err(format!("broker `{b}` is not HOST:PORT"));
        }
    }
    Ok(())
}

/// Checks a topic name against Kafka's own rule (1 to 249 of `a-z A-Z 0-9 . _ -`).
pub fn check_topic(topic: &str) -> std::result::Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) || topic == "." {
        return Err(format!(
            "topic `{topic}` is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// The options a Kafka output is made from (the `[kafka]` table, `writer.journal`,
/// `fetch.shutdown_timeout`), as plain values: this module sits below `config`, which uses its
/// URL rule and [`FIXED_PROPERTIES`].
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// `kafka.key_field`.
    pub key_field: Option<&'a str>,
    /// `kafka.properties`, each `name=value` (checked with the configuration).
    pub properties: &'a [String],
    /// `writer.journal`: refused with a Kafka output, for now.
    pub journal: bool,
    /// Whether time windows are on (`window.size`): refused with a Kafka output, for now.
    pub windows: bool,
    /// `fetch.shutdown_timeout`.
    pub shutdown_timeout: std::time::Duration,
}

/// The Kafka output `out` asks for, if it is a `kafka://` URL: its target, with the `[kafka]`
/// options. Without the `kafka` feature such a URL is refused, naming the feature.
pub fn target(out: &Path, o: Options<'_>) -> Result<Option<KafkaTarget>> {
    let Some(url) = out.to_str().filter(|s| s.starts_with(SCHEME)) else {
        return Ok(None);
    };
    let (brokers, topic) = parse_url(url)?;
    if !cfg!(feature = "kafka") {
        return Err(Error::config(
            "out",
            format!("`{url}`: this pinflow was built without Kafka (cargo build --features kafka)"),
        ));
    }
    if o.windows {
        return Err(Error::config(
            "window.size",
            "time windows are not supported with a kafka:// output yet: write their rows to \
             Parquet",
        ));
    }
    if o.journal {
        return Err(Error::config(
            "writer.journal",
            "is not supported with a kafka:// output yet: the broker, not a journal, holds \
             what was delivered",
        ));
    }
    Ok(Some(KafkaTarget {
        brokers,
        topic,
        key_field: o.key_field.map(str::to_string),
        properties: properties_of(o.properties),
        shutdown_timeout: o.shutdown_timeout,
    }))
}

/// librdkafka's second names of its properties (its CONFIGURATION.md, "Alias for"): the alias,
/// then the property it sets. Both names set one value, so the one set last would win, but
/// rdkafka hands them to librdkafka in no set order ([`properties_of`] keeps one).
const ALIASES: [(&str, &str); 11] = [
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
];

/// The global properties whose names begin with `topic.`; any other `topic.NAME` is topic
/// property `NAME` (librdkafka strips the prefix).
const GLOBAL_TOPIC_NAMES: [&str; 6] = [
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.fast.cnt",
    "topic.metadata.refresh.sparse",
    "topic.metadata.propagation.max.ms",
    "topic.blacklist",
];

/// The property librdkafka property name `name` sets: without the `topic.` prefix of a topic
/// property (`topic.acks` is `acks`), and for an alias the name it stands for (`linger.ms`
/// sets `queue.buffering.max.ms`), without surrounding spaces.
///
/// (The topic table's `enable.auto.commit`, for the legacy `auto.commit.enable`, is not
/// among the aliases: that name sets the global property of the same name first.)
///
/// ```
/// use pinflow::kafka::property_name;
/// assert_eq!(property_name(" linger.ms"), property_name("queue.buffering.max.ms"));
/// assert_eq!(property_name("topic.acks"), property_name("request.required.acks"));
/// assert_eq!(property_name("sasl.username"), "sasl.username");
/// ```
pub fn property_name(name: &str) -> &str {
    let name = name.trim();
    let name = match name.strip_prefix("topic.") {
        Some(topic) if !GLOBAL_TOPIC_NAMES.contains(&name) => topic,
        _ => name,
    };
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, property)| property)
}

/// The properties of `kafka.properties` entries (`name=value`; others are the configuration
/// check's to refuse), one per property: of entries that set the same property, under one
/// name or an alias ([`property_name`]), the last one, where it stands.
pub fn properties_of(entries: &[String]) -> Vec<(String, String)> {
    let parsed: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.trim(), v))
        .collect();
    parsed
        .iter()
        .enumerate()
        .filter(|&(i, (n, _))| {
            !parsed[i + 1..]
                .iter()
                .any(|(later, _)| property_name(later) == property_name(n))
        })
        .map(|(_, (n, v))| (n.to_string(), v.to_string()))
        .collect()
}

/// Whether `name` sets one of [`FIXED_PROPERTIES`] (under its name or an alias).
pub fn is_fixed_property(name: &str) -> bool {
    FIXED_PROPERTIES
        .iter()
        .any(|f| property_name(f) == property_name(name))
}

/// Properties pinflow sets itself, refused in `kafka.properties`: changing them would break
/// what the output promises (every record acknowledged by all in-sync replicas, once) or
/// what the source does (the group is `kafka.group`; offsets are committed by pinflow, only
/// once the data is durable; partition ends say where `--exit-at-end` stops).
pub const FIXED_PROPERTIES: [&str; 7] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

/// Sends one of librdkafka's log lines (a client context's `log`) to `tracing`: errors and
/// warnings as such, the rest (what its `debug` property asks for) at debug level. Without
/// this they would go to the `log` crate, which nothing here reads.
#[cfg(feature = "kafka")]
pub fn log_to_tracing(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(facility, "librdkafka: {message}")
        }
        L::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        _ => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// The level librdkafka logs at: what `tracing` lets through (`RUST_LOG`, `log.level`).
/// rdkafka's own default asks the `log` crate, which has no logger here, and so would stay
/// at errors: librdkafka's warnings, and the `debug` property's lines, would never be seen.
#[cfg(feature = "kafka")]
pub fn log_level() -> rdkafka::config::RDKafkaLogLevel {
    use rdkafka::config::RDKafkaLogLevel as L;
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        f if f >= LevelFilter::DEBUG => L::Debug,
        LevelFilter::INFO => L::Info,
        LevelFilter::WARN => L::Warning,
        _ => L::Error,
    }
}

/// librdkafka's refusal of a client's configuration, for an error message: it quotes the
/// value it refused (in its text and in rdkafka's), and a value may be a secret (a misspelled
/// `sasl.pasword`), so the text names the property and never shows the value.
#[cfg(feature = "kafka")]
pub fn without_values(
    refusal: &rdkafka::error::KafkaError,
    properties: &[(String, String)],
) -> String {
    let hide = |text: &str, values: &mut dyn Iterator<Item = &str>| {
        values
            .filter(|v| !v.is_empty())
            .fold(text.to_string(), |t, v| t.replace(v, "***"))
    };
    match refusal {
        rdkafka::error::KafkaError::ClientConfig(_, text, name, value) => format!(
            "{} (property `{name}`)",
            hide(text, &mut std::iter::once(value.as_str()))
        ),
        other => {
            // (Longest first: a short value inside a longer one would leave the rest shown.)
            let mut values: Vec<&str> = properties.iter().map(|(_, v)| v.as_str()).collect();
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
            hide(&other.to_string(), &mut values.into_iter())
        }
    }
}

/// librdkafka's configuration for `t`: its properties, then the brokers and an idempotent
/// producer (`enable.idempotence=true`, which implies `acks=all` and retries that neither
/// lose nor duplicate a message).
#[cfg(feature = "kafka")]
pub fn client_config(t: &KafkaTarget) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    for (k, v) in &t.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &t.brokers)
        .set("enable.idempotence", "true")
        .set_log_level(log_level());
    c
}

/// librdkafka's client errors (a context's `error` callback: a broker down, a TLS handshake
/// refused, an authentication failure), which it retries itself and repeats at each attempt,
/// a few times a second against a broker it cannot reach. Each distinct text is logged as a
/// warning once per [`ClientErrors::QUIET`]; the last one that says more than "all brokers are
/// down" is kept, so that what then fails (a message timed out) can say why.
#[cfg(feature = "kafka")]
#[derive(Default)]
pub struct ClientErrors {
    /// When each text was last logged (cleared when it grows past 64 texts).
    logged: parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    last: parking_lot::Mutex<Option<String>>,
}

#[cfg(feature = "kafka")]
impl ClientErrors {
    /// How long the same text stays unlogged after it was logged.
    pub const QUIET: std::time::Duration = std::time::Duration::from_secs(60);

    /// Takes one error callback of client `who` ("Kafka consumer", "kafka").
    pub fn report(&self, who: &str, error: &rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::RDKafkaErrorCode as C;
        if error.rdkafka_error_code() == Some(C::PartitionEOF) {
            // Not an error: the end of a partition (the source asks for them), which the
            // source's loop takes from its poll.
            tracing::debug!("{who}: {reason}");
            return;
        }
        // librdkafka ends a repeated text with how it went this time ("(after 1ms in state
        // SSL_HANDSHAKE, 1 identical error(s) suppressed)"): the same error all the same.
        let cause = reason.rfind(" (after ").map_or(reason, |i| &reason[..i]);
        if self.first_in_a_while(&format!("{who}: {cause}"), std::time::Instant::now()) {
            tracing::warn!("{who}: {reason} ({error})");
        }
        if error.rdkafka_error_code() != Some(C::AllBrokersDown) {
            *self.last.lock() = Some(reason.to_string());
        }
    }

    /// Keeps `reason` as the last error (one found without librdkafka's error callback:
    /// the brokers' answer about a topic), without logging it.
    pub fn set_last(&self, reason: String) {
        *self.last.lock() = Some(reason);
    }

    /// The last error that names its cause (not "all brokers are down").
    pub fn last(&self) -> Option<String> {
        self.last.lock().clone()
    }

    fn first_in_a_while(&self, text: &str, now: std::time::Instant) -> bool {
        let mut logged = self.logged.lock();
        if logged
            .get(text)
            .is_some_and(|&at| now.duration_since(at) < Self::QUIET)
        {
            return false;
        }
        if logged.len() >= 64 {
            logged.clear();
        }
        logged.insert(text.to_string(), now);
        true
    }
}

/// A reference to one of a client's librdkafka queues, to see whether events wait in it.
/// rdkafka's `poll` without a wait serves at most one event a call (a log line, a statistics
/// event, a batch of delivery reports) and says "nothing" after a log line: a loop that polls
/// once a turn would serve a burst one event a turn, late, each log line stamped with the
/// time it was served. Destroyed (the reference given back) on drop.
#[cfg(feature = "kafka")]
pub(crate) struct EventQueue(std::ptr::NonNull<rdkafka::bindings::rd_kafka_queue_t>);

// SAFETY: librdkafka's queues are thread-safe (they take their own locks); this only reads
// a queue's length and gives the reference back once.
#[cfg(feature = "kafka")]
unsafe impl Send for EventQueue {}

#[cfg(feature = "kafka")]
impl EventQueue {
    /// The main queue of `client`: a producer's delivery reports, logs and statistics.
    ///
    /// # Safety
    /// `client` must be a live librdkafka handle, and this must drop before it does.
    pub(crate) unsafe fn main(client: *mut rdkafka::bindings::rd_kafka_t) -> Option<EventQueue> {
        // SAFETY: per this function's contract; the call returns a new reference.
        std::ptr::NonNull::new(unsafe { rdkafka::bindings::rd_kafka_queue_get_main(client) })
            .map(EventQueue)
    }

    /// The consumer queue of `client` (a consumer's events; rdkafka forwards the main queue
    /// to it).
    ///
    /// # Safety
    /// As for [`main`](Self::main).
    pub(crate) unsafe fn consumer(
        client: *mut rdkafka::bindings::rd_kafka_t,
    ) -> Option<EventQueue> {
        // SAFETY: per this function's contract; the call returns a new reference.
        std::ptr::NonNull::new(unsafe { rdkafka::bindings::rd_kafka_queue_get_consumer(client) })
            .map(EventQueue)
    }

    /// Whether an event waits.
    pub(crate) fn waiting(&self) -> bool {
        // SAFETY: the reference lives until this drops.
        unsafe { rdkafka::bindings::rd_kafka_queue_length(self.0.as_ptr()) > 0 }
    }
}

#[cfg(feature = "kafka")]
impl Drop for EventQueue {
    fn drop(&mut self) {
        // SAFETY: our reference, given back once.
        unsafe { rdkafka::bindings::rd_kafka_queue_destroy(self.0.as_ptr()) };
    }
}

#[cfg(all(test, feature = "kafka"))]
mod client_error_tests {
    use super::ClientErrors;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    use std::time::{Duration, Instant};

    #[test]
    fn a_repeated_error_is_logged_once_a_minute_and_the_last_cause_is_kept() {
        let e = ClientErrors::default();
        let t0 = Instant::now();
        assert!(e.first_in_a_while("a", t0));
        assert!(!e.first_in_a_while("a", t0 + Duration::from_secs(59)));
        assert!(e.first_in_a_while("b", t0 + Duration::from_secs(1)));
        assert!(e.first_in_a_while("a", t0 + ClientErrors::QUIET));
        assert_eq!(e.last(), None);
        let ssl = KafkaError::Global(C::SSL);
        e.report(
            "kafka",
            &ssl,
            "SSL handshake failed: certificate verify failed",
        );
        e.report(
            "kafka",
            &KafkaError::Global(C::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(
            e.last().as_deref(),
            Some("SSL handshake failed: certificate verify failed"),
            "all brokers down says nothing new"
        );
        e.report(
            "Kafka consumer",
            &KafkaError::Global(C::PartitionEOF),
            "end",
        );
        assert_eq!(
            e.last().as_deref(),
            Some("SSL handshake failed: certificate verify failed"),
            "the end of a partition is no error"
        );
    }
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;

    #[test]
    fn a_refused_configuration_never_shows_a_value() {
        let properties = [
            ("linger.ms".to_string(), "5".to_string()),
            ("sasl.pasword".to_string(), "hunter25".to_string()),
        ];
        let refusal = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            "No such configuration property: \"sasl.pasword\" (value \"hunter25\")".into(),
            "sasl.pasword".into(),
            "hunter25".into(),
        );
        let why = super::without_values(&refusal, &properties);
        assert!(!why.contains("hunter2"), "{why}");
        assert!(why.contains("sasl.pasword"), "{why}");
        // Any other error: every value hidden, the longest first.
        let other = KafkaError::Subscription("brokers hunter25 and 5".into());
        let why = super::without_values(&other, &properties);
        assert!(!why.contains("hunter2"), "{why}");
    }
}
