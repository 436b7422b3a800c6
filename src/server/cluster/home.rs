//! A room's home in a cluster: what its actor needs to serve members on other nodes.
//!
//! The gateway task subscribes to the room's inbound subjects and turns what edges send into
//! [`RoomCommand`]s on the actor's own queue, so an edge's member is one more sender to the
//! actor, checked by the same rules. The actor's [`HomeLink`] publishes the room's events
//! (numbered) and audio once for all edges, through a publisher task, so the actor never
//! waits on the network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::wire::{self, Admit, Numbered, ToEdges, ToHome};
use crate::protocol::{AudioFrame, RoomSummary, UserId};
use crate::server::actor::RoomCommand;
use crate::server::metrics::Metrics;

/// Messages waiting for the NATS connection. A room's events are few; its audio is 50
/// frames a second per speaker. 4,096 is over 5 s of 13 speakers: past that NATS itself is
/// gone, and audio is dropped (an event dropped is a gap its edges notice).
const PUBLISH_QUEUE: usize = 4_096;

/// A member connected to another node.
#[derive(Debug, Clone)]
pub struct Remote {
    pub node: String,
    /// The run of `node` they joined through.
    pub instance: u64,
    pub connection: u64,
    pub addr: IpAddr,
}

/// The node name members in this process's fan-out shards are kept under at the home (no
/// node of a cluster is named so: names have 1 to 64 characters).
pub const SHARD_NODE: &str = "";

/// What a room's home sends its in-process shards: what it publishes to other nodes'
/// edges, without the serialising.
#[derive(Debug, Clone)]
pub enum Down {
    Event(Arc<Numbered>),
    Audio { speaker: UserId, bytes: Bytes },
}

/// Messages a room's shards may fall behind by before they lose some (and, for an event,
/// have their members join again): 4,096 is over 5 s of 13 speakers.
const SHARD_QUEUE: usize = 4_096;

/// The actor's side of a room's link to its edges: other nodes' (over NATS, in a cluster)
/// and this process's own fan-out shards (over a broadcast channel).
pub struct HomeLink {
    pub cluster: Option<Arc<Cluster>>,
    room: String,
    seq: u64,
    publish: Option<mpsc::Sender<(String, Bytes)>>,
    /// To this process's shards; sends nothing while there are none.
    pub shards: broadcast::Sender<Down>,
    /// Members on other nodes, and in shards (their node is [`SHARD_NODE`]).
    remote: HashMap<UserId, Remote>,
    /// How many of them are on other nodes: while none is, nothing goes to NATS.
    on_nodes: usize,
    stop: CancellationToken,
    metrics: Metrics,
}

impl HomeLink {
    /// A link for room `room`, whose actor takes commands on `actor`: in a cluster, it
    /// starts the gateway (edges' commands in) and the publisher (events and audio out).
    pub fn start(
        cluster: Option<Arc<Cluster>>,
        room: String,
        actor: mpsc::WeakSender<RoomCommand>,
        tasks: &tokio_util::task::TaskTracker,
        metrics: Metrics,
    ) -> Self {
        let stop = CancellationToken::new();
        let publish = cluster.as_ref().map(|cluster| {
            let (publish, queue) = mpsc::channel(PUBLISH_QUEUE);
            tasks.spawn(publisher(cluster.client.clone(), queue));
            tasks.spawn(gateway(
                cluster.clone(),
                room.clone(),
                actor,
                stop.clone(),
                metrics.clone(),
            ));
            publish
        });
        let (shards, _) = broadcast::channel(SHARD_QUEUE);
        Self {
            cluster,
            room,
            seq: 0,
            publish,
            shards,
            remote: HashMap::new(),
            on_nodes: 0,
            stop,
            metrics,
        }
    }

    pub fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }

    /// A member joins through an edge or a shard; their previous place there, if any.
    pub fn add(&mut self, user: UserId, remote: Remote) -> Option<Remote> {
        self.on_nodes += usize::from(remote.node != SHARD_NODE);
        let previous = self.remote.insert(user, remote);
        if let Some(previous) = &previous {
            self.on_nodes -= usize::from(previous.node != SHARD_NODE);
        }
        previous
    }

    /// A member leaves their edge or shard.
    pub fn take(&mut self, user: UserId) -> Option<Remote> {
        let gone = self.remote.remove(&user);
        if let Some(gone) = &gone {
            self.on_nodes -= usize::from(gone.node != SHARD_NODE);
        }
        gone
    }

    pub fn get(&self, user: UserId) -> Option<&Remote> {
        self.remote.get(&user)
    }

    pub fn iter(&self) -> impl Iterator<Item = (UserId, &Remote)> {
        self.remote.iter().map(|(id, r)| (*id, r))
    }

    /// Tells every edge and shard; numbered so that each sees a gap.
    pub fn event(&mut self, event: ToEdges) {
        self.seq += 1;
        let numbered = Numbered {
            seq: self.seq,
            event,
        };
        // Who joins and leaves an edge goes out even when they were the last member on
        // another node (they were taken off the list a moment ago).
        let membership = matches!(
            numbered.event,
            ToEdges::Joined { .. }
                | ToEdges::Disconnect { .. }
                | ToEdges::Left { .. }
                | ToEdges::Ended
        );
        if let Some(publish) = &self.publish
            && (self.on_nodes > 0 || membership)
        {
            match serde_json::to_vec(&numbered) {
                Ok(json) => {
                    if publish
                        .try_send((wire::room_events(&self.room), json.into()))
                        .is_err()
                    {
                        self.metrics.cluster_dropped.inc();
                    }
                }
                Err(_) => {
                    self.metrics.cluster_dropped.inc();
                }
            }
        }
        if self.shards.receiver_count() > 0 {
            let _ = self.shards.send(Down::Event(Arc::new(numbered)));
        }
    }

    /// Sends an audio frame to every edge and shard, once.
    pub fn audio(&mut self, speaker: UserId, bytes: Bytes) {
        if let Some(publish) = &self.publish
            && self.on_nodes > 0
            && publish
                .try_send((wire::room_audio(&self.room, speaker), bytes.clone()))
                .is_err()
        {
            self.metrics.cluster_dropped.inc();
        }
        if self.shards.receiver_count() > 0 {
            let _ = self.shards.send(Down::Audio { speaker, bytes });
        }
    }
}

impl Drop for HomeLink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn publisher(client: async_nats::Client, mut queue: mpsc::Receiver<(String, Bytes)>) {
    while let Some((subject, payload)) = queue.recv().await {
        if let Err(e) = client.publish(subject, payload).await {
            tracing::debug!("cannot publish to the cluster: {e}");
        }
    }
}

/// What an edge's message asks of the room's actor.
pub fn command_of(message: ToHome) -> RoomCommand {
    match message {
        ToHome::Join {
            user,
            device,
            addr,
            connection,
            node,
            instance,
        } => RoomCommand::RemoteJoin {
            user,
            device,
            addr,
            connection,
            node,
            instance,
        },
        ToHome::Control {
            user,
            connection,
            id,
            command,
        } => RoomCommand::Control {
            user,
            connection,
            id,
            command,
        },
        ToHome::Gone { user, connection } => RoomCommand::Gone { user, connection },
        ToHome::Expel {
            user,
            code,
            message,
            by,
        } => RoomCommand::Expel {
            user,
            code,
            message,
            by,
        },
    }
}

/// Turns what edges send about `room` into commands for its actor, until `stop`.
async fn gateway(
    cluster: Arc<Cluster>,
    room: String,
    actor: mpsc::WeakSender<RoomCommand>,
    stop: CancellationToken,
    metrics: Metrics,
) {
    let client = &cluster.client;
    let subscribed = async {
        Ok::<_, async_nats::SubscribeError>((
            client.subscribe(wire::room_in(&room)).await?,
            client.subscribe(wire::room_speak_all(&room)).await?,
            client.subscribe(wire::room_admit(&room)).await?,
            client.subscribe(wire::room_describe(&room)).await?,
        ))
    };
    let (mut commands, mut speech, mut admits, mut describes) = match subscribed.await {
        Ok(subscriptions) => subscriptions,
        Err(e) => {
            tracing::error!(%room, "cannot take this room's commands from other nodes: {e}");
            return;
        }
    };
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = sweep.tick() => {
                let Some(actor) = actor.upgrade() else { return };
                // Nothing to do is common: never wait for room in the queue for it.
                let _ = actor.try_send(RoomCommand::SweepRemote);
            }
            Some(message) = commands.next() => {
                let command = match serde_json::from_slice::<ToHome>(&message.payload) {
                    Ok(command) => command,
                    Err(e) => {
                        tracing::warn!(%room, "ignoring a malformed command from another node: {e}");
                        continue;
                    }
                };
                let command = command_of(command);
                let Some(actor) = actor.upgrade() else { return };
                // Control waits for room in the queue, as a local connection's does.
                if actor.send(command).await.is_err() {
                    return;
                }
            }
            Some(message) = speech.next() => {
                let Some((user, connection)) = wire::two_ids(&message.subject) else {
                    continue;
                };
                let Ok(frame) = AudioFrame::parse(message.payload) else {
                    continue;
                };
                let Some(actor) = actor.upgrade() else { return };
                // Audio never waits: dropped and counted when the room is busy.
                if actor
                    .try_send(RoomCommand::Audio { user, connection, frame })
                    .is_err()
                {
                    metrics.audio_frames_dropped.inc();
                }
            }
            Some(message) = admits.next() => {
                let (Some(reply), Ok(admit)) =
                    (message.reply, serde_json::from_slice::<Admit>(&message.payload))
                else {
                    continue;
                };
                let Some(actor) = actor.upgrade() else { return };
                let (answer, answered) = oneshot::channel();
                let command = RoomCommand::Admit { user: admit.user, addr: admit.addr, reply: answer };
                if actor.send(command).await.is_err() {
                    return;
                }
                let client = client.clone();
                tokio::spawn(async move {
                    if let Ok(answer) = answered.await
                        && let Ok(json) = serde_json::to_vec(&answer)
                    {
                        let _ = client.publish(reply, json.into()).await;
                    }
                });
            }
            Some(message) = describes.next() => {
                let Some(reply) = message.reply else { continue };
                let Some(actor) = actor.upgrade() else { return };
                let (answer, answered) = oneshot::channel();
                if actor.send(RoomCommand::Describe { reply: answer }).await.is_err() {
                    return;
                }
                let client = client.clone();
                tokio::spawn(async move {
                    if let Ok(detail) = answered.await
                        && let Ok(json) = serde_json::to_vec(&detail)
                    {
                        let _ = client.publish(reply, json.into()).await;
                    }
                });
            }
            else => return,
        }
    }
}

/// Keeps room `summary` in the cluster's directory while it lives, and out of it when the
/// room ends.
///
/// The entry is what another node carries the room on from if this one dies (who is on
/// the stage, in which role), so changes to the stage go out at once (at most ten a
/// second). The speaking indicators change a few times a second while people talk: the
/// hallway shows them, but a second late is fine there, and 5,000 busy rooms then cost
/// NATS 5,000 writes a second rather than 20,000. Every [`super::ROOM_REFRESH`] it is put
/// again regardless, so an entry outlives a NATS restart.
///
/// A node shutting down leaves its rooms listed: their members carry them on elsewhere.
/// If the directory names another home for the room (this node was thought gone, and its
/// members went on elsewhere), the room here gives way: its members move to that one.
pub async fn list_room(
    cluster: Arc<Cluster>,
    mut summary: watch::Receiver<RoomSummary>,
    mut carried: watch::Receiver<crate::server::room::Carried>,
    access: Option<std::sync::Arc<crate::server::access::Access>>,
    actor: mpsc::WeakSender<RoomCommand>,
    shutdown: CancellationToken,
    claimed: Option<u64>,
) {
    use std::time::Duration;
    let id = summary.borrow().id.clone();
    let mut refresh = tokio::time::interval(super::ROOM_REFRESH);
    refresh.tick().await;
    // A room carried on here keeps the entry it was claimed with (the stage that gets its
    // roles back) until it changes.
    let mut revision = claimed;
    let mut keep_claimed = claimed.is_some();
    loop {
        let published = summary.borrow_and_update().clone();
        let kept = carried.borrow_and_update().clone();
        let put_at = tokio::time::Instant::now();
        if !keep_claimed {
            match cluster
                .write_room(&published, &kept, access.as_deref(), revision)
                .await
            {
                super::Written::At(now) => revision = Some(now),
                super::Written::Taken => {
                    if let Some(actor) = actor.upgrade() {
                        let _ = actor.send(RoomCommand::Moved).await;
                    }
                    return;
                }
                // Written again at the next change or refresh.
                super::Written::Failed => {}
            }
        }
        keep_claimed = false;
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = summary.changed() => if changed.is_err() { break },
            // A removal or a change to the chat's rules is written at once, like a
            // change to the stage.
            changed = carried.changed() => if changed.is_err() { break },
            _ = refresh.tick() => {}
        }
        let gap =
            if only_speaking_changed(&published, &summary.borrow()) && kept == *carried.borrow() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(put_at + gap) => {}
        }
    }
    if !shutdown.is_cancelled() {
        cluster.withdraw_room(&id).await;
    }
}

/// Whether two summaries differ only in who is speaking.
fn only_speaking_changed(a: &RoomSummary, b: &RoomSummary) -> bool {
    let quiet = |s: &RoomSummary| {
        let mut s = s.clone();
        for member in &mut s.speakers {
            member.speaking = false;
        }
        s
    };
    quiet(a) == quiet(b)
}
