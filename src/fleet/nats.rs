//! The NATS JetStream engine: stream `cluster.stream` (file storage, 7 days, 2 min dedup
//! window) on subject `<stream>.purge`, one durable pull consumer per node (`node_<name>`),
//! receipts on `<stream>.ack.<id>` and heartbeats on `<stream>.hb` (core NATS).

use super::{Bus, Fleet, PurgeMsg};
use crate::state::Shared;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

/// A connected engine.
struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
}

#[async_trait::async_trait]
impl Bus for Nats {
    async fn publish(&self, msg: &PurgeMsg) -> Result<u64, String> {
        let body = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(body))
            .message_id(&msg.id);
        let ack = self
            .js
            .send_publish(format!("{}.purge", self.stream), publish)
            .await
            .map_err(|e| e.to_string())?;
        let ack = tokio::time::timeout(Duration::from_secs(5), ack)
            .await
            .map_err(|_| "no publish ack within 5 s".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(ack.sequence)
    }

    async fn receipt(&self, id: &str, node: &str) -> Result<(), String> {
        let body = json!({ "node": node }).to_string();
        self.client
            .publish(format!("{}.ack.{id}", self.stream), Bytes::from(body))
            .await
            .map_err(|e| e.to_string())
    }
}

async fn connect(fleet: &Fleet) -> Result<Nats, String> {
    let urls: Vec<async_nats::ServerAddr> = fleet
        .cfg
        .nats
        .iter()
        .filter_map(|u| u.parse().ok())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .name(format!("outpost {}", fleet.cfg.node))
        .connection_timeout(Duration::from_secs(2))
        .connect(urls)
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client.clone());
    Ok(Nats {
        client,
        js,
        stream: fleet.cfg.stream.clone(),
    })
}

async fn open_consumer(
    fleet: &Fleet,
    shared: &Shared,
    n: &Nats,
) -> Result<consumer::PullConsumer, String> {
    let mut stream =
        n.js.get_or_create_stream(stream::Config {
            name: n.stream.clone(),
            subjects: vec![format!("{}.purge", n.stream)],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_messages: 1_000_000,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let cursor = fleet.cursor();
    fleet
        .last_seq
        .fetch_max(last, std::sync::atomic::Ordering::Relaxed);
    if cursor > 0 && (cursor > last || (first > cursor + 1 && info.state.messages > 0)) {
        // Trimmed past our cursor, or a new stream: what was missed is unknown.
        fleet
            .revalidate_all(
                shared,
                "the purge stream no longer holds every purge missed",
            )
            .await;
        fleet.advance(shared, last);
    }
    let durable = format!("node_{}", fleet.cfg.node.replace(['.', ' '], "_"));
    let deliver_policy = match fleet.cursor() {
        0 => consumer::DeliverPolicy::New,
        c => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: c + 1,
        },
    };
    stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                deliver_policy,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// Handles one message of the stream: apply (unless ours or seen), cursor, ack, receipt.
async fn handle(fleet: &Fleet, shared: &Shared, n: &Nats, m: jetstream::Message) {
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    match serde_json::from_slice::<PurgeMsg>(&m.payload) {
        Ok(msg) => {
            if msg.node != fleet.cfg.node {
                fleet.apply(shared, &msg).await;
                if let Err(e) = n.receipt(&msg.id, &fleet.cfg.node).await {
                    tracing::debug!("fleet receipt not sent: {e}");
                }
            }
        }
        Err(e) => tracing::warn!(seq, "fleet: undecodable purge message skipped: {e}"),
    }
    if seq > 0 {
        fleet.advance(shared, seq);
    }
    if let Err(e) = m.double_ack().await {
        tracing::debug!(seq, "fleet ack failed (redelivered later): {e}");
    }
}

/// Start-up: connect, then apply everything pending for this node's consumer.
pub(super) async fn catch_up(fleet: &Fleet, shared: &Shared) -> Result<(), String> {
    let n = connect(fleet).await?;
    let mut consumer = open_consumer(fleet, shared, &n).await?;
    loop {
        let pending = consumer
            .info()
            .await
            .map_err(|e| e.to_string())?
            .num_pending;
        if pending == 0 {
            return Ok(());
        }
        let mut batch = consumer
            .fetch()
            .max_messages(256)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| e.to_string())?;
            handle(fleet, shared, &n, m).await;
        }
    }
}

/// Keeps the node in the fleet until the process stops; reconnects after any failure.
pub(super) async fn run(fleet: &Fleet, shared: &Shared) {
    loop {
        match session(fleet, shared).await {
            Ok(()) => {}
            Err(e) => tracing::warn!("fleet engine: {e}; retrying"),
        }
        fleet.set_connected(shared, false);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn session(fleet: &Fleet, shared: &Shared) -> Result<(), String> {
    let n = connect(fleet).await?;
    let consumer = open_consumer(fleet, shared, &n).await?;
    let mut acks = n
        .client
        .subscribe(format!("{}.ack.*", n.stream))
        .await
        .map_err(|e| e.to_string())?;
    let mut beats = n
        .client
        .subscribe(format!("{}.hb", n.stream))
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    fleet.set_connected(shared, true);
    tracing::info!(node = %fleet.cfg.node, "fleet engine connected");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        flush_outbox(fleet, &n).await?;
        tokio::select! {
            m = messages.next() => match m {
                Some(Ok(m)) => handle(fleet, shared, &n, m).await,
                Some(Err(e)) => return Err(format!("consumer: {e}")),
                None => return Err("consumer stream ended".into()),
            },
            a = acks.next() => {
                let Some(a) = a else { return Err("ack subscription ended".into()) };
                let id = a.subject.as_str().rsplit('.').next().unwrap_or_default().to_string();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&a.payload) {
                    if let Some(node) = v["node"].as_str() {
                        fleet.acked(&id, node);
                    }
                }
            }
            b = beats.next() => {
                let Some(b) = b else { return Err("heartbeat subscription ended".into()) };
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b.payload) {
                    if let Some(node) = v["node"].as_str() {
                        fleet.heard(node, v["cursor"].as_u64().unwrap_or(0));
                    }
                }
            }
            _ = tick.tick() => {
                let beat = json!({ "node": fleet.cfg.node, "cursor": fleet.cursor() }).to_string();
                n.client
                    .publish(format!("{}.hb", n.stream), Bytes::from(beat))
                    .await
                    .map_err(|e| e.to_string())?;
                if n.client.connection_state() != async_nats::connection::State::Connected {
                    return Err("disconnected".into());
                }
            }
            () = fleet.kick.notified() => {}
        }
    }
}

/// Publishes what waits in the outbox, oldest first; stops at the first failure (kept).
async fn flush_outbox(fleet: &Fleet, n: &Nats) -> Result<(), String> {
    loop {
        let Some(msg) = fleet.outbox.lock().front().cloned() else {
            return Ok(());
        };
        let seq = n.publish(&msg).await?;
        fleet.published(seq);
        fleet.outbox.lock().pop_front();
    }
}
