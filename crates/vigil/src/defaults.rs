//! A command's flags from `vigil.toml` ([`crate::config`]): `[vehicle] budget_ms = 80`
//! is `vigil vehicle --budget-ms 80` unless the command line says otherwise, and
//! `vigil config show` prints what applies, secrets redacted.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::config::Effective;

/// The tables that are not commands' (the brokers' own settings).
fn is_broker_table(name: &str) -> bool {
    matches!(name, "kafka" | "amqp")
}

/// `cmd` with the defaults of its subcommands' flags taken from `e`'s command tables.
pub fn apply(mut cmd: clap::Command, e: &Effective) -> anyhow::Result<clap::Command> {
    for (name, value) in &e.table {
        if is_broker_table(name) {
            continue;
        }
        let Some(t) = value.as_table() else {
            bail!("{}: `{name}` must be a table ([{name}])", e.source);
        };
        // `[frames]` is the frame store's settings; its tables are `vigil frames`' commands.
        let t = &if name == "frames" {
            t.iter().filter(|(_, v)| v.is_table()).map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            t.clone()
        };
        let Some(sub) = cmd.find_subcommand(name).cloned() else {
            bail!(
                "{}: [{name}] is not a command of vigil nor a broker table (kafka, amqp, frames); the commands: {}",
                e.source,
                cmd.get_subcommands().map(|c| c.get_name()).collect::<Vec<_>>().join(", ")
            );
        };
        let sub = defaults(sub, t, &format!("vigil {name}"), &e.source)?;
        cmd = cmd.mut_subcommand(name, |_| sub);
    }
    Ok(cmd)
}

/// One command's table: flags by id, and nested commands' tables (`[frames.gc]`).
fn defaults(mut cmd: clap::Command, t: &toml::Table, path: &str, source: &str) -> anyhow::Result<clap::Command> {
    for (key, value) in t {
        if let (Some(nested), Some(sub)) = (value.as_table(), cmd.find_subcommand(key).cloned()) {
            let sub = defaults(sub, nested, &format!("{path} {key}"), source)?;
            cmd = cmd.mut_subcommand(key, |_| sub);
            continue;
        }
        let flags = || {
            let mut ids: Vec<String> =
                cmd.get_arguments().filter(|a| a.get_long().is_some()).map(|a| a.get_id().to_string()).collect();
            ids.sort();
            ids.join(", ")
        };
        let known = cmd.get_arguments().any(|a| a.get_id() == key.as_str() && a.get_long().is_some());
        if !known || key == "config" || key == "profile" {
            bail!("{source}: `{key}` is not a setting of `{path}` (its settings are its flags: {})", flags());
        }
        // Leaked once per process: clap keeps defaults as 'static strings.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let values: Vec<&'static str> = match value {
            toml::Value::String(s) => vec![leak(s.clone())],
            toml::Value::Integer(i) => vec![leak(i.to_string())],
            toml::Value::Float(f) => vec![leak(f.to_string())],
            toml::Value::Boolean(b) => vec![leak(b.to_string())],
            toml::Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(leak(s.clone())),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                        Ok(leak(v.to_string()))
                    }
                    _ => bail!("{source}: `{path}` `{key}`: a list of strings, numbers or booleans"),
                })
                .collect::<anyhow::Result<_>>()?,
            _ => bail!("{source}: `{path}` `{key}` must be a string, number, boolean or list"),
        };
        cmd = cmd.mut_arg(key.as_str(), |a| a.default_values(values));
    }
    Ok(cmd)
}

/// `--config FILE` and `--profile NAME` from the command line, before it is parsed
/// (the file decides the parser's defaults).
pub fn prescan(args: &[OsString]) -> (Option<PathBuf>, Option<String>) {
    let (mut config, mut profile) = (None, None);
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy().to_string());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        match a.split_once('=') {
            Some(("--config", v)) => config = Some(PathBuf::from(v)),
            Some(("--profile", v)) => profile = Some(v.to_string()),
            _ if a == "--config" => config = it.next().map(PathBuf::from),
            _ if a == "--profile" => profile = it.next(),
            _ => {}
        }
    }
    (config, profile)
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    what: ConfigWhat,
}

#[derive(Debug, Subcommand)]
enum ConfigWhat {
    /// Print the settings that apply (file, profile, environment), secrets redacted.
    Show {
        /// The settings file (default: ./vigil.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.what {
        ConfigWhat::Show { config } => {
            let e = crate::config::effective(config.as_deref(), std::env::vars())?;
            // The brokers' part must also be valid as a whole.
            crate::config::load(config.as_deref(), std::env::vars())?;
            print!("{}", show(&e)?);
            Ok(())
        }
    }
}

/// The effective settings as TOML, with passwords in URLs and secret values hidden.
pub fn show(e: &Effective) -> anyhow::Result<String> {
    let mut t = e.table.clone();
    redact(&mut t);
    let profile = e.profile.as_deref().map_or_else(|| "none".to_string(), |p| format!("`{p}`"));
    let body = toml::to_string_pretty(&t).context("cannot print the settings")?;
    Ok(format!("# from {} (profile {profile}), then VIGIL_* variables; flags override these\n{body}", e.source))
}

fn redact(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        match v {
            toml::Value::Table(inner) => redact(inner),
            toml::Value::String(s) if vigil_brokers::config::is_secret_property(k) => *s = "<redacted>".into(),
            toml::Value::String(s) => *s = vigil_brokers::config::redact(s),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn effective(text: &str, profile: Option<&str>) -> anyhow::Result<Effective> {
        let dir = std::env::temp_dir().join(format!("vigil-defaults-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir)?;
        let p = dir.join("vigil.toml");
        std::fs::write(&p, text)?;
        let vars = profile.map(|p| ("VIGIL_PROFILE".to_string(), p.to_string())).into_iter();
        crate::config::effective(Some(&p), vars)
    }

    fn parse(e: &Effective, argv: &[&str]) -> clap::ArgMatches {
        apply(crate::Cli::command(), e).expect("defaults").try_get_matches_from(argv).expect("parse")
    }

    const FILE: &str = r#"
[kafka]
brokers = "dev:9092"
[vehicle]
budget_ms = 80.0
vehicles = 2
[frames.gc]
older_than = "3d"
[profile.fleet.kafka]
brokers = "kafka.fleet:9093"
[profile.fleet.amqp]
url = "amqps://vehicle:s3cret@rabbit.fleet:5671/vigil"
[profile.fleet.kafka.properties]
"sasl.password" = "hunter2"
[profile.fleet.vehicle]
vehicles = 4
"#;

    #[test]
    fn a_command_table_sets_its_flags_and_the_command_line_wins() {
        let e = effective(FILE, None).unwrap();
        let m = parse(&e, &["vigil", "vehicle", "--scenario", "urban-dense"]);
        let (_, v) = m.subcommand().unwrap();
        assert_eq!(v.get_one::<f64>("budget_ms"), Some(&80.0));
        assert_eq!(v.get_one::<usize>("vehicles"), Some(&2));
        let m = parse(&e, &["vigil", "vehicle", "--scenario", "urban-dense", "--vehicles", "7"]);
        assert_eq!(m.subcommand().unwrap().1.get_one::<usize>("vehicles"), Some(&7));
        // A nested command's table.
        let m = parse(&e, &["vigil", "frames", "gc"]);
        let (_, f) = m.subcommand().unwrap();
        assert!(format!("{:?}", f.subcommand().unwrap().1).contains("3d"));
        // The brokers still read the same file, command tables left out.
        let p = std::env::temp_dir().join(format!("vigil-defaults-{}-{}/vigil.toml", std::process::id(), FILE.len()));
        assert_eq!(crate::config::load(Some(&p), std::iter::empty()).unwrap().kafka.brokers, "dev:9092");
    }

    #[test]
    fn a_profile_goes_over_the_file_and_show_hides_its_secrets() {
        let e = effective(FILE, Some("fleet")).unwrap();
        let m = parse(&e, &["vigil", "vehicle", "--scenario", "urban-dense"]);
        let v = m.subcommand().unwrap().1;
        assert_eq!(v.get_one::<usize>("vehicles"), Some(&4), "the profile's");
        assert_eq!(v.get_one::<f64>("budget_ms"), Some(&80.0), "the file's, where the profile is silent");
        let shown = show(&e).unwrap();
        assert!(shown.contains("kafka.fleet:9093") && shown.contains("profile `fleet`"), "{shown}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("vehicle:***@rabbit.fleet") && shown.contains("<redacted>"), "{shown}");
        let e = effective(FILE, Some("track")).unwrap_err().to_string();
        assert!(e.contains("no profile `track`") && e.contains("fleet"), "{e}");
    }

    #[test]
    fn an_unknown_table_or_key_is_refused_naming_it() {
        let e = effective("[vehicel]\nvehicles = 2\n", None).unwrap();
        let err = apply(crate::Cli::command(), &e).unwrap_err().to_string();
        assert!(err.contains("[vehicel]") && err.contains("vehicle"), "{err}");
        let e = effective("[worker]\nbudgett_ms = 2\n", None).unwrap();
        let err = apply(crate::Cli::command(), &e).unwrap_err().to_string();
        assert!(err.contains("`budgett_ms`") && err.contains("vigil worker"), "{err}");
    }

    #[test]
    fn the_shipped_example_applies_with_each_of_its_profiles() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vigil.example.toml");
        for profile in [None, Some("dev"), Some("vehicle")] {
            let vars = profile.map(|p| ("VIGIL_PROFILE".to_string(), p.to_string())).into_iter();
            let e = crate::config::effective(Some(&p), vars).unwrap();
            let m = parse(&e, &["vigil", "worker"]);
            assert_eq!(m.subcommand().unwrap().1.get_one::<usize>("workers"), Some(&2), "{profile:?}");
        }
    }

    #[test]
    fn config_and_profile_are_found_before_parsing() {
        let argv: Vec<OsString> =
            ["vigil", "vehicle", "--config", "a.toml", "--profile=fleet"].iter().map(OsString::from).collect();
        assert_eq!(prescan(&argv), (Some(PathBuf::from("a.toml")), Some("fleet".to_string())));
    }
}
