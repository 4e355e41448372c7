//! `ecgwgpu serve`: the built web page (`tools/web/build.sh` → `web/dist`) on a local port. A
//! page that loads wasm needs HTTP, not `file://`; any static file server does, and this one
//! needs nothing installed. Loopback only, GET and HEAD, files under the folder only.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The built page (`bash tools/web/build.sh` writes it).
    #[arg(long, default_value = "web/dist")]
    dir: PathBuf,
    /// Port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if !args.dir.join("index.html").is_file() {
        return Err(Error::data(
            &args.dir,
            "index.html",
            "missing: build the page first (bash tools/web/build.sh)",
        ));
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .map_err(|e| Error::Config(format!("127.0.0.1:{}: {e}", args.port)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Config(e.to_string()))?;
    println!(
        "serving {} at http://{addr}/ (Ctrl-C stops)",
        args.dir.display()
    );
    std::io::stdout().flush().ok();
    for stream in listener.incoming().flatten() {
        let dir = args.dir.clone();
        // one thread per connection: the page fetches its records in parallel
        std::thread::spawn(move || {
            if let Err(e) = respond(stream, &dir) {
                eprintln!("warning: {e}");
            }
        });
    }
    Ok(())
}

fn respond(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // the headers are not needed; read them off
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut out = stream;
    if method != "GET" && method != "HEAD" {
        return reply(
            &mut out,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            true,
        );
    }
    let Some(path) = resolve(dir, target) else {
        return reply(
            &mut out,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            true,
        );
    };
    match std::fs::read(&path) {
        Ok(body) => reply(&mut out, "200 OK", mime(&path), &body, method == "GET"),
        Err(_) => reply(
            &mut out,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            true,
        ),
    }
}

/// The file under `dir` that a request target names (`/` is `index.html`); `None` for anything
/// that would leave the folder.
fn resolve(dir: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let relative = Path::new(path);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = dir.join(relative);
    full.is_file().then_some(full)
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        // WebAssembly.instantiateStreaming insists on this type
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "hea" | "txt" | "csv" => "text/plain; charset=utf-8",
        "" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn reply(
    out: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if with_body {
        out.write_all(body)?;
    }
    out.flush()
}
