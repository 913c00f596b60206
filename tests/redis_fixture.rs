//! The Rust side of the throwaway redis-server helper works against a real server.

mod common;

use common::redis_server::RedisServer;

#[test]
fn a_started_server_answers_and_a_stopped_one_is_gone() {
    let mut server = RedisServer::start(&[]);
    assert!(server.ping());
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    let pid = server.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    server.stop();
    assert!(!server.ping());
}
