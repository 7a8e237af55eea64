//! Redis Cluster (feature `redis-cluster`): the redis crate's cluster connection, re-read
//! from the cluster when a node stops answering.
//!
//! The redis crate follows `MOVED`/`ASK` and re-reads the slot map when a connection
//! drops (a killed master), but a node that accepts connections and never answers (a
//! frozen or partitioned master) only times out: the crate keeps routing its slots to
//! it even after its replica has taken over. So a call that times out makes this
//! connection build a fresh one in the background (new slot map, new node
//! connections) and switch to it; at most one rebuild runs at a time, and they start at
//! most once per [`MIN_REBUILD_INTERVAL`]. Calls in flight finish on the old one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::bounded;
use crate::store::StoreError;

/// The shortest time between the starts of two rebuilds.
pub(super) const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// A connection to a cluster. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub(super) struct Cluster {
    shared: Arc<Shared>,
}

struct Shared {
    client: ClusterClient,
    conn: ArcSwap<ClusterConnection>,
    /// How long a rebuild may take (it runs in the background).
    rebuild_bound: Duration,
    rebuild: Mutex<Rebuild>,
}

#[derive(Default)]
struct Rebuild {
    running: bool,
    last_start: Option<Instant>,
}

/// The cluster client for `nodes`, its calls bounded a little inside `timeout` so that
/// the crate's own timeout (which starts a rebuild) fires before the store's.
pub(super) fn builder(nodes: &[String], timeout: Duration) -> ClusterClientBuilder {
    let inner = timeout * 4 / 5;
    ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(inner)
        .response_timeout(inner)
        .overall_response_timeout(Some(inner))
        // A call whose node fails is retried (after the slot map is re-read) within the
        // timeout: soon, and not more than twice.
        .retries(2)
        .min_retry_wait(20)
        .max_retry_wait(duration_ms(timeout / 2).max(21))
}

impl Cluster {
    /// Connects through `client`, within `timeout`.
    pub(super) async fn connect(
        client: ClusterClient,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let conn = bounded(timeout, client.get_async_connection()).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                conn: ArcSwap::from_pointee(conn),
                rebuild_bound: timeout * 4,
                rebuild: Mutex::new(Rebuild::default()),
            }),
        })
    }

    fn current(&self) -> ClusterConnection {
        (**self.shared.conn.load()).clone()
    }

    /// After a call's `result`: a timeout starts a rebuild.
    fn check<T>(&self, result: &redis::RedisResult<T>) {
        if result.as_ref().is_err_and(redis::RedisError::is_timeout) {
            self.rebuild_soon();
        }
    }

    /// Starts a rebuild in the background unless one runs or started recently.
    fn rebuild_soon(&self) {
        {
            let mut state = self
                .shared
                .rebuild
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let recent = state
                .last_start
                .is_some_and(|t| t.elapsed() < MIN_REBUILD_INTERVAL);
            if state.running || recent {
                return;
            }
            state.running = true;
            state.last_start = Some(Instant::now());
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _done = Running(&shared);
            let fresh = shared.client.get_async_connection();
            if let Ok(Ok(conn)) = tokio::time::timeout(shared.rebuild_bound, fresh).await {
                shared.conn.store(Arc::new(conn));
                tracing::debug!("redis cluster: connection rebuilt after a timeout");
            }
        });
    }
}

/// Marks the rebuild finished when dropped (also if its task is cancelled).
struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.0.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        state.running = false;
    }
}

impl ConnectionLike for Cluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut conn = self.current();
        Box::pin(async move {
            let result = conn.req_packed_command(cmd).await;
            self.check(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut conn = self.current();
        Box::pin(async move {
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.check(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// `d` in whole milliseconds (saturating).
fn duration_ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
