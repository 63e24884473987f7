//! Frontend events (docs/contracts/events-and-api.md §1, §3): an activity publishes `{event, data}`
//! for a transcript; it is appended to the transcript's event log (except `PIPELINE_PROGRESS`) and
//! broadcast to every WebSocket subscribed to the transcript.
//!
//! A step may publish only the events its activity declares (the catalog's `emits`, which
//! `reflow validate` checks every step declares too): anything else is a bug and fails the
//! attempt non-retryably with `UndeclaredEvent`. A failed broadcast is logged and never fails
//! the activity.
//!
//! Exactly once in the log: every event an activity publishes carries its origin (workflow,
//! run, activity id and its position among the activity's events), the same in every attempt,
//! so a retried activity (a killed worker, a lost completion) does not store or broadcast what
//! an earlier attempt already did. The API's own announcements have no origin.
//!
//! Delivery across processes: with PostgreSQL, the publisher sends
//! `NOTIFY reflow_events, '{"transcript_id", "seq"}'` (NOTIFY caps payloads at 8000 bytes) and
//! every API process's listener ([`EventHub::listen_postgres`]) reads the row and fans it out;
//! with SQLite (one process) the hub is fed directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::db::events::StoredEvent;
use crate::db::{Backend, Db, DbError};
use crate::error::ActivityFailure;
pub use workflow::catalog::Event;

/// The PostgreSQL notification channel.
pub const PG_CHANNEL: &str = "reflow_events";

/// A message on a channel: a transcript's event, or an event for a user.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `ts:{transcript_id}`.
    Transcript(StoredEvent),
    /// `user:{user_id}`: `{event: "TRANSCRIPT_STATUS", data: {id, value}}` and friends.
    User {
        /// The owner.
        user_id: String,
        /// The envelope.
        envelope: Value,
    },
}

/// The in-process fan-out every WebSocket subscribes to.
#[derive(Clone, Debug)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Message>>,
    /// Whether the PostgreSQL listener has its `LISTEN` in place ([`EventHub::listening`]).
    listening: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for EventHub {
    fn default() -> Self {
        // A slow socket that falls this far behind is told so and re-reads the log.
        EventHub {
            tx: broadcast::channel(1024).0,
            listening: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl EventHub {
    /// Receive every message sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// Fan a message out (no subscriber is fine).
    pub fn send(&self, m: Message) {
        let _ = self.tx.send(Arc::new(m));
    }

    /// Feed this hub from PostgreSQL notifications until the connection cannot be kept;
    /// reconnects with backoff. Spawned by API processes on PostgreSQL.
    pub async fn listen_postgres(self, db: Db) {
        let crate::db::Pool::Postgres(pool) = db.pool().clone() else {
            return;
        };
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Err(e) => tracing::warn!(error = %e, "event listener cannot connect"),
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(PG_CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed");
                    } else {
                        delay = std::time::Duration::from_millis(200);
                        self.listening.send_replace(true);
                        loop {
                            match listener.recv().await {
                                Ok(n) => self.relay(&db, n.payload()).await,
                                Err(e) => {
                                    self.listening.send_replace(false);
                                    tracing::warn!(error = %e, "event listener lost its connection");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// Wait until [`EventHub::listen_postgres`] has its `LISTEN` in place, so that events
    /// other processes publish from now on reach this hub.
    pub async fn listening(&self) {
        let mut rx = self.listening.subscribe();
        // The sender lives as long as the hub, so the wait ends only when it listens.
        let _ = rx.wait_for(|l| *l).await;
    }

    async fn relay(&self, db: &Db, payload: &str) {
        let Ok(note) = serde_json::from_str::<Value>(payload) else {
            tracing::warn!(payload, "unreadable event notification");
            return;
        };
        match note {
            Value::Object(ref o) if o.contains_key("user_id") => self.send(Message::User {
                user_id: o["user_id"].as_str().unwrap_or_default().to_owned(),
                envelope: o.get("envelope").cloned().unwrap_or(Value::Null),
            }),
            Value::Object(ref o) if o.contains_key("event") => {
                // Unstored events travel whole.
                if let Ok(e) = serde_json::from_value::<Unstored>(note.clone()) {
                    self.send(Message::Transcript(StoredEvent {
                        transcript_id: e.transcript_id,
                        seq: 0,
                        event: e.event,
                        data: e.data,
                    }));
                }
            }
            Value::Object(ref o) => {
                let (Some(tid), Some(seq)) = (
                    o.get("transcript_id").and_then(Value::as_str),
                    o.get("seq").and_then(Value::as_i64),
                ) else {
                    return;
                };
                match db.event(tid, seq).await {
                    Ok(Some(e)) => self.send(Message::Transcript(e)),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read a notified event"),
                }
            }
            _ => {}
        }
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Unstored {
    transcript_id: String,
    event: String,
    data: Value,
}

/// Which events each activity type may publish.
#[derive(Debug, Clone, Default)]
pub struct Emits(BTreeMap<String, BTreeSet<String>>);

impl Emits {
    /// From `(activity type, events)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [&'a str])>) -> Self {
        Emits(
            pairs
                .into_iter()
                .map(|(a, e)| (a.to_owned(), e.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
        )
    }

    /// Add what `activity` may publish.
    pub fn with(mut self, activity: &str, events: impl IntoIterator<Item = String>) -> Self {
        self.0
            .entry(activity.to_owned())
            .or_default()
            .extend(events);
        self
    }

    /// Whether `activity` may publish `event`.
    pub fn allows(&self, activity: &str, event: Event) -> bool {
        self.0
            .get(activity)
            .is_some_and(|e| e.contains(event.as_str()))
    }
}

/// What activities publish through.
#[derive(Clone, Debug)]
pub struct Events {
    db: Db,
    hub: EventHub,
    emits: Arc<Emits>,
}

impl Events {
    /// Publish into `db` and `hub`, allowing what `emits` declares.
    pub fn new(db: Db, hub: EventHub, emits: Emits) -> Self {
        Events {
            db,
            hub,
            emits: Arc::new(emits),
        }
    }

    /// The fan-out sockets subscribe to.
    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    /// The database events are stored in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Publish `event` for `transcript_id` on behalf of reflow itself rather than a step (the
    /// API's retry moves a transcript back to `processing`); no `emits` check applies.
    pub async fn announce(
        &self,
        transcript_id: &str,
        event: Event,
        data: Value,
    ) -> Result<(), ActivityFailure> {
        self.deliver(transcript_id, event, data).await
    }

    /// Publish `event` for `transcript_id` from an activity of type `activity`.
    pub async fn publish(
        &self,
        activity: &str,
        transcript_id: &str,
        event: Event,
        data: Value,
    ) -> Result<(), ActivityFailure> {
        if !self.emits.allows(activity, event) {
            return Err(ActivityFailure::UndeclaredEvent(format!(
                "activity {activity:?} published \"{event}\", which it does not declare in `emits`"
            )));
        }
        self.deliver(transcript_id, event, data).await
    }

    async fn deliver(
        &self,
        transcript_id: &str,
        event: Event,
        data: Value,
    ) -> Result<(), ActivityFailure> {
        let stored = if !event.is_stored() {
            StoredEvent {
                transcript_id: transcript_id.to_owned(),
                seq: 0,
                event: event.as_str().to_owned(),
                data,
            }
        } else {
            let origin = crate::attempt::current().next_event_origin();
            match self
                .db
                .append_event_once(transcript_id, origin.as_deref(), event.as_str(), &data)
                .await?
            {
                Some(stored) => stored,
                None => {
                    // A retry of an attempt that got this far: its subscribers saw it then.
                    tracing::debug!(
                        event = event.as_str(),
                        origin,
                        "event already published by an earlier attempt"
                    );
                    return Ok(());
                }
            }
        };
        if event.is_echoed_to_owner() {
            match self.db.find_transcript(transcript_id).await {
                Ok(Some(t)) => {
                    if let Some(user_id) = t.user_id {
                        let mut data = stored.data.clone();
                        if let Value::Object(m) = &mut data {
                            m.insert("id".into(), Value::String(transcript_id.to_owned()));
                        }
                        let envelope = serde_json::json!({
                            "event": format!("TRANSCRIPT_{}", stored.event),
                            "data": data,
                        });
                        self.broadcast_user(user_id, envelope).await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "user channel skipped"),
            }
        }
        self.broadcast(stored).await;
        Ok(())
    }

    async fn broadcast(&self, e: StoredEvent) {
        match self.db.backend() {
            Backend::Sqlite => self.hub.send(Message::Transcript(e)),
            Backend::Postgres => {
                let payload = if e.seq == 0 {
                    serde_json::to_string(&Unstored {
                        transcript_id: e.transcript_id.clone(),
                        event: e.event.clone(),
                        data: e.data.clone(),
                    })
                    .unwrap_or_default()
                } else {
                    serde_json::json!({"transcript_id": e.transcript_id, "seq": e.seq}).to_string()
                };
                self.notify(payload).await;
            }
        }
    }

    async fn broadcast_user(&self, user_id: String, envelope: Value) {
        match self.db.backend() {
            Backend::Sqlite => self.hub.send(Message::User { user_id, envelope }),
            Backend::Postgres => {
                let payload = serde_json::json!({"user_id": user_id, "envelope": envelope});
                self.notify(payload.to_string()).await;
            }
        }
    }

    async fn notify(&self, payload: String) {
        let crate::db::Pool::Postgres(pool) = self.db.pool() else {
            return;
        };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PG_CHANNEL)
            .bind(&payload)
            .execute(pool)
            .await
            .map_err(DbError::query("notify"))
        {
            tracing::warn!(error = %e, "event broadcast failed; sockets will catch up on reconnect");
        }
    }
}
