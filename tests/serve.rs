//! `ecgwgpu serve`: the web page's files over HTTP on the loopback, with the types a browser
//! needs for wasm, and nothing outside its folder.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn get(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_gives_the_pages_files_and_nothing_outside_its_folder() {
    let dir = std::env::temp_dir().join(format!("ecgwgpu-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><p>hi</p>").unwrap();
    std::fs::write(dir.join("pkg/engine.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.parent().unwrap().join("secret.txt"), "no").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["serve", "--port", "0", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving DIR at http://127.0.0.1:PORT/ (...)"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let index = get(&addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(
        index.contains("text/html") && index.ends_with("<p>hi</p>"),
        "{index}"
    );
    let wasm = get(&addr, "GET /pkg/engine.wasm?v=1 HTTP/1.1\r\n\r\n");
    assert!(wasm.contains("Content-Type: application/wasm"), "{wasm}");
    for outside in ["/../secret.txt", "/pkg/../../secret.txt", "/missing.js"] {
        let r = get(&addr, &format!("GET {outside} HTTP/1.1\r\n\r\n"));
        assert!(r.starts_with("HTTP/1.1 404"), "{outside}: {r}");
    }
    let post = get(&addr, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    child.kill().unwrap();
    child.wait().unwrap();

    // a folder without the built page is refused, naming what to run
    let empty = dir.join("pkg");
    let out = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["serve", "--port", "0", "--dir"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tools/web/build.sh"));
}
