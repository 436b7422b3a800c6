//! Hallway servers as a cluster over NATS: one directory of rooms, any room from any node.
//!
//! **One authority per room.** A room's rules run in one actor, on its *home* node (where it
//! was created). A node with members of a room homed elsewhere is an *edge* for it
//! (`edge.rs`): it keeps its members' connections, writes their sockets by the same path as
//! the home ([`super::members::LocalMembers`]), forwards what they do to the home, and
//! receives the room's events and audio once per edge, however many members it has
//! (`wire.rs` has the subjects and messages). The room core decides who receives what
//! ([`super::room::Recipients`]), so an edge needs no room state of its own to deliver.
//!
//! **The directory** is two JetStream key-value buckets, kept in memory by the NATS servers
//! (replicated over three of them in a NATS cluster):
//! - `hallway_nodes`: each node's [`NodeInfo`], put every [`HEARTBEAT`]. A node not heard of
//!   for [`NODE_TIMEOUT`] is dead, and its rooms leave every listing.
//! - `hallway_rooms`: each room's [`RoomEntry`] (its home and summary), put by the home when
//!   the summary changes and every [`ROOM_REFRESH`], deleted when the room ends; entries
//!   not refreshed expire with the bucket's age limit.
//!
//! Every node watches both and keeps a copy, so listing rooms never waits on the network.
//! The buckets' values are only ever written whole by their owner, so no write needs
//! compare-and-set.

pub(crate) mod edge;
pub(crate) mod home;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Revocation, Shared};
use crate::protocol::RoomSummary;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard of for this long is dead: its rooms leave the listings.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(4);
/// How often a home puts its rooms' entries even when nothing changed.
pub const ROOM_REFRESH: Duration = Duration::from_secs(10);
/// The age past which the rooms bucket drops an entry nobody refreshed.
const ROOM_MAX_AGE: Duration = Duration::from_secs(35);

const NODES_BUCKET: &str = "hallway_nodes";
const ROOMS_BUCKET: &str = "hallway_rooms";

/// How a node joins a cluster (`hallway serve --cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS servers, `nats://HOST:PORT`.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node: String,
}

/// What a node says of itself in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// Where clients reach it.
    pub url: String,
    /// Rooms homed here, and members connected here (in any room).
    pub rooms: usize,
    pub members: usize,
    pub started_ms: u64,
}

/// A room in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// The node whose actor runs the room.
    pub home: String,
    pub summary: RoomSummary,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {urls}: {reason}; start nats-server or fix --cluster")]
    Connect { urls: String, reason: String },
    #[error("NATS JetStream is not available ({0}); start nats-server with JetStream (-js)")]
    JetStream(String),
    #[error("a NATS URL is not valid: {0:?}; write nats://HOST:PORT")]
    BadUrl(String),
}

/// This node's link to the cluster.
pub struct Cluster {
    pub node: String,
    pub url: String,
    pub client: async_nats::Client,
    nodes_kv: kv::Store,
    rooms_kv: kv::Store,
    started_ms: u64,
    /// Every node heard of, and when.
    nodes: RwLock<HashMap<String, (NodeInfo, Instant)>>,
    /// Every room in the directory, by id.
    rooms: RwLock<HashMap<String, RoomEntry>>,
    /// Edges open on this node, by room, with the number that tells one edge from the
    /// next for the same room.
    pub(crate) edges: Mutex<HashMap<String, (u64, super::actor::RoomHandle)>>,
}

impl Cluster {
    /// Connects to NATS and opens (or makes) the directory's buckets.
    pub async fn connect(config: &ClusterConfig, url: String) -> Result<Arc<Self>, ClusterError> {
        let mut addrs = Vec::new();
        for raw in &config.nats {
            let addr: async_nats::ServerAddr =
                raw.parse().map_err(|_| ClusterError::BadUrl(raw.clone()))?;
            addrs.push(addr);
        }
        let urls = config.nats.join(",");
        let client = async_nats::ConnectOptions::new()
            .name(format!("hallway {}", config.node))
            // Audio: a subscriber this far behind drops frames rather than holding
            // seconds of stale audio (NATS's default allows 64 Ki messages).
            .subscription_capacity(4_096)
            // Requests between nodes answer in milliseconds; a node that does not is gone.
            .request_timeout(Some(Duration::from_secs(2)))
            .ping_interval(Duration::from_secs(2))
            .connection_timeout(Duration::from_secs(3))
            .connect(addrs)
            .await
            .map_err(|e| ClusterError::Connect {
                urls: urls.clone(),
                reason: e.to_string(),
            })?;
        let replicas = config.nats.len().clamp(1, 3);
        let js = async_nats::jetstream::new(client.clone());
        let nodes_kv = bucket(&js, NODES_BUCKET, NODE_TIMEOUT * 3, replicas).await?;
        let rooms_kv = bucket(&js, ROOMS_BUCKET, ROOM_MAX_AGE, replicas).await?;
        Ok(Arc::new(Self {
            node: config.node.clone(),
            url,
            client,
            nodes_kv,
            rooms_kv,
            started_ms: super::unix_ms(),
            nodes: RwLock::new(HashMap::new()),
            rooms: RwLock::new(HashMap::new()),
            edges: Mutex::new(HashMap::new()),
        }))
    }

    /// Keeps the directory: says this node is alive, and follows both buckets. `load` says
    /// how many rooms are homed here and members connected here.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        load: impl Fn() -> (usize, usize) + Send + 'static,
    ) {
        let watch = |store: kv::Store| async move { store.watch_with_history(">").await };
        let (nodes, rooms) = match (
            watch(self.nodes_kv.clone()).await,
            watch(self.rooms_kv.clone()).await,
        ) {
            (Ok(nodes), Ok(rooms)) => (nodes, rooms),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot follow the cluster's directory: {e}");
                return;
            }
        };
        let mut nodes = nodes.fuse();
        let mut rooms = rooms.fuse();
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = beat.tick() => {
                    let (rooms, members) = load();
                    let me = NodeInfo {
                        name: self.node.clone(),
                        url: self.url.clone(),
                        rooms,
                        members,
                        started_ms: self.started_ms,
                    };
                    if let Ok(json) = serde_json::to_vec(&me)
                        && let Err(e) = self.nodes_kv.put(&self.node, json.into()).await
                    {
                        tracing::warn!("cannot tell the cluster this node is alive: {e}");
                    }
                }
                Some(entry) = nodes.next() => match entry {
                    Ok(entry) => self.node_changed(entry),
                    Err(e) => tracing::warn!("the node directory's watch failed: {e}"),
                },
                Some(entry) = rooms.next() => match entry {
                    Ok(entry) => self.room_changed(entry),
                    Err(e) => tracing::warn!("the room directory's watch failed: {e}"),
                },
            }
        }
        // Leaving: the others drop this node at once rather than after the timeout.
        let _ = self.nodes_kv.delete(&self.node).await;
    }

    fn node_changed(&self, entry: kv::Entry) {
        let Ok(mut nodes) = self.nodes.write() else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<NodeInfo>(&entry.value) {
                Ok(info) if info.name == entry.key => {
                    nodes.insert(entry.key, (info, Instant::now()));
                }
                _ => tracing::warn!(key = %entry.key, "ignoring a malformed node entry"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                nodes.remove(&entry.key);
            }
        }
    }

    fn room_changed(&self, entry: kv::Entry) {
        let Ok(mut rooms) = self.rooms.write() else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<RoomEntry>(&entry.value) {
                Ok(room) if room.summary.id == entry.key && wire::valid_room_id(&entry.key) => {
                    rooms.insert(entry.key, room);
                }
                _ => tracing::warn!(key = %entry.key, "ignoring a malformed room entry"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                rooms.remove(&entry.key);
            }
        }
    }

    /// Whether `node` has been heard of lately (this node always is).
    pub fn is_live(&self, node: &str) -> bool {
        node == self.node
            || self.nodes.read().is_ok_and(|nodes| {
                nodes
                    .get(node)
                    .is_some_and(|(_, seen)| seen.elapsed() < NODE_TIMEOUT)
            })
    }

    /// Every live node, this one first.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        let mut live: Vec<NodeInfo> = self
            .nodes
            .read()
            .map(|nodes| {
                nodes
                    .values()
                    .filter(|(_, seen)| seen.elapsed() < NODE_TIMEOUT)
                    .map(|(info, _)| info.clone())
                    .collect()
            })
            .unwrap_or_default();
        live.sort_by(|a, b| (a.name != self.node, &a.name).cmp(&(b.name != self.node, &b.name)));
        live
    }

    /// The rooms homed on other live nodes.
    pub fn remote_rooms(&self) -> Vec<RoomSummary> {
        let Ok(rooms) = self.rooms.read() else {
            return Vec::new();
        };
        rooms
            .values()
            .filter(|r| r.home != self.node && self.is_live(&r.home))
            .map(|r| r.summary.clone())
            .collect()
    }

    /// A room homed on another live node.
    pub fn remote_room(&self, id: &str) -> Option<RoomEntry> {
        let rooms = self.rooms.read().ok()?;
        rooms
            .get(id)
            .filter(|r| r.home != self.node && self.is_live(&r.home))
            .cloned()
    }

    /// Puts a room homed here into the directory.
    pub async fn publish_room(&self, summary: &RoomSummary) {
        let entry = RoomEntry {
            home: self.node.clone(),
            summary: summary.clone(),
        };
        let Ok(json) = serde_json::to_vec(&entry) else {
            return;
        };
        if let Err(e) = self.rooms_kv.put(&summary.id, Bytes::from(json)).await {
            tracing::warn!(room = %summary.id, "cannot update the room directory: {e}");
        }
    }

    /// Takes a room homed here out of the directory.
    pub async fn withdraw_room(&self, id: &str) {
        if let Err(e) = self.rooms_kv.delete(id).await {
            tracing::warn!(room = %id, "cannot take an ended room out of the directory: {e}");
        }
    }
}

async fn bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.into(),
        history: 1,
        max_age,
        storage: async_nats::jetstream::stream::StorageType::Memory,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node made it meanwhile.
        Err(first) => js
            .get_key_value(name)
            .await
            .map_err(|_| ClusterError::JetStream(first.to_string())),
    }
}

impl Cluster {
    /// Tells the home of room `room` something, as an edge would.
    pub async fn send_to_home(&self, room: &str, message: &wire::ToHome) {
        let Ok(json) = serde_json::to_vec(message) else {
            return;
        };
        if let Err(e) = self.client.publish(wire::room_in(room), json.into()).await {
            tracing::warn!(%room, "cannot reach the room's home: {e}");
        }
    }

    /// Tells every node to forget sessions a revocation touches.
    pub(crate) fn publish_revocation(&self, revocation: &Revocation) {
        let Ok(json) = serde_json::to_vec(revocation) else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.publish(wire::REVOKED, json.into()).await {
                tracing::warn!("cannot tell the other nodes of a revocation: {e}");
            }
        });
    }
}

/// Applies the revocations other nodes publish (and this node's own again, which changes
/// nothing), so that no node keeps a session the store has revoked.
pub(crate) async fn follow_revocations(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut revocations = match cluster.client.subscribe(wire::REVOKED).await {
        Ok(subscriber) => subscriber,
        Err(e) => {
            tracing::error!("cannot follow revocations from other nodes: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            message = revocations.next() => match message {
                Some(message) => match serde_json::from_slice::<Revocation>(&message.payload) {
                    Ok(revocation) => shared.revoke_here(&revocation),
                    Err(e) => tracing::warn!("ignoring a malformed revocation: {e}"),
                },
                None => return,
            },
        }
    }
}
