//! `--foxglove [HOST:]PORT`: the live view of `vigil run`, `vigil vehicle` and
//! `vigil replay` ([`vigil_bus::live`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Args;
use vigil_bus::live::LiveConfig;

#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Serve a live view to Foxglove (WebSocket protocol foxglove.sdk.v1) on
    /// [HOST:]PORT: camera, point cloud, ground truth, tracks, actions. Loopback when no
    /// host is given; port 0 picks a free one. A slow viewer never slows the drive.
    #[arg(long, value_name = "[HOST:]PORT", value_parser = parse_addr)]
    foxglove: Option<SocketAddr>,
}

impl LiveArgs {
    pub fn config(&self) -> Option<LiveConfig> {
        self.foxglove.map(LiveConfig::new)
    }
}

/// `8765` (loopback), `0.0.0.0:8765`, `[::1]:8765`.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{s}` is not [HOST:]PORT: give a port (8765, served on loopback) or an address (0.0.0.0:8765, [::1]:8765)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_served_on_loopback_and_junk_is_refused() {
        assert_eq!(parse_addr("8765").unwrap(), "127.0.0.1:8765".parse().unwrap());
        assert_eq!(parse_addr("0.0.0.0:9000").unwrap(), "0.0.0.0:9000".parse().unwrap());
        assert_eq!(parse_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        for bad in ["", "localhost", "99999", "1.2.3.4", "host:12"] {
            let e = parse_addr(bad).unwrap_err();
            assert!(e.contains("[HOST:]PORT"), "{bad}: {e}");
        }
    }
}
