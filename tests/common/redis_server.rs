//! A throwaway `redis-server` on a free loopback port, with its own temporary directory.
//!
//! Stopped by the PID it was started with (never by name). A missing binary panics with a
//! message saying how to install it: the Redis tests must run, never be skipped silently.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const INSTALL_HINT: &str = "redis-server was not found on PATH. The queue tests need a real \
Redis server: install it (Debian/Ubuntu: `apt-get install -y redis-server`) and run the tests \
again. `.ci/run` installs it automatically.";

/// A running `redis-server`; dropped means stopped.
pub(crate) struct RedisServer {
    child: Child,
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with `extra_args` and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is missing (with [`INSTALL_HINT`]) or does not come up in 10 s.
    pub(crate) fn start(extra_args: &[&str]) -> Self {
        let binary = find_on_path("redis-server").unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let mut server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = server.child.try_wait().expect("waitpid") {
                panic!("redis-server exited at start with {status}");
            }
            if server.ping() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer PING on port {port} within 10 s");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The PID this server was started with.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True when the server answers `PING` with `+PONG`.
    pub(crate) fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0_u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Stops the server by its PID and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    })
}
