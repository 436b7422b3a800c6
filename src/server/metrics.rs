//! Server counters and gauges, exported at `GET /metrics` in Prometheus text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the server keeps. Cloning shares the same counters.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    /// Live rooms.
    pub rooms: Gauge,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Sessions issued (sign-ins).
    pub sessions: Counter,
    /// Accounts created.
    pub accounts: Counter,
    /// Audio frames received from speakers and accepted.
    pub audio_frames_in: Counter,
    /// Audio frames queued to receivers.
    pub audio_frames_out: Counter,
    /// Audio frames dropped: a receiver's queue was full, or the sender was not allowed to speak.
    pub audio_frames_dropped: Counter,
    /// Control messages received.
    pub control_messages_in: Counter,
    /// Control messages queued to clients.
    pub control_messages_out: Counter,
    /// Requests and messages answered with an error.
    pub errors: Counter,
    /// Connections closed because they could not keep up.
    pub slow_disconnects: Counter,
    /// Wrong invitation and link codes, bad sign-in signatures, and attempts refused while an
    /// address was locked out.
    pub auth_failures: Counter,
    /// TCP connections closed at accept: their address held its limit, or the server was full.
    pub connections_refused: Counter,
    /// Room events and audio this node could not hand to NATS (the link was down or backed
    /// up).
    pub cluster_dropped: Counter,
    /// Messages NATS dropped because a subscription of this node fell behind.
    pub cluster_slow: Counter,
    /// Times an edge here found a gap in a room's events and let its members go to rejoin.
    pub cluster_resyncs: Counter,
    /// Messages published to the cluster and received from it.
    pub cluster_out: Counter,
    pub cluster_in: Counter,
    /// Edges open on this node (rooms homed elsewhere with members here).
    pub edges: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hallway");
        let rooms = Gauge::default();
        let connections = Gauge::default();
        let sessions = Counter::default();
        let accounts = Counter::default();
        let audio_frames_in = Counter::default();
        let audio_frames_out = Counter::default();
        let audio_frames_dropped = Counter::default();
        let control_messages_in = Counter::default();
        let control_messages_out = Counter::default();
        let errors = Counter::default();
        let slow_disconnects = Counter::default();
        let auth_failures = Counter::default();
        let connections_refused = Counter::default();
        let cluster_dropped = Counter::default();
        let cluster_resyncs = Counter::default();
        let cluster_slow = Counter::default();
        let cluster_out = Counter::default();
        let cluster_in = Counter::default();
        let edges = Gauge::default();
        registry.register("rooms", "Live rooms", rooms.clone());
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register("sessions", "Sessions issued (sign-ins)", sessions.clone());
        registry.register("accounts", "Accounts created", accounts.clone());
        registry.register(
            "audio_frames_in",
            "Audio frames accepted from speakers",
            audio_frames_in.clone(),
        );
        registry.register(
            "audio_frames_out",
            "Audio frames queued to receivers",
            audio_frames_out.clone(),
        );
        registry.register(
            "audio_frames_dropped",
            "Audio frames dropped (receiver behind, or sender not allowed to speak)",
            audio_frames_dropped.clone(),
        );
        registry.register(
            "control_messages_in",
            "Control messages received",
            control_messages_in.clone(),
        );
        registry.register(
            "control_messages_out",
            "Control messages queued to clients",
            control_messages_out.clone(),
        );
        registry.register(
            "errors",
            "Requests and messages answered with an error",
            errors.clone(),
        );
        registry.register(
            "slow_disconnects",
            "Connections closed because they could not keep up",
            slow_disconnects.clone(),
        );
        registry.register(
            "auth_failures",
            "Wrong invitation or link codes, bad sign-in signatures, and attempts refused during a lock-out",
            auth_failures.clone(),
        );
        registry.register(
            "connections_refused",
            "TCP connections closed at accept (per-address limit, or server full)",
            connections_refused.clone(),
        );
        registry.register(
            "cluster_dropped",
            "Room events and audio this node could not hand to NATS",
            cluster_dropped.clone(),
        );
        registry.register(
            "cluster_slow",
            "Times NATS dropped messages to this node for falling behind",
            cluster_slow.clone(),
        );
        registry.register(
            "cluster_resyncs",
            "Gaps in a room's events found by an edge here (its members rejoin)",
            cluster_resyncs.clone(),
        );
        registry.register(
            "cluster_out",
            "Messages published to the cluster",
            cluster_out.clone(),
        );
        registry.register(
            "cluster_in",
            "Messages received from the cluster",
            cluster_in.clone(),
        );
        registry.register(
            "edges",
            "Rooms homed on another node with members here",
            edges.clone(),
        );
        Self {
            registry: std::sync::Arc::new(registry),
            rooms,
            connections,
            sessions,
            accounts,
            audio_frames_in,
            audio_frames_out,
            audio_frames_dropped,
            control_messages_in,
            control_messages_out,
            errors,
            slow_disconnects,
            auth_failures,
            connections_refused,
            cluster_dropped,
            cluster_resyncs,
            cluster_slow,
            cluster_out,
            cluster_in,
            edges,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
