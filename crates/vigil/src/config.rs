//! `vigil.toml`: one documented file for the broker settings (`[kafka]`, `[amqp]`,
//! `[frames]`), unknown keys refused. Environment variables override the file —
//! `VIGIL_KAFKA_<KEY>`, `VIGIL_AMQP_<KEY>`, `VIGIL_FRAMES_<KEY>` set `<table>.<key>`
//! (e.g. `VIGIL_AMQP_URL`, `VIGIL_KAFKA_BROKERS`, `VIGIL_KAFKA_TOPIC_PREFIX`) — and CLI
//! flags override both.

use std::path::Path;

use anyhow::{Context, bail};
use vigil_brokers::BrokerConfig;

/// Where `vigil.toml` is looked for when `--config` is not given.
pub const DEFAULT_FILE: &str = "vigil.toml";

/// Parses a value from the environment as TOML (numbers, booleans), else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// Loads the broker settings: the file (explicit `path`, else `./vigil.toml` if present),
/// then the environment `vars`.
pub fn load(path: Option<&Path>, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<BrokerConfig> {
    let mut table = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("cannot read the config file {}", p.display()))?;
            text.parse::<toml::Table>().with_context(|| format!("{} is not valid TOML", p.display()))?
        }
        None if Path::new(DEFAULT_FILE).exists() => {
            let text = std::fs::read_to_string(DEFAULT_FILE).with_context(|| format!("cannot read {DEFAULT_FILE}"))?;
            text.parse::<toml::Table>().with_context(|| format!("{DEFAULT_FILE} is not valid TOML"))?
        }
        None => toml::Table::new(),
    };
    for (k, v) in vars {
        for (prefix, section) in [("VIGIL_KAFKA_", "kafka"), ("VIGIL_AMQP_", "amqp"), ("VIGIL_FRAMES_", "frames")] {
            let Some(key) = k.strip_prefix(prefix) else { continue };
            let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                bail!("`{section}` in the config file must be a table");
            };
            t.insert(key.to_ascii_lowercase(), env_value(&v));
        }
    }
    let source = path.map_or_else(|| DEFAULT_FILE.to_string(), |p| p.display().to_string());
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
}
