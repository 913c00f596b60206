//! Every fetch error kind, produced for real against a loopback server (host names resolve
//! from a table: no packet leaves the machine), reads as one line for people — what failed,
//! where, why, and what to do — and never as a Rust debug dump.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scraperv4::fetch::ssrf::Lookup;
use scraperv4::fetch::{FetchConfig, FetchError, FetchErrorKind, Fetcher, RequestOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Signs of `Debug` output or internals in a message meant for people.
const DEBUG_SYNTAX: [&str; 8] = [
    "{ kind:",
    "Os {",
    "Error {",
    "::",
    "Some(",
    "reqwest",
    "hyper",
    "(os error",
];

/// A raw HTTP/1.1 server: one response per connection, chosen by the request path; its
/// robots.txt is `robots`.
async fn serve(robots: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                    if head.first() == Some(&0x16) {
                        // A TLS handshake to this plain server: answer in plain HTTP.
                        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                        return;
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let response: Vec<u8> = match path.as_str() {
                    "/robots.txt" => ok(robots),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        ok("late")
                    }
                    "/big" => b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\nxxxx".to_vec(),
                    "/missing" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    "/loop" => {
                        b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n"
                            .to_vec()
                    }
                    "/bad-encoding" => b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\
                        Content-Length: 10\r\n\r\nnot gzip!!"
                        .to_vec(),
                    _ => ok("<p>page</p>"),
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Names resolve from this table only: `shop.test` is the loopback server, anything else
/// is unknown.
fn table(addr: SocketAddr) -> Lookup {
    Arc::new(move |host: String| {
        let answer = if host == "shop.test" {
            Ok(vec![addr])
        } else {
            Err(std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            ))
        };
        Box::pin(async move { answer })
    })
}

fn fetcher(addr: SocketAddr, change: impl FnOnce(&mut FetchConfig)) -> Fetcher {
    let mut config = FetchConfig {
        retries: 0,
        respect_robots: false,
        allow_private_networks: true,
        total_timeout: 2.0,
        ..FetchConfig::default()
    };
    change(&mut config);
    Fetcher::with_lookup(config, table(addr)).unwrap()
}

fn assert_readable(error: &FetchError, url: &str) {
    let text = error.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(url), "names the URL: {text}");
    for syntax in DEBUG_SYNTAX {
        assert!(!text.contains(syntax), "{syntax:?} in {text}");
    }
    if let Some(hint) = error.hint() {
        assert!(text.ends_with(hint), "says what to do: {text}");
    }
}

/// A worker's request that comes before its host's robots.txt `Crawl-delay` has passed is
/// not sent (the worker gives the job back to its queue): the error, and the URL.
async fn paced() -> (FetchError, String) {
    let site = serve("User-agent: *\nCrawl-delay: 60\n").await;
    let polite = fetcher(site, |c| c.respect_robots = true);
    let no_wait = RequestOptions {
        wait_for_crawl_delay: Some(false),
        ..RequestOptions::default()
    };
    let first = format!("http://{site}/a");
    polite.fetch_with(&first, no_wait).await.expect(&first);
    let second = format!("http://{site}/b");
    let error = tokio::time::timeout(Duration::from_secs(20), polite.fetch_with(&second, no_wait))
        .await
        .expect("refused at once, not after the delay")
        .expect_err(&second);
    (error, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_error_kind_reads_as_one_line_with_what_to_do() {
    let addr = serve("User-agent: *\nDisallow: /private\n").await;
    let base = format!("http://{addr}");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // dropped: nothing listens there now
    let cases: Vec<(FetchErrorKind, Fetcher, String)> = vec![
        (
            FetchErrorKind::Timeout,
            fetcher(addr, |c| c.total_timeout = 0.5),
            format!("{base}/slow"),
        ),
        (
            FetchErrorKind::Dns,
            fetcher(addr, |_| {}),
            "http://unknown.test/p".to_owned(),
        ),
        (
            FetchErrorKind::Connect,
            fetcher(addr, |_| {}),
            format!("http://{closed}/p37"),
        ),
        (
            FetchErrorKind::Tls,
            fetcher(addr, |_| {}),
            format!("https://{addr}/"),
        ),
        (
            FetchErrorKind::TooLarge,
            fetcher(addr, |c| c.max_body_bytes = 1000),
            format!("{base}/big"),
        ),
        (
            FetchErrorKind::RobotsDenied,
            fetcher(addr, |c| c.respect_robots = true),
            format!("{base}/private"),
        ),
        (
            FetchErrorKind::BlockedAddress,
            fetcher(addr, |c| c.allow_private_networks = false),
            format!("{base}/p"),
        ),
        (
            FetchErrorKind::HttpStatus,
            fetcher(addr, |_| {}),
            format!("{base}/missing"),
        ),
        (
            FetchErrorKind::TooManyRedirects,
            fetcher(addr, |_| {}),
            format!("{base}/loop"),
        ),
        (
            FetchErrorKind::Decode,
            fetcher(addr, |_| {}),
            format!("{base}/bad-encoding"),
        ),
    ];
    let mut seen = HashSet::new();
    for (kind, fetcher, url) in cases {
        let error = tokio::time::timeout(Duration::from_secs(30), fetcher.fetch(&url))
            .await
            .expect("every case ends within its timeouts")
            .expect_err(&url);
        assert_eq!(error.kind, kind, "{url}: {error}");
        assert_readable(&error, &url);
        seen.insert(kind.as_str());
    }
    // A name that resolves to a refused address is refused at the resolver, as itself.
    let guarded = fetcher(addr, |c| c.allow_private_networks = false);
    let error = guarded.fetch("http://shop.test/p").await.unwrap_err();
    assert_eq!(error.kind, FetchErrorKind::BlockedAddress, "{error}");
    assert_readable(&error, "http://shop.test/p");
    assert!(
        error.to_string().contains("--allow-private-networks"),
        "{error}"
    );
    let refused = fetcher(addr, |_| {})
        .fetch(&format!("http://{closed}/p37"))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("connection refused (nothing listens on {closed})")),
        "{refused}"
    );
    let (error, url) = paced().await;
    assert_eq!(error.kind, FetchErrorKind::Paced, "{error}");
    assert_readable(&error, &url);
    seen.insert(error.kind.as_str());
    let all: HashSet<&str> = FetchErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(seen, all, "every kind is exercised");
}
