//! A router served on a loopback port for the length of a test.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::task::JoinHandle;

/// A router served on a port of its own; it stops when dropped.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on `bind` (such as `127.0.0.1:0`).
pub async fn serve(router: axum::Router, bind: &str) -> Served {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .expect("bind the demo");
    serve_on(listener, router)
}

/// Serves `router` on a bound `listener` (for an app that must know its port first).
pub fn serve_on(listener: tokio::net::TcpListener, router: axum::Router) -> Served {
    let addr = listener.local_addr().expect("the demo's address");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    Served { addr, task }
}
