//! `RedisStore` against a real `redis-server` started by the test: the store contract
//! (`store_contract`, the same checks as `MemoryStore`), then what only Redis promises:
//! keys under the prefix and always expiring, and bounded failure when Redis is down or
//! frozen, with recovery when it returns.

#[path = "support/redis_server.rs"]
mod redis_server;
mod store_contract;

use redis_server::RedisServer;
use tower_stepup::store::RedisStore;

contract_tests!(|| async {
    RedisStore::connect(&RedisServer::shared().url())
        .await
        .expect("connect to the test redis-server")
});
