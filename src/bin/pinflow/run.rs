//! `pinflow run`: real endpoints or local files, as the flags and configuration say.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pinflow::Source;

use crate::options::{load, validated, FlagsSet, Options};
use crate::runtime::{finish, run_pipeline, Expected};
use crate::Failure;

/// Fetches `urls` (or reads `files`) into `out`; each falls back to the configuration's
/// `source`, `files` and `out`.
pub fn run(
    file: Option<&Path>,
    urls: Option<String>,
    files: Vec<String>,
    tail: Option<String>,
    out: Option<PathBuf>,
    opts: &Options,
) -> Result<ExitCode, Failure> {
    let (mut cfg, layers) = load(file, opts)?;
    let mut set = FlagsSet::new();
    if let Some(out) = out {
        cfg.out = out;
        set.push(("out", "--out"));
    } else if !layers.iter().any(|l| l.is_set("out")) {
        return Err(Failure::Usage(
            "no output file: give --out PATH, or set `out` in the --config file or \
             PINFLOW_OUT"
                .into(),
        ));
    }
    if !files.is_empty() {
        cfg.files = files;
        set.push(("files", "--files"));
    }
    if let Some(tail) = tail {
        cfg.tail = Some(tail);
        set.push(("tail", "--tail"));
    }
    // A tail: from the flag, or from the configuration when no other source is asked for.
    let other_flag = urls.is_some() || set.iter().any(|(k, _)| *k == "files");
    // Kafka (`--kafka-brokers`, or `kafka.brokers`), unless another source is asked for.
    let tail_flag = set.iter().any(|(k, _)| *k == "tail");
    // An incomplete one (brokers without topics, say) is a usage error, as no source is.
    let kafka = pinflow::ingest::kafka::KafkaSource::from_config(&cfg)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if let Some(kafka) = kafka.filter(|_| !other_flag && !tail_flag) {
        if cfg.source.is_some()
            || !cfg.files.is_empty()
            || cfg.tail.is_some()
            || cfg.listen.addr.is_some()
        {
            return Err(Failure::Usage(
                "`kafka.brokers` and `source`, `files`, `tail` or `listen.addr` are \
                 configured: give --urls, --files or --tail, or configure only one source"
                    .into(),
            ));
        }
        let cfg = validated(cfg, &layers, &set)?;
        let label = kafka.describe();
        // Without --exit-at-end it consumes until stopped: SIGTERM is its normal end.
        let expected = match cfg.kafka.exit_at_end {
            true => Expected::of(&cfg, None),
            false => Expected::of(&cfg, None).until_stopped(),
        };
        let summary = run_pipeline(cfg, Source::kafka(kafka), &label, None)?;
        return Ok(finish(&summary, &expected));
    }
    if let Some(pattern) = cfg.tail.clone().filter(|_| !other_flag) {
        if cfg.source.is_some() || !cfg.files.is_empty() || cfg.listen.addr.is_some() {
            return Err(Failure::Usage(
                "`tail` and `source`, `files` or `listen.addr` are configured: give --tail, \
                 --urls or --files, or configure only one source"
                    .into(),
            ));
        }
        let cfg = validated(cfg, &layers, &set)?;
        let source = Source::tail(&pattern)?;
        let expected = Expected::of(&cfg, None);
        let summary = run_pipeline(cfg, source, &format!("--tail {pattern}"), None)?;
        return Ok(finish(&summary, &expected));
    }
    // `--listen` (or `listen.addr`): clients post the records.
    if urls.is_none() && !set.iter().any(|(k, _)| *k == "files") {
        if let Some(listen) = pinflow::ingest::listen::ListenOptions::of(&cfg.listen) {
            if urls.is_none() && (cfg.source.is_some() || !cfg.files.is_empty()) {
                return Err(Failure::Usage(
                    "both `listen.addr` and `source` or `files` are configured: give --urls \
                     or --files to fetch or read, or configure only one source"
                        .into(),
                ));
            }
            let cfg = validated(cfg, &layers, &set)?;
            let label = format!("listen {}", listen.addr);
            // It receives until stopped: SIGTERM is its normal end (exit 0).
            let expected = Expected::of(&cfg, None).until_stopped();
            let summary = run_pipeline(cfg, Source::listen(listen), &label, None)?;
            return Ok(finish(&summary, &expected));
        }
    }
    // A flag picks the source; otherwise the configuration must name exactly one.
    let from_flag = urls.is_some() || set.iter().any(|(k, _)| *k == "files");
    let use_files = if from_flag {
        urls.is_none()
    } else if cfg.source.is_some() && !cfg.files.is_empty() {
        return Err(Failure::Usage(
            "both `source` (URLs) and `files` are configured: give --urls or --files".into(),
        ));
    } else {
        !cfg.files.is_empty()
    };
    if use_files {
        let cfg = validated(cfg, &layers, &set)?;
        let label = cfg.files.join(" ");
        let source = Source::files_in(&cfg.files, &cfg)?;
        let expected = Expected::of(&cfg, None);
        let summary = run_pipeline(cfg, source, &label, None)?;
        return Ok(finish(&summary, &expected));
    }
    let urls = match urls.or_else(|| cfg.source.clone()) {
        Some(u) => u,
        None => {
            let kafka = pinflow::ingest::kafka::KafkaSource::incomplete(&cfg)
                .map(|why| format!(" ({why})"))
                .unwrap_or_default();
            return Err(Failure::Usage(format!(
                "no work source: give --urls FILE|-|TEMPLATE or --files PATH, or set \
                 `source` or `files` in the --config file or the environment{kafka}"
            )));
        }
    };
    let cfg = validated(cfg, &layers, &set)?;
    let (source, total) = Source::from_arg_counted(&urls)?;
    let expected = Expected::of(&cfg, total);
    let summary = run_pipeline(cfg, source, &urls, total)?;
    Ok(finish(&summary, &expected))
}

/// The hint for a `--urls` value the shell split into several words (an unquoted
/// `{1..5000}`), given the whole command line; `None` when `--urls` was followed by one word.
/// Where the words are the URLs of one numeric range, the hint shows the template to quote.
pub fn split_urls_hint(args: &[String]) -> Option<String> {
    let at = args
        .iter()
        .position(|a| a == "--urls" || a.starts_with("--urls="))?;
    let (first, rest) = match args[at].strip_prefix("--urls=") {
        Some(v) => (v, &args[at + 1..]),
        None => (args.get(at + 1)?.as_str(), args.get(at + 2..)?),
    };
    let more: Vec<&str> = rest
        .iter()
        .map(String::as_str)
        .take_while(|a| !a.starts_with('-'))
        .collect();
    if more.is_empty() {
        return None;
    }
    let words: Vec<&str> = std::iter::once(first).chain(more.iter().copied()).collect();
    let quote = match range_template(&words) {
        Some(t) => format!("--urls '{t}'"),
        None => "--urls 'http://host/logs/{1..5000}.json'".into(),
    };
    Some(format!(
        "--urls takes one value, but {} more words followed `{first}` (`{}`{}): an unquoted \
         `{{A..B}}` is expanded by the shell into one word per number. Quote it, and pinflow \
         expands the range itself: {quote}. Several URLs go in a file, one per line (--urls \
         FILE, or - for standard input).",
        more.len(),
        more[0],
        if more.len() > 1 { ", ..." } else { "" },
    ))
}

/// `prefix{A..B}suffix` when `words` are that range's URLs in order (`.../1.json`,
/// `.../2.json`, ...).
fn range_template(words: &[&str]) -> Option<String> {
    let (first, last) = (words.first()?, words.last()?);
    let common = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let mut pre = words
        .iter()
        .map(|w| common(first.as_bytes(), w.as_bytes()))
        .min()?;
    // The number's own leading digits are not part of the prefix (`/1` and `/10`).
    while pre > 0 && first.as_bytes()[pre - 1].is_ascii_digit() {
        pre -= 1;
    }
    let rev = |s: &str| s.bytes().rev().collect::<Vec<u8>>();
    let mut suf = words
        .iter()
        .map(|w| common(&rev(first), &rev(w)))
        .min()?
        .min(first.len() - pre);
    while suf > 0 && first.as_bytes()[first.len() - suf].is_ascii_digit() {
        suf -= 1;
    }
    let number = |w: &str| -> Option<u64> {
        let digits = w.get(pre..w.len().checked_sub(suf)?)?;
        let n: u64 = digits.parse().ok()?;
        // `{001..100}` pads; a template does not.
        (n.to_string() == digits).then_some(n)
    };
    let start = number(first)?;
    for (i, w) in words.iter().enumerate() {
        if number(w)? != start + i as u64 {
            return None;
        }
    }
    Some(format!(
        "{}{{{start}..{}}}{}",
        &first[..pre],
        number(last)?,
        &first[first.len() - suf..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn a_shell_expanded_range_gets_the_template_to_quote() {
        let mut line = args(&["pinflow", "run", "--urls"]);
        line.extend((1..=12).map(|i| format!("http://h:8080/logs/{i}.json")));
        line.extend(args(&["--out", "x.parquet"]));
        let hint = split_urls_hint(&line).unwrap();
        assert!(
            hint.contains("11 more words")
                && hint.contains("--urls 'http://h:8080/logs/{1..12}.json'"),
            "{hint}"
        );
        let line = args(&[
            "pinflow",
            "run",
            "--urls=http://h/7",
            "http://h/8",
            "--out",
            "o",
        ]);
        assert!(split_urls_hint(&line)
            .unwrap()
            .contains("'http://h/{7..8}'"));
    }

    #[test]
    fn other_extra_words_get_the_general_hint_and_one_value_none() {
        let line = args(&["pinflow", "run", "--urls", "http://a/x", "http://b/y"]);
        let hint = split_urls_hint(&line).unwrap();
        assert!(hint.contains("'http://host/logs/{1..5000}.json'"), "{hint}");
        let padded = args(&["pinflow", "run", "--urls", "http://h/08", "http://h/09"]);
        assert!(split_urls_hint(&padded).unwrap().contains("{1..5000}"));
        let one = args(&[
            "pinflow",
            "run",
            "--urls",
            "http://h/1",
            "--out",
            "x",
            "stray",
        ]);
        assert_eq!(split_urls_hint(&one), None);
        assert_eq!(split_urls_hint(&args(&["pinflow", "run", "x"])), None);
    }
}
