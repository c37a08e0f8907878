//! Who may speak on a vehicle's keys: with zenoh's own mutual TLS and access control,
//! given through `ZenohConfig::config_file`, a peer without a certificate cannot join
//! and a peer with the fleet CA's certificate but not the vehicle's name cannot put a
//! command on the vehicle's control key, while the vehicle's own commands still arrive.
//! Without the file, the same forged command arrives: that is the hole this closes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Receiver;
use vigil_bus::{BusSample, ZenohBus, ZenohConfig};

const CONTROL: &str = "vigil/veh-a/control";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-zenoh-trust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed (Debian's openssl package)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA and one certificate per name (CN = name, valid for localhost).
fn pki(d: &Path, names: &[&str]) {
    let p = |f: &str| d.join(f).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let (ca_key, ca) = (p("ca.key"), p("ca.pem"));
    openssl(
        &[&["req", "-x509"][..], &ec, &["-days", "2", "-subj", "/CN=vigil-fleet-ca", "-keyout", &ca_key, "-out", &ca]]
            .concat(),
    );
    let ext = p("san.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    for name in names {
        let (key, csr, pem, subj) =
            (p(&format!("{name}.key")), p(&format!("{name}.csr")), p(&format!("{name}.pem")), format!("/CN={name}"));
        openssl(&[&["req"][..], &ec, &["-subj", &subj, "-keyout", &key, "-out", &csr]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
    }
}

/// A zenoh JSON5 file: mutual TLS with `name`'s certificate (none: trusts the CA only),
/// and `acl` as its `access_control` section.
fn zenoh_file(d: &Path, file: &str, name: Option<&str>, acl: &str) -> PathBuf {
    let p = |f: String| serde_json::to_string(&d.join(f)).unwrap();
    let mine = name.map_or(String::new(), |n| {
        let (key, pem) = (p(format!("{n}.key")), p(format!("{n}.pem")));
        format!(
            "listen_private_key: {key}, listen_certificate: {pem}, connect_private_key: {key}, connect_certificate: {pem},"
        )
    });
    let text = format!(
        "{{ transport: {{ link: {{ tls: {{ root_ca_certificate: {ca}, {mine} enable_mtls: true, verify_name_on_connect: true }} }} }}, {acl} }}",
        ca = p("ca.pem".into())
    );
    let path = d.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// What the simulator side allows: vehicle A's certificate may put on and subscribe to
/// A's keys and be told the simulator's subscriptions; everyone else, nothing.
const SIM_ACL: &str = r#"access_control: {
  enabled: true,
  default_permission: "deny",
  rules: [
    { id: "own-keys", messages: ["put", "declare_subscriber"], flows: ["ingress", "egress"], permission: "allow", key_exprs: ["vigil/veh-a/**"] },
    { id: "tell-subscriptions", messages: ["declare_subscriber"], flows: ["egress"], permission: "allow", key_exprs: ["vigil/**"] },
  ],
  subjects: [{ id: "vehicle-a", cert_common_names: ["vigil-vehicle-veh-a"] }],
  policies: [{ rules: ["own-keys", "tell-subscriptions"], subjects: ["vehicle-a"] }],
}"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn peer(config_file: Option<PathBuf>, connect: &str) -> ZenohBus {
    ZenohBus::open(&ZenohConfig { connect: vec![connect.into()], config_file, ..ZenohConfig::default() })
        .expect("a peer with the fleet CA's certificate joins")
}

/// Puts `payload` until one arrives (the subscription takes a moment to propagate).
fn put_until_heard(bus: &ZenohBus, rx: &mut Receiver<BusSample>, payload: &[u8]) {
    let p = bus.publisher().unwrap();
    let start = Instant::now();
    loop {
        p.put_blocking(CONTROL, payload.to_vec()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(s) = rx.try_recv() {
            assert_eq!(s.payload, payload);
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the vehicle's own command never arrived");
    }
}

/// Puts the forged command for a while, then counts what reached the subscriber.
fn forged_heard(bus: &ZenohBus, rx: &mut Receiver<BusSample>) -> usize {
    let p = bus.publisher().unwrap();
    for _ in 0..30 {
        p.put_blocking(CONTROL, b"forged".to_vec()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    bus.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::iter::from_fn(|| rx.try_recv().ok()).filter(|s| s.payload == b"forged").count()
}

#[test]
fn only_the_vehicles_own_certificate_can_command_it() {
    let d = dir("pki");
    pki(&d, &["vigil-sim", "vigil-vehicle-veh-a", "intruder"]);

    // Plain TCP, no file: a stranger's command is delivered. The hole.
    let port = free_port();
    let open = ZenohBus::open(&ZenohConfig { listen: vec![format!("tcp/127.0.0.1:{port}")], ..ZenohConfig::default() })
        .unwrap();
    let mut rx = open.subscribe("vigil/*/control", 64).unwrap();
    let stranger = peer(None, &format!("tcp/127.0.0.1:{port}"));
    stranger.wait_for_peers(1, Duration::from_secs(10)).unwrap();
    put_until_heard(&stranger, &mut rx, b"warm-up");
    assert!(forged_heard(&stranger, &mut rx) > 0, "without TLS and access control anyone commands the vehicle");
    drop((stranger, rx, open));

    // Mutual TLS and the access control list.
    let port = free_port();
    let endpoint = format!("tls/localhost:{port}");
    let sim_file = zenoh_file(&d, "sim.json5", Some("vigil-sim"), SIM_ACL);
    let sim = ZenohBus::open(&ZenohConfig {
        listen: vec![endpoint.clone()],
        config_file: Some(sim_file),
        max_sample_bytes: 4096,
        ..ZenohConfig::default()
    })
    .expect("the simulator's peer opens with its certificate and the ACL");
    let mut rx = sim.subscribe("vigil/*/control", 64).unwrap();

    let vehicle = peer(Some(zenoh_file(&d, "vehicle.json5", Some("vigil-vehicle-veh-a"), "")), &endpoint);
    vehicle.wait_for_peers(1, Duration::from_secs(10)).unwrap();
    put_until_heard(&vehicle, &mut rx, b"brake");

    // The fleet CA signed the intruder's certificate, but not in vehicle A's name: it
    // joins, and the simulator's peer drops every command it puts.
    let intruder = peer(Some(zenoh_file(&d, "intruder.json5", Some("intruder"), "")), &endpoint);
    intruder.wait_for_peers(1, Duration::from_secs(10)).expect("the intruder's certificate is the fleet CA's");
    assert_eq!(forged_heard(&intruder, &mut rx), 0, "a command from another certificate must not arrive");

    // No client certificate: the TLS handshake fails, so it never joins.
    let anonymous = ZenohBus::open(&ZenohConfig {
        mode: "client".into(),
        connect: vec![endpoint.clone()],
        config_file: Some(zenoh_file(&d, "anonymous.json5", None, "")),
        ..ZenohConfig::default()
    });
    assert!(anonymous.is_err(), "a peer without a client certificate must be refused");
    // Nor does plain TCP reach a TLS-only listener.
    let plain = ZenohBus::open(&ZenohConfig {
        mode: "client".into(),
        connect: vec![format!("tcp/127.0.0.1:{port}")],
        ..ZenohConfig::default()
    });
    assert!(plain.is_err(), "plain TCP must not reach the TLS listener");

    // Over TLS the vehicle's own traffic still flows, and the size limit still holds.
    let p = vehicle.publisher().unwrap();
    p.put_blocking(CONTROL, vec![7; 8192]).unwrap();
    put_until_heard(&vehicle, &mut rx, b"brake again");
    assert_eq!(sim.oversize_dropped(), 1, "the oversized sample is dropped and counted");
    assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 0, "nothing else arrived");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_zenoh_file_that_cannot_be_used_is_a_clear_error() {
    let d = dir("bad");
    let bad = d.join("bad.json5");
    std::fs::write(&bad, "{ transport: [ }").unwrap();
    for (file, says) in [(bad.clone(), "bad.json5"), (d.join("missing.json5"), "missing.json5")] {
        let e = ZenohConfig { config_file: Some(file), ..ZenohConfig::default() }.check().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(says) && msg.contains("config_file"), "{msg}");
    }
}

#[test]
fn the_deploy_examples_are_zenoh_configurations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/zenoh");
    for file in ["sim.json5", "vehicle.json5"] {
        let cfg = ZenohConfig { config_file: Some(root.join(file)), ..ZenohConfig::default() };
        cfg.check().unwrap_or_else(|e| panic!("deploy/zenoh/{file}: {e}"));
    }
}
