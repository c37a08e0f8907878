//! `vigil.toml` is user input: any text must give broker settings or a typed error,
//! never a panic; and settings that parse never print a secret in their `Debug`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = toml::from_str::<vigil_brokers::BrokerConfig>(text) {
        let shown = format!("{cfg:?}");
        if let Some(url) = &cfg.amqp.url
            && let Some((_, rest)) = url.split_once("://")
            && let Some((userinfo, _)) = rest.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && password.len() >= 4
        {
            assert!(!shown.contains(&format!(":{password}@")), "password printed: {shown}");
        }
    }
});
