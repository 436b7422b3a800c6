//! The members of a room connected to this process, and the direct-write path to them.
//!
//! A room's home (the actor, `actor.rs`) and an edge for a room homed on another node
//! (`cluster/edge.rs`) both keep one [`LocalMembers`]: the room's rules decide who receives
//! what ([`crate::server::room::Recipients`]); this writes it to the sockets of those who are
//! here. Writes are queued to each connection's [`Outgoing`] and written at the next
//! [`LocalMembers::flush`], so a batch of commands costs each listener one write.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::outgoing::{Kind, Outgoing, Refused, Wire, goodbye};
use super::{Shared, monotonic_ms};
use crate::protocol::{ErrorCode, UserId};

/// The room's end of one connection.
pub struct Peer {
    pub connection: u64,
    /// Where the connection comes from.
    pub addr: IpAddr,
    /// What the connection sends; the room writes to its socket directly.
    pub out: Arc<Outgoing>,
    /// Cancelled to close the connection at once (it is stuck or gone).
    pub kick: CancellationToken,
}

impl Peer {
    /// Says goodbye with this reason and closes; false if the connection was closing
    /// already.
    pub fn say_goodbye(&self, code: ErrorCode, message: String) -> bool {
        self.out.close_with(goodbye(code, message))
    }
}

impl Drop for Peer {
    /// A connection the room lets go of without a word (the room ended, or its actor
    /// stopped) is told the room has ended, and closes.
    fn drop(&mut self) {
        self.say_goodbye(
            ErrorCode::RoomEnded,
            "this room has ended; pick another from the room list".into(),
        );
    }
}

/// What an audio frame's fan-out did.
#[derive(Debug, Default)]
pub struct Fanned {
    pub sent: u64,
    pub dropped: u64,
    /// Members whose queue has been full for longer than the server allows.
    pub stuck: Vec<UserId>,
}

/// The members connected here and their queued writes.
pub struct LocalMembers {
    shared: Arc<Shared>,
    peers: HashMap<UserId, Peer>,
    /// Connections with frames queued since the last flush.
    unflushed: Vec<Arc<Outgoing>>,
}

impl LocalMembers {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            peers: HashMap::new(),
            unflushed: Vec::new(),
        }
    }

    pub fn insert(&mut self, user: UserId, peer: Peer) -> Option<Peer> {
        self.peers.insert(user, peer)
    }

    pub fn remove(&mut self, user: UserId) -> Option<Peer> {
        self.peers.remove(&user)
    }

    pub fn get(&self, user: UserId) -> Option<&Peer> {
        self.peers.get(&user)
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (UserId, &Peer)> {
        self.peers.iter().map(|(id, p)| (*id, p))
    }

    /// Whether `connection` is `user`'s current one here.
    pub fn is_current(&self, user: UserId, connection: u64) -> bool {
        self.peers
            .get(&user)
            .is_some_and(|p| p.connection == connection)
    }

    /// Lets every member go (each is told the room has ended, see [`Peer`]'s drop).
    pub fn clear(&mut self) {
        self.peers.clear();
    }

    /// Writes what was queued since the last flush.
    pub fn flush(&mut self) {
        for out in self.unflushed.drain(..) {
            out.flush();
        }
    }

    fn queue(
        unflushed: &mut Vec<Arc<Outgoing>>,
        peer: &Peer,
        wire: &Wire,
        kind: Kind,
    ) -> Result<(), Refused> {
        if peer.out.queue(wire, kind)? {
            unflushed.push(peer.out.clone());
        }
        Ok(())
    }

    /// Queues a control message to every member `to` picks; those too far behind go on
    /// `slow` (control is never dropped: the caller disconnects them).
    pub fn broadcast(&mut self, wire: &Wire, slow: &mut Vec<UserId>, to: impl Fn(UserId) -> bool) {
        let mut sent = 0;
        for (&id, peer) in &self.peers {
            if !to(id) {
                continue;
            }
            match Self::queue(&mut self.unflushed, peer, wire, Kind::Control) {
                Ok(()) => sent += 1,
                Err(Refused::Full { .. }) => slow.push(id),
                Err(Refused::Closed) => {}
            }
        }
        self.shared.metrics.control_messages_out.inc_by(sent);
    }

    /// Queues a control message to one member; false when their queue is full. True when
    /// they are not here (nothing to do).
    pub fn send_to(&mut self, user: UserId, wire: &Wire) -> bool {
        let Some(peer) = self.peers.get(&user) else {
            return true;
        };
        match Self::queue(&mut self.unflushed, peer, wire, Kind::Control) {
            Ok(()) => {
                self.shared.metrics.control_messages_out.inc();
                true
            }
            Err(Refused::Full { .. }) => false,
            Err(Refused::Closed) => true,
        }
    }

    /// Queues an audio frame (one buffer, shared by reference count) to every member but
    /// its speaker; a member whose queue is full loses it. Counts into the metrics.
    pub fn fan_out(&mut self, speaker: UserId, wire: &Wire) -> Fanned {
        let stuck_ms = self.shared.config.limits.stuck_after.as_millis() as u64;
        let mut fanned = Fanned::default();
        for (&id, peer) in &self.peers {
            if id == speaker {
                continue;
            }
            match Self::queue(&mut self.unflushed, peer, wire, Kind::Audio) {
                Ok(()) => fanned.sent += 1,
                Err(Refused::Full { backed_up_since_ms }) => {
                    fanned.dropped += 1;
                    if monotonic_ms().saturating_sub(backed_up_since_ms) > stuck_ms {
                        fanned.stuck.push(id);
                    }
                }
                Err(Refused::Closed) => {}
            }
        }
        let metrics = &self.shared.metrics;
        metrics.audio_frames_out.inc_by(fanned.sent);
        metrics.audio_frames_dropped.inc_by(fanned.dropped);
        fanned
    }

    /// Closes a member's connection that cannot keep up: what is queued for it is stale, so
    /// the goodbye goes first; it may not get through a full socket, and the kick closes it
    /// regardless. Returns whether they were here.
    pub fn disconnect_slow(&mut self, user: UserId) -> bool {
        let Some(peer) = self.peers.remove(&user) else {
            return false;
        };
        self.shared.metrics.slow_disconnects.inc();
        peer.out.abandon_with(goodbye(
            ErrorCode::SlowConsumer,
            "your connection could not keep up with the room; check your network and rejoin".into(),
        ));
        peer.kick.cancel();
        true
    }
}
