//! A real Redis Cluster for the tests: three masters and three replicas on loopback.
//!
//! Six `redis-server --cluster-enabled yes` processes, each through `RedisServer` (so
//! none outlives the test process) with its own directory for `nodes.conf` and its log
//! (under cargo's `CARGO_TARGET_TMPDIR`), started in parallel; then `redis-cli --cluster create … --cluster-replicas 1
//! --cluster-yes`, and a wait until every node's `CLUSTER INFO` says
//! `cluster_state:ok`. The node timeout is short ([`NODE_TIMEOUT_MS`]) so a killed
//! master's replica takes over within seconds, except in the shared cluster
//! ([`SHARED_NODE_TIMEOUT_MS`]), where nothing is killed.
//!
//! Include next to `redis_server.rs`:
//!
//! ```ignore
//! #[path = "support/redis_server.rs"]
//! mod redis_server;
//! #[path = "support/redis_cluster.rs"]
//! mod redis_cluster;
//! ```
//!
//! `redis-cli` must be installed (Debian's `redis-tools`, a dependency of
//! `redis-server`); `REDIS_CLI` names another binary. A missing binary is a failure.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

/// `cluster-node-timeout` of a cluster that fails over: how long a node may be silent
/// before it is suspected failed.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// `cluster-node-timeout` of the [`shared`](RedisCluster::shared) cluster, which is never
/// meant to fail over: long enough that a busy machine does not make it.
pub const SHARED_NODE_TIMEOUT_MS: u64 = 2000;

/// How long the cluster may take to form (or to settle again).
const FORMING: Duration = Duration::from_secs(20);

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// Its client port.
    pub port: u16,
    /// `master` (else a replica).
    pub master: bool,
    /// Marked failed (`fail` or `fail?`).
    pub failed: bool,
    /// A replica's master id (`-` for a master).
    pub master_id: String,
    /// The slot ranges it serves (`0-5460`).
    pub slots: Vec<(u16, u16)>,
}

/// Six cluster nodes (3 masters, 3 replicas).
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// With TLS: each node's TLS port (its plain port stays open for the tests' own
    /// commands).
    tls_ports: Vec<u16>,
    dir: PathBuf,
}

/// How the nodes speak TLS: the PEM files in `dir` (`cert.pem`, `key.pem`, `ca.pem`: see
/// `support/test_ca.rs`), and `extra` arguments (ACL users) for every node.
#[derive(Clone, Copy)]
pub struct Tls<'a> {
    /// The directory of the PEM files.
    pub dir: &'a std::path::Path,
    /// More arguments for every node.
    pub extra: &'a [&'a str],
}

impl RedisCluster {
    /// Starts and forms a cluster with node timeout [`NODE_TIMEOUT_MS`], and waits until
    /// every node says `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_with(NODE_TIMEOUT_MS)
    }

    /// [`start`](Self::start) with another `cluster-node-timeout`.
    pub fn start_with(node_timeout_ms: u64) -> Self {
        Self::form(node_timeout_ms, None)
    }

    /// A cluster whose nodes also listen on a TLS port, talk TLS among themselves (bus
    /// and replication), and take `tls.extra` arguments: clients use
    /// [`tls_urls`](Self::tls_urls).
    pub fn start_tls(tls: Tls<'_>) -> Self {
        Self::form(SHARED_NODE_TIMEOUT_MS, Some(tls))
    }

    fn form(node_timeout_ms: u64, tls: Option<Tls<'_>>) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Under the target directory: the shared cluster is never dropped, so its
        // directory stays (until `cargo clean`), not in the system's temp directory.
        let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_stale(&parent);
        let dir = parent.join(format!(
            "redis-cluster-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let ports = free_ports(18);
        let tls_ports: Vec<u16> = match tls {
            Some(_) => ports[12..].to_vec(),
            None => Vec::new(),
        };
        let nodes = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..6)
                .map(|i| {
                    let node_dir = dir.join(format!("node-{i}"));
                    let mut args = node_args(&node_dir, ports[2 * i + 1], node_timeout_ms);
                    if let Some(tls) = tls {
                        args.extend(tls_args(tls, ports[12 + i]));
                    }
                    let port = ports[2 * i];
                    scope.spawn(move || start_node(&node_dir, port, &args))
                })
                .collect();
            starting
                .into_iter()
                .map(|s| s.join().expect("a node started"))
                .collect()
        });
        let cluster = Self {
            nodes,
            tls_ports,
            dir,
        };
        cluster.create();
        cluster.wait_ok(&(0..6).collect::<Vec<_>>());
        cluster.wait_agreed();
        cluster
    }

    /// Waits until every node sees three masters serving slots and three replicas,
    /// none failed (`cluster_state:ok` comes before the roles have spread by gossip).
    fn wait_agreed(&self) {
        let start = Instant::now();
        let agreed = |i: usize| {
            let seen = self.nodes_seen_by(i);
            let masters = seen.iter().filter(|n| n.master && !n.slots.is_empty());
            let replicas = seen.iter().filter(|n| !n.master && n.master_id != "-");
            seen.len() == 6
                && !seen.iter().any(|n| n.failed)
                && masters.count() == 3
                && replicas.count() == 3
        };
        while !(0..6).all(agreed) {
            assert!(
                start.elapsed() < FORMING,
                "the nodes did not agree on 3 masters and 3 replicas within {FORMING:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The cluster of this test process, started on first use (never killed into).
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| Self::start_with(SHARED_NODE_TIMEOUT_MS))
    }

    /// `redis-cli --cluster create` over the six nodes, one replica a master.
    fn create(&self) {
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = Command::new(cli())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until each of `nodes` (indexes) answers `cluster_state:ok`.
    pub fn wait_ok(&self, nodes: &[usize]) -> Duration {
        let start = Instant::now();
        while !nodes.iter().all(|&i| self.state_ok(i)) {
            assert!(
                start.elapsed() < FORMING,
                "the cluster did not reach cluster_state:ok within {FORMING:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// Whether node `i` says `cluster_state:ok`.
    pub fn state_ok(&self, i: usize) -> bool {
        self.nodes[i]
            .command(&["CLUSTER", "INFO"])
            .concat()
            .contains("cluster_state:ok")
    }

    /// The URL of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The `rediss://` URL of every node (a TLS cluster), with `credentials`
    /// (`user:password@`, or empty).
    pub fn tls_urls(&self, credentials: &str) -> Vec<String> {
        assert!(!self.tls_ports.is_empty(), "not a TLS cluster");
        self.tls_ports
            .iter()
            .map(|p| format!("rediss://{credentials}127.0.0.1:{p}"))
            .collect()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// The index of the node listening on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// `CLUSTER NODES` as node `via` sees it.
    pub fn nodes_seen_by(&self, via: usize) -> Vec<NodeInfo> {
        let text = self.nodes[via].command(&["CLUSTER", "NODES"]).concat();
        text.lines().filter_map(parse_node).collect()
    }

    /// The slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        let reply = self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]);
        reply[0].parse().expect("a slot number")
    }

    /// The index of the master serving `slot`, as node `via` sees it.
    pub fn master_of_slot(&self, slot: u16, via: usize) -> usize {
        let seen = self.nodes_seen_by(via);
        let master = seen
            .iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .unwrap_or_else(|| panic!("no master for slot {slot}: {seen:#?}"));
        self.index_of(master.port)
    }

    /// The index of the master that holds `key`.
    pub fn master_of(&self, key: &str) -> usize {
        self.master_of_slot(self.slot(key), 0)
    }

    /// The index of a replica of master `master`.
    pub fn replica_of(&self, master: usize) -> usize {
        let seen = self.nodes_seen_by(master);
        let id = &seen
            .iter()
            .find(|n| n.port == self.nodes[master].port())
            .expect("the master in its own view")
            .id;
        let replica = seen
            .iter()
            .find(|n| &n.master_id == id)
            .unwrap_or_else(|| panic!("no replica of node {master}: {seen:#?}"));
        self.index_of(replica.port)
    }

    /// Waits until `replica` has every write its master `master` has acknowledged (its
    /// replication offset caught up), so killing the master loses nothing written.
    pub fn wait_replicated(&self, master: usize, replica: usize) {
        let target = info_field(&self.nodes[master], "master_repl_offset");
        let start = Instant::now();
        while info_field(&self.nodes[replica], "slave_repl_offset") < target {
            assert!(
                start.elapsed() < FORMING,
                "replica {replica} did not catch up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether node `i` says it is a master (`ROLE`).
    pub fn is_master(&self, i: usize) -> bool {
        self.nodes[i].command(&["ROLE"]).first().map(String::as_str) == Some("master")
    }

    /// Waits (at most [`FORMING`]) until `replica` is a master and the nodes in `alive`
    /// say `cluster_state:ok`; returns how long that took.
    pub fn wait_failover(&self, replica: usize, alive: &[usize]) -> Duration {
        let start = Instant::now();
        while !self.is_master(replica) {
            assert!(
                start.elapsed() < FORMING,
                "node {replica} did not take over within {FORMING:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_ok(alive);
        start.elapsed()
    }
}

impl RedisCluster {
    /// Waits (at most [`FORMING`]) until node `i`, a master that was replaced, says it is
    /// a replica.
    pub fn wait_demoted(&self, i: usize) {
        let start = Instant::now();
        while self.is_master(i) {
            assert!(start.elapsed() < FORMING, "node {i} is still a master");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the cluster directories in `parent` left by test processes that have ended
/// (a shared cluster's: it is never dropped). Where `/proc` is missing, keeps them.
fn remove_stale(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("redis-cluster-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let ended = |pid: u32| {
            std::path::Path::new("/proc/self").exists()
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        };
        if pid.is_some_and(|pid| pid != std::process::id() && ended(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `n` distinct ports nobody listens on now (all held at once while chosen).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("its address").port())
        .collect()
}

/// A cluster node's arguments: its directory (for `nodes.conf` and its log), its
/// cluster bus port and node timeout.
fn node_args(dir: &std::path::Path, bus: u16, node_timeout_ms: u64) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &node_timeout_ms.to_string(),
        "--cluster-port",
        &bus.to_string(),
        "--dir",
        &dir,
        // A replica's first sync starts at once (not after the default 5 s wait for
        // more replicas).
        "--repl-diskless-sync-delay",
        "0",
        // The failover chatter (warnings) goes to the node's directory.
        "--logfile",
        "redis.log",
    ];
    args.iter().map(|a| a.to_string()).collect()
}

/// The TLS arguments of a node listening for TLS on `port`.
fn tls_args(tls: Tls<'_>, port: u16) -> Vec<String> {
    let file = |name: &str| tls.dir.join(name).to_string_lossy().into_owned();
    let args = [
        "--tls-port",
        &port.to_string(),
        "--tls-cluster",
        "yes",
        "--tls-replication",
        "yes",
        "--tls-cert-file",
        &file("cert.pem"),
        "--tls-key-file",
        &file("key.pem"),
        "--tls-ca-cert-file",
        &file("ca.pem"),
        "--tls-auth-clients",
        "no",
    ];
    let extra = tls.extra.iter().copied();
    args.iter()
        .map(|a| a.to_string())
        .chain(extra.map(String::from))
        .collect()
}

/// One cluster node in `dir` (created), on `port`, with `args`.
fn start_node(dir: &std::path::Path, port: u16, args: &[String]) -> RedisServer {
    std::fs::create_dir_all(dir).expect("create the node's directory");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start_with(port, &args)
}

fn cli() -> String {
    let bin = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{bin}` not found: the cluster tests need redis-cli \
         (apt-get install redis-tools; .ci/run installs it), or REDIS_CLI=/path"
    );
    bin
}

/// `name:value` of `INFO replication` on `node`, as a number (0 when absent).
fn info_field(node: &RedisServer, name: &str) -> u64 {
    let text = node.command(&["INFO", "replication"]).concat();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One line of `CLUSTER NODES`:
/// `id ip:port@bus flags master ping pong epoch link slot…`.
fn parse_node(line: &str) -> Option<NodeInfo> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let port = fields[1]
        .split('@')
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()?;
    let flags: Vec<&str> = fields[2].split(',').collect();
    let slots = fields[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        })
        .collect();
    Some(NodeInfo {
        id: fields[0].to_owned(),
        port,
        master: flags.contains(&"master"),
        failed: flags.contains(&"fail") || flags.contains(&"fail?"),
        master_id: fields[3].to_owned(),
        slots,
    })
}
