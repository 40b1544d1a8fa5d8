//! `pinflow sim`: serves on the port it prints, and exits cleanly on SIGTERM with its stats.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sim_serves_on_its_printed_port_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pinflow"))
        .args(["sim", "--addr", "127.0.0.1:0", "--records", "500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .strip_prefix("base")
        .map(str::trim)
        .unwrap_or_else(|| panic!("first line is not the base URL: {line:?}"))
        .to_string();
    let hostport = base.strip_prefix("http://127.0.0.1:").unwrap();
    assert_ne!(hostport, "0", "the printed URL must show the real port");
    let mut logs = String::new();
    stdout.read_line(&mut logs).unwrap();
    assert!(
        logs.contains(&format!("{base}/logs/{{1..500}}.json")),
        "{logs:?}"
    );

    // One record over a raw connection.
    let mut s = TcpStream::connect(base.strip_prefix("http://").unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /logs/7.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.starts_with("{\"id\":"), "{body}");
    assert!(body.contains(" 7,\"ts\""), "{body}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pinflow sim did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
    assert!(rest.contains("served  1 requests"), "{rest}");
}
