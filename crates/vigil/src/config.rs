//! `vigil.toml`: one documented file for everything a process reads, unknown keys
//! refused. The broker settings (`[kafka]`, `[amqp]`, `[frames]`), and a table per
//! command (`[vehicle]`, `[worker]`, `[monitor]`, `[run]`, `[frames.gc]`…) whose keys are
//! that command's flags (`budget_ms` for `--budget-ms`): the file sets their defaults.
//! Profiles (`[profile.<name>]`, chosen with `--profile` or `VIGIL_PROFILE`) hold the same
//! tables and go over the top-level ones key by key. Environment variables override the
//! file — `VIGIL_KAFKA_<KEY>`, `VIGIL_AMQP_<KEY>`, `VIGIL_FRAMES_<KEY>` set `<table>.<key>`
//! (e.g. `VIGIL_AMQP_URL`, `VIGIL_KAFKA_BROKERS`, `VIGIL_KAFKA_TOPIC_PREFIX`) — and CLI
//! flags override both. `vigil config show` prints the result, secrets redacted.

use std::path::Path;

use anyhow::{Context, bail};
use vigil_brokers::BrokerConfig;
use vigil_core::bounded::MAX_TEXT_BYTES;

/// Where `vigil.toml` is looked for when `--config` is not given.
pub const DEFAULT_FILE: &str = "vigil.toml";

/// Parses a value from the environment as TOML (numbers, booleans), else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// The tables that are the brokers' settings; every other table is a command's.
const BROKER_TABLES: [&str; 3] = ["kafka", "amqp", "frames"];

/// The settings as they apply: the file, the chosen profile over it, the environment.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    pub table: toml::Table,
    /// Where the file was read from (`vigil.toml` when there is none).
    pub source: String,
    pub profile: Option<String>,
}

/// `over`'s keys into `base`, tables merged key by key.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The settings: the file (explicit `path`, else `./vigil.toml` if present), the profile
/// named by `VIGIL_PROFILE` in `vars`, then the other `vars`.
pub fn effective(path: Option<&Path>, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<Effective> {
    let vars: Vec<(String, String)> = vars.collect();
    let mut table = read(path)?;
    let source = path.map_or_else(|| DEFAULT_FILE.to_string(), |p| p.display().to_string());
    let profiles = table.remove("profile");
    let profile = vars.iter().find(|(k, _)| k == "VIGIL_PROFILE").map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    if let Some(name) = &profile {
        let all = match profiles {
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!("{source}: `profile` must be tables, [profile.<name>]"),
            None => {
                bail!("profile `{name}` asked for (--profile or VIGIL_PROFILE), but {source} has no [profile.*] tables")
            }
        };
        let names: Vec<&String> = all.keys().collect();
        let Some(toml::Value::Table(p)) = all.get(name) else {
            bail!("{source} has no profile `{name}` (it has: {names:?}); pass --profile with one of them");
        };
        merge(&mut table, p.clone());
    }
    for (k, v) in &vars {
        for (prefix, section) in [("VIGIL_KAFKA_", "kafka"), ("VIGIL_AMQP_", "amqp"), ("VIGIL_FRAMES_", "frames")] {
            let Some(key) = k.strip_prefix(prefix) else { continue };
            let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                bail!("`{section}` in the config file must be a table");
            };
            t.insert(key.to_ascii_lowercase(), env_value(v));
        }
    }
    Ok(Effective { table, source, profile })
}

/// The file's table: `path`, else `./vigil.toml` when present, else empty.
fn read(path: Option<&Path>) -> anyhow::Result<toml::Table> {
    Ok(match path {
        Some(p) => {
            let text = vigil_core::bounded::read_text(p, MAX_TEXT_BYTES)
                .with_context(|| format!("cannot read the config file {}", p.display()))?;
            text.parse::<toml::Table>().with_context(|| format!("{} is not valid TOML", p.display()))?
        }
        None if Path::new(DEFAULT_FILE).exists() => {
            let text = vigil_core::bounded::read_text(Path::new(DEFAULT_FILE), MAX_TEXT_BYTES)
                .with_context(|| format!("cannot read {DEFAULT_FILE}"))?;
            text.parse::<toml::Table>().with_context(|| format!("{DEFAULT_FILE} is not valid TOML"))?
        }
        None => toml::Table::new(),
    })
}

/// Loads the broker settings of [`effective`].
pub fn load(path: Option<&Path>, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<BrokerConfig> {
    let Effective { mut table, source, .. } = effective(path, vars)?;
    // A command's table holds its flags; `[frames]` holds both the store's settings and
    // `[frames.gc]`, the command's.
    table.retain(|k, _| BROKER_TABLES.contains(&k));
    if let Some(toml::Value::Table(f)) = table.get_mut("frames") {
        f.retain(|_, v| !v.is_table());
    }
    BrokerConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
        anyhow::anyhow!(
            "bad broker settings (from {source} and VIGIL_KAFKA_*/VIGIL_AMQP_*/VIGIL_FRAMES_* variables): {e}"
        )
    })
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn the_shipped_example_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vigil.example.toml");
        let c = load(Some(&p), vars(&[])).expect("example config");
        assert_eq!(c.kafka.topic_prefix, "vigil");
        assert!(c.amqp.url.is_none(), "credentials never come with the example");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("vigil-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("vigil.toml");
        std::fs::write(&p, "[kafka]\nbrokers = \"a:1\"\npartitions = 2\n").expect("write");
        let c = load(Some(&p), vars(&[("VIGIL_KAFKA_PARTITIONS", "6"), ("VIGIL_AMQP_URL", "amqp://u:p@h/v")]))
            .expect("config");
        assert_eq!(c.kafka.brokers, "a:1");
        assert_eq!(c.kafka.partitions, 6);
        assert_eq!(c.amqp.url.as_deref(), Some("amqp://u:p@h/v"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let dir = std::env::temp_dir().join(format!("vigil-cfg-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("vigil.toml");
        std::fs::write(&p, "[kafka]\nbrokerz = \"a:1\"\n").expect("write");
        let e = load(Some(&p), vars(&[])).expect_err("unknown key");
        assert!(format!("{e:#}").contains("brokerz"), "{e:#}");
        let e = load(Some(&p), vars(&[("VIGIL_AMQP_PREFETCHH", "3")])).expect_err("unknown env key");
        assert!(format!("{e:#}").contains("brokerz") || format!("{e:#}").contains("prefetchh"), "{e:#}");
    }

    #[test]
    fn a_config_file_over_the_bound_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("vigil-cfg-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("vigil.toml");
        std::fs::File::create(&p).expect("create").set_len(1 << 32).expect("sparse 4 GiB");
        let e = format!("{:#}", load(Some(&p), vars(&[])).expect_err("too big"));
        assert!(e.contains("vigil.toml") && e.contains("over the limit"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reply_trust_settings_and_a_url_file_are_read() {
        let dir = std::env::temp_dir().join(format!("vigil-cfg-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (p, key, url) = (dir.join("vigil.toml"), dir.join("reply.key"), dir.join("amqp-url"));
        std::fs::write(&key, "ab".repeat(32)).expect("write");
        std::fs::write(&url, "amqp://w:secret@h:5672/v\n").expect("write");
        let toml = format!(
            "[amqp]\nreply_publishers = [\"vigil-worker\"]\nreply_key_file = {:?}\nurl_file = {:?}\n",
            key.display().to_string(),
            url.display().to_string()
        );
        std::fs::write(&p, toml).expect("write");
        let c = load(Some(&p), vars(&[])).expect("config");
        let trust = c.amqp.reply_trust().expect("trust");
        assert_eq!(trust.publishers, vec!["vigil-worker".to_string()]);
        assert!(trust.key.is_some() && trust.authenticates());
        assert_eq!(vigil_brokers::amqp::amqp_url(&c.amqp).expect("url"), "amqp://w:secret@h:5672/v");
        std::fs::write(&key, "abcd").expect("write");
        let e = c.amqp.reply_trust().expect_err("short key").to_string();
        assert!(e.contains("reply.key") && e.contains("fewer than 32"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
