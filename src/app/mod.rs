//! The client's model: state, the messages that change it and the effects it asks for.
//! Pure: `App::update(msg)` returns effects for the shell to run; nothing here does I/O.
//! The view (`ui`) reads an `&App` and never changes it.

pub mod keymap;
pub mod life;
pub mod replay;
pub mod room_view;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use replay::{ReplayScreen, ReplayState};
pub use room_view::{Notice, RoomView};

use crate::app::keymap::Action;
use crate::audio::LatencyProfile;
use crate::audio::replay::{ReplayCommand, ReplayProgress, Timeline};
use crate::config::Latency;
use crate::net::NetEvent;
use crate::protocol::chat::{MAX_CHAT_CHARS, MAX_PIN_CHARS};
use crate::protocol::control::{LeaveReason, RoomEndReason};
use crate::protocol::replay::ReplayInfo;
use crate::protocol::schedule::{ScheduleRoom, ScheduledRoom};
use crate::protocol::{
    ClientCommand, ErrorCode, Me, Profile, Role, RoomSummary, ServerMessage, UserId,
};

/// A message to the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// A key press (or release, where the terminal reports releases).
    Key(KeyEvent),
    /// The wall clock, for "waited 2m" and fading notices (Unix ms).
    Tick { now_ms: u64 },
    /// The room list arrived (or failed).
    Rooms(Result<Vec<RoomSummary>, String>),
    /// A room we asked for was created (its id), or not.
    RoomCreated(Result<String, String>),
    /// Go straight into a room (a room link or `--room` on the command line).
    OpenRoom { id: String },
    /// Something from the live session.
    Net(NetEvent),
    /// A private room's frames so far that did not open (dropped, never played), and own
    /// frames not sent for want of a key (from the live session's counters).
    Sealing { not_opened: u64, not_sent: u64 },
    /// Audio meters and counters, a few times a second.
    Audio(AudioStatus),
    /// The terminal's size, at the start and when it changes.
    Resize { cols: u16, rows: u16 },
    /// My account: handle, who I follow and block (at start, and after each change).
    Me(Me),
    /// A profile card asked for arrived (or could not be had).
    Profile {
        handle: String,
        result: Result<Profile, String>,
    },
    /// The client has started: ask for what the model needs first.
    Started,
    /// A clip of `room` was kept (where, and how many seconds), or why not.
    ClipSaved {
        room: String,
        result: Result<(std::path::PathBuf, u32), String>,
    },
    /// Upcoming rooms arrived (or could not be had: an older server has none).
    Upcoming(Result<Vec<ScheduledRoom>, String>),
    /// A room was scheduled (or why not).
    Scheduled(Result<ScheduledRoom, String>),
    /// The newest replays arrived (or could not be had: a server that keeps none).
    Replays(Result<Vec<ReplayInfo>, String>),
    /// A replay's tracks were downloaded and read (or why not).
    ReplayLoaded {
        id: String,
        result: Result<std::sync::Arc<Timeline>, String>,
    },
    /// A replay was deleted, or why not.
    ReplayDeleted {
        id: String,
        result: Result<(), String>,
    },
    /// The hallway's lists are due for a refresh (every 2 s).
    Poll,
    /// A follow, block or report was done, or failed (why).
    Changed {
        handle: String,
        change: Change,
        result: Result<(), String>,
    },
}

/// What was done to someone from their card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Follow(bool),
    Block(bool),
    Report,
}

/// Work the shell does for the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    RefreshRooms,
    /// Fetch the newest replays (the answer is a `Replays`).
    RefreshReplays,
    /// Download and read a replay's tracks (the answer is a `ReplayLoaded`).
    LoadReplay {
        id: String,
    },
    /// Play, seek, speed up, pause or stop the replay in the playout.
    Replay(ReplayCommand),
    /// Delete a replay of a room I hosted (the answer is a `ReplayDeleted`).
    DeleteReplay {
        id: String,
    },
    CreateRoom {
        title: String,
        /// A private room, shared as this says.
        private: Option<crate::protocol::Share>,
        /// The server keeps a replay.
        replay: bool,
    },
    JoinRoom {
        id: String,
    },
    /// Keep the last 30 s of what was played as a file (the answer is a `ClipSaved`).
    Clip {
        room: String,
    },
    /// Schedule a room.
    Schedule(ScheduleRoom),
    /// Start a room I scheduled (the answer is a `RoomCreated`).
    StartScheduled {
        id: u64,
    },
    /// Send a command on the live session.
    Send(ClientCommand),
    /// Send a command whose answer (`ok` or `error`) names `id`.
    SendTagged {
        command: ClientCommand,
        id: u64,
    },
    /// Leave the room (the shell closes the live session and stops audio).
    LeaveRoom,
    /// Run the microphone device (on stage) or close it (in the audience, or in no room):
    /// a listener's microphone is never open.
    SetMicOpen(bool),
    /// Send from the microphone or not: it sends only while on stage and unmuted.
    SetMicLive(bool),
    /// Playout favours low delay (on stage) or smoothness (in the audience).
    SetLatency(LatencyProfile),
    SetOutputVolume(f32),
    SetSpeakerVolume {
        user_id: UserId,
        volume: f32,
    },
    /// Someone left the stage: their playout state can go.
    ForgetSpeaker(UserId),
    /// Fetch my account (who I follow and block).
    FetchMe,
    /// Fetch someone's profile card.
    FetchProfile {
        handle: String,
    },
    SetFollow {
        handle: String,
        on: bool,
    },
    SetBlock {
        handle: String,
        on: bool,
    },
    /// Keep (or forget) that these device keys of `handle` were compared with them.
    SetVerified {
        handle: String,
        agree_keys: Vec<String>,
        on: bool,
    },
    Report {
        handle: String,
        reason: String,
    },
    /// Play nothing from these people (the ones I block).
    SetBlocked(Vec<UserId>),
    Quit,
}

/// What the audio engine reports for the screen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioStatus {
    /// Why there is no sound, when there is none (no sound card, no device...).
    pub unavailable: Option<String>,
    /// Microphone level, dBov (-127 silence).
    pub input_level_dbov: f32,
    /// Voice on the microphone right now.
    pub input_voice: bool,
    /// Current jitter-buffer delay, ms (largest over speakers).
    pub jitter_ms: u32,
    /// Frames concealed since joining.
    pub concealed: u64,
    /// Output underruns since joining.
    pub underruns: u64,
    /// Per-speaker output level, dBov.
    pub speaker_levels: HashMap<UserId, f32>,
    /// The replay being played, if one is.
    pub replay: Option<ReplayProgress>,
}

/// Where the person is.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    Hallway,
    /// Joining or in a room.
    Room(Box<RoomScreen>),
    /// Playing a replay.
    Replay(Box<ReplayScreen>),
}

/// A room being joined or in.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomScreen {
    pub id: String,
    /// The link to share: the room's, or a private room's share link for its moderators.
    /// Made once, not at every frame.
    pub link: String,
    /// None until the snapshot arrives.
    pub view: Option<RoomView>,
    /// Index into `view.listed()`.
    pub selected: usize,
    pub connection: Connection,
    /// Per-speaker volumes set with `[` and `]`.
    pub volumes: HashMap<UserId, f32>,
    /// Space is held (push-to-talk) and unmuted us.
    pub talking_by_space: bool,
    /// A private room's keys, as this client's key agent last said.
    pub keys: Option<crate::e2e::agent::KeyStatus>,
    /// A private room's frames that did not open, and own frames not sent for want of a
    /// key, since joining.
    pub not_opened: u64,
    pub not_sent: u64,
    /// The chat pane, reactions and the pin.
    pub life: life::LifeScreen,
}

/// The live connection's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Live { rtt_ms: Option<u32> },
    Reconnecting { attempt: u32, reason: String },
}

/// A modal in front of the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    /// Every binding; `scroll` rows down where the screen is too small for all of them.
    Help { scroll: u16 },
    /// Typing a new room's title.
    /// Typing a new room's title; Tab makes it private (for the people you follow and
    /// whoever has its link, its audio end-to-end encrypted) or public again.
    NewRoom {
        title: String,
        private: bool,
        /// The server keeps a replay (public rooms only).
        replay: bool,
    },
    /// Confirming a removal.
    ConfirmRemove { user_id: UserId, name: String },
    /// "Delete the replay of …?" (its host, on the replay's screen).
    ConfirmDeleteReplay { id: String, title: String },
    /// Someone's profile card.
    Card(Box<Card>),
    /// Typing why someone is reported.
    Report { handle: String, reason: String },
    /// A moderator typing what to pin (empty takes the pin down).
    Pin { text: String },
    /// Scheduling a room: its title and when (typed in this machine's time zone); Tab
    /// moves between the two.
    Schedule {
        title: String,
        when: String,
        on_when: bool,
    },
}

/// One entry of the hallway's list: a live room, one scheduled ahead, or the replay of
/// one that ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HallwayItem<'a> {
    Live(&'a RoomSummary),
    Upcoming(&'a ScheduledRoom),
    Replay(&'a ReplayInfo),
}

/// A profile card: who was asked for, and what arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub handle: String,
    /// The display name known before the card arrives.
    pub name: String,
    pub profile: Option<Profile>,
    pub error: Option<String>,
}

/// Devices a profile card shows (and `v` marks verified); more are said as a count.
pub const CARD_DEVICES: usize = 2;

/// The longest report reason (the server's limit).
pub const REPORT_MAX_CHARS: usize = 500;

/// The whole client state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Shown in the title bar.
    pub server: String,
    pub my_name: String,
    pub screen: Screen,
    pub rooms: Vec<RoomSummary>,
    /// Rooms scheduled ahead: of hosts I follow first, then by time.
    pub upcoming: Vec<ScheduledRoom>,
    /// The newest replays of rooms that ended, newest first.
    pub replays: Vec<ReplayInfo>,
    /// When the replays were last asked for.
    replays_asked_ms: Option<u64>,
    /// Why the room list could not be loaded, if it could not.
    pub rooms_error: Option<String>,
    pub rooms_loaded: bool,
    pub filter: String,
    /// Typing into the filter.
    pub filtering: bool,
    /// Index into `visible_rooms()`.
    pub selected_room: usize,
    pub overlay: Option<Overlay>,
    /// The event line: latest notice and when it was shown.
    pub notice: Option<(String, u64)>,
    /// The notice tells me to unmute: it goes as soon as I am live.
    notice_until_live: bool,
    pub audio: AudioStatus,
    pub audio_quality: AudioQuality,
    /// Output volume, 0.0..=2.0.
    pub output_volume: f32,
    /// The terminal's size (columns, rows), for what the model lays out (the help's scroll).
    pub screen_size: (u16, u16),
    /// The terminal reports key releases, so space can be held to talk.
    pub key_release: bool,
    /// The `latency` setting: what playout favours.
    pub latency: Latency,
    /// The keys: the defaults with the config's `[keys]` on top.
    pub keys: keymap::Keymap,
    /// My handle, once the account is known.
    pub my_handle: Option<String>,
    /// Everyone I follow: their rooms come first, and their arrivals on a stage are told.
    pub following: HashSet<UserId>,
    /// Device keys (X25519, base64url) of people whose fingerprints I compared with them, by
    /// lowercase handle: a private room marks them when it is with one of these.
    pub verified: HashMap<String, std::collections::BTreeSet<String>>,
    /// Everyone I block: not heard, their hands not shown.
    pub blocking: HashSet<UserId>,
    pub now_ms: u64,
    pub quit: bool,
    /// When I last kept a clip (the room announces one every 10 s at most).
    clipped_at_ms: Option<u64>,
    /// My upcoming room that Enter was pressed on before its time: Enter again starts it.
    confirm_start: Option<u64>,
    /// My upcoming room being started (a second Enter does not start it twice).
    starting: Option<u64>,
    /// Request ids given out (commands whose answers are awaited).
    requests: u64,
}

/// What the hallway's selection is on, to keep it there when the lists change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemKey {
    Live(String),
    Upcoming(u64),
    Replay(String),
}

/// How playout sounds lately, in one word for the status bar: from the rate of concealed
/// frames and device underruns, smoothed over about 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AudioQuality {
    /// Losses (concealed frames + underruns) per second, smoothed.
    pub losses_per_s: f32,
    last_total: u64,
    last_ms: Option<u64>,
}

impl AudioQuality {
    /// Takes the counters since joining, at `now_ms`.
    pub fn observe(&mut self, total_losses: u64, now_ms: u64) {
        if let Some(last_ms) = self.last_ms
            && now_ms > last_ms
        {
            let dt_s = (now_ms - last_ms) as f32 / 1000.0;
            // Counters restart when a room is left and another joined.
            let lost = total_losses.saturating_sub(self.last_total) as f32;
            let weight = (dt_s / 5.0).min(1.0);
            self.losses_per_s += (lost / dt_s - self.losses_per_s) * weight;
        }
        self.last_total = total_losses;
        self.last_ms = Some(now_ms);
    }

    /// "good" (no more than a lost frame every 10 s), "fair" (up to 2 a second: short gaps
    /// now and then), "poor".
    pub fn word(&self) -> &'static str {
        match self.losses_per_s {
            r if r <= 0.1 => "good",
            r if r <= 2.0 => "fair",
            _ => "poor",
        }
    }
}

/// Notices fade after this long.
pub const NOTICE_MS: u64 = 8_000;
/// A microphone this loud while muted earns the "you are talking while muted" hint (dBov).
pub const TALKING_WHILE_MUTED_DBOV: f32 = -40.0;

impl App {
    pub fn new(server: impl Into<String>, my_name: impl Into<String>, key_release: bool) -> Self {
        Self {
            server: server.into(),
            my_name: my_name.into(),
            screen: Screen::Hallway,
            rooms: Vec::new(),
            upcoming: Vec::new(),
            replays: Vec::new(),
            replays_asked_ms: None,
            rooms_error: None,
            rooms_loaded: false,
            filter: String::new(),
            filtering: false,
            selected_room: 0,
            overlay: None,
            notice: None,
            notice_until_live: false,
            audio: AudioStatus::default(),
            audio_quality: AudioQuality::default(),
            output_volume: 1.0,
            screen_size: (80, 24),
            key_release,
            latency: Latency::Auto,
            keys: keymap::Keymap::default(),
            my_handle: None,
            following: HashSet::new(),
            verified: HashMap::new(),
            blocking: HashSet::new(),
            now_ms: 0,
            quit: false,
            clipped_at_ms: None,
            confirm_start: None,
            starting: None,
            requests: 0,
        }
    }

    /// The rooms matching the filter (title, host or speaker names, case-insensitive).
    pub fn visible_rooms(&self) -> Vec<&RoomSummary> {
        let needle = self.filter.to_lowercase();
        self.rooms
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || r.title.to_lowercase().contains(&needle)
                    || r.speakers
                        .iter()
                        .any(|s| s.name.to_lowercase().contains(&needle))
            })
            .collect()
    }

    /// The hallway's list: the live rooms matching the filter, then the upcoming ones that
    /// match it and are not live yet (one started shows as a live room).
    pub fn hallway_items(&self) -> Vec<HallwayItem<'_>> {
        let needle = self.filter.to_lowercase();
        let found = |text: &str| needle.is_empty() || text.to_lowercase().contains(&needle);
        let mut items: Vec<HallwayItem<'_>> = self
            .visible_rooms()
            .into_iter()
            .map(HallwayItem::Live)
            .collect();
        items.extend(
            self.upcoming
                .iter()
                .filter(|s| found(&s.title) || found(&s.host.name))
                .filter(|s| {
                    s.room
                        .as_ref()
                        .is_none_or(|live| !self.rooms.iter().any(|r| &r.id == live))
                })
                .map(HallwayItem::Upcoming),
        );
        items.extend(
            self.replays
                .iter()
                .filter(|r| {
                    found(&r.title)
                        || found(&r.host.name)
                        || r.tracks.iter().any(|t| found(&t.user.name))
                })
                .map(HallwayItem::Replay),
        );
        items
    }

    fn selected_key(&self) -> Option<ItemKey> {
        self.hallway_items()
            .get(self.selected_room)
            .map(|item| match item {
                HallwayItem::Live(room) => ItemKey::Live(room.id.clone()),
                HallwayItem::Upcoming(s) => ItemKey::Upcoming(s.id),
                HallwayItem::Replay(r) => ItemKey::Replay(r.id.clone()),
            })
    }

    /// After the lists changed: the selection stays on what it was on, when that is still
    /// listed, so Enter acts on what the person chose (not on whatever slid under it).
    fn keep_selection(&mut self, before: Option<ItemKey>) {
        let items = self.hallway_items();
        let found = before.and_then(|key| {
            items.iter().position(|item| match (item, &key) {
                (HallwayItem::Live(room), ItemKey::Live(id)) => &room.id == id,
                (HallwayItem::Upcoming(s), ItemKey::Upcoming(id)) => s.id == *id,
                (HallwayItem::Replay(r), ItemKey::Replay(id)) => &r.id == id,
                _ => false,
            })
        });
        self.selected_room = found
            .unwrap_or(self.selected_room)
            .min(items.len().saturating_sub(1));
    }

    /// Whether `handle` is mine (handles compare without case).
    pub fn is_my_handle(&self, handle: &str) -> bool {
        self.my_handle
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(handle))
    }

    /// The room screen, when in one.
    pub fn room(&self) -> Option<&RoomScreen> {
        match &self.screen {
            Screen::Room(room) => Some(room),
            Screen::Hallway | Screen::Replay(_) => None,
        }
    }

    fn room_mut(&mut self) -> Option<&mut RoomScreen> {
        match &mut self.screen {
            Screen::Room(room) => Some(room),
            Screen::Hallway | Screen::Replay(_) => None,
        }
    }

    /// The notice to show now, if it has not faded.
    pub fn current_notice(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, at)| self.now_ms.saturating_sub(*at) < NOTICE_MS)
            .map(|(text, _)| text.as_str())
    }

    /// Muted on stage while the microphone hears a voice.
    pub fn talking_while_muted(&self) -> bool {
        let muted_on_stage = self
            .room()
            .and_then(|r| r.view.as_ref())
            .and_then(|v| v.myself())
            .is_some_and(|p| p.role.on_stage() && p.muted);
        muted_on_stage
            && self.audio.input_voice
            && self.audio.input_level_dbov > TALKING_WHILE_MUTED_DBOV
    }

    fn say(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), self.now_ms));
        self.notice_until_live = false;
    }

    /// A notice that says to unmute: gone once the microphone is live.
    fn say_until_live(&mut self, text: impl Into<String>) {
        self.say(text);
        self.notice_until_live = true;
    }

    /// What playout should favour now: by the `latency` setting, and with `auto` by where
    /// I am (the stage converses, the audience listens). None outside a room.
    fn latency_profile(&self) -> Option<LatencyProfile> {
        let on_stage = self
            .room()?
            .view
            .as_ref()?
            .myself()
            .is_some_and(|p| p.role.on_stage());
        Some(match self.latency {
            Latency::Auto if on_stage => LatencyProfile::Low,
            Latency::Auto => LatencyProfile::Smooth,
            Latency::Low => LatencyProfile::Low,
            Latency::Smooth => LatencyProfile::Smooth,
        })
    }

    fn on_stage(&self) -> bool {
        self.room()
            .and_then(|r| r.view.as_ref())
            .and_then(RoomView::myself)
            .is_some_and(|p| p.role.on_stage())
    }

    fn mic_live(&self) -> bool {
        self.room()
            .and_then(|r| r.view.as_ref())
            .is_some_and(RoomView::mic_live)
    }

    /// The one place state changes.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        let stage_before = self.on_stage();
        let mic_before = self.mic_live();
        let latency_before = self.latency_profile();
        let mut effects = match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Tick { now_ms } => {
                self.now_ms = now_ms;
                Vec::new()
            }
            Msg::Rooms(Ok(rooms)) => {
                if self.rooms_loaded {
                    self.tell_followed_arrivals(&rooms);
                }
                let before = self.selected_key();
                self.rooms = rooms;
                self.rooms_error = None;
                self.rooms_loaded = true;
                self.keep_selection(before);
                Vec::new()
            }
            Msg::ClipSaved {
                room,
                result: Ok((path, seconds)),
            } => {
                self.say(format!(
                    "Kept the last {seconds} s you heard: {}",
                    path.display()
                ));
                // Everyone in that room sees it, as they see a recording; a clip finished
                // after leaving is not announced in another room.
                if self.room().is_some_and(|r| r.id == room) {
                    vec![Effect::Send(ClientCommand::Clip { seconds })]
                } else {
                    Vec::new()
                }
            }
            Msg::ClipSaved { result: Err(e), .. } => {
                self.clipped_at_ms = None;
                self.say(format!("Could not keep a clip: {e}"));
                Vec::new()
            }
            Msg::Upcoming(Ok(upcoming)) => {
                self.tell_started(&upcoming);
                let before = self.selected_key();
                self.upcoming = upcoming;
                self.keep_selection(before);
                Vec::new()
            }
            // A server without scheduled rooms, or a moment's trouble: the live list says
            // the rest.
            Msg::Upcoming(Err(_)) => Vec::new(),
            Msg::Scheduled(Ok(room)) => {
                self.say(format!(
                    "Scheduled \u{201c}{}\u{201d} for {}: it is under Upcoming; Enter on it starts it.",
                    room.title,
                    crate::ui::text::local_time(room.starts_at_ms)
                ));
                vec![Effect::RefreshRooms]
            }
            Msg::Scheduled(Err(e)) => {
                self.say(format!("Could not schedule the room: {e}"));
                Vec::new()
            }
            Msg::Rooms(Err(e)) => {
                self.rooms_error = Some(e);
                self.rooms_loaded = true;
                Vec::new()
            }
            Msg::RoomCreated(Ok(id)) | Msg::OpenRoom { id } => {
                self.starting = None;
                // "Creating …" is done; the room screen says the rest.
                self.notice = None;
                self.enter_room(id)
            }
            Msg::RoomCreated(Err(e)) => {
                self.starting = None;
                self.say(format!("Could not create the room: {e}"));
                Vec::new()
            }
            Msg::Net(event) => self.on_net(event),
            Msg::Resize { cols, rows } => {
                self.screen_size = (cols, rows);
                if let Some(Overlay::Help { scroll }) = self.overlay {
                    let max = keymap::HelpLayout::new(cols, rows).max_scroll();
                    self.overlay = Some(Overlay::Help {
                        scroll: scroll.min(max),
                    });
                }
                Vec::new()
            }
            Msg::Sealing {
                not_opened,
                not_sent,
            } => {
                if let Some(room) = self.room_mut() {
                    room.not_opened = not_opened;
                    room.not_sent = not_sent;
                }
                Vec::new()
            }
            Msg::Audio(status) => {
                self.audio_quality
                    .observe(status.concealed + status.underruns, self.now_ms);
                self.replay_progress(status.replay.as_ref());
                self.audio = status;
                Vec::new()
            }
            Msg::Replays(Ok(mut replays)) => {
                replays.truncate(replay::REPLAYS_LISTED);
                let before = self.selected_key();
                self.replays = replays;
                self.keep_selection(before);
                Vec::new()
            }
            // A server that keeps no replays (or a moment's trouble): nothing to list.
            Msg::Replays(Err(_)) => Vec::new(),
            Msg::ReplayLoaded { id, result } => self.replay_loaded(&id, result),
            Msg::ReplayDeleted { id, result } => self.replay_deleted(&id, result),
            Msg::Poll => self.poll(),
            Msg::Me(me) => {
                self.my_handle = Some(me.user.handle.clone());
                self.following = me.following.into_iter().collect();
                let blocking: HashSet<UserId> = me.blocking.into_iter().collect();
                if blocking == self.blocking {
                    Vec::new()
                } else {
                    self.blocking = blocking;
                    let mut ids: Vec<UserId> = self.blocking.iter().copied().collect();
                    ids.sort_unstable();
                    vec![Effect::SetBlocked(ids)]
                }
            }
            Msg::Profile { handle, result } => {
                if let Some(Overlay::Card(card)) = &mut self.overlay
                    && card.handle.eq_ignore_ascii_case(&handle)
                {
                    match result {
                        Ok(profile) => {
                            card.profile = Some(profile);
                            card.error = None;
                        }
                        Err(e) => card.error = Some(e),
                    }
                }
                Vec::new()
            }
            Msg::Started => vec![Effect::FetchMe],
            Msg::Changed {
                handle,
                change,
                result,
            } => self.changed(handle, change, result),
        };
        let stage_after = self.on_stage();
        if stage_after && !stage_before {
            effects.push(Effect::SetMicOpen(true));
        }
        let mic_after = self.mic_live();
        if mic_after != mic_before {
            if mic_after && self.notice_until_live {
                // "press m to unmute" is done with once I am live.
                self.notice = None;
            }
            effects.push(Effect::SetMicLive(mic_after));
        }
        if !stage_after && stage_before {
            effects.push(Effect::SetMicOpen(false));
        }
        let latency_after = self.latency_profile();
        if let Some(profile) = latency_after
            && latency_after != latency_before
        {
            effects.push(Effect::SetLatency(profile));
        }
        effects
    }

    /// Says when someone I follow starts a room or steps on a stage, from the hallway's
    /// list: who is on each stage now that was not at the last look.
    /// Says when a scheduled room of someone I follow has just started.
    fn tell_started(&mut self, upcoming: &[ScheduledRoom]) {
        let waiting: HashSet<u64> = self
            .upcoming
            .iter()
            .filter(|s| s.room.is_none())
            .map(|s| s.id)
            .collect();
        if let Some(started) = upcoming
            .iter()
            .find(|s| s.followed && s.room.is_some() && waiting.contains(&s.id))
        {
            self.say(format!(
                "@{} (you follow them) started \u{201c}{}\u{201d}, scheduled for now: Enter on it to join.",
                started.host.handle, started.title
            ));
        }
    }

    fn tell_followed_arrivals(&mut self, rooms: &[RoomSummary]) {
        if self.following.is_empty() {
            return;
        }
        let before: HashSet<(&str, UserId)> = self
            .rooms
            .iter()
            .flat_map(|r| r.speakers.iter().map(move |s| (r.id.as_str(), s.id)))
            .collect();
        let known: HashSet<&str> = self.rooms.iter().map(|r| r.id.as_str()).collect();
        let arrival = rooms.iter().find_map(|room| {
            room.speakers
                .iter()
                .filter(|s| self.following.contains(&s.id))
                .find(|s| !before.contains(&(room.id.as_str(), s.id)))
                .map(|s| (room, s))
        });
        let Some((room, speaker)) = arrival else {
            return;
        };
        let text = if !known.contains(room.id.as_str()) && speaker.role == Role::Host {
            format!(
                "@{} (you follow them) started \u{201c}{}\u{201d}.",
                speaker.handle, room.title
            )
        } else {
            format!(
                "@{} (you follow them) is on the stage in \u{201c}{}\u{201d}.",
                speaker.handle, room.title
            )
        };
        self.say(text);
    }

    /// Says how a follow, block or report went; then brings my account (the hallway's order,
    /// whom not to play) and, if it is still open, their card up to date.
    fn changed(
        &mut self,
        handle: String,
        change: Change,
        result: Result<(), String>,
    ) -> Vec<Effect> {
        let who = format!("@{handle}");
        let text = match (&change, &result) {
            (_, Err(e)) => format!("Could not do that: {e}"),
            (Change::Follow(true), Ok(())) => format!("Following {who}: their rooms come first."),
            (Change::Follow(false), Ok(())) => format!("No longer following {who}."),
            (Change::Block(true), Ok(())) => format!(
                "Blocked {who}: you will not hear them, and they cannot join rooms you run."
            ),
            (Change::Block(false), Ok(())) => format!("Unblocked {who}."),
            (Change::Report, Ok(())) => format!("Reported {who} to the server's admins."),
        };
        self.say(text);
        let mut effects = vec![Effect::FetchMe];
        let card_open = matches!(
            &self.overlay,
            Some(Overlay::Card(card)) if card.handle.eq_ignore_ascii_case(&handle)
        );
        if card_open {
            effects.push(Effect::FetchProfile { handle });
        }
        effects
    }

    /// Opens someone's profile card and asks for it.
    fn open_card(&mut self, handle: String, name: String) -> Vec<Effect> {
        self.overlay = Some(Overlay::Card(Box::new(Card {
            handle: handle.clone(),
            name,
            profile: None,
            error: None,
        })));
        vec![Effect::FetchProfile { handle }]
    }

    fn on_card_key(&mut self, card: Card, key: KeyEvent) -> Vec<Effect> {
        let Some(action) = self.keys.on_card(key.code) else {
            return Vec::new();
        };
        let mine = self.is_my_handle(&card.handle);
        match action {
            Action::Close => {
                self.overlay = None;
                Vec::new()
            }
            Action::Follow | Action::Block | Action::Report | Action::Verify if mine => {
                self.say("That is your own card.");
                Vec::new()
            }
            Action::Follow | Action::Block | Action::Verify if card.profile.is_none() => {
                self.say("The card is still loading.");
                Vec::new()
            }
            Action::Follow => match &card.profile {
                Some(profile) => vec![Effect::SetFollow {
                    handle: card.handle.clone(),
                    on: !profile.followed,
                }],
                None => Vec::new(),
            },
            Action::Block => match &card.profile {
                Some(profile) => vec![Effect::SetBlock {
                    handle: card.handle.clone(),
                    on: !profile.blocked,
                }],
                None => Vec::new(),
            },
            Action::Verify => {
                let Some(profile) = &card.profile else {
                    return Vec::new();
                };
                let handle = card.handle.to_lowercase();
                // Only the devices the card shows: a key nobody looked at is not verified.
                let agree_keys: Vec<String> = profile
                    .devices
                    .iter()
                    .take(CARD_DEVICES)
                    .map(|d| d.agree_key.clone())
                    .collect();
                let known = self.verified.entry(handle.clone()).or_default();
                let on = !agree_keys.iter().all(|k| known.contains(k));
                if on {
                    known.extend(agree_keys.iter().cloned());
                } else {
                    for key in &agree_keys {
                        known.remove(key);
                    }
                }
                if known.is_empty() {
                    self.verified.remove(&handle);
                }
                self.say(if on {
                    format!(
                        "@{} marked verified: their device keys are the ones you compared.",
                        card.handle
                    )
                } else {
                    format!("@{} is no longer marked verified.", card.handle)
                });
                vec![Effect::SetVerified {
                    handle,
                    agree_keys,
                    on,
                }]
            }
            Action::Report => {
                self.overlay = Some(Overlay::Report {
                    handle: card.handle,
                    reason: String::new(),
                });
                Vec::new()
            }
            // Only the card's keys are in its table.
            Action::Quit
            | Action::Help
            | Action::Down
            | Action::Up
            | Action::Join
            | Action::Filter
            | Action::NewRoom
            | Action::Refresh
            | Action::Hand
            | Action::Accept
            | Action::Decline
            | Action::TheirVolumeDown
            | Action::TheirVolumeUp
            | Action::VolumeDown
            | Action::VolumeUp
            | Action::Leave
            | Action::Mute
            | Action::Talk
            | Action::Invite
            | Action::ToAudience
            | Action::MuteSpeaker
            | Action::Remove
            | Action::MakeModerator
            | Action::Card
            | Action::Schedule
            | Action::Clip
            | Action::Chat
            | Action::Write
            | Action::React(_)
            | Action::SilenceChat
            | Action::DeleteChat
            | Action::WhoMayChat
            | Action::Pin
            | Action::SeekBack
            | Action::SeekAhead
            | Action::PlayPause
            | Action::Slower
            | Action::Faster
            | Action::DeleteReplay => Vec::new(),
        }
    }

    /// Enter on an upcoming room: join it once live, start it if it is mine, else say when.
    fn join_scheduled(&mut self, scheduled: &ScheduledRoom) -> Vec<Effect> {
        if let Some(live) = &scheduled.room {
            return self.enter_room(live.clone());
        }
        let mine = self.is_my_handle(&scheduled.host.handle);
        let when = crate::ui::text::local_time(scheduled.starts_at_ms);
        if mine {
            if self.starting == Some(scheduled.id) {
                return Vec::new();
            }
            // Before its time (more than a minute), Enter asks first: the room goes live
            // for everyone.
            let early = scheduled.starts_at_ms > self.now_ms + 60_000;
            if early && self.confirm_start != Some(scheduled.id) {
                self.confirm_start = Some(scheduled.id);
                self.say(format!(
                    "\u{201c}{}\u{201d} is scheduled for {when}: press Enter again to start it now.",
                    scheduled.title
                ));
                return Vec::new();
            }
            self.confirm_start = None;
            self.starting = Some(scheduled.id);
            self.say(format!(
                "Starting \u{201c}{}\u{201d}\u{2026}",
                scheduled.title
            ));
            return vec![Effect::StartScheduled { id: scheduled.id }];
        }
        self.say(format!(
            "\u{201c}{}\u{201d} starts {when}: {} starts it, and it shows here, live.",
            scheduled.title, scheduled.host.name
        ));
        Vec::new()
    }

    fn enter_room(&mut self, id: String) -> Vec<Effect> {
        // A room opened over a replay (a room created or started a moment before) ends it:
        // nothing would be left on screen to stop it.
        let mut effects = Vec::new();
        if self.replay().is_some() {
            effects.push(Effect::Replay(ReplayCommand::Stop));
        }
        self.overlay = None;
        // A created room can arrive while the filter is being typed; keys go to the room.
        self.filtering = false;
        let link = self.room_link(&id, None);
        self.screen = Screen::Room(Box::new(RoomScreen {
            id: id.clone(),
            link,
            view: None,
            selected: 0,
            connection: Connection::Connecting,
            volumes: HashMap::new(),
            talking_by_space: false,
            keys: None,
            not_opened: 0,
            not_sent: 0,
            life: life::LifeScreen::default(),
        }));
        effects.push(Effect::JoinRoom { id });
        effects
    }

    /// A room's link on this server; with `share`, a private room's share link.
    fn room_link(&self, id: &str, share: Option<&str>) -> String {
        match (crate::net::Target::parse(&self.server), share) {
            (Ok(target), Some(secret)) => {
                crate::net::Target::share_link(&target.server, id, secret)
            }
            (Ok(target), None) => crate::net::Target::room_link(&target.server, id),
            (Err(_), _) => format!("{}/rooms/{id}", self.server.trim_end_matches('/')),
        }
    }

    fn back_to_hallway(&mut self) -> Vec<Effect> {
        self.screen = Screen::Hallway;
        self.overlay = None;
        // The room just left may have ended with a replay.
        self.replays_asked_ms = Some(self.now_ms);
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays,
        ]
    }

    /// The hallway's lists, while it is on screen: the live and upcoming rooms every
    /// time, the replays every [`replay::REPLAYS_EVERY_MS`].
    fn poll(&mut self) -> Vec<Effect> {
        if self.screen != Screen::Hallway {
            return Vec::new();
        }
        let mut effects = vec![Effect::RefreshRooms];
        let due = self
            .replays_asked_ms
            .is_none_or(|at| self.now_ms.saturating_sub(at) >= replay::REPLAYS_EVERY_MS);
        if due {
            self.replays_asked_ms = Some(self.now_ms);
            effects.push(Effect::RefreshReplays);
        }
        effects
    }

    /// Sends typed text (a chat line, a pin) with a request id, remembered until its
    /// answer, so a refusal gives it back (see [`life::LifeScreen::refused`]).
    fn send_awaited(&mut self, sent: life::Sent) -> Vec<Effect> {
        self.requests += 1;
        let id = self.requests;
        let command = sent.command();
        if let Some(room) = self.room_mut() {
            room.life.awaiting(id, sent);
        }
        vec![Effect::SendTagged { command, id }]
    }

    /// The output volume one step up or down, said on the event line.
    fn change_volume(&mut self, up: bool) -> Vec<Effect> {
        self.output_volume = if up {
            (self.output_volume + 0.1).min(2.0)
        } else {
            (self.output_volume - 0.1).max(0.0)
        };
        self.say(format!("Volume {:.0}%", self.output_volume * 100.0));
        vec![Effect::SetOutputVolume(self.output_volume)]
    }

    fn on_net(&mut self, event: NetEvent) -> Vec<Effect> {
        let Some(room) = self.room_mut() else {
            return Vec::new();
        };
        match event {
            NetEvent::Connected => {
                room.connection = Connection::Live { rtt_ms: None };
                Vec::new()
            }
            NetEvent::RoundTrip { rtt_ms } => {
                room.connection = Connection::Live {
                    rtt_ms: Some(rtt_ms),
                };
                Vec::new()
            }
            NetEvent::Reconnecting { attempt, reason } => {
                room.connection = Connection::Reconnecting { attempt, reason };
                if let Some(where_) = room.life.maybe_lost() {
                    self.say(format!("Your last line may not have gone out: {where_}."));
                }
                Vec::new()
            }
            NetEvent::Closed { code, message } => {
                let text = match code {
                    Some(ErrorCode::Removed) => {
                        "A moderator removed you from the room.".to_string()
                    }
                    Some(ErrorCode::RoomEnded) => "The room has ended.".to_string(),
                    Some(_) | None => message,
                };
                let effects = self.back_to_hallway();
                self.say(text);
                effects
            }
            NetEvent::Keys(status) => {
                room.keys = Some(status);
                Vec::new()
            }
            NetEvent::Server(message) => self.on_server(message),
        }
    }

    fn on_server(&mut self, message: ServerMessage) -> Vec<Effect> {
        let mut effects = match &message {
            ServerMessage::ParticipantLeft { user_id, .. }
            | ServerMessage::RoleChanged {
                user_id,
                role: Role::Listener,
                ..
            } => vec![Effect::ForgetSpeaker(*user_id)],
            _ => Vec::new(),
        };
        effects.extend(self.on_server_message(message));
        effects
    }

    fn on_server_message(&mut self, message: ServerMessage) -> Vec<Effect> {
        // Someone I block raising a hand is not news to me.
        let from_blocked = matches!(
            &message,
            ServerMessage::HandRaised { user_id, .. } if self.blocking.contains(user_id)
        );
        if let ServerMessage::RoomSnapshot { room: detail, .. } = &message
            && let Some(secret) = &detail.share_secret
        {
            let link = self.room_link(&detail.summary.id, Some(secret));
            if let Some(room) = self.room_mut() {
                room.link = link;
            }
        }
        if let Screen::Room(room) = &mut self.screen {
            let me = match &message {
                ServerMessage::RoomSnapshot { you, .. } => *you,
                _ => room.view.as_ref().map_or(0, |v| v.me),
            };
            room.life
                .on_server(&message, me, &self.blocking, self.now_ms);
        }
        let Some(room) = self.room_mut() else {
            return Vec::new();
        };
        match &message {
            ServerMessage::RoomSnapshot {
                you, room: detail, ..
            } => {
                room.view = Some(RoomView::new(detail.clone(), *you));
                room.selected = 0;
                return Vec::new();
            }
            ServerMessage::Error { message, id, .. } => {
                let mut text = capitalize(message);
                // My line refused (rate, busy, cleaning, policy): given back, to send again
                // or change.
                let id = id.as_ref().and_then(serde_json::Value::as_u64);
                let given_back = match room.life.refused(id) {
                    Some(life::GivenBack::Line(where_)) => Some(where_.to_string()),
                    Some(life::GivenBack::Pin) => Some(format!(
                        "{} brings your pin back",
                        self.keys.key_label(Action::Pin)
                    )),
                    None => None,
                };
                if let Some(where_) = given_back {
                    text = format!("{} ({where_}.)", text.trim_end_matches('.'));
                }
                self.say(text);
                return Vec::new();
            }
            ServerMessage::Ok { id } => {
                room.life.answered(id.as_u64());
                return Vec::new();
            }
            ServerMessage::RoomEnded { reason, .. } => {
                let text = match reason {
                    RoomEndReason::EndedByModerator => "A moderator ended the room.",
                    RoomEndReason::NoModerator => "The room ended: no moderator was left.",
                    RoomEndReason::ServerShutdown => "The server is shutting down.",
                };
                let effects = self.back_to_hallway();
                self.say(text);
                return effects;
            }
            _ => {}
        }
        let Some(view) = room.view.as_mut() else {
            return Vec::new();
        };
        // The selection stays on its person when the list reorders (a hand goes up, someone
        // joins the stage), so a moderator key pressed next acts on whom the user chose.
        let selected_id = view.listed().get(room.selected).map(|p| p.id);
        let notice = view
            .apply(&message)
            .filter(|n| worth_saying(n, view) && !from_blocked);
        let listed = view.listed();
        room.selected = selected_id
            .and_then(|id| listed.iter().position(|p| p.id == id))
            .unwrap_or(room.selected)
            .min(listed.len().saturating_sub(1));
        if let Some(notice) = notice {
            let text = describe(&notice, &self.keys);
            if matches!(notice, Notice::YouSpeak | Notice::MutedYou { .. }) {
                self.say_until_live(text);
            } else {
                self.say(text);
            }
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return self.on_release(key);
        }
        // A held key repeats: fine for moving and typing, wrong for toggles (a held `h`
        // would raise and lower the hand over and over).
        let typing = self.filtering
            || self.writing()
            || matches!(
                self.overlay,
                Some(
                    Overlay::NewRoom { .. }
                        | Overlay::Report { .. }
                        | Overlay::Pin { .. }
                        | Overlay::Schedule { .. }
                )
            );
        let action = match self.screen {
            Screen::Hallway => self.keys.in_hallway(key.code),
            Screen::Room(_) => self.keys.in_room(key.code),
            Screen::Replay(_) => self.keys.in_replay(key.code),
        };
        let moving = matches!(
            action,
            Some(
                Action::Up
                    | Action::Down
                    | Action::VolumeUp
                    | Action::VolumeDown
                    | Action::TheirVolumeUp
                    | Action::TheirVolumeDown
                    | Action::SeekBack
                    | Action::SeekAhead
            )
        ) || matches!(key.code, KeyCode::Up | KeyCode::Down);
        if key.kind == KeyEventKind::Repeat && !typing && !moving {
            return Vec::new();
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return self.quit();
        }
        if let Some(overlay) = self.overlay.clone() {
            return self.on_overlay_key(overlay, key);
        }
        if self.filtering {
            return self.on_filter_key(key);
        }
        if self.writing() {
            return self.on_chat_key(key);
        }
        match self.screen {
            Screen::Hallway => self.on_hallway_key(key),
            Screen::Room(_) => self.on_room_key(key),
            Screen::Replay(_) => self.on_replay_key(key),
        }
    }

    /// Writing a chat line: keys are text.
    fn writing(&self) -> bool {
        self.room().is_some_and(|r| r.life.draft.is_some())
    }

    fn on_chat_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::ALT) {
            // Esc and a key pressed quickly reach the program as one Alt+key (the
            // terminal sends ESC, then the key): stop writing, then the key.
            if let Some(room) = self.room_mut() {
                room.life.draft = None;
            }
            return self.on_key(KeyEvent::new(key.code, key.modifiers - KeyModifiers::ALT));
        }
        let Some(draft) = self.room_mut().and_then(|r| r.life.draft.as_mut()) else {
            return Vec::new();
        };
        // Text, not actions: the keys of a line being typed.
        match key.code {
            KeyCode::Esc => {
                if let Some(room) = self.room_mut() {
                    room.life.draft = None;
                }
                Vec::new()
            }
            KeyCode::Enter => {
                let text = draft.trim().to_string();
                if text.is_empty() {
                    return Vec::new();
                }
                draft.clear();
                self.send_awaited(life::Sent::Line(text))
            }
            KeyCode::Backspace => {
                draft.pop();
                Vec::new()
            }
            KeyCode::Char(c) if draft.chars().count() < MAX_CHAT_CHARS => {
                draft.push(c);
                Vec::new()
            }
            KeyCode::Char(_) => {
                self.say(format!(
                    "A chat line is at most {MAX_CHAT_CHARS} characters: send this one first."
                ));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.quit = true;
        let mut effects = Vec::new();
        if self.room().is_some() {
            effects.push(Effect::LeaveRoom);
        }
        if self.replay().is_some() {
            effects.push(Effect::Replay(ReplayCommand::Stop));
        }
        effects.push(Effect::Quit);
        effects
    }

    fn on_overlay_key(&mut self, overlay: Overlay, key: KeyEvent) -> Vec<Effect> {
        match overlay {
            Overlay::Help { scroll } => {
                // Where it all fits, any key closes the help; where it does not, the
                // arrows, j/k and the page keys scroll it and any other key closes it.
                let layout = keymap::HelpLayout::new(self.screen_size.0, self.screen_size.1);
                let max = layout.max_scroll();
                let page = layout.visible.max(1);
                let scrolled = match key.code {
                    _ if max == 0 => None,
                    KeyCode::Down | KeyCode::Char('j') => Some(scroll.saturating_add(1)),
                    KeyCode::Up | KeyCode::Char('k') => Some(scroll.saturating_sub(1)),
                    KeyCode::PageDown | KeyCode::Char(' ') => Some(scroll.saturating_add(page)),
                    KeyCode::PageUp => Some(scroll.saturating_sub(page)),
                    KeyCode::Home => Some(0),
                    KeyCode::End => Some(max),
                    _ => None,
                };
                self.overlay = scrolled.map(|s| Overlay::Help { scroll: s.min(max) });
                Vec::new()
            }
            Overlay::NewRoom {
                mut title,
                private,
                replay,
            } => match key.code {
                KeyCode::Esc => {
                    self.overlay = None;
                    Vec::new()
                }
                KeyCode::Enter => {
                    let title = title.trim().to_string();
                    if title.is_empty() {
                        return Vec::new();
                    }
                    self.overlay = None;
                    self.say(format!("Creating \u{201c}{title}\u{201d}\u{2026}"));
                    let private = private.then(|| crate::protocol::Share {
                        followers: true,
                        link: true,
                        ..Default::default()
                    });
                    vec![Effect::CreateRoom {
                        title,
                        private,
                        replay,
                    }]
                }
                // Public, then public with a replay, then private (never replayed).
                KeyCode::Tab => {
                    let (private, replay) = match (private, replay) {
                        (false, false) => (false, true),
                        (false, true) => (true, false),
                        (true, _) => (false, false),
                    };
                    self.overlay = Some(Overlay::NewRoom {
                        title,
                        private,
                        replay,
                    });
                    Vec::new()
                }
                KeyCode::Backspace => {
                    title.pop();
                    self.overlay = Some(Overlay::NewRoom {
                        title,
                        private,
                        replay,
                    });
                    Vec::new()
                }
                KeyCode::Char(c) if title.chars().count() < 100 => {
                    title.push(c);
                    self.overlay = Some(Overlay::NewRoom {
                        title,
                        private,
                        replay,
                    });
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Overlay::Card(card) => self.on_card_key(*card, key),
            Overlay::Report { handle, mut reason } => match key.code {
                KeyCode::Esc => {
                    self.overlay = None;
                    Vec::new()
                }
                KeyCode::Enter => {
                    let reason = reason.trim().to_string();
                    if reason.is_empty() {
                        return Vec::new();
                    }
                    self.overlay = None;
                    self.say(format!("Reporting @{handle}\u{2026}"));
                    vec![Effect::Report { handle, reason }]
                }
                KeyCode::Backspace => {
                    reason.pop();
                    self.overlay = Some(Overlay::Report { handle, reason });
                    Vec::new()
                }
                KeyCode::Char(c) if reason.chars().count() < REPORT_MAX_CHARS => {
                    reason.push(c);
                    self.overlay = Some(Overlay::Report { handle, reason });
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Overlay::Schedule {
                mut title,
                mut when,
                on_when,
            } => match key.code {
                KeyCode::Esc => {
                    self.overlay = None;
                    Vec::new()
                }
                KeyCode::Tab | KeyCode::BackTab => {
                    self.overlay = Some(Overlay::Schedule {
                        title,
                        when,
                        on_when: !on_when,
                    });
                    Vec::new()
                }
                KeyCode::Enter if !on_when || when.trim().is_empty() => {
                    self.overlay = Some(Overlay::Schedule {
                        title,
                        when,
                        on_when: true,
                    });
                    Vec::new()
                }
                KeyCode::Enter => {
                    let title = title.trim().to_string();
                    if title.is_empty() {
                        self.overlay = Some(Overlay::Schedule {
                            title,
                            when,
                            on_when: false,
                        });
                        return Vec::new();
                    }
                    let starts_at_ms = crate::schedule_cli::parse_when(&when).and_then(|at| {
                        u64::try_from(at.timestamp_millis()).map_err(anyhow::Error::from)
                    });
                    match starts_at_ms {
                        Ok(starts_at_ms) => {
                            self.overlay = None;
                            self.say(format!("Scheduling \u{201c}{title}\u{201d}\u{2026}"));
                            vec![Effect::Schedule(ScheduleRoom {
                                title,
                                starts_at_ms,
                                description: String::new(),
                            })]
                        }
                        Err(e) => {
                            self.say(capitalize(&e.to_string()));
                            self.overlay = Some(Overlay::Schedule {
                                title,
                                when,
                                on_when,
                            });
                            Vec::new()
                        }
                    }
                }
                KeyCode::Backspace => {
                    if on_when {
                        when.pop();
                    } else {
                        title.pop();
                    }
                    self.overlay = Some(Overlay::Schedule {
                        title,
                        when,
                        on_when,
                    });
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    if on_when && when.chars().count() < 40 {
                        when.push(c);
                    } else if !on_when && title.chars().count() < 100 {
                        title.push(c);
                    }
                    self.overlay = Some(Overlay::Schedule {
                        title,
                        when,
                        on_when,
                    });
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Overlay::Pin { mut text } => match key.code {
                KeyCode::Esc => {
                    self.overlay = None;
                    Vec::new()
                }
                KeyCode::Enter => {
                    self.overlay = None;
                    let text = text.trim().to_string();
                    if text.is_empty() {
                        vec![Effect::Send(ClientCommand::Unpin)]
                    } else {
                        // A refused pin's text is kept for the next `P`.
                        self.send_awaited(life::Sent::Pin(text))
                    }
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.overlay = Some(Overlay::Pin { text });
                    Vec::new()
                }
                KeyCode::Char(c) if text.chars().count() < MAX_PIN_CHARS => {
                    text.push(c);
                    self.overlay = Some(Overlay::Pin { text });
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Overlay::ConfirmDeleteReplay { id, title } => {
                self.overlay = None;
                if matches!(
                    key.code,
                    KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter
                ) {
                    self.say(format!(
                        "Deleting the replay of \u{201c}{title}\u{201d}\u{2026}"
                    ));
                    vec![Effect::DeleteReplay { id }]
                } else {
                    Vec::new()
                }
            }
            Overlay::ConfirmRemove { user_id, name } => {
                self.overlay = None;
                if matches!(
                    key.code,
                    KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter
                ) {
                    self.say(format!("Removing {name}\u{2026}"));
                    vec![Effect::Send(ClientCommand::Remove { user_id })]
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn on_filter_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.filtering = false;
            }
            KeyCode::Enter => self.filtering = false,
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) => self.filter.push(c),
            KeyCode::Down | KeyCode::Up => {
                self.filtering = false;
                return self.on_hallway_key(key);
            }
            _ => {}
        }
        self.selected_room = 0;
        Vec::new()
    }

    fn on_hallway_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let count = self.hallway_items().len();
        if key.code == KeyCode::Esc && !self.filter.is_empty() {
            // Esc clears a filter left in place (the help says so on `/`).
            self.filter.clear();
            return Vec::new();
        }
        let Some(action) = self.keys.in_hallway(key.code) else {
            return Vec::new();
        };
        match action {
            Action::Quit => self.quit(),
            Action::Help => {
                self.overlay = Some(Overlay::Help { scroll: 0 });
                Vec::new()
            }
            Action::Filter => {
                self.filtering = true;
                Vec::new()
            }
            Action::NewRoom => {
                self.overlay = Some(Overlay::NewRoom {
                    title: String::new(),
                    private: false,
                    replay: false,
                });
                Vec::new()
            }
            Action::Refresh => vec![Effect::RefreshRooms],
            Action::Down => {
                if count > 0 {
                    self.selected_room = (self.selected_room + 1) % count;
                }
                Vec::new()
            }
            Action::Up => {
                if count > 0 {
                    self.selected_room = (self.selected_room + count - 1) % count;
                }
                Vec::new()
            }
            Action::Join => match self.hallway_items().get(self.selected_room).copied() {
                Some(HallwayItem::Live(room)) => {
                    let id = room.id.clone();
                    self.enter_room(id)
                }
                Some(HallwayItem::Upcoming(scheduled)) => {
                    let scheduled = scheduled.clone();
                    self.join_scheduled(&scheduled)
                }
                Some(HallwayItem::Replay(info)) => {
                    let info = info.clone();
                    self.open_replay(info)
                }
                None => Vec::new(),
            },
            Action::Schedule => {
                self.overlay = Some(Overlay::Schedule {
                    title: String::new(),
                    when: String::new(),
                    on_when: false,
                });
                Vec::new()
            }
            Action::Card => {
                let host = match self.hallway_items().get(self.selected_room) {
                    Some(HallwayItem::Live(room)) => room.host.clone(),
                    Some(HallwayItem::Upcoming(scheduled)) => Some(scheduled.host.clone()),
                    Some(HallwayItem::Replay(info)) => Some(info.host.clone()),
                    None => None,
                };
                match host {
                    Some(host) => self.open_card(host.handle, host.name),
                    None => Vec::new(),
                }
            }
            // A room's keys are not in the hallway's table.
            Action::Hand
            | Action::Clip
            | Action::Accept
            | Action::Decline
            | Action::TheirVolumeDown
            | Action::TheirVolumeUp
            | Action::VolumeDown
            | Action::VolumeUp
            | Action::Leave
            | Action::Mute
            | Action::Talk
            | Action::Invite
            | Action::ToAudience
            | Action::MuteSpeaker
            | Action::Remove
            | Action::MakeModerator
            | Action::Follow
            | Action::Block
            | Action::Report
            | Action::Verify
            | Action::Close
            | Action::Chat
            | Action::Write
            | Action::React(_)
            | Action::SilenceChat
            | Action::DeleteChat
            | Action::WhoMayChat
            | Action::Pin
            | Action::SeekBack
            | Action::SeekAhead
            | Action::PlayPause
            | Action::Slower
            | Action::Faster
            | Action::DeleteReplay => Vec::new(),
        }
    }

    fn on_room_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let key_release = self.key_release;
        let action = self.keys.in_room(key.code);
        let hand_key = self.keys.key_label(Action::Hand);
        let mute_key = self.keys.key_label(Action::Mute);
        let leave_key = self.keys.key_label(Action::Leave);
        let now_ms = self.now_ms;
        let Some(room) = self.room_mut() else {
            return Vec::new();
        };
        let Some(view) = room.view.as_ref() else {
            // Still joining: only leaving (Esc too, to back out) and quitting work.
            return match action {
                Some(Action::Quit) => self.quit(),
                Some(Action::Leave) => self.back_to_hallway(),
                _ if key.code == KeyCode::Esc => self.back_to_hallway(),
                _ => Vec::new(),
            };
        };
        let Some(action) = action else {
            return Vec::new();
        };
        let listed = view.listed();
        let count = listed.len();
        let selected = listed
            .get(room.selected)
            .map(|p| (p.id, p.name.clone(), p.role));
        let selected_handle = listed.get(room.selected).map(|p| p.handle.clone());
        let me = view.myself().cloned();
        let my_role = view.my_role();
        let on_stage = my_role.on_stage();
        let muted = me.as_ref().is_none_or(|p| p.muted);
        let hand_up = me.as_ref().is_some_and(|p| p.hand_raised_at_ms.is_some());
        let invited = me.as_ref().is_some_and(|p| p.invited);
        let moderator = my_role.is_moderator();
        let selected_silenced = listed.get(room.selected).is_some_and(|p| p.chat_silenced);
        // The chosen person's newest chat line, for a moderator's delete.
        let selected_line = selected
            .as_ref()
            .and_then(|(id, _, _)| view.chat.iter().rev().find(|l| l.user_id == *id))
            .map(|l| l.id);
        let chat_policy = view.detail.life.chat;
        let chat_closed = view.chat_closed();
        let pinned = view.detail.life.pinned.clone();
        let my_id = view.me;
        let send = |command| vec![Effect::Send(command)];
        match action {
            Action::Quit => self.quit(),
            Action::Help => {
                self.overlay = Some(Overlay::Help { scroll: 0 });
                Vec::new()
            }
            Action::Leave => self.back_to_hallway(),
            Action::Down => {
                if count > 0 {
                    room.selected = (room.selected + 1) % count;
                }
                Vec::new()
            }
            Action::Up => {
                if count > 0 {
                    room.selected = (room.selected + count - 1) % count;
                }
                Vec::new()
            }
            Action::Mute => {
                if on_stage {
                    send(if muted {
                        ClientCommand::Unmute
                    } else {
                        ClientCommand::Mute
                    })
                } else {
                    self.say(format!(
                        "You are in the audience: press {} to raise your hand and ask to speak.",
                        hand_key
                    ));
                    Vec::new()
                }
            }
            Action::Talk => {
                if !on_stage {
                    self.say(format!(
                        "You are in the audience: press {} to raise your hand and ask to speak.",
                        hand_key
                    ));
                    return Vec::new();
                }
                if key_release {
                    // Held: talk while held. Repeats of a held key change nothing.
                    if muted && !room.talking_by_space {
                        room.talking_by_space = true;
                        return send(ClientCommand::Unmute);
                    }
                    Vec::new()
                } else {
                    self.say("This terminal does not report key releases, so space toggles mute (like m).");
                    send(if muted {
                        ClientCommand::Unmute
                    } else {
                        ClientCommand::Mute
                    })
                }
            }
            Action::Hand => {
                if on_stage {
                    self.say_until_live(format!(
                        "You are on the stage already: press {} to unmute and talk.",
                        mute_key
                    ));
                    Vec::new()
                } else if hand_up {
                    send(ClientCommand::LowerHand { user_id: None })
                } else {
                    self.say("Hand raised: the moderators see it.");
                    send(ClientCommand::RaiseHand)
                }
            }
            Action::Accept if invited => send(ClientCommand::AcceptInvite),
            Action::Decline if invited => send(ClientCommand::DeclineInvite),
            Action::Accept | Action::Decline => {
                self.say("There is no invitation to answer.");
                Vec::new()
            }
            Action::VolumeUp => self.change_volume(true),
            Action::VolumeDown => self.change_volume(false),
            Action::TheirVolumeDown | Action::TheirVolumeUp => {
                let Some((user_id, name, _)) = selected else {
                    return Vec::new();
                };
                let step = if action == Action::TheirVolumeUp {
                    0.1
                } else {
                    -0.1
                };
                let volume = room.volumes.get(&user_id).copied().unwrap_or(1.0);
                let volume = ((volume + step) * 10.0).round() / 10.0;
                let volume = volume.clamp(0.0, 2.0);
                room.volumes.insert(user_id, volume);
                self.say(format!("{name}: volume {:.0}%", volume * 100.0));
                vec![Effect::SetSpeakerVolume { user_id, volume }]
            }
            Action::Invite
            | Action::ToAudience
            | Action::MuteSpeaker
            | Action::Remove
            | Action::MakeModerator => {
                if !moderator {
                    self.say("Only moderators can do that.");
                    return Vec::new();
                }
                let Some((user_id, name, role)) = selected else {
                    return Vec::new();
                };
                match action {
                    Action::Invite if role.on_stage() => {
                        self.say(format!("{name} is on the stage already."));
                        Vec::new()
                    }
                    Action::Invite => {
                        self.say(format!("Invited {name} to speak."));
                        send(ClientCommand::InviteToSpeak { user_id })
                    }
                    Action::ToAudience => send(ClientCommand::MoveToAudience { user_id }),
                    Action::MuteSpeaker => send(ClientCommand::MuteSpeaker { user_id }),
                    Action::MakeModerator => send(ClientCommand::MakeModerator { user_id }),
                    Action::Remove => {
                        if Some(user_id) == me.as_ref().map(|p| p.id) {
                            self.say(format!("To go, leave the room with {}.", leave_key));
                            return Vec::new();
                        }
                        self.overlay = Some(Overlay::ConfirmRemove { user_id, name });
                        Vec::new()
                    }
                    // Only the five moderator actions reach this arm.
                    _ => Vec::new(),
                }
            }
            Action::Card => match (selected_handle, selected) {
                (Some(handle), Some((_, name, _))) => self.open_card(handle, name),
                _ => Vec::new(),
            },
            Action::Chat if room.life.chat_open => {
                room.life.hide();
                Vec::new()
            }
            Action::Chat | Action::Write => match chat_closed {
                // The pane opens to read; why writing is not possible is said.
                Some(why) => {
                    room.life.show();
                    self.say(capitalize(why) + ".");
                    Vec::new()
                }
                None => {
                    room.life.write();
                    Vec::new()
                }
            },
            Action::Clip => {
                let room_id = room.id.clone();
                if let Some(at) = self.clipped_at_ms
                    && now_ms < at + crate::protocol::chat::CLIP_EVERY_MS
                {
                    self.say("You kept a clip a moment ago; wait a few seconds for the next.");
                    return Vec::new();
                }
                self.clipped_at_ms = Some(now_ms);
                self.say("Keeping the last 30 s you heard\u{2026}");
                vec![Effect::Clip { room: room_id }]
            }
            Action::React(reaction) => {
                room.life.reacted(my_id, reaction, now_ms);
                send(ClientCommand::React { reaction })
            }
            Action::SilenceChat | Action::DeleteChat | Action::WhoMayChat | Action::Pin
                if !moderator =>
            {
                self.say("Only moderators can do that.");
                Vec::new()
            }
            Action::WhoMayChat => send(ClientCommand::SetChat {
                who: chat_policy.next(),
            }),
            Action::Pin => {
                // A pin refused a moment ago comes back to be sent again or changed.
                let text = room.life.pin_kept.take().or(pinned).unwrap_or_default();
                self.overlay = Some(Overlay::Pin { text });
                Vec::new()
            }
            Action::SilenceChat => {
                let Some((user_id, name, _)) = selected else {
                    return Vec::new();
                };
                let silenced = !selected_silenced;
                self.say(if silenced {
                    format!("Silencing {name}'s chat\u{2026}")
                } else {
                    format!("Letting {name} chat again\u{2026}")
                });
                send(ClientCommand::SilenceChat { user_id, silenced })
            }
            Action::DeleteChat => match (selected_line, selected) {
                (Some(message_id), _) => send(ClientCommand::DeleteChat { message_id }),
                (None, Some((_, name, _))) => {
                    self.say(format!("{name} has no chat lines here to delete."));
                    Vec::new()
                }
                (None, None) => Vec::new(),
            },
            // The hallway's, the card's and a replay's keys are not in a room's table.
            Action::Schedule
            | Action::Join
            | Action::Filter
            | Action::NewRoom
            | Action::Refresh
            | Action::Follow
            | Action::Block
            | Action::Report
            | Action::Verify
            | Action::Close
            | Action::SeekBack
            | Action::SeekAhead
            | Action::PlayPause
            | Action::Slower
            | Action::Faster
            | Action::DeleteReplay => Vec::new(),
        }
    }

    fn on_release(&mut self, key: KeyEvent) -> Vec<Effect> {
        if self.keys.in_room(key.code) != Some(Action::Talk) {
            return Vec::new();
        }
        let on_stage = self
            .room()
            .and_then(|r| r.view.as_ref())
            .is_some_and(|v| v.my_role().on_stage());
        match self.room_mut() {
            Some(room) if room.talking_by_space => {
                room.talking_by_space = false;
                // Moved to the audience while holding: the server would refuse the mute,
                // and its error would replace "moved you to the audience" on the event line.
                if on_stage {
                    vec![Effect::Send(ClientCommand::Mute)]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }
}

/// Rooms bigger than this do not announce every arrival and departure: in a big room the
/// event line would be nothing else.
pub const QUIET_ROOM_SIZE: usize = 30;

/// Whether a notice is for this person: what happens to them always is; raised hands and
/// declined invitations are the moderators' business; comings and goings only in small rooms.
fn worth_saying(notice: &Notice, view: &RoomView) -> bool {
    let small = view.detail.participants.len() + view.detail.unlisted <= QUIET_ROOM_SIZE;
    let moderator = view.my_role().is_moderator();
    match notice {
        Notice::HandRaised { .. } | Notice::Declined { .. } => moderator,
        Notice::Joined { .. } => small,
        Notice::Left { reason, .. } => small || *reason == LeaveReason::Removed,
        _ => true,
    }
}

/// The event-line text for a notice.
pub fn describe(notice: &Notice, keys: &keymap::Keymap) -> String {
    match notice {
        Notice::InvitedYou { by } => {
            format!(
                "{by} invited you to speak \u{2014} [{}]ccept [{}]ecline",
                keys.key_label(Action::Accept),
                keys.key_label(Action::Decline)
            )
        }
        Notice::YouSpeak => format!(
            "You are on the stage, muted: press {} (or hold {}) to talk.",
            keys.key_label(Action::Mute),
            keys.key_label(Action::Talk)
        ),
        Notice::MovedYouToAudience { by } => format!("{by} moved you to the audience."),
        Notice::MutedYou { by } => format!(
            "{by} muted you; press {} to unmute when you are ready.",
            keys.key_label(Action::Mute)
        ),
        Notice::MadeYouModerator { by } => format!("{by} made you a moderator."),
        Notice::YouAreHost => "You are now the host.".into(),
        Notice::HandRaised { name } => format!("{name} raised a hand."),
        Notice::Joined { name } => format!("{name} joined."),
        Notice::Left { name, reason } => match reason {
            LeaveReason::Removed => format!("{name} was removed."),
            LeaveReason::Left | LeaveReason::Disconnected => format!("{name} left."),
        },
        Notice::Declined { name } => format!("{name} declined to speak."),
        Notice::Recording {
            name,
            recording: true,
        } => format!("{name} is recording this room."),
        Notice::Recording {
            name,
            recording: false,
        } => format!("{name} stopped recording."),
        Notice::ChatSilenced { by, silenced: true } => {
            format!("{by} silenced your chat in this room; you can still listen and react.")
        }
        Notice::ChatSilenced {
            by,
            silenced: false,
        } => format!("{by} let you chat again."),
        Notice::ChatPolicy { by, who } => format!("{by}: {}.", who.describe()),
        Notice::Pinned { by, pinned: true } => format!("{by} pinned a line at the top."),
        Notice::Pinned { by, pinned: false } => format!("{by} took the pin down."),
        Notice::Clipped { name, seconds } => {
            format!("{name} kept a clip of the last {seconds} s of this room.")
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whether a role gets a badge, and which.
pub fn badge(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Moderator => "mod",
        Role::Speaker | Role::Listener => "",
    }
}
