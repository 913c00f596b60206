//! The fetcher's guard gaps of issue #15, closed, against canary servers on loopback
//! addresses (127.0.0.1 and 127.0.0.2 as two hosts). Names resolve through a table (the
//! resolver hook): no DNS packet is sent, and no packet leaves loopback.
//!
//! - configured headers (`Authorization`, `Cookie`) reach the origin asked for only: not a
//!   cross-origin redirect target, not robots.txt, not an origin outside `header_origins`;
//! - with a proxy, names are resolved and checked here before the proxy sees them (a name
//!   resolving to a private or metadata address never reaches the proxy);
//! - a politeness wait holds no global permit: another host is fetched meanwhile, and is not
//!   counted in the request's total timeout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::canary::{Canary, target};
use scraperv4::fetch::ssrf::Lookup;
use scraperv4::fetch::{FetchConfig, FetchErrorKind, Fetcher, RequestOptions};

fn local() -> FetchConfig {
    FetchConfig {
        allowed_networks: vec!["127.0.0.0/8".to_owned()],
        retries: 0,
        respect_robots: false,
        ..FetchConfig::default()
    }
}

fn ok(body: &str) -> common::canary::Answer {
    (200, vec![], body.as_bytes().to_vec())
}

/// A resolver answering from a table: no DNS packet is ever sent.
fn table(entries: &[(&str, &str)]) -> Lookup {
    let entries: Vec<(String, SocketAddr)> = entries
        .iter()
        .map(|(name, ip)| ((*name).to_owned(), SocketAddr::new(ip.parse().unwrap(), 0)))
        .collect();
    Arc::new(move |host: String| {
        let answer = entries
            .iter()
            .filter(|(name, _)| *name == host)
            .map(|(_, address)| *address)
            .collect::<Vec<_>>();
        Box::pin(async move {
            if answer.is_empty() {
                Err(std::io::Error::other(
                    "failed to lookup address information",
                ))
            } else {
                Ok(answer)
            }
        })
    })
}

fn has_secret(head: &str) -> bool {
    let lower = head.to_ascii_lowercase();
    lower.contains("authorization: bearer s3cret") || lower.contains("cookie: session=s3cret")
}

#[tokio::test]
async fn headers_do_not_follow_a_redirect_to_another_origin() {
    let other = Canary::start("127.0.0.2", |_| ok("other")).await;
    let elsewhere = format!("{}/landing", other.base());
    let first = Canary::start("127.0.0.1", move |head| match target(head) {
        "/same" => (302, vec![("Location".into(), "/page".into())], vec![]),
        "/away" => (302, vec![("Location".into(), elsewhere.clone())], vec![]),
        _ => ok("page"),
    })
    .await;
    let mut config = local();
    config.headers = [
        ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
        ("Cookie".to_owned(), "session=s3cret".to_owned()),
    ]
    .into();
    config.respect_robots = true;
    let fetcher = Fetcher::new(config).unwrap();
    fetcher
        .fetch(&format!("{}/same", first.base()))
        .await
        .unwrap();
    let page = fetcher
        .fetch(&format!("{}/away", first.base()))
        .await
        .unwrap();
    assert_eq!(page.body, b"other");
    let heads = first.heads();
    let robots: Vec<_> = heads
        .iter()
        .filter(|h| target(h) == "/robots.txt")
        .collect();
    assert!(
        !robots.is_empty() && robots.iter().all(|h| !has_secret(h)),
        "robots.txt: none"
    );
    for path in ["/same", "/page", "/away"] {
        let head = heads.iter().find(|h| target(h) == path).expect(path);
        assert!(has_secret(head), "the origin asked for gets them: {head}");
    }
    let landed = other.heads();
    assert!(!landed.is_empty());
    assert!(landed.iter().all(|h| !has_secret(h)), "{landed:?}");
}

#[tokio::test]
async fn header_origins_narrow_where_headers_go() {
    let listed = Canary::start("127.0.0.1", |_| ok("a")).await;
    let unlisted = Canary::start("127.0.0.2", |_| ok("b")).await;
    let mut config = local();
    config.headers = [("Authorization".to_owned(), "Bearer s3cret".to_owned())].into();
    config.header_origins = vec![listed.base()];
    let fetcher = Fetcher::new(config.clone()).unwrap();
    fetcher
        .fetch(&format!("{}/x", listed.base()))
        .await
        .unwrap();
    fetcher
        .fetch(&format!("{}/x", unlisted.base()))
        .await
        .unwrap();
    assert!(has_secret(&listed.heads()[0]));
    assert!(!has_secret(&unlisted.heads()[0]));
    for bad in ["ftp://x", "https://x/path", "not a url", "https://user@x"] {
        config.header_origins = vec![bad.to_owned()];
        assert!(Fetcher::new(config.clone()).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_proxy_never_sees_a_name_that_resolves_to_a_refused_address() {
    let proxy = Canary::start("127.0.0.1", |_| ok("proxied")).await;
    let lookup = table(&[
        ("internal.example", "10.0.0.1"),
        ("metadata.example", "169.254.169.254"),
        ("mapped.example", "::ffff:10.0.0.1"),
        ("public.example", "93.184.216.34"),
    ]);
    let config = FetchConfig {
        proxy: Some(proxy.base()),
        retries: 0,
        respect_robots: false,
        ..FetchConfig::default()
    };
    let fetcher = Fetcher::with_lookup(config.clone(), Arc::clone(&lookup)).unwrap();
    for host in ["internal.example", "metadata.example", "mapped.example"] {
        let error = fetcher
            .fetch(&format!("http://{host}/secret"))
            .await
            .unwrap_err();
        assert_eq!(
            error.kind,
            FetchErrorKind::BlockedAddress,
            "{host}: {error}"
        );
    }
    assert!(proxy.heads().is_empty(), "nothing reached the proxy");
    // A public name goes through the proxy (the canary answers: no packet leaves loopback).
    let page = fetcher.fetch("http://public.example/p").await.unwrap();
    assert_eq!(page.body, b"proxied");
    assert_eq!(target(&proxy.heads()[0]), "http://public.example/p");
    // robots.txt through the proxy is checked the same way.
    let robots = Fetcher::with_lookup(
        FetchConfig {
            respect_robots: true,
            ..config.clone()
        },
        Arc::clone(&lookup),
    )
    .unwrap();
    let error = robots.fetch("http://internal.example/").await.unwrap_err();
    assert_eq!(error.kind, FetchErrorKind::BlockedAddress, "{error}");
    // Private networks allowed: metadata stays refused, through the proxy too.
    let open = Fetcher::with_lookup(
        FetchConfig {
            allow_private_networks: true,
            ..config
        },
        lookup,
    )
    .unwrap();
    let error = open.fetch("http://metadata.example/").await.unwrap_err();
    assert_eq!(error.kind, FetchErrorKind::BlockedAddress, "{error}");
    assert_eq!(proxy.heads().len(), 1, "still only the public request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_politeness_wait_holds_no_global_permit() {
    let slow = Canary::start("127.0.0.1", |_| ok("a")).await;
    let other = Canary::start("127.0.0.2", |_| ok("b")).await;
    let config = FetchConfig {
        concurrency: 1,
        ..local()
    };
    let fetcher = Arc::new(Fetcher::new(config).unwrap());
    let polite = RequestOptions {
        delay_range: Some((6.0, 6.0)),
        ..RequestOptions::default()
    };
    let first = format!("{}/1", slow.base());
    fetcher.fetch_with(&first, polite).await.unwrap();
    // The second request to the slow host waits 6 s for its slot...
    let waiting = {
        let fetcher = Arc::clone(&fetcher);
        let url = format!("{}/2", slow.base());
        tokio::spawn(async move { fetcher.fetch_with(&url, polite).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...while the only global permit serves another host at once.
    let started = Instant::now();
    fetcher.fetch(&format!("{}/x", other.base())).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "another host waited {:?} behind a politeness wait",
        started.elapsed()
    );
    assert!(
        !waiting.is_finished(),
        "the polite request is still waiting"
    );
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_politeness_wait_longer_than_the_total_timeout_is_not_a_timeout() {
    let site = Canary::start("127.0.0.1", |_| ok("a")).await;
    let config = FetchConfig {
        total_timeout: 1.0,
        ..local()
    };
    let fetcher = Fetcher::new(config).unwrap();
    let polite = RequestOptions {
        delay_range: Some((2.5, 2.5)),
        ..RequestOptions::default()
    };
    fetcher
        .fetch_with(&format!("{}/1", site.base()), polite)
        .await
        .unwrap();
    let started = Instant::now();
    let page = fetcher
        .fetch_with(&format!("{}/2", site.base()), polite)
        .await
        .expect("waiting for the host's slot is not the site's time");
    assert_eq!(page.body, b"a");
    assert!(started.elapsed() >= Duration::from_secs(2), "it did wait");
    assert_eq!(site.heads().len(), 2);
}

#[tokio::test]
async fn a_slow_answer_still_times_out_after_the_wait() {
    // Headers sent, then the body never comes: the total timeout counts from the send.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut held = Vec::new();
        for _ in 0..2 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = [0_u8; 4096];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .await;
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let config = FetchConfig {
        total_timeout: 1.0,
        read_timeout: 30.0,
        ..local()
    };
    let fetcher = Fetcher::new(config).unwrap();
    let polite = RequestOptions {
        delay_range: Some((1.5, 1.5)),
        ..RequestOptions::default()
    };
    for path in ["/1", "/2"] {
        let started = Instant::now();
        let error = fetcher
            .fetch_with(&format!("http://{addr}{path}"), polite)
            .await
            .unwrap_err();
        assert_eq!(error.kind, FetchErrorKind::Timeout, "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
    server.abort();
}
