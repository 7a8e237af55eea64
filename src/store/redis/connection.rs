//! The connection of a [`RedisStore`](super::RedisStore): one Redis node, or (feature
//! `redis-cluster`) a Redis Cluster. Both reconnect by themselves; the store bounds
//! every call with its timeout either way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{bounded, redis_error};
use crate::store::StoreError;

/// A connection to one node or to a cluster. Cheap to clone: clones share the
/// connection.
#[derive(Clone)]
pub(super) enum Connection {
    /// One Redis server: a multiplexed connection re-established in the background.
    Node(ConnectionManager),
    /// A Redis Cluster: commands routed by the slot of their key, `MOVED`/`ASK`
    /// followed, the slot map refreshed when a node fails or a replica takes over.
    #[cfg(feature = "redis-cluster")]
    Cluster(super::cluster::Cluster),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Where the revocation feed subscribes: the node, or the cluster's seed nodes in turn
/// (a cluster passes every published message to every node, so any one will do).
#[derive(Clone)]
pub(super) struct Subscribers {
    clients: Arc<[redis::Client]>,
    next: Arc<AtomicUsize>,
}

impl Subscribers {
    fn new(clients: Vec<redis::Client>) -> Self {
        Self {
            clients: clients.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A pub/sub connection, to the next node each time it is called: a feed that lost
    /// its node tries another.
    pub(super) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let client = self
            .clients
            .get(n % self.clients.len().max(1))
            .ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no node"))
            })?;
        client.get_async_pubsub().await
    }
}

/// The client of the node at `url`, trusting only `roots` (PEM) for `rediss://` when
/// given.
fn client(
    url: &str,
    #[cfg_attr(not(feature = "redis-tls"), allow(unused_variables))] roots: Option<&[u8]>,
) -> Result<redis::Client, StoreError> {
    #[cfg(feature = "redis-tls")]
    return super::tls::client(url, roots);
    #[cfg(not(feature = "redis-tls"))]
    redis::Client::open(url).map_err(|e| redis_error(&e))
}

/// Connects to the one node at `url`, trusting only `roots` (PEM) for `rediss://` when
/// given.
pub(super) async fn node(
    url: &str,
    roots: Option<&[u8]>,
    timeout: Duration,
) -> Result<(Connection, Subscribers), StoreError> {
    let client = client(url, roots)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(timeout / 2);
    let connecting = ConnectionManager::new_with_config(client.clone(), config);
    let conn = bounded(timeout, connecting).await?;
    Ok((Connection::Node(conn), Subscribers::new(vec![client])))
}

/// Connects to the cluster that `nodes` (URLs of some of its nodes) belong to: reads its
/// slot map from the first node that answers. The URLs share one scheme and one set of
/// credentials; the other nodes are found through the cluster. The revocation feed
/// subscribes to these nodes in turn.
#[cfg(feature = "redis-cluster")]
pub(super) async fn cluster(
    nodes: &[String],
    #[cfg_attr(not(feature = "redis-tls"), allow(unused_variables))] roots: Option<&[u8]>,
    timeout: Duration,
) -> Result<(Connection, Subscribers), StoreError> {
    if nodes.is_empty() {
        return Err(StoreError::Unavailable(
            "redis: a cluster needs at least one node URL".to_owned(),
        ));
    }
    let builder = super::cluster::builder(nodes, timeout);
    #[cfg(feature = "redis-tls")]
    let builder = super::tls::cluster(builder, nodes, roots)?;
    let client = builder.build().map_err(|e| redis_error(&e))?;
    let seeds = nodes
        .iter()
        .map(|url| self::client(url, roots))
        .collect::<Result<Vec<_>, _>>()?;
    let conn = super::cluster::Cluster::connect(client, timeout).await?;
    Ok((Connection::Cluster(conn), Subscribers::new(seeds)))
}
