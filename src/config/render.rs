//! Documents made from the registry: `pinflow config default`.

use super::layers::lookup;
use super::registry::{env_name, KEYS, SECTIONS};
use super::Config;

impl Config {
    /// A complete, commented configuration file: every key with its default value and a
    /// comment saying what it does, its environment variable and its flag. Keys without a
    /// default (`threads.parse`, `metrics.addr`, ...), and `out`, are shown commented out with
    /// an example. Read back, it gives [`Config::default`].
    pub fn default_toml() -> String {
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        let mut s = String::new();
        s.push_str(
            "# pinflow configuration (`pinflow config default` wrote this file).\n\
             #\n\
             # Every key is optional: a missing key keeps the default shown here. Values are\n\
             # overridden by PINFLOW_* environment variables (the key path upper-cased, `.` as `_`,\n\
             # e.g. PINFLOW_FETCH_MAX_IN_FLIGHT) and those by command-line flags. Unknown keys are\n\
             # errors. Durations are strings with a unit: \"250us\", \"2ms\", \"1.5s\", \"30s\", \"5m\",\n\
             # \"1h\". Check a file with `pinflow config check FILE`.\n",
        );
        let mut section = "";
        for key in KEYS {
            let (sec, name) = match key.path.split_once('.') {
                Some((sec, name)) => (sec, name),
                None => ("", key.path),
            };
            if sec != section {
                section = sec;
                let doc = SECTIONS
                    .iter()
                    .find(|(name, _)| *name == sec)
                    .map_or("", |(_, doc)| *doc);
                s.push('\n');
                push_comment(&mut s, doc);
                s.push_str(&format!("[{sec}]\n"));
            }
            s.push('\n');
            push_comment(&mut s, key.doc);
            let mut how = format!("Env {}", env_name(key.path));
            if !key.flag.is_empty() {
                how.push_str(&format!(", flag {}", key.flag));
            }
            push_comment(&mut s, &format!("{how}."));
            match lookup(&defaults, key.path) {
                Some(v) if key.example.is_empty() => s.push_str(&format!("{name} = {v}\n")),
                _ => s.push_str(&format!("# {name} = {}\n", key.example)),
            }
        }
        s
    }
}

fn push_comment(s: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 95 && line.len() > 1 {
            s.push_str(&line);
            s.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        s.push_str(&line);
        s.push('\n');
    }
}
