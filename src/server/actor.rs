//! One task per room: it owns the pure [`Room`] core, the room's peers and their queues, and
//! does the audio fan-out. Everything that changes a room arrives as a [`RoomCommand`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::addr::AddrKey;
use super::cluster::home::{HomeLink, Remote, SHARD_NODE};
use super::cluster::wire::ToEdges;
use super::members::LocalMembers;
pub use super::members::Peer;
use super::outgoing::{CLOSE_NORMAL, Wire};
use super::room::{Addressed, AudioVerdict, Delivery, Recipients, Refusal, Room};
use super::{Shared, unix_ms};
use crate::protocol::control::{LeaveReason, RoomEndReason};
use crate::protocol::text::terminal_safe;
use crate::protocol::{
    AudioFrame, ClientCommand, ErrorCode, RoomDetail, RoomSummary, ServerMessage, User, UserId,
};

/// Commands a room actor receives. Each connection sends its own; the actor is the only
/// writer of room state.
pub enum RoomCommand {
    /// Can this user join? Asked before the WebSocket upgrade so refusals get an HTTP status.
    Admit {
        user: User,
        /// Where the connection comes from.
        addr: IpAddr,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A connection joins; the reply says whether it was let in.
    Join {
        user: User,
        /// The X25519 key of the device joining (listed in private rooms).
        device: Option<String>,
        peer: Peer,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A member connected to another node of the cluster joins (their edge asked).
    RemoteJoin {
        user: User,
        device: Option<String>,
        addr: IpAddr,
        connection: u64,
        node: String,
        /// Which run of `node`.
        instance: u64,
    },
    /// A connection closed.
    Gone { user: UserId, connection: u64 },
    /// In a cluster, every second: members connected to nodes that are gone have left.
    SweepRemote,
    /// In a cluster: another node has taken the room over (this one was thought gone).
    /// Everyone here moves there.
    Moved,
    /// A control command from a connection.
    Control {
        user: UserId,
        connection: u64,
        id: Option<Value>,
        command: ClientCommand,
    },
    /// An audio frame from a connection (already parsed and rate-checked).
    Audio {
        user: UserId,
        connection: u64,
        frame: AudioFrame,
    },
    /// The whole room, for `GET /api/v2/rooms/{id}`.
    Describe { reply: oneshot::Sender<RoomDetail> },
    /// The server puts someone out of the room for good (a moderator blocked them, an admin
    /// suspended them); nothing happens if they are not in it.
    Expel {
        user: UserId,
        code: ErrorCode,
        message: String,
        /// Who asks (a moderator's block): done only if they outrank `user` here. `None`
        /// for the server's own reasons (a suspension).
        by: Option<UserId>,
    },
}

/// How the rest of the server reaches a room.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<RoomCommand>,
    pub summary: watch::Receiver<RoomSummary>,
    /// A private room's sharing: who may see and join it.
    pub access: Option<Arc<crate::server::access::Access>>,
    /// A room homed here whose fan-out may be spread over cores.
    pub shards: Option<Arc<Shards>>,
}

/// A room's fan-out shards: edges inside this process, one per core. A room's rules run on
/// one core, in its actor; the writes to its members' sockets are most of its work (the
/// kernel's part of each write included), and only more cores make them faster. Once the
/// room has [`Shards::from`] members, each newcomer is served by a shard in turn: the
/// actor sends each event and frame once to all shards, and each writes to its own members,
/// on its own core, by the same path as the actor and as another node's edge.
pub struct Shards {
    room: String,
    home: mpsc::WeakSender<RoomCommand>,
    down: tokio::sync::broadcast::Sender<super::cluster::home::Down>,
    summary: watch::Receiver<RoomSummary>,
    slots: std::sync::Mutex<Vec<Option<RoomHandle>>>,
    next: std::sync::atomic::AtomicUsize,
    /// Members in the room before newcomers go to shards.
    pub from: usize,
}

impl Shards {
    /// The shard for the next newcomer (round the shards in turn), opened if it is not.
    pub fn pick(&self, shared: &Arc<Shared>) -> Option<RoomHandle> {
        let home = self.home.upgrade()?;
        let mut slots = self.slots.lock().ok()?;
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % slots.len();
        if let Some(handle) = &slots[i]
            && !handle.tx.is_closed()
        {
            return Some(handle.clone());
        }
        let handle = super::cluster::edge::shard(
            shared,
            self.room.clone(),
            home,
            self.down.subscribe(),
            self.summary.clone(),
        );
        slots[i] = Some(handle.clone());
        Some(handle)
    }
}

/// Commands waiting for a room actor. Control from every connection and audio from the
/// speakers share it; 1,024 is a few hundred ms of 13 speakers plus a join storm. Senders
/// of control wait when it is full (backpressure on that one connection); audio is
/// dropped and counted instead.
pub const ROOM_QUEUE: usize = 1_024;

/// Starts the actor for a room; `claimed` is the directory revision of a room this node
/// has just taken over in a cluster (see `Room::resume`).
///
/// A private room has its `access` (and is made private, see `Room::make_private`).
pub fn spawn_claimed(
    shared: Arc<Shared>,
    mut room: Room,
    claimed: Option<u64>,
    access: Option<Arc<crate::server::access::Access>>,
) -> RoomHandle {
    if let Some(access) = &access {
        room.make_private(access.link_secret.clone());
    }
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    let (summary_tx, summary) = watch::channel(room.summary());
    let (carried_tx, carried) = watch::channel(room.carried());
    let shard_count = shared.config.fanout_shards;
    let link = (shared.cluster.is_some() || shard_count > 1).then(|| {
        HomeLink::start(
            shared.cluster.clone(),
            room.id().to_string(),
            tx.downgrade(),
            &shared.tasks,
            shared.metrics.clone(),
        )
    });
    let shards = match &link {
        Some(link) if shard_count > 1 => Some(Arc::new(Shards {
            room: room.id().to_string(),
            home: tx.downgrade(),
            down: link.shards.clone(),
            summary: summary.clone(),
            slots: std::sync::Mutex::new(vec![None; shard_count]),
            next: 0.into(),
            from: shared.config.shard_from,
        })),
        _ => None,
    };
    let actor = RoomActor {
        shared: shared.clone(),
        room,
        local: LocalMembers::new(shared.clone()),
        link,
        draining: false,
        summary_tx,
        carried_tx,
        banned_addrs: HashSet::new(),
        spared: HashSet::new(),
        me: tx.downgrade(),
        moderators_seen: HashSet::new(),
        replay: None,
    };
    if let Some(cluster) = &shared.cluster {
        shared.tasks.spawn(super::cluster::home::list_room(
            cluster.clone(),
            summary.clone(),
            carried,
            access.clone(),
            tx.downgrade(),
            shared.shutdown.clone(),
            claimed,
        ));
    }
    shared.tasks.spawn(actor.run(rx));
    RoomHandle {
        tx,
        summary,
        access,
        shards,
    }
}

struct RoomActor {
    /// The room's own queue, for work it hands itself back (a new moderator's blocks).
    me: mpsc::WeakSender<RoomCommand>,
    /// Who ran the stage at the last summary: a newcomer among them has their blocks
    /// applied to who is here.
    moderators_seen: HashSet<UserId>,
    shared: Arc<Shared>,
    room: Room,
    /// Members connected to this node.
    local: LocalMembers,
    /// In a cluster: the room's link to its edges and the members connected to them.
    link: Option<HomeLink>,
    /// This node is leaving the cluster and the room goes on without it.
    draining: bool,
    summary_tx: watch::Sender<RoomSummary>,
    /// Who is banned and the chat's rules, for the directory (a node carrying the room on
    /// keeps them).
    carried_tx: watch::Sender<crate::server::room::Carried>,
    /// Addresses of removed people (see [`AddrKey`]): the account is banned first; this is
    /// the second line, against a second account made from the same address.
    banned_addrs: HashSet<AddrKey>,
    /// Others who were in the room from a banned address when it was banned: they may
    /// come back after a dropped connection.
    spared: HashSet<UserId>,
    /// The room's replay, from its first forwarded frame (#15).
    replay: Option<super::replay::ReplayHandle>,
}

/// Commands the actor handles before writing what they produced: under load one write
/// then carries several frames to each listener (13 speakers at once: up to 13).
const BATCH: usize = 64;

impl RoomActor {
    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>) {
        let shutdown = self.shared.shutdown.clone();
        // The room may end before anyone joins (its host never came).
        let mut deadline = self.next_deadline();
        while !self.room.is_ended() && !self.draining {
            // Sleeps only while a deadline exists: an idle room has no timer.
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => {
                        let mut news = self.handle(command);
                        for _ in 1..BATCH {
                            if self.room.is_ended() || self.draining {
                                break;
                            }
                            match rx.try_recv() {
                                Ok(command) => news |= self.handle(command),
                                Err(_) => break,
                            }
                        }
                        // Most audio frames change nothing but the speaker's hold time: no
                        // need to look over thousands of members for the next deadline and
                        // the directory's summary. (A deadline left early only wakes the
                        // room once to find nothing due.)
                        if !news {
                            self.flush();
                            continue;
                        }
                    }
                    None => break,
                },
                () = sleep => {
                    let out = self.room.tick(unix_ms());
                    self.deliver(out);
                }
                () = shutdown.cancelled() => {
                    if self.shared.cluster.is_some() {
                        // In a cluster the room outlives this node: its members move to
                        // other nodes, and the first to rejoin there carries it on.
                        self.drain();
                        break;
                    }
                    let out = self.room.end(RoomEndReason::ServerShutdown, None);
                    self.deliver(out);
                }
            }
            // The directory first: whoever sees the news can then see it in the listing.
            self.publish_summary();
            self.apply_new_moderators_blocks();
            self.flush();
            deadline = self.next_deadline();
        }
        self.flush();
        self.finish();
        if self.draining {
            // Out of the rooms map now: joins that were waiting go elsewhere, told to connect
            // again (not that the room has ended).
            rx.close();
            let moving = || Refusal {
                code: ErrorCode::Reconnect,
                message: "the room is moving to another server; connecting again".into(),
            };
            while let Ok(command) = rx.try_recv() {
                match command {
                    RoomCommand::Join { peer, reply, .. } => {
                        peer.say_goodbye(ErrorCode::Reconnect, moving().message);
                        let _ = reply.send(Err(moving()));
                    }
                    RoomCommand::Admit { reply, .. } => {
                        let _ = reply.send(Err(moving()));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Writes what the last commands queued.
    fn flush(&mut self) {
        self.local.flush();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let at_ms = [
            self.room.moderator_deadline_ms(),
            self.room.speaking_deadline_ms(),
            self.room.audience_deadline_ms(),
            self.room.toggle_deadline_ms(),
            self.room.life_deadline_ms(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(Instant::now() + Duration::from_millis(at_ms.saturating_sub(unix_ms())))
    }

    /// Someone who now runs the stage (the host arriving, a moderator made or back) puts out
    /// whoever here they block, as a block made while they were here does: their blocks
    /// are read from the store off the actor, and come back as `Expel`s, checked by rank.
    fn apply_new_moderators_blocks(&mut self) {
        let now: HashSet<UserId> = self
            .summary_tx
            .borrow()
            .speakers
            .iter()
            .filter(|s| s.role.is_moderator())
            .map(|s| s.id)
            .collect();
        let new: Vec<UserId> = now.difference(&self.moderators_seen).copied().collect();
        self.moderators_seen = now;
        if new.is_empty() {
            return;
        }
        let (store, me) = (self.shared.store.clone(), self.me.clone());
        self.shared.tasks.spawn(async move {
            for moderator in new {
                let Ok(blocked) = store.call(move |s| s.blocking(moderator)).await else {
                    continue;
                };
                let Some(room) = me.upgrade() else {
                    return;
                };
                for user in blocked {
                    let expel = RoomCommand::Expel {
                        user,
                        code: ErrorCode::Blocked,
                        message: "the room's host or a moderator blocks you".into(),
                        by: Some(moderator),
                    };
                    if room.send(expel).await.is_err() {
                        return;
                    }
                }
            }
        });
    }

    fn publish_summary(&self) {
        let carried = self.room.carried();
        self.carried_tx.send_if_modified(|old| {
            let changed = *old != carried;
            if changed {
                *old = carried;
            }
            changed
        });
        let summary = self.room.summary();
        self.summary_tx.send_if_modified(|old| {
            if *old == summary {
                false
            } else {
                *old = summary;
                true
            }
        });
    }

    fn finish(&mut self) {
        let id = self.room.id().to_string();
        if let Ok(mut rooms) = self.shared.rooms.write() {
            rooms.remove(&id);
        }
        self.shared.metrics.rooms.dec();
        if let (Some(replay), Some(replays)) = (&self.replay, &self.shared.replays) {
            // A room that moves to another node goes on there: this part is not all of it.
            let why = self.draining.then(|| {
                "the room moved to another server mid-way; this is the part kept here".to_string()
            });
            replays.end(replay, unix_ms(), why);
        }
        if self.draining {
            return;
        }
        tracing::info!(room = %id, title = %terminal_safe(self.room.title()), "room ended");
        if let Some(link) = &mut self.link
            && link.has_remote()
        {
            link.event(ToEdges::Ended);
        }
        // Dropping the peers says goodbye to any still here; their tasks finish writing,
        // then close.
        self.local.clear();
    }

    /// Handles one command; false when it left the room's state as it was (an audio frame
    /// forwarded without news).
    fn handle(&mut self, command: RoomCommand) -> bool {
        match command {
            RoomCommand::Admit { user, addr, reply } => {
                let _ = reply.send(self.admission(&user, addr));
            }
            RoomCommand::Describe { reply } => {
                let _ = reply.send(self.room.detail());
            }
            RoomCommand::Expel {
                user,
                code,
                message,
                by,
            } => {
                if by.is_none_or(|by| self.room.outranks(by, user)) {
                    let out = self.room.expel(user, code, message, unix_ms());
                    self.deliver(out);
                }
            }
            RoomCommand::Join {
                user,
                device,
                peer,
                reply,
            } => match self
                .admission(&user, peer.addr)
                .and_then(|()| self.room.join_with_device(&user, device, unix_ms()))
            {
                Ok(out) => {
                    self.replace(user.id);
                    self.local.insert(user.id, peer);
                    let _ = reply.send(Ok(()));
                    self.deliver(out);
                }
                Err(refusal) => {
                    // The connection says goodbye with the refusal; the peer's own (on drop)
                    // must not come first.
                    peer.say_goodbye(refusal.code, refusal.message.clone());
                    let _ = reply.send(Err(refusal));
                }
            },
            RoomCommand::RemoteJoin {
                user,
                device,
                addr,
                connection,
                node,
                instance,
            } => {
                let joined = self
                    .admission(&user, addr)
                    .and_then(|()| self.room.join_with_device(&user, device, unix_ms()));
                let Some(link) = &mut self.link else {
                    return false;
                };
                match joined {
                    Ok(out) => {
                        let previous = link.add(
                            user.id,
                            Remote {
                                node,
                                instance,
                                connection,
                                addr,
                            },
                        );
                        link.event(ToEdges::Joined {
                            user: user.id,
                            connection,
                            refusal: None,
                        });
                        if let Some(old) = previous
                            && old.connection != connection
                        {
                            link.event(ToEdges::Disconnect {
                                user: user.id,
                                connection: old.connection,
                                code: ErrorCode::Replaced,
                                message: "you joined this room from another connection".into(),
                            });
                        }
                        if let Some(old) = self.local.remove(user.id) {
                            old.say_goodbye(
                                ErrorCode::Replaced,
                                "you joined this room from another connection".into(),
                            );
                        }
                        self.deliver(out);
                    }
                    Err(refusal) => link.event(ToEdges::Joined {
                        user: user.id,
                        connection,
                        refusal: Some(refusal),
                    }),
                }
            }
            RoomCommand::Moved => {
                tracing::warn!(room = %self.room.id(), "another node took this room over; moving its members there");
                self.drain();
            }
            RoomCommand::SweepRemote => {
                let Some(link) = &mut self.link else {
                    return false;
                };
                let Some(cluster) = link.cluster.clone() else {
                    return false;
                };
                // Shards are this process: never gone while the room is.
                let lost: Vec<UserId> = link
                    .iter()
                    .filter(|(_, r)| r.node != SHARD_NODE && cluster.is_gone(&r.node, r.instance))
                    .map(|(id, _)| id)
                    .collect();
                if lost.is_empty() {
                    return false;
                }
                for user in &lost {
                    if let Some(remote) = link.take(*user) {
                        // A node only thought gone (unheard of for a while) still holds
                        // their connection: it closes, and they come back.
                        link.event(ToEdges::Disconnect {
                            user: *user,
                            connection: remote.connection,
                            code: ErrorCode::Reconnect,
                            message: "your server lost touch with the room; connecting again"
                                .into(),
                        });
                    }
                }
                for user in lost {
                    let out = self.room.depart(user, LeaveReason::Disconnected, unix_ms());
                    self.deliver(out);
                }
            }
            RoomCommand::Gone { user, connection } => {
                if self.local.is_current(user, connection) {
                    self.local.remove(user);
                } else if let Some(link) = &mut self.link
                    && link.get(user).is_some_and(|r| r.connection == connection)
                {
                    link.take(user);
                } else {
                    return false;
                }
                let out = self.room.depart(user, LeaveReason::Disconnected, unix_ms());
                self.deliver(out);
            }
            RoomCommand::Control {
                user,
                connection,
                id,
                command,
            } => {
                if !self.is_current(user, connection) {
                    return false;
                }
                match self.room.command(user, &command, unix_ms()) {
                    Ok(out) => {
                        // Before the removal's own deliveries close the connection.
                        if let ClientCommand::Remove { user_id } = command {
                            self.ban_address(user_id, user);
                        }
                        // The answer follows the command's events, so a client that sees
                        // `ok` has seen what its command did; except where the effects close
                        // the sender's connection (leave, end_room), where it must go first.
                        let closes_sender =
                            matches!(command, ClientCommand::Leave | ClientCommand::EndRoom);
                        let answer = |actor: &mut Self| {
                            id.clone()
                                .is_none_or(|id| actor.send_to(user, &ServerMessage::Ok { id }))
                        };
                        let mut answered = true;
                        if closes_sender {
                            answered = answer(self);
                        }
                        self.deliver(out);
                        if !closes_sender {
                            answered = answer(self);
                        }
                        // After the command's own events, so nobody hears of a command by
                        // someone who has already left.
                        if !answered {
                            self.disconnect_slow(user);
                        }
                        if command == ClientCommand::Leave {
                            self.close_left(user);
                        }
                    }
                    Err(Refusal { code, message }) => {
                        self.shared.metrics.errors.inc();
                        // Control is never dropped: a client too far behind for its answer goes.
                        if !self.send_to(user, &ServerMessage::error(id, code, message)) {
                            self.disconnect_slow(user);
                        }
                    }
                }
            }
            RoomCommand::Audio {
                user,
                connection,
                frame,
            } => {
                return self.is_current(user, connection) && self.fan_out(user, frame);
            }
        }
        true
    }

    /// This node is leaving the cluster: everyone connected here is told to connect again
    /// (to another node), and edges find the room's home gone.
    fn drain(&mut self) {
        let ids: Vec<UserId> = self.local.iter().map(|(id, _)| id).collect();
        for id in ids {
            if let Some(peer) = self.local.remove(id) {
                peer.say_goodbye(
                    ErrorCode::Reconnect,
                    "this server is shutting down; moving you to another".into(),
                );
            }
        }
        // Members on edges and shards move too (an edge would find out from the
        // directory; a shard has no other way to know).
        if let Some(link) = &mut self.link {
            let remote: Vec<(UserId, u64)> =
                link.iter().map(|(id, r)| (id, r.connection)).collect();
            for (user, connection) in remote {
                link.take(user);
                link.event(ToEdges::Disconnect {
                    user,
                    connection,
                    code: ErrorCode::Reconnect,
                    message: "this server is shutting down; moving you to another".into(),
                });
            }
        }
        self.draining = true;
        tracing::info!(room = %self.room.id(), "handing the room over to the cluster");
    }

    /// `user` joins again: a connection they had before, here or on another node, says
    /// goodbye.
    fn replace(&mut self, user: UserId) {
        let message = || "you joined this room from another connection".to_string();
        if let Some(old) = self.local.remove(user) {
            old.say_goodbye(ErrorCode::Replaced, message());
        }
        if let Some(link) = &mut self.link
            && let Some(old) = link.take(user)
        {
            link.event(ToEdges::Disconnect {
                user,
                connection: old.connection,
                code: ErrorCode::Replaced,
                message: message(),
            });
        }
    }

    /// Closes the connection of someone who left, normally.
    fn close_left(&mut self, user: UserId) {
        if let Some(peer) = self.local.remove(user) {
            peer.out
                .close_with([Wire::close(CLOSE_NORMAL, "left the room")]);
        } else if let Some(link) = &mut self.link
            && let Some(old) = link.take(user)
        {
            link.event(ToEdges::Left {
                user,
                connection: old.connection,
            });
        }
    }

    /// The room's admission rules, and no one from a banned address who is not already in.
    fn admission(&self, user: &User, addr: IpAddr) -> Result<(), Refusal> {
        self.room.admission(user)?;
        if self.banned_addrs.contains(&AddrKey::of(addr))
            && !self.room.contains(user.id)
            && !self.spared.contains(&user.id)
        {
            return Err(Refusal {
                code: ErrorCode::Banned,
                message: "a moderator removed you from this room; you cannot rejoin it".into(),
            });
        }
        Ok(())
    }

    /// Where a member's connection comes from, wherever it is connected.
    fn addr_of(&self, user: UserId) -> Option<IpAddr> {
        self.local
            .get(user)
            .map(|p| p.addr)
            .or_else(|| self.link.as_ref().and_then(|l| l.get(user).map(|r| r.addr)))
    }

    /// Bans the address `removed` is connected from, unless `by` (the moderator) shares it:
    /// then it is one household, one office or a proxy in front of the server, and the ban
    /// would keep out the moderator's own people (or everyone). The user id is banned
    /// regardless, by the room.
    fn ban_address(&mut self, removed: UserId, by: UserId) {
        let key = |id| self.addr_of(id).map(AddrKey::of);
        if let Some(target) = key(removed)
            && key(by) != Some(target)
        {
            tracing::info!(room = %self.room.id(), user = removed, %target, "banning the address of a removed participant");
            self.banned_addrs.insert(target);
            let mut spared: Vec<UserId> = self
                .local
                .iter()
                .filter(|(id, p)| *id != removed && AddrKey::of(p.addr) == target)
                .map(|(id, _)| id)
                .collect();
            if let Some(link) = &self.link {
                spared.extend(
                    link.iter()
                        .filter(|(id, r)| *id != removed && AddrKey::of(r.addr) == target)
                        .map(|(id, _)| id),
                );
            }
            self.spared.extend(spared);
        }
    }

    fn is_current(&self, user: UserId, connection: u64) -> bool {
        self.local.is_current(user, connection)
            || self
                .link
                .as_ref()
                .is_some_and(|l| l.get(user).is_some_and(|r| r.connection == connection))
    }

    /// Forwards a frame to everyone but its speaker: one buffer, shared by reference count,
    /// and one message for all edges. True when that brought news (speaking, a refusal, a
    /// disconnection).
    fn fan_out(&mut self, speaker: UserId, frame: AudioFrame) -> bool {
        let metrics = &self.shared.metrics;
        match self
            .room
            .audio(speaker, frame.header.level, frame.header.voice, unix_ms())
        {
            AudioVerdict::Drop { tell, refusal } => {
                metrics.audio_frames_dropped.inc();
                if tell {
                    // Like every other answer with an error; the silent repeats are only drops.
                    metrics.errors.inc();
                    self.send_to(
                        speaker,
                        &ServerMessage::error(None, refusal.code, refusal.message),
                    );
                }
                tell
            }
            AudioVerdict::Forward(events) => {
                metrics.audio_frames_in.inc();
                // Framed once; each delivery is one write of the same bytes.
                let bytes = frame.stamped(speaker).bytes().clone();
                if let Some(link) = &mut self.link
                    && link.has_remote()
                {
                    link.audio(speaker, bytes.clone());
                }
                self.keep_for_replay(speaker, &bytes);
                let fanned = self.local.fan_out(speaker, &Wire::binary(bytes));
                let news = !events.is_empty() || !fanned.stuck.is_empty();
                for id in fanned.stuck {
                    self.disconnect_slow(id);
                }
                self.deliver(events);
                news
            }
        }
    }

    /// A forwarded frame goes into the room's replay, when it has one (never decoded).
    fn keep_for_replay(&mut self, speaker: UserId, bytes: &bytes::Bytes) {
        if !self.room.is_replayed() {
            return;
        }
        let Some(replays) = self.shared.replays.clone() else {
            return;
        };
        let now = unix_ms();
        let replay = self.replay.get_or_insert_with(|| {
            // The one who made the room owns its replay (and may delete it), whoever hosts
            // when the first word is said.
            let creator = self.room.created_by();
            let host = self
                .room
                .user(creator)
                .or_else(|| self.room.summary().host.filter(|h| h.id == creator))
                .unwrap_or(crate::protocol::User {
                    id: creator,
                    handle: String::new(),
                    name: String::new(),
                });
            replays.start(self.room.id(), self.room.title(), host, now)
        });
        // The writer takes a speaker's name with their first frame; after that the id is
        // enough (no strings copied per frame).
        let who = (!replay.knows(speaker))
            .then(|| self.room.user(speaker))
            .flatten()
            .unwrap_or(crate::protocol::User {
                id: speaker,
                handle: String::new(),
                name: String::new(),
            });
        replays.frame(replay, who, now, bytes.clone());
    }

    /// Closes a connection that cannot keep up.
    fn disconnect_slow(&mut self, user: UserId) {
        if self.local.disconnect_slow(user) {
            tracing::info!(room = %self.room.id(), user, "disconnecting a connection that fell behind");
            let out = self.room.depart(user, LeaveReason::Disconnected, unix_ms());
            self.deliver(out);
        }
    }

    fn deliver(&mut self, out: Vec<Delivery>) {
        if out.is_empty() {
            return;
        }
        let addressed = self.room.address(out);
        let mut slow = Vec::new();
        for delivery in addressed {
            match delivery {
                Addressed::Message { to, message } => {
                    let text = message.encode();
                    self.local
                        .broadcast(&Wire::text(text.clone()), &mut slow, |id| to.includes(id));
                    if let Some(link) = &mut self.link
                        && link.has_remote()
                    {
                        link.event(ToEdges::Message { to, text });
                    }
                }
                Addressed::Disconnect {
                    user,
                    code,
                    message,
                } => {
                    if let Some(peer) = self.local.remove(user) {
                        peer.say_goodbye(code, message);
                    } else if let Some(link) = &mut self.link
                        && let Some(remote) = link.take(user)
                    {
                        link.event(ToEdges::Disconnect {
                            user,
                            connection: remote.connection,
                            code,
                            message,
                        });
                    }
                }
            }
        }
        for user in slow {
            self.disconnect_slow(user);
        }
    }

    /// Queues a message to one user, here or on an edge; false when their queue here is
    /// full.
    fn send_to(&mut self, user: UserId, msg: &ServerMessage) -> bool {
        if self.local.get(user).is_some() {
            return self.local.send_to(user, &Wire::text(msg.encode()));
        }
        if let Some(link) = &mut self.link
            && link.get(user).is_some()
        {
            link.event(ToEdges::Message {
                to: Recipients::Only(vec![user]),
                text: msg.encode(),
            });
        }
        true
    }
}
