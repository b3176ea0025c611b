//! The three-node test cluster as a guard: `Cluster::up()` starts it with
//! `tests/cluster/rabbitmq-cluster.sh` in a data dir of its own and drop
//! stops it (also when the test panics). One at a time: the nodes have
//! fixed ports, so the guard holds a lock for its life.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// The nodes' AMQP URLs, in node order a, b, c.
pub(crate) const URLS: [&str; 3] = [
    "amqp://guest:guest@127.0.0.1:5681/%2f",
    "amqp://guest:guest@127.0.0.1:5682/%2f",
    "amqp://guest:guest@127.0.0.1:5683/%2f",
];

/// The three URLs as one `MQKIT_AMQP_URL` list.
pub(crate) fn url_list() -> String {
    URLS.join(",")
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running three-node cluster, stopped and removed on drop.
pub(crate) struct Cluster {
    dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

/// A node by its letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    A,
    B,
    C,
}

impl Node {
    pub(crate) const ALL: [Node; 3] = [Node::A, Node::B, Node::C];

    fn letter(self) -> &'static str {
        match self {
            Node::A => "a",
            Node::B => "b",
            Node::C => "c",
        }
    }

    /// The node's AMQP port.
    pub(crate) fn port(self) -> u16 {
        match self {
            Node::A => 5681,
            Node::B => 5682,
            Node::C => 5683,
        }
    }

    /// The node's AMQP URL.
    pub(crate) fn url(self) -> &'static str {
        URLS[self as usize]
    }

    pub(crate) fn of_port(port: u16) -> Option<Node> {
        Node::ALL.into_iter().find(|n| n.port() == port)
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cluster/rabbitmq-cluster.sh")
}

impl Cluster {
    /// Starts the cluster (about 30 s here); panics with the script's
    /// output if it cannot, after stopping whatever started.
    pub(crate) fn up() -> Cluster {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(crate::common::unique("cluster"));
        let cluster = Cluster { dir, _turn: turn };
        let started = Instant::now();
        cluster.run(&["up"]);
        println!("three-node cluster up in {:?}", started.elapsed());
        cluster
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("MQKIT_CLUSTER_DIR", &self.dir);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .output()
            .expect("bash runs tests/cluster/rabbitmq-cluster.sh");
        assert!(
            out.status.success(),
            "rabbitmq-cluster.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kill -9` of `node`.
    pub(crate) fn kill(&self, node: Node) {
        self.run(&["kill", node.letter()]);
    }

    /// `kill -STOP` of `node`.
    pub(crate) fn pause(&self, node: Node) {
        self.run(&["pause", node.letter()]);
    }

    /// `kill -CONT` of `node`.
    pub(crate) fn resume(&self, node: Node) {
        self.run(&["resume", node.letter()]);
    }

    /// Starts `node` again and waits until it runs (it rejoins).
    pub(crate) async fn start(&self, node: Node) {
        let cmd = self.command(&["start", node.letter()]);
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = cmd;
            cmd.output()
        })
        .await
        .unwrap()
        .expect("bash runs tests/cluster/rabbitmq-cluster.sh");
        assert!(
            out.status.success(),
            "starting node {node:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `rabbitmqctl -n rabbit-N@localhost ARGS --formatter json --quiet`,
    /// parsed.
    pub(crate) fn ctl_json(&self, node: Node, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["ctl", node.letter()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--formatter", "json", "--quiet"]);
        let text = self.run(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("rabbitmqctl {args:?}: {e}: {text}"))
    }

    /// How many client connections each node holds whose client-given name
    /// starts with `prefix`, by the node's AMQP port, asked of `via`.
    pub(crate) fn connections(&self, via: Node, prefix: &str) -> Vec<(Node, String)> {
        let rows = self.ctl_json(via, &["list_connections", "client_properties", "port"]);
        rows.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                // `client_properties` is a list of [name, type, value].
                let name = r["client_properties"]
                    .as_array()?
                    .iter()
                    .find(|p| p[0] == "connection_name")?[2]
                    .as_str()?;
                let port = u16::try_from(r["port"].as_u64()?).ok()?;
                (name.starts_with(prefix))
                    .then(|| Node::of_port(port).map(|n| (n, name.to_owned())))?
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}
