//! The S3 client both object-storage ends share: the `--out s3://` output (`output::s3`,
//! its uploader thread) and the `--files s3://` reader (`ingest::files`).
//!
//! - [`S3Settings`]: how to reach the store, from `[output.s3]` and the `AWS_*` variables the
//!   way AWS tools read them.
//! - [`agent`]: the blocking ureq agent (timeouts, and for `https://` rustls checked against
//!   Mozilla's roots or `output.s3.ca_file`).
//! - [`response`]: what an answer means: success, a failure a retry may fix (5xx, `SlowDown`,
//!   dropped connections), or one it cannot (403, 404), with the store's error code and
//!   message; the jitter between retries.
//!
//! No async runtime: rusty-s3 signs each request as a presigned URL (SigV4, sans-I/O) and
//! ureq sends it on the calling thread.

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use rusty_s3::Credentials;

use crate::config::{S3Config, S3_MIN_PART_SIZE};
use crate::error::{Error, Result};

pub(crate) mod response;

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The test knob that lowers the part minimum: its value becomes the part size, whatever
/// `output.s3.part_size` says (the variable moto's server reads to lower its own minimum).
pub const TEST_PART_SIZE_ENV: &str = "S3_UPLOAD_PART_MIN_SIZE";

/// The environment variables of the first object-storage release, now `[output.s3]` keys.
const RETIRED_VARIABLES: [(&str, &str); 5] = [
    ("S3_STAGING_DIR", "staging_dir"),
    ("S3_STAGING_MAX_BYTES", "staging_max_bytes"),
    ("S3_PART_SIZE", "part_size"),
    ("S3_ATTEMPTS", "attempts"),
    ("S3_PATH_STYLE", "path_style"),
];

/// Refuses the `S3_*` variables pinflow no longer reads, naming the key that replaced each:
/// ignoring one silently could stage files elsewhere, or in parts S3 refuses.
pub fn refuse_retired_variables(env: impl Fn(&str) -> Option<String>) -> Result<()> {
    for (var, key) in RETIRED_VARIABLES {
        if env(var).is_some() {
            return Err(Error::config(
                var,
                format!(
                    "is no longer read: set `{key}` in [output.s3], or {}",
                    crate::config::env_name(&format!("output.s3.{key}"))
                ),
            ));
        }
    }
    Ok(())
}

/// How to reach the store: `[output.s3]`, then the environment the way AWS tools read it.
#[derive(Clone)]
pub struct S3Settings {
    /// `output.s3.endpoint`, or `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`; default
    /// `https://s3.REGION.amazonaws.com`.
    pub endpoint: url::Url,
    /// `output.s3.region`, or `AWS_REGION`, `AWS_DEFAULT_REGION`; default `us-east-1`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub credentials: Option<Credentials>,
    /// Path-style addressing (`endpoint/bucket/key`): when the endpoint is an IP address or
    /// `localhost`, or `output.s3.path_style`; virtual-host style otherwise.
    pub path_style: bool,
    /// The size of a multipart upload's parts, and the size from which a file is uploaded in
    /// parts (`output.s3.part_size`).
    pub part_size: u64,
    /// The most bytes staged before the writer waits (`output.s3.staging_max_bytes`).
    pub staging_max_bytes: u64,
    /// Attempts per request before a transient failure fails the run.
    pub attempts: u32,
}

impl std::fmt::Debug for S3Settings {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("staging_max_bytes", &self.staging_max_bytes)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// The settings of `cfg`, the rest from `env` (a lookup such as `std::env::var`).
    pub fn new(cfg: &S3Config, env: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
        refuse_retired_variables(&env)?;
        let region = cfg
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let (endpoint, from) = match &cfg.endpoint {
            Some(e) => (e.clone(), "output.s3.endpoint"),
            None => match env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
                Some(e) => (e, "AWS_ENDPOINT_URL"),
                None => (
                    format!("https://s3.{region}.amazonaws.com"),
                    "output.s3.region",
                ),
            },
        };
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| Error::config(from, format!("`{endpoint}`: {e}")))?;
        let host_is_ip = matches!(
            endpoint.host(),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
        ) || endpoint.host_str() == Some("localhost");
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some(match env("AWS_SESSION_TOKEN") {
                Some(t) => Credentials::new_with_token(k, s, t),
                None => Credentials::new(k, s),
            }),
            _ => None,
        };
        let mut part_size = cfg.part_size;
        if let Some(v) = env(TEST_PART_SIZE_ENV) {
            part_size = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::config(TEST_PART_SIZE_ENV, format!("`{v}` is not a size in bytes"))
            })?;
            tracing::warn!(
                part_size,
                "{TEST_PART_SIZE_ENV} is set (a test knob): parts of this size, below S3's minimum"
            );
        } else if part_size < S3_MIN_PART_SIZE {
            // The registry's check says the same; this is the library's own guard.
            return Err(Error::config(
                "output.s3.part_size",
                format!("must be at least {S3_MIN_PART_SIZE} (5 MiB, S3's smallest part), got {part_size}"),
            ));
        }
        Ok(S3Settings {
            endpoint,
            region,
            credentials,
            path_style: host_is_ip || cfg.path_style,
            part_size,
            staging_max_bytes: cfg.staging_max_bytes,
            attempts: cfg.attempts.clamp(1, 1000),
        })
    }

    /// The part size for a file of `size` bytes: `part_size`, or more when the file would
    /// need more than 10,000 parts.
    pub fn part_size_for(&self, size: u64) -> u64 {
        self.part_size.max(size.div_ceil(MAX_PARTS))
    }
}
/// The HTTP client of the S3 output and reader: blocking ureq with the timeouts of docs/object-storage.md, and
/// for `https://` the TLS stack the fetcher has (see [`tls_config`]). Without the `tls`
/// feature an `https://` endpoint is refused here, before anything is staged.
pub(crate) fn agent(settings: &S3Settings, cfg: &S3Config) -> Result<ureq::Agent> {
    // Keep a connection for each request that may be under way at once.
    let idle = (cfg.upload_concurrency as usize).clamp(3, 64);
    let builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(idle)
        .max_idle_connections(idle.max(10))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_global(Some(Duration::from_secs(600)))
        .user_agent(concat!("pinflow/", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "tls")]
    let builder = builder.tls_config(tls_config(cfg)?);
    #[cfg(not(feature = "tls"))]
    {
        let _ = cfg;
        if settings.endpoint.scheme() == "https" {
            return Err(Error::config(
                "output.s3.endpoint",
                "https:// object stores need the `tls` cargo feature; use an http:// endpoint",
            ));
        }
    }
    #[cfg(feature = "tls")]
    let _ = settings;
    Ok(builder.build().into())
}

/// rustls with the ring provider the fetcher uses, checking the store's certificate against
/// Mozilla's roots or the CAs of `output.s3.ca_file`.
#[cfg(feature = "tls")]
fn tls_config(cfg: &S3Config) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
    let roots = match &cfg.ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let key = "output.s3.ca_file";
            let pem = std::fs::read(path)
                .map_err(|e| Error::config(key, format!("{}: {e}", path.display())))?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::config(
                    key,
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            RootCerts::new_with_certs(&certs)
        }
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cfg: &S3Config, vars: &[(&str, &str)]) -> Result<S3Settings> {
        S3Settings::new(cfg, |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn parts_stay_within_ten_thousand() {
        let s = settings(&S3Config::default(), &[]).unwrap();
        assert_eq!(s.part_size_for(1 << 20), 8 << 20);
        let huge = 200u64 << 30;
        assert!(huge.div_ceil(s.part_size_for(huge)) <= MAX_PARTS);
    }

    #[test]
    fn parts_under_five_mib_are_refused_unless_the_test_knob_asks() {
        let small = S3Config {
            part_size: 1 << 20,
            ..S3Config::default()
        };
        let e = settings(&small, &[]).unwrap_err().to_string();
        assert!(
            e.contains("output.s3.part_size") && e.contains("5 MiB"),
            "{e}"
        );
        let s = settings(&small, &[(TEST_PART_SIZE_ENV, "65536")]).unwrap();
        assert_eq!(s.part_size, 65536);
    }

    #[test]
    fn the_retired_variables_are_refused_naming_their_keys() {
        let e = settings(&S3Config::default(), &[("S3_STAGING_DIR", "/x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("S3_STAGING_DIR") && e.contains("PINFLOW_OUTPUT_S3_STAGING_DIR"),
            "{e}"
        );
    }

    #[test]
    fn the_table_wins_over_the_aws_variables_and_an_ip_endpoint_is_path_style() {
        let vars = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ];
        let s = settings(&S3Config::default(), &vars).unwrap();
        assert!(s.path_style);
        assert_eq!(s.region, "eu-west-1");
        assert!(!format!("{s:?}").contains("very-secret"));
        let cfg = S3Config {
            endpoint: Some("http://store.example:9000".into()),
            region: Some("ap-south-1".into()),
            ..S3Config::default()
        };
        let s = settings(&cfg, &vars).unwrap();
        assert_eq!(s.endpoint.host_str(), Some("store.example"));
        assert_eq!(s.region, "ap-south-1");
        assert!(!s.path_style);
        let cfg = S3Config {
            path_style: true,
            ..cfg
        };
        assert!(settings(&cfg, &vars).unwrap().path_style);
    }
}
