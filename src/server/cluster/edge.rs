//! An edge: this node's members of a room homed on another node.
//!
//! To a connection an edge is a room: it takes the same [`RoomCommand`]s through a
//! [`RoomHandle`], so `connection.rs` serves members here the same way wherever the room's
//! rules run. The edge keeps no room state. It forwards what its members do to the home
//! (`wire::ToHome`, one subject, in order), and delivers what the home addresses
//! ([`crate::server::room::Recipients`]) to those of its members it names, through the same
//! [`LocalMembers`] path as the home. It receives each event and frame once, however many
//! members it has.
//!
//! **Joining.** A member's connection is held as *pending* until the home's `joined` for that
//! connection: nothing addressed to the room before then is theirs, and their snapshot comes
//! right after it on the same subject.
//!
//! **Losing the home.** A gap in the room's numbered events, or its home missing from the
//! directory for [`super::NODE_TIMEOUT`], and every member here is told to reconnect
//! ([`ErrorCode::Reconnect`]): they rejoin with a whole snapshot (and, if the home is gone,
//! find the room homed again, see `server::http`). An edge that falls behind on audio loses
//! audio (NATS drops what its subscription cannot hold; counted as `cluster_dropped`), and
//! never events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::home::{self, Down, SHARD_NODE};
use super::wire::{self, Admit, Numbered, ToEdges, ToHome};
use super::{Cluster, RoomEntry};
use crate::protocol::{ErrorCode, RoomDetail, UserId};
use crate::server::Shared;
use crate::server::actor::{Peer, ROOM_QUEUE, RoomCommand, RoomHandle};
use crate::server::members::LocalMembers;
use crate::server::outgoing::{CLOSE_NORMAL, Wire};
use crate::server::room::Refusal;

/// An edge with no members closes after this long (a member who reconnects at once finds
/// it still open).
const IDLE: Duration = Duration::from_secs(5);
/// How often the edge looks at the directory: its home alive, the room's summary.
const LOOK: Duration = Duration::from_millis(250);

/// The edge for room `entry` on this node, opened if there is none.
pub fn handle(shared: &Arc<Shared>, cluster: &Arc<Cluster>, entry: RoomEntry) -> RoomHandle {
    let Ok(mut edges) = cluster.edges.lock() else {
        // A poisoned lock: serve this one connection through a fresh edge anyway.
        return open(shared, cluster, entry);
    };
    if let Some((_, handle)) = edges.get(&entry.summary.id)
        && !handle.tx.is_closed()
    {
        return handle.clone();
    }
    let id = entry.summary.id.clone();
    let generation = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let handle = open_numbered(shared, cluster, entry, generation);
    edges.insert(id, (generation, handle.clone()));
    handle
}

fn open(shared: &Arc<Shared>, cluster: &Arc<Cluster>, entry: RoomEntry) -> RoomHandle {
    open_numbered(shared, cluster, entry, u64::MAX)
}

fn open_numbered(
    shared: &Arc<Shared>,
    cluster: &Arc<Cluster>,
    entry: RoomEntry,
    generation: u64,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    let (summary_tx, summary) = watch::channel(entry.summary.clone());
    let access = entry.access.map(Arc::new);
    shared.metrics.edges.inc();
    let edge = Edge {
        shared: shared.clone(),
        link: Link::Nats(cluster.clone()),
        down: None,
        summary_tx: Some(summary_tx),
        room: entry.summary.id.clone(),
        home: entry.home,
        home_instance: entry.instance,
        local: LocalMembers::new(shared.clone()),
        who: HashMap::new(),
        pending: HashMap::new(),
        next_seq: None,
        generation,
    };
    shared.tasks.spawn(edge.run(rx));
    RoomHandle {
        tx,
        summary,
        access,
        shards: None,
    }
}

/// A fan-out shard of room `room`, homed in this process: an edge whose link to the home is
/// the home's own command queue and its broadcast of events and audio.
pub(crate) fn shard(
    shared: &Arc<Shared>,
    room: String,
    home: mpsc::Sender<RoomCommand>,
    down: broadcast::Receiver<Down>,
    summary: watch::Receiver<crate::protocol::RoomSummary>,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    shared.metrics.edges.inc();
    let edge = Edge {
        shared: shared.clone(),
        link: Link::Shard(home),
        down: Some(down),
        summary_tx: None,
        room,
        home: SHARD_NODE.into(),
        home_instance: 0,
        local: LocalMembers::new(shared.clone()),
        who: HashMap::new(),
        pending: HashMap::new(),
        next_seq: None,
        generation: 0,
    };
    shared.tasks.spawn(edge.run(rx));
    RoomHandle {
        tx,
        summary,
        access: None,
        shards: None,
    }
}

/// How an edge reaches its room's home.
enum Link {
    /// On another node, over NATS.
    Nats(Arc<Cluster>),
    /// In this process (the edge is a fan-out shard): the home's own queue.
    Shard(mpsc::Sender<RoomCommand>),
}

/// What an edge receives from its room's home.
enum Downlink {
    Nats {
        events: async_nats::Subscriber,
        audio: async_nats::Subscriber,
    },
    Shard(broadcast::Receiver<Down>),
}

/// One thing from the home.
enum Incoming {
    Event(Numbered),
    Audio {
        speaker: UserId,
        bytes: bytes::Bytes,
    },
    /// Something that cannot be read, or the link broke.
    Broken(&'static str),
    /// `n` messages were lost (a shard fell behind).
    Lagged(u64),
}

impl Downlink {
    async fn next(&mut self) -> Incoming {
        match self {
            Self::Nats { events, audio } => tokio::select! {
                message = events.next() => match message {
                    Some(message) => match serde_json::from_slice::<Numbered>(&message.payload) {
                        Ok(numbered) => Incoming::Event(numbered),
                        Err(_) => Incoming::Broken("this server lost track of the room"),
                    },
                    None => Incoming::Broken("this server lost its link to the room"),
                },
                message = audio.next() => match message {
                    Some(message) => match wire::last_id(&message.subject) {
                        Some(speaker) => Incoming::Audio { speaker, bytes: message.payload },
                        None => Incoming::Lagged(0),
                    },
                    None => Incoming::Broken("this server lost its link to the room"),
                },
            },
            Self::Shard(down) => match down.recv().await {
                Ok(Down::Event(numbered)) => Incoming::Event(Numbered::clone(&numbered)),
                Ok(Down::Audio { speaker, bytes }) => Incoming::Audio { speaker, bytes },
                Err(broadcast::error::RecvError::Lagged(n)) => Incoming::Lagged(n),
                // The home is gone: so is the room.
                Err(broadcast::error::RecvError::Closed) => Incoming::Broken("closed"),
            },
        }
    }
}

struct Edge {
    shared: Arc<Shared>,
    link: Link,
    /// A shard's receiver, until its loop takes it.
    down: Option<broadcast::Receiver<Down>>,
    /// An edge's copy of the room's listing (a shard shares the home's).
    summary_tx: Option<watch::Sender<crate::protocol::RoomSummary>>,
    room: String,
    home: String,
    /// Which run of `home` holds the room.
    home_instance: u64,
    /// Members the home has let in.
    local: LocalMembers,
    /// Who each member here is, as they joined (to join them again after a gap).
    /// Each member, and the device key they joined with.
    who: HashMap<UserId, (crate::protocol::User, Option<String>)>,
    /// Connections waiting for the home's answer to their join, since when.
    pending: HashMap<UserId, Pending>,
    /// The number the next event must carry; `None` before the first.
    next_seq: Option<u64>,
    /// Which edge for this room this is, in the edges map.
    generation: u64,
}

/// A join waiting for the home's answer.
struct Pending {
    peer: Peer,
    reply: oneshot::Sender<Result<(), Refusal>>,
    since: Instant,
}

/// How long a join waits for the home's answer. Within a NATS cluster a new subscription
/// reaches the other servers quickly but without a promise, so the edge's first events can
/// be missed: the joiner is then told to connect again rather than wait forever.
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Why an edge's loop ended.
enum Stop {
    /// No members for [`IDLE`], or the server is shutting down.
    Quiet,
    /// The room ended.
    Ended,
    /// The link to the home broke: members reconnect.
    Lost(&'static str),
}

impl Edge {
    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>) {
        let downlink = match (&self.link, self.down.take()) {
            (_, Some(down)) => Ok(Downlink::Shard(down)),
            (Link::Nats(cluster), None) => {
                let client = cluster.client.clone();
                async {
                    Ok::<_, async_nats::SubscribeError>(Downlink::Nats {
                        events: client.subscribe(wire::room_events(&self.room)).await?,
                        audio: client.subscribe(wire::room_audio_all(&self.room)).await?,
                    })
                }
                .await
                .map_err(|e| e.to_string())
            }
            (Link::Shard(_), None) => Err("a shard without its home's broadcast".to_string()),
        };
        let stop = match downlink {
            Ok(mut downlink) => self.serve(&mut rx, &mut downlink).await,
            Err(e) => {
                tracing::warn!(room = %self.room, "cannot follow a room on another node: {e}");
                Stop::Lost("this server lost its link to the room")
            }
        };
        // Out of the edges map first, so that a new join opens a new edge.
        if let Link::Nats(cluster) = &self.link
            && let Ok(mut edges) = cluster.edges.lock()
            && edges
                .get(&self.room)
                .is_some_and(|(generation, _)| *generation == self.generation)
        {
            edges.remove(&self.room);
        }
        rx.close();
        match stop {
            Stop::Quiet | Stop::Ended => {}
            Stop::Lost(why) => self.let_everyone_go(why).await,
        }
        // What was queued meanwhile: joins are told to connect again.
        while let Ok(command) = rx.try_recv() {
            if let RoomCommand::Join { peer, reply, .. } = command {
                let refusal = Refusal {
                    code: ErrorCode::Reconnect,
                    message: "the room moved; connecting again".into(),
                };
                peer.say_goodbye(refusal.code, refusal.message.clone());
                let _ = reply.send(Err(refusal));
            }
        }
        self.local.flush();
        // Dropping the members says the room has ended to any still here.
        self.local.clear();
        self.pending.clear();
        self.shared.metrics.edges.dec();
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<RoomCommand>,
        downlink: &mut Downlink,
    ) -> Stop {
        let shutdown = self.shared.shutdown.clone();
        // A shard ends with its room (the home ends it on shutdown and says so); an edge
        // lets its members go to another node.
        let is_edge = matches!(self.link, Link::Nats(_));
        let mut look = tokio::time::interval(LOOK);
        let mut idle_since = Some(Instant::now());
        loop {
            let stop = tokio::select! {
                () = shutdown.cancelled(), if is_edge => Some(Stop::Lost("this server is shutting down")),
                command = rx.recv() => match command {
                    Some(command) => {
                        self.command(command).await;
                        None
                    }
                    None => Some(Stop::Quiet),
                },
                incoming = downlink.next() => {
                    if is_edge {
                        self.shared.metrics.cluster_in.inc();
                    }
                    match incoming {
                        Incoming::Event(numbered) => self.event(numbered).await,
                        Incoming::Audio { speaker, bytes } => {
                            let fanned = self.local.fan_out(speaker, &Wire::binary(bytes));
                            for user in fanned.stuck {
                                self.disconnect_slow(user).await;
                            }
                            None
                        }
                        Incoming::Lagged(0) => None,
                        Incoming::Lagged(lost) => {
                            // Audio or events: which is unknown, so members join again.
                            tracing::warn!(room = %self.room, lost, "a shard fell behind its room");
                            let expected = self.next_seq.unwrap_or(0);
                            self.resync(expected, expected.wrapping_add(lost)).await;
                            // The next event sets the count again.
                            self.next_seq = None;
                            None
                        }
                        Incoming::Broken("closed") => Some(Stop::Ended),
                        Incoming::Broken(why) => {
                            tracing::warn!(room = %self.room, "{why}");
                            Some(Stop::Lost(why))
                        }
                    }
                }
                _ = look.tick() => self.look(&mut idle_since).await,
            };
            self.local.flush();
            if let Some(stop) = stop {
                return stop;
            }
        }
    }

    /// The directory: is the home alive, what does the room look like, and is anyone here.
    async fn look(&mut self, idle_since: &mut Option<Instant>) -> Option<Stop> {
        match &self.link {
            Link::Shard(home) => {
                if home.is_closed() {
                    return Some(Stop::Ended);
                }
            }
            Link::Nats(cluster) => {
                let cluster = cluster.clone();
                if cluster.is_gone(&self.home, self.home_instance) {
                    return Some(Stop::Lost("the server running this room is gone"));
                }
                match cluster.remote_room(&self.room) {
                    Some(entry) => {
                        if entry.home != self.home || entry.instance != self.home_instance {
                            return Some(Stop::Lost("the room moved to another server"));
                        }
                        if let Some(summary_tx) = &self.summary_tx {
                            summary_tx.send_if_modified(|old| {
                                let changed = *old != entry.summary;
                                *old = entry.summary;
                                changed
                            });
                        }
                    }
                    // Out of the directory while its home lives: it ended (and the `ended`
                    // event, the room's last, was lost: no gap shows that one).
                    None => match cluster.home_of(&self.room) {
                        None => return Some(Stop::Ended),
                        Some(home) if home != self.home => {
                            return Some(Stop::Lost("the room moved to another server"));
                        }
                        Some(_) => {}
                    },
                }
            }
        }
        let (local, pending) = (&self.local, &self.pending);
        self.who
            .retain(|id, _| local.get(*id).is_some() || pending.contains_key(id));
        let late: Vec<UserId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since.elapsed() > JOIN_WAIT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(Pending { peer, reply, .. }) = self.pending.remove(&id) {
                let refusal = unreachable_home();
                peer.say_goodbye(refusal.code, refusal.message.clone());
                let _ = reply.send(Err(refusal));
                // The home may have let them in and only its answer was lost.
                let connection = peer.connection;
                self.send(&ToHome::Gone {
                    user: id,
                    connection,
                })
                .await;
            }
        }
        if self.local.is_empty() && self.pending.is_empty() {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= IDLE {
                return Some(Stop::Quiet);
            }
        } else {
            *idle_since = None;
        }
        None
    }

    /// This node's name and run, as the home keeps its members (a shard's: [`SHARD_NODE`]).
    fn node(&self) -> (String, u64) {
        match &self.link {
            Link::Nats(cluster) => (cluster.node.clone(), cluster.instance),
            Link::Shard(_) => (SHARD_NODE.into(), 0),
        }
    }

    async fn send(&self, message: &ToHome) {
        match &self.link {
            Link::Shard(home) => {
                // In order, waiting for room in the home's queue as a connection does.
                let _ = home.send(home::command_of(message.clone())).await;
            }
            Link::Nats(cluster) => {
                let Ok(json) = serde_json::to_vec(message) else {
                    return;
                };
                self.shared.metrics.cluster_out.inc();
                if let Err(e) = cluster
                    .client
                    .publish(wire::room_in(&self.room), json.into())
                    .await
                {
                    self.shared.metrics.cluster_dropped.inc();
                    tracing::debug!(room = %self.room, "cannot reach the room's home: {e}");
                }
            }
        }
    }

    async fn command(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Admit { user, addr, reply } => {
                let client = match &self.link {
                    Link::Shard(home) => {
                        let _ = home.send(RoomCommand::Admit { user, addr, reply }).await;
                        return;
                    }
                    Link::Nats(cluster) => cluster.client.clone(),
                };
                let subject = wire::room_admit(&self.room);
                tokio::spawn(async move {
                    let Ok(json) = serde_json::to_vec(&Admit { user, addr }) else {
                        return;
                    };
                    let answer = match client.request(subject, json.into()).await {
                        Ok(message) => {
                            serde_json::from_slice::<Result<(), Refusal>>(&message.payload)
                                .unwrap_or_else(|_| Err(unreachable_home()))
                        }
                        Err(_) => Err(unreachable_home()),
                    };
                    let _ = reply.send(answer);
                });
            }
            RoomCommand::Describe { reply } => {
                let client = match &self.link {
                    Link::Shard(home) => {
                        let _ = home.send(RoomCommand::Describe { reply }).await;
                        return;
                    }
                    Link::Nats(cluster) => cluster.client.clone(),
                };
                let subject = wire::room_describe(&self.room);
                tokio::spawn(async move {
                    if let Ok(message) = client.request(subject, bytes::Bytes::new()).await
                        && let Ok(detail) = serde_json::from_slice::<RoomDetail>(&message.payload)
                    {
                        let _ = reply.send(detail);
                    }
                });
            }
            RoomCommand::Join {
                user,
                device,
                peer,
                reply,
            } => {
                self.who.insert(user.id, (user.clone(), device.clone()));
                let (node, instance) = self.node();
                let join = ToHome::Join {
                    user: user.clone(),
                    device,
                    addr: peer.addr,
                    connection: peer.connection,
                    node,
                    instance,
                };
                let pending = Pending {
                    peer,
                    reply,
                    since: Instant::now(),
                };
                if let Some(Pending {
                    peer: old,
                    reply: old_reply,
                    ..
                }) = self.pending.insert(user.id, pending)
                {
                    let refusal = Refusal {
                        code: ErrorCode::Replaced,
                        message: "you joined this room from another connection".into(),
                    };
                    old.say_goodbye(refusal.code, refusal.message.clone());
                    let _ = old_reply.send(Err(refusal));
                }
                self.send(&join).await;
            }
            RoomCommand::Control {
                user,
                connection,
                id,
                command,
            } => {
                if self.local.is_current(user, connection) {
                    self.send(&ToHome::Control {
                        user,
                        connection,
                        id,
                        command,
                    })
                    .await;
                }
            }
            RoomCommand::Audio {
                user,
                connection,
                frame,
            } => {
                if !self.local.is_current(user, connection) {
                    return;
                }
                match &self.link {
                    // Audio never waits: dropped and counted when the room is busy.
                    Link::Shard(home) => {
                        if home
                            .try_send(RoomCommand::Audio {
                                user,
                                connection,
                                frame,
                            })
                            .is_err()
                        {
                            self.shared.metrics.audio_frames_dropped.inc();
                        }
                    }
                    Link::Nats(cluster) => {
                        self.shared.metrics.cluster_out.inc();
                        let subject = wire::room_speak(&self.room, user, connection);
                        if cluster
                            .client
                            .publish(subject, frame.bytes().clone())
                            .await
                            .is_err()
                        {
                            self.shared.metrics.cluster_dropped.inc();
                        }
                    }
                }
            }
            RoomCommand::Gone { user, connection } => {
                let here = if self.local.is_current(user, connection) {
                    self.local.remove(user).is_some()
                } else if self
                    .pending
                    .get(&user)
                    .is_some_and(|p| p.peer.connection == connection)
                {
                    self.pending.remove(&user).is_some()
                } else {
                    false
                };
                if here {
                    self.send(&ToHome::Gone { user, connection }).await;
                }
            }
            RoomCommand::Expel {
                user,
                code,
                message,
                by,
            } => {
                self.send(&ToHome::Expel {
                    user,
                    code,
                    message,
                    by,
                })
                .await;
            }
            // Only a room's home takes members from other nodes.
            RoomCommand::RemoteJoin { .. } | RoomCommand::SweepRemote | RoomCommand::Moved => {}
        }
    }

    async fn event(&mut self, numbered: Numbered) -> Option<Stop> {
        if let Some(expected) = self.next_seq
            && numbered.seq != expected
        {
            self.resync(expected, numbered.seq).await;
        }
        self.next_seq = Some(numbered.seq.wrapping_add(1));
        match numbered.event {
            ToEdges::Joined {
                user,
                connection,
                refusal,
            } => {
                // A member here joined again after a gap, and the home refuses them now
                // (removed, blocked or suspended while the news was lost): they go.
                if let Some(refusal) = &refusal
                    && self.local.is_current(user, connection)
                    && let Some(peer) = self.local.remove(user)
                {
                    peer.say_goodbye(refusal.code, refusal.message.clone());
                }
                if self
                    .pending
                    .get(&user)
                    .is_some_and(|p| p.peer.connection == connection)
                    && let Some(Pending { peer, reply, .. }) = self.pending.remove(&user)
                {
                    match refusal {
                        None => {
                            if let Some(old) = self.local.insert(user, peer) {
                                old.say_goodbye(
                                    ErrorCode::Replaced,
                                    "you joined this room from another connection".into(),
                                );
                            }
                            let _ = reply.send(Ok(()));
                        }
                        Some(refusal) => {
                            peer.say_goodbye(refusal.code, refusal.message.clone());
                            let _ = reply.send(Err(refusal));
                        }
                    }
                }
            }
            ToEdges::Message { to, text } => {
                let mut slow = Vec::new();
                self.local
                    .broadcast(&Wire::text(text), &mut slow, |id| to.includes(id));
                for user in slow {
                    self.disconnect_slow(user).await;
                }
            }
            ToEdges::Disconnect {
                user,
                connection,
                code,
                message,
            } => {
                if self.local.is_current(user, connection)
                    && let Some(peer) = self.local.remove(user)
                {
                    peer.say_goodbye(code, message);
                }
            }
            ToEdges::Left { user, connection } => {
                if self.local.is_current(user, connection)
                    && let Some(peer) = self.local.remove(user)
                {
                    peer.out
                        .close_with([Wire::close(CLOSE_NORMAL, "left the room")]);
                }
            }
            ToEdges::Ended => return Some(Stop::Ended),
        }
        None
    }

    /// Events `expected..got` never came (NATS delivers at most once: a subscription moving
    /// to another NATS server, after the one it was on died, misses what was published
    /// meanwhile). What members here were told may differ from the room: each joins again
    /// on the same connection, and the home answers each with a fresh snapshot. No one is
    /// disconnected; they may miss a few frames of audio and an answer or two.
    async fn resync(&mut self, expected: u64, got: u64) {
        self.shared.metrics.cluster_resyncs.inc();
        tracing::warn!(room = %self.room, expected, got, "a gap in a room's events: members here get a fresh snapshot");
        let (node, instance) = self.node();
        let members: Vec<ToHome> = self
            .local
            .iter()
            .filter_map(|(id, peer)| {
                let (user, device) = self.who.get(&id)?.clone();
                Some(ToHome::Join {
                    user,
                    device,
                    addr: peer.addr,
                    connection: peer.connection,
                    node: node.clone(),
                    instance,
                })
            })
            .collect();
        for join in &members {
            self.send(join).await;
        }
    }

    /// A member here cannot keep up: they go, and the home hears they are gone.
    async fn disconnect_slow(&mut self, user: UserId) {
        let connection = self.local.get(user).map(|p| p.connection);
        if self.local.disconnect_slow(user)
            && let Some(connection) = connection
        {
            self.send(&ToHome::Gone { user, connection }).await;
        }
    }

    /// Every member here is told to connect again, and why.
    /// The home hears they are gone (if it still listens), so none stays a member there.
    async fn let_everyone_go(&mut self, why: &str) {
        let message = format!("{why}; connecting again");
        let mut gone = Vec::new();
        let ids: Vec<UserId> = self.local.iter().map(|(id, _)| id).collect();
        for id in ids {
            if let Some(peer) = self.local.remove(id) {
                peer.say_goodbye(ErrorCode::Reconnect, message.clone());
                gone.push((id, peer.connection));
            }
        }
        for (id, Pending { peer, reply, .. }) in self.pending.drain() {
            let refusal = Refusal {
                code: ErrorCode::Reconnect,
                message: message.clone(),
            };
            peer.say_goodbye(refusal.code, refusal.message.clone());
            let _ = reply.send(Err(refusal));
            gone.push((id, peer.connection));
        }
        for (user, connection) in gone {
            self.send(&ToHome::Gone { user, connection }).await;
        }
    }
}

fn unreachable_home() -> Refusal {
    Refusal {
        code: ErrorCode::Reconnect,
        message: "the server running this room did not answer; try again".into(),
    }
}
