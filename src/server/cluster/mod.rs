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
//! **The directory.**
//! - Nodes: each node publishes its [`NodeInfo`] on `hallway.cluster.nodes` every
//!   [`HEARTBEAT`] (core NATS, not the key-value store: a NATS server dying stops JetStream
//!   writes for 4–8 s while its streams elect a new leader, and core pub/sub for ~5 ms, so
//!   liveness must not ride on JetStream). A node not heard of for [`NODE_TIMEOUT`] is dead,
//!   and its rooms leave every listing; a node that stops says so at once.
//! - Rooms: the JetStream key-value bucket `hallway_rooms`, kept in memory by the NATS
//!   servers (replicated over up to three), holds each room's [`RoomEntry`] (its home and
//!   summary), put by the home when the summary changes and every [`ROOM_REFRESH`],
//!   deleted when the room ends; entries not refreshed expire with the bucket's age limit.
//!   Every write of an entry is a compare-and-set on its revision ([`Cluster::write_room`]):
//!   of two nodes carrying on an orphaned room, one wins; a node that was only thought dead
//!   finds its room carried on elsewhere rather than overwrite the new home. Entries name
//!   the home's run ([`NodeInfo::instance`]), so a node restarted under its name is a new
//!   home, and the old run's rooms are orphans.
//!
//! Every node keeps a copy of both, so listing rooms never waits on the network.

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

const NODES: &str = "hallway.cluster.nodes";
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
    /// This run of the node (random at each start): a node restarted under the same name is
    /// another instance, and what the last one held is gone.
    #[serde(default)]
    pub instance: u64,
    /// The node is stopping: drop it now.
    #[serde(default)]
    pub leaving: bool,
}

/// A room in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// The node whose actor runs the room.
    pub home: String,
    /// Which run of that node ([`NodeInfo::instance`]).
    #[serde(default)]
    pub instance: u64,
    pub summary: RoomSummary,
    /// Those removed from the room (a node carrying it on keeps them out) and its chat's
    /// rules. Flattened: `banned` is where it always was.
    #[serde(flatten)]
    pub carried: crate::server::room::Carried,
    /// A private room's sharing: every node keeps the same door.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<crate::server::access::Access>,
}

/// How a write to a room's directory entry went.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written; the entry's new revision.
    At(u64),
    /// Another node's now: this node's copy of the room must give way.
    Taken,
    /// Not written (NATS is away); try again later.
    Failed,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {urls}: {reason}; start nats-server or fix --cluster")]
    Connect { urls: String, reason: String },
    #[error(
        "NATS JetStream did not answer for 30 s ({0}); is nats-server running with JetStream (-js), and has its cluster elected a leader?"
    )]
    JetStream(String),
    #[error("a NATS URL is not valid: {0:?}; write nats://HOST:PORT")]
    BadUrl(String),
}

/// This node's link to the cluster.
pub struct Cluster {
    pub node: String,
    pub url: String,
    pub client: async_nats::Client,
    rooms_kv: kv::Store,
    started_ms: u64,
    /// This run of the node ([`NodeInfo::instance`]).
    pub instance: u64,
    /// Times the NATS connection came back after a drop: messages (revocations among
    /// them) may have been lost meanwhile.
    pub reconnects: Arc<std::sync::atomic::AtomicU64>,
    /// Every node heard of, and when.
    nodes: RwLock<HashMap<String, (NodeInfo, Instant)>>,
    /// Every room in the directory, by id, with its revision there and when it was last
    /// written (an entry JetStream let expire says nothing to its watchers).
    rooms: RwLock<HashMap<String, (RoomEntry, u64, Instant)>>,
    /// When this node started listening to the others: a node not heard of is only known
    /// to be dead once this node has listened for [`NODE_TIMEOUT`].
    listening_since: Instant,
    /// The last round trip to NATS, in microseconds.
    rtt_us: std::sync::atomic::AtomicU64,
    /// Edges open on this node, by room, with the number that tells one edge from the
    /// next for the same room.
    pub(crate) edges: Mutex<HashMap<String, (u64, super::actor::RoomHandle)>>,
}

impl Cluster {
    /// Connects to NATS and opens (or makes) the directory's buckets.
    pub async fn connect(
        config: &ClusterConfig,
        url: String,
        metrics: super::Metrics,
    ) -> Result<Arc<Self>, ClusterError> {
        let mut addrs = Vec::new();
        for raw in &config.nats {
            let addr: async_nats::ServerAddr =
                raw.parse().map_err(|_| ClusterError::BadUrl(raw.clone()))?;
            addrs.push(addr);
        }
        let urls = config.nats.join(",");
        let reconnects = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = reconnects.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("hallway {}", config.node))
            .event_callback(move |event| {
                let (counter, metrics) = (counter.clone(), metrics.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // A subscription of this node could not keep up: NATS dropped what
                        // it sent (audio, or an event: then a gap, and a resync).
                        async_nats::Event::SlowConsumer(_) => {
                            metrics.cluster_slow.inc();
                        }
                        _ => {}
                    }
                }
            })
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
        let rooms_kv = bucket(&js, ROOMS_BUCKET, ROOM_MAX_AGE, replicas).await?;
        Ok(Arc::new(Self {
            node: config.node.clone(),
            url,
            client,
            rooms_kv,
            started_ms: super::unix_ms(),
            instance: rand::random::<u64>() | 1,
            reconnects,
            nodes: RwLock::new(HashMap::new()),
            rooms: RwLock::new(HashMap::new()),
            edges: Mutex::new(HashMap::new()),
            rtt_us: 0.into(),
            listening_since: Instant::now(),
        }))
    }

    /// Keeps the directory: says this node is alive, and follows both buckets. `load` says
    /// how many rooms are homed here and members connected here.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        load: impl Fn() -> (usize, usize) + Send + 'static,
    ) {
        let subscribed = async {
            Ok::<_, String>((
                self.client
                    .subscribe(NODES)
                    .await
                    .map_err(|e| e.to_string())?,
                self.rooms_kv
                    .watch_with_history(">")
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        };
        let (mut nodes, rooms) = match subscribed.await {
            Ok(followed) => followed,
            Err(e) => {
                tracing::error!("cannot follow the cluster's directory: {e}");
                return;
            }
        };
        let mut rooms = rooms.fuse();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let me = |leaving| {
            let (rooms, members) = load();
            NodeInfo {
                name: self.node.clone(),
                url: self.url.clone(),
                rooms,
                members,
                started_ms: self.started_ms,
                instance: self.instance,
                leaving,
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = beat.tick() => {
                    self.prune();
                    self.say(&me(false)).await;
                    let sent = Instant::now();
                    if self.client.flush().await.is_ok() {
                        let rtt = sent.elapsed().as_micros() as u64;
                        self.rtt_us.store(rtt, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Some(message) = nodes.next() => self.node_heard(&message.payload),
                Some(entry) = rooms.next() => match entry {
                    Ok(entry) => self.room_changed(entry),
                    Err(e) => tracing::warn!("the room directory's watch failed: {e}"),
                },
            }
        }
        // Leaving: the others drop this node at once rather than after the timeout.
        self.say(&me(true)).await;
        let _ = self.client.flush().await;
    }

    async fn say(&self, info: &NodeInfo) {
        let Ok(json) = serde_json::to_vec(info) else {
            return;
        };
        if let Err(e) = self.client.publish(NODES, json.into()).await {
            tracing::warn!("cannot tell the cluster this node is alive: {e}");
        }
    }

    fn node_heard(&self, payload: &[u8]) {
        let Ok(info) = serde_json::from_slice::<NodeInfo>(payload) else {
            tracing::warn!("ignoring a malformed node heartbeat");
            return;
        };
        let Ok(mut nodes) = self.nodes.write() else {
            return;
        };
        if info.leaving {
            nodes.remove(&info.name);
        } else {
            nodes.insert(info.name.clone(), (info, Instant::now()));
        }
    }

    fn room_changed(&self, entry: kv::Entry) {
        let Ok(mut rooms) = self.rooms.write() else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<RoomEntry>(&entry.value) {
                Ok(room) if room.summary.id == entry.key && wire::valid_room_id(&entry.key) => {
                    rooms.insert(entry.key, (room, entry.revision, Instant::now()));
                }
                _ => tracing::warn!(key = %entry.key, "ignoring a malformed room entry"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                rooms.remove(&entry.key);
            }
        }
    }

    /// Forgets room entries JetStream has let expire (their homes stopped writing them)
    /// and nodes long gone.
    fn prune(&self) {
        if let Ok(mut rooms) = self.rooms.write() {
            rooms.retain(|_, (_, _, written)| written.elapsed() < ROOM_MAX_AGE);
        }
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.retain(|_, (_, seen)| seen.elapsed() < NODE_TIMEOUT * 10);
        }
    }

    /// Whether `node` is known to be gone: not heard of for [`NODE_TIMEOUT`], by a node that
    /// has listened that long. (A node that has just joined has not heard everyone yet.)
    pub fn is_dead(&self, node: &str) -> bool {
        !self.is_live(node) && self.listening_since.elapsed() >= NODE_TIMEOUT
    }

    /// The instance of `node` last heard of.
    pub fn instance_of(&self, node: &str) -> Option<u64> {
        if node == self.node {
            return Some(self.instance);
        }
        let nodes = self.nodes.read().ok()?;
        nodes.get(node).map(|(info, _)| info.instance)
    }

    /// Whether a member or a room on `node` (its run `instance`) is gone: the node is dead,
    /// or it has restarted since (the run that held them is gone).
    pub fn is_gone(&self, node: &str, instance: u64) -> bool {
        self.is_dead(node) || self.instance_of(node).is_some_and(|now| now != instance)
    }

    /// The node `id`'s directory entry names as its home, if any.
    pub fn home_of(&self, id: &str) -> Option<String> {
        let rooms = self.rooms.read().ok()?;
        rooms.get(id).map(|(r, _, _)| r.home.clone())
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

    /// The last round trip to NATS (a ping answered), in milliseconds.
    pub fn rtt_ms(&self) -> f64 {
        self.rtt_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0
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
        self.remote_entries()
            .into_iter()
            .map(|entry| entry.summary)
            .collect()
    }

    /// [`Cluster::remote_rooms`] with their private rooms' sharing.
    pub fn remote_entries(&self) -> Vec<RoomEntry> {
        let Ok(rooms) = self.rooms.read() else {
            return Vec::new();
        };
        rooms
            .values()
            .filter(|(r, _, _)| r.home != self.node && !self.is_gone(&r.home, r.instance))
            .map(|(r, _, _)| r.clone())
            .collect()
    }

    /// A room homed on another live node.
    pub fn remote_room(&self, id: &str) -> Option<RoomEntry> {
        let rooms = self.rooms.read().ok()?;
        rooms
            .get(id)
            .filter(|(r, _, _)| r.home != self.node && !self.is_gone(&r.home, r.instance))
            .map(|(r, _, _)| r.clone())
    }

    /// Whether the directory names this run of this node as the home of `id`.
    pub fn homed_here(&self, id: &str) -> bool {
        self.rooms.read().is_ok_and(|rooms| {
            rooms
                .get(id)
                .is_some_and(|(r, _, _)| r.home == self.node && r.instance == self.instance)
        })
    }

    /// A room whose home is gone (the node died), with its revision in the directory: a
    /// node may take it over ([`Cluster::claim_room`]).
    pub fn orphan(&self, id: &str) -> Option<(RoomEntry, u64)> {
        let rooms = self.rooms.read().ok()?;
        rooms
            .get(id)
            .filter(|(r, _, _)| self.is_gone(&r.home, r.instance))
            .map(|(r, revision, _)| (r.clone(), *revision))
    }

    /// Makes this node the home of an orphaned room, if the directory still holds the
    /// entry at `revision`: of several nodes claiming it at once (its members coming back
    /// through different nodes), exactly one wins; the others become its edges. The entry
    /// keeps the stage it had (who gets their role back), until the room here changes it.
    pub async fn claim_room(&self, entry: &RoomEntry, revision: u64) -> Option<u64> {
        match self
            .write_room(
                &entry.summary,
                &entry.carried,
                entry.access.as_ref(),
                Some(revision),
            )
            .await
        {
            Written::At(revision) => Some(revision),
            Written::Taken | Written::Failed => {
                tracing::info!(room = %entry.summary.id, "another node took over the room first");
                None
            }
        }
    }

    /// Writes the entry of a room homed here, as of `revision` (`None`: a new room), by
    /// compare-and-set: a node thought dead, whose room was carried on elsewhere meanwhile,
    /// finds out here rather than overwrite the new home.
    pub async fn write_room(
        &self,
        summary: &RoomSummary,
        carried: &crate::server::room::Carried,
        access: Option<&crate::server::access::Access>,
        revision: Option<u64>,
    ) -> Written {
        let entry = RoomEntry {
            home: self.node.clone(),
            instance: self.instance,
            summary: summary.clone(),
            carried: carried.clone(),
            access: access.map(|a| a.copy()),
        };
        let Ok(json) = serde_json::to_vec(&entry) else {
            return Written::Failed;
        };
        let json = Bytes::from(json);
        let written = match revision {
            Some(revision) => self
                .rooms_kv
                .update(&summary.id, json.clone(), revision)
                .await
                .map_err(|e| e.to_string()),
            None => self
                .rooms_kv
                .create(&summary.id, json.clone())
                .await
                .map_err(|e| e.to_string()),
        };
        let revision = match written {
            Ok(revision) => revision,
            Err(e) => {
                // Who holds it now? Ours (a write of ours the watch has not shown yet, or
                // an entry expired meanwhile): write again over what is there.
                match self.rooms_kv.entry(&summary.id).await {
                    Ok(Some(current)) if current.operation == kv::Operation::Put => {
                        // Only whose it is matters here: read just that, so an entry a newer
                        // node wrote (with fields or values this one does not know) is still
                        // seen as theirs, never written over.
                        #[derive(serde::Deserialize)]
                        struct Owner {
                            home: String,
                            #[serde(default)]
                            instance: u64,
                        }
                        match serde_json::from_slice::<Owner>(&current.value) {
                            Ok(theirs)
                                if theirs.home != self.node || theirs.instance != self.instance =>
                            {
                                return Written::Taken;
                            }
                            Err(_) => return Written::Failed,
                            _ => match self
                                .rooms_kv
                                .update(&summary.id, json, current.revision)
                                .await
                            {
                                Ok(revision) => revision,
                                Err(_) => return Written::Failed,
                            },
                        }
                    }
                    Ok(_) => match self.rooms_kv.create(&summary.id, json).await {
                        Ok(revision) => revision,
                        Err(_) => return Written::Failed,
                    },
                    Err(_) => {
                        tracing::warn!(room = %summary.id, "cannot update the room directory: {e}");
                        return Written::Failed;
                    }
                }
            }
        };
        // Ours now, before the watch says so: a second claim here finds it taken.
        if let Ok(mut rooms) = self.rooms.write() {
            rooms.insert(summary.id.clone(), (entry, revision, Instant::now()));
        }
        Written::At(revision)
    }

    /// Takes a room homed here out of the directory (trying for a while: a NATS cluster
    /// electing a leader refuses writes for seconds).
    pub async fn withdraw_room(&self, id: &str) {
        for attempt in 0..10 {
            match self.rooms_kv.delete(id).await {
                Ok(()) => return,
                Err(e) if attempt == 9 => {
                    tracing::warn!(room = %id, "cannot take an ended room out of the directory: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

/// Opens the key-value bucket `name`, making it first if it is new.
///
/// The bucket is made as its stream (what `create_key_value` would make), because
/// `create_key_value` first reads account details that NATS 2.9 (Debian's) does not send.
/// Making a stream that exists with this configuration changes nothing, so nodes starting
/// together agree.
async fn bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    use async_nats::jetstream::stream;
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        num_replicas: replicas,
        storage: stream::StorageType::Memory,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(2).min(max_age),
        ..Default::default()
    };
    // A NATS cluster that has just formed may still be electing the leader that makes
    // streams, and nodes starting together all make this one: try for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            if let Ok(store) = js.get_key_value(name).await {
                return Ok(store);
            }
            js.get_or_create_stream(config.clone())
                .await
                .map_err(|e| e.to_string())?;
            js.get_key_value(name).await.map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(e) if Instant::now() >= deadline => return Err(ClusterError::JetStream(e)),
            Err(e) => {
                tracing::info!("the cluster's directory is not ready yet ({e}); trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Cluster {
    /// A room homed on another node, in full, as its home describes it.
    pub async fn describe(&self, room: &str) -> Option<crate::protocol::RoomDetail> {
        let answer = self
            .client
            .request(wire::room_describe(room), Bytes::new())
            .await
            .ok()?;
        serde_json::from_slice(&answer.payload).ok()
    }

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
    let reconnects = || cluster.reconnects.load(std::sync::atomic::Ordering::SeqCst);
    let mut seen = reconnects();
    let mut check = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = check.tick() => {
                // Back after a drop: what was published meanwhile is lost to this node.
                let now = reconnects();
                if now != seen {
                    seen = now;
                    shared.revalidate_sessions().await;
                }
            }
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
