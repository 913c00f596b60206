//! `/ws`: the live stats stream, with caps on everything a client controls.
//!
//! tungstenite's defaults (64 MiB messages, 16 MiB frames) are for applications that read
//! what clients send; this stream only pushes. A client frame or message over
//! [`MAX_FRAME_BYTES`] closes the connection with 1009 (message too big) before its payload
//! is read. At most `ws_max_connections` streams are open at once (503 after that). A client
//! that answers nothing for `ws_idle_timeout` — the server pings it every third of that, and
//! browsers answer pings on their own — or that does not take a snapshot within it (it stopped
//! reading) is disconnected. The Origin check of the handshake is [`super::guard`]'s.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::{Instant, timeout};

use super::AppState;
use super::api::ApiError;

/// Largest frame and message a client may send, bytes (pings, pongs and closes are tiny).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The handshake: a free slot first, then the upgrade with the caps.
pub async fn websocket(State(state): State<Arc<AppState>>, upgrade: WebSocketUpgrade) -> Response {
    let Ok(slot) = Arc::clone(&state.ws_slots).try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "too many live stats connections; try again later",
        )
        .into_response();
    };
    let feed = state.stats.clone();
    let idle = state.config.ws_idle_timeout;
    upgrade
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .max_write_buffer_size(4 * 1024 * 1024)
        .on_upgrade(move |socket| push_stats(socket, feed, idle, slot))
}

/// Sends the latest snapshot, then each new one, until the client goes away, breaks a cap
/// or falls silent.
async fn push_stats(
    mut socket: WebSocket,
    mut stats: watch::Receiver<Option<Arc<Value>>>,
    idle: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(idle / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = true;
    loop {
        if pending {
            pending = false;
            let snapshot = stats.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                let sent = timeout(
                    idle,
                    socket.send(Message::Text(snapshot.to_string().into())),
                );
                if !matches!(sent.await, Ok(Ok(()))) {
                    return; // gone, or not reading
                }
            }
        }
        tokio::select! {
            changed = stats.changed() => match changed {
                Ok(()) => pending = true,
                Err(_) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => heard = Instant::now(),
                Some(Err(error)) => {
                    close(&mut socket, close_code::SIZE, "message too big", idle, &error).await;
                    return;
                }
            },
            _ = ping.tick() => {
                if heard.elapsed() >= idle {
                    let _ = timeout(Duration::from_secs(1), socket.send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "idle".into(),
                    })))).await;
                    return;
                }
                let sent = timeout(idle, socket.send(Message::Ping(Vec::new().into())));
                if !matches!(sent.await, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

/// Closes after a read error: 1009 when a cap was broken, 1002 for any other protocol error.
async fn close(
    socket: &mut WebSocket,
    too_big: u16,
    reason: &'static str,
    wait: Duration,
    error: &axum::Error,
) {
    let over_cap = is_capacity(error);
    let (code, reason) = if over_cap {
        (too_big, reason)
    } else {
        (close_code::PROTOCOL, "protocol error")
    };
    tracing::debug!(%error, code, "closing a /ws connection");
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = timeout(wait.min(Duration::from_secs(5)), socket.send(frame)).await;
}

fn is_capacity(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if matches!(
            current.downcast_ref::<tungstenite::Error>(),
            Some(tungstenite::Error::Capacity(_))
        ) {
            return true;
        }
        cause = current.source();
    }
    false
}
