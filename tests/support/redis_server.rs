//! A real `redis-server` for the tests, on a free loopback port.
//!
//! The server runs under a small `sh` wrapper that holds a pipe from the test process:
//! when the test process ends, however it ends, the pipe closes and the wrapper kills
//! the server, so no server outlives its tests.
//!
//! `redis-server` must be installed (`.ci/run` installs it); a missing binary is a
//! failure, never a skipped test. `REDIS_SERVER` names another binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One `redis-server` process (restartable on the same port).
pub struct RedisServer {
    port: u16,
    /// How it listens: `--port P`, or TLS only (`--port 0 --tls-port P …`), and more.
    args: Vec<String>,
    /// TLS only: there is no plain port to PING.
    tls: bool,
    running: Mutex<Option<Running>>,
}

struct Running {
    wrapper: Child,
    stdin: ChildStdin,
    pid: u32,
}

/// The defaults come first: a caller's arguments (`"$@"`) override them.
const WRAPPER: &str = r#"
"$0" --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
     --loglevel warning --logfile '' "$@" >&2 &
pid=$!
echo "$pid"
read _ignored
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
"#;

fn binary() -> String {
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{bin}` not found: the Redis tests need a real redis-server \
         (apt-get install redis-server; .ci/run installs it), or REDIS_SERVER=/path"
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Whether a server answers PING on `port`.
fn pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        Self::launch(port, vec!["--port".to_owned(), port.to_string()], false)
    }

    /// Starts a server that speaks TLS only, with the certificate and key in `dir`
    /// (`cert.pem`, `key.pem`, its CA in `ca.pem`: see `support/test_ca.rs`), clients
    /// not asked for certificates, and `extra` arguments (e.g. ACL users:
    /// `["--user", "alice", "on", ">pw", "~*", "&*", "+@all"]`). Ready once its TLS port
    /// accepts connections. [`command`](Self::command) does not speak TLS.
    pub fn start_tls(dir: &std::path::Path, extra: &[&str]) -> Self {
        let port = free_port();
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &file("cert.pem"),
            "--tls-key-file",
            &file("key.pem"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::launch(port, args, true)
    }

    /// Starts a plain server on `port` with `extra` arguments (e.g. a cluster node's
    /// `--cluster-enabled yes --dir …`) and waits until it answers PING.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        let mut args = vec!["--port".to_owned(), port.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::launch(port, args, false)
    }

    fn launch(port: u16, args: Vec<String>, tls: bool) -> Self {
        let server = Self {
            port,
            args,
            tls,
            running: Mutex::new(None),
        };
        server.restart();
        server
    }

    /// The server of this test process, started on first use.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits until the port is
    /// closed.
    pub fn kill(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(Running {
            mut wrapper, stdin, ..
        }) = running
        {
            drop(stdin);
            let _ = wrapper.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// (Re)starts the server on the same port, empty, and waits until it answers.
    pub fn restart(&self) {
        self.kill();
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(binary())
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("could not start sh");
        let stdin = wrapper.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the wrapper's pid line");
        let pid = line.trim().parse().expect("a pid");
        *self.running.lock().unwrap() = Some(Running {
            wrapper,
            stdin,
            pid,
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Answers PING, or (TLS only) accepts connections.
    fn ready(&self) -> bool {
        match self.tls {
            false => pong(self.port),
            true => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: a Redis that accepts
    /// connections but never answers.
    pub fn freeze(&self, frozen: bool) {
        let pid = self
            .running
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r.pid)
            .expect("the server is not running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid} failed");
    }

    /// Runs a command with `redis-cli`-free raw RESP and returns the reply line(s), for
    /// inspecting keys: `["KEYS", "prefix:*"]`.
    pub fn command(&self, args: &[&str]) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        read_reply(&mut BufReader::new(s))
    }
}

/// Reads one RESP2 reply, flattened to strings.
fn read_reply(r: &mut impl BufRead) -> Vec<String> {
    let mut line = String::new();
    r.read_line(&mut line).expect("a reply");
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | "-" | ":" => vec![rest.to_owned()],
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return vec![];
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).unwrap();
            buf.truncate(n as usize);
            vec![String::from_utf8_lossy(&buf).into_owned()]
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            (0..n.max(0)).flat_map(|_| read_reply(r)).collect()
        }
        other => panic!("unexpected RESP reply kind {other:?}"),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(Running {
                mut wrapper, stdin, ..
            }) = running.take()
            {
                drop(stdin);
                let _ = wrapper.wait();
            }
        }
    }
}

/// A key prefix no other test (or earlier run) uses: `<suite>-<what>-<pid>-<n>-<nanos>`.
pub fn unique_prefix(suite: &str, what: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::UNIX_EPOCH
        .elapsed()
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!("{suite}-{what}-{}-{n}-{nanos}", std::process::id())
}
