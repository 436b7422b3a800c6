//! The live demo: rooms on a server, alive with bots. Bot speakers take turns playing speech
//! clips, a bot audience fills the seats, and each room's bot host invites whoever raises a
//! hand a few seconds later. Bots are ordinary clients: they sign in over REST and join over
//! the real WebSocket, so the demo exercises the same paths as people do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clip::{self, Clip};
use crate::identity::DeviceKey;
use crate::net::live::Backoff;
use crate::net::{Api, Credentials, Enroll, LiveSession, NetError, NetEvent};
use crate::protocol::handle::Handle;
use crate::protocol::{AudioFrame, ClientCommand, ServerMessage, Session, UpdateProfile, UserId};

/// A demo room: its title, host, speakers and audience size.
#[derive(Debug, Clone)]
pub struct RoomPlan {
    pub title: &'static str,
    pub host: &'static str,
    pub speakers: &'static [&'static str],
    pub audience: usize,
}

/// The rooms a demo opens.
pub const PLAN: &[RoomPlan] = &[
    RoomPlan {
        title: "Welcome to Hallway: raise your hand!",
        host: "Ada (bot)",
        speakers: &["Grace (bot)", "Linus (bot)"],
        audience: 6,
    },
    RoomPlan {
        title: "Rust audio in the terminal",
        host: "Ferris (bot)",
        speakers: &["Mara (bot)", "Niko (bot)"],
        audience: 14,
    },
    RoomPlan {
        title: "Late night radio",
        host: "Sam (bot)",
        speakers: &[],
        audience: 3,
    },
];

/// The speech clips bots say, built into the binary so the demo works from anywhere.
/// assets/README.md says how they were made.
const BUILT_IN_CLIPS: &[(&str, &[u8])] = &[
    ("alice", include_bytes!("../assets/speech/alice.wav")),
    ("bob", include_bytes!("../assets/speech/bob.wav")),
    ("carol", include_bytes!("../assets/speech/carol.wav")),
    ("dave", include_bytes!("../assets/speech/dave.wav")),
];

/// Encodes the built-in clips (a few hundred ms of CPU, once at start).
pub fn built_in_clips() -> Result<Vec<Clip>, crate::audio::AudioError> {
    BUILT_IN_CLIPS
        .iter()
        .map(|(name, bytes)| Clip::from_wav_bytes(name, bytes))
        .collect()
}

/// How long a bot host waits before inviting a raised hand.
pub const INVITE_AFTER: Duration = Duration::from_secs(3);
/// Quiet between two speakers' turns.
const TURN_GAP: Duration = Duration::from_millis(700);
use clip::FRAME;

/// Why the demo could not start.
#[derive(Debug, Error)]
pub enum DemoError {
    /// Talking to the server failed.
    #[error("the demo could not set up its rooms: {0}")]
    Net(#[from] NetError),
    /// There is nothing for bots to say.
    #[error("the demo has no speech clips to play")]
    NoClips,
}

/// The running demo; dropping it (or `stop`) ends its rooms.
pub struct Demo {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The ids of the rooms it opened, in plan order.
    pub rooms: Vec<String>,
}

impl Demo {
    /// Opens the planned rooms on the server at `base`, with bots playing `clips`.
    pub async fn start(base: Url, plan: &[RoomPlan], clips: Vec<Clip>) -> Result<Self, DemoError> {
        if clips.is_empty() || clips.iter().all(|c| c.frames.is_empty()) {
            return Err(DemoError::NoClips);
        }
        let clips = Arc::new(clips);
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut rooms = Vec::new();
        // Created last to first, so the hallway (newest first) lists them in plan order.
        for (index, room_plan) in plan.iter().enumerate().rev() {
            let (host_api, host) = bot_account(&base, room_plan.host).await?;
            host_api
                .update_me(&UpdateProfile {
                    name: None,
                    bio: Some(format!(
                        "Hosts \"{}\" in the Hallway demo.",
                        room_plan.title
                    )),
                })
                .await?;
            let detail = host_api.create_room(room_plan.title).await?;
            let room_id = detail.summary.id.clone();
            rooms.push(room_id.clone());
            let mut bots = Vec::new();
            for name in room_plan.speakers {
                let (api, session) = bot_account(&base, name).await?;
                // The speakers follow their host: the demo's profiles have followers.
                if let Ok(handle) = Handle::parse(&host.user.handle) {
                    api.set_follow(&handle, true).await?;
                }
                bots.push((api, session.user.id));
            }
            let mut audience = Vec::new();
            for n in 0..room_plan.audience {
                let (api, _) = bot_account(&base, &audience_name(index * 31 + n)).await?;
                audience.push(api);
            }
            let room = BotRoom {
                room_id,
                clips: clips.clone(),
                first_clip: index,
            };
            tasks.push(tokio::spawn(room.run(
                host_api,
                bots,
                audience,
                stop.clone(),
            )));
        }
        rooms.reverse();
        Ok(Self { stop, tasks, rooms })
    }

    /// Ends the demo: bots leave, their rooms end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A demo bot's account: a key of its own, made for this run, and a handle from its name.
async fn bot_account(base: &Url, name: &str) -> Result<(Api, Session), DemoError> {
    let api = Api::new(base.clone()).with_credentials(Credentials {
        key: Arc::new(DeviceKey::generate()),
        enroll: Some(Enroll {
            handle: None,
            name: name.to_string(),
            invitation: None,
            label: "demo bot".into(),
        }),
    });
    let session = api.sign_in().await?;
    Ok((api, session))
}

fn audience_name(n: usize) -> String {
    const NAMES: &[&str] = &[
        "Iris", "Omar", "Chen", "Lea", "Tomas", "Priya", "Kofi", "Ines", "Yuki", "Arlo", "Zara",
        "Hugo", "Noor", "Emil", "Sofia", "Ravi",
    ];
    format!("{} (bot)", NAMES[n % NAMES.len()])
}

struct BotRoom {
    room_id: String,
    clips: Arc<Vec<Clip>>,
    first_clip: usize,
}

/// A bot speaker's live session and its frame clock.
struct Speaker {
    live: LiveSession,
    clock: clip::Sender,
}

impl BotRoom {
    async fn run(
        self,
        host_api: Api,
        speaker_apis: Vec<(Api, UserId)>,
        audience: Vec<Api>,
        stop: CancellationToken,
    ) {
        let quiet = || Box::new(|_frame: AudioFrame| {});
        let (host_tx, mut host_rx) = mpsc::channel(256);
        let host = LiveSession::start(
            &host_api,
            &self.room_id,
            host_tx,
            quiet(),
            Backoff::default(),
        );
        // The host goes in first, so the room has its host; then each speaker joins and is
        // invited up, exactly as people are.
        if !wait_for(&mut host_rx, |m| {
            matches!(m, ServerMessage::RoomSnapshot { .. })
        })
        .await
        {
            return;
        }
        let bot_ids: Vec<UserId> = speaker_apis.iter().map(|(_, id)| *id).collect();
        let mut speakers = Vec::new();
        for (api, user_id) in &speaker_apis {
            let (tx, mut rx) = mpsc::channel(256);
            let live = LiveSession::start(api, &self.room_id, tx, quiet(), Backoff::default());
            if !wait_for(&mut rx, |m| matches!(m, ServerMessage::RoomSnapshot { .. })).await {
                return;
            }
            host.send(ClientCommand::InviteToSpeak { user_id: *user_id });
            if !wait_for(
                &mut rx,
                |m| matches!(m, ServerMessage::Invited { user_id: u, .. } if u == user_id),
            )
            .await
            {
                return;
            }
            live.send(ClientCommand::AcceptInvite);
            live.send(ClientCommand::Unmute);
            // From here on the bot only needs to be on stage: drain its events.
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            speakers.push(Speaker {
                live,
                clock: clip::Sender::default(),
            });
        }
        if speakers.is_empty() {
            host.send(ClientCommand::Unmute);
        }
        let mut listeners = Vec::new();
        for api in &audience {
            let (tx, mut rx) = mpsc::channel(256);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            listeners.push(LiveSession::start(
                api,
                &self.room_id,
                tx,
                quiet(),
                Backoff::default(),
            ));
        }

        let mut turn = Turn::new(self.first_clip);
        let mut pending_invites: HashMap<UserId, Instant> = HashMap::new();
        let mut people_speaking: HashMap<UserId, bool> = HashMap::new();
        let mut host_clock = clip::Sender::default();
        let mut tick = tokio::time::interval(FRAME);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = host_rx.recv() => match event {
                    Some(NetEvent::Server(message)) => match message {
                        ServerMessage::HandRaised { user_id, .. } if !bot_ids.contains(&user_id) => {
                            pending_invites.insert(user_id, Instant::now() + INVITE_AFTER);
                        }
                        ServerMessage::HandLowered { user_id, .. } | ServerMessage::ParticipantLeft { user_id, .. } => {
                            pending_invites.remove(&user_id);
                            people_speaking.remove(&user_id);
                        }
                        ServerMessage::Speaking { user_id, speaking } if !bot_ids.contains(&user_id) => {
                            people_speaking.insert(user_id, speaking);
                        }
                        _ => {}
                    },
                    Some(NetEvent::Closed { .. }) | None => break,
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let due: Vec<UserId> = pending_invites.iter().filter(|(_, at)| **at <= now).map(|(id, _)| *id).collect();
                    for user_id in due {
                        pending_invites.remove(&user_id);
                        host.send(ClientCommand::InviteToSpeak { user_id });
                    }
                    // Bots yield the floor while a person talks.
                    let person_talking = people_speaking.values().any(|s| *s);
                    let voices = speakers.len().max(1);
                    if let Some((voice, clip, frame)) = turn.next_frame(&self.clips, voices, person_talking) {
                        let Some(data) = self.clips.get(clip).and_then(|c| c.frames.get(frame)) else { continue };
                        match speakers.get_mut(voice) {
                            Some(speaker) => speaker.clock.send(&speaker.live, data.as_ref()),
                            None => host_clock.send(&host, data.as_ref()),
                        }
                    }
                }
            }
        }
        for listener in listeners {
            listener.leave().await;
        }
        for speaker in speakers {
            speaker.live.leave().await;
        }
        host.send(ClientCommand::EndRoom);
        host.leave().await;
    }
}

/// Reads events until one matches; false if the session ended or nothing came in 10 s.
async fn wait_for(
    rx: &mut mpsc::Receiver<NetEvent>,
    wanted: impl Fn(&ServerMessage) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(NetEvent::Server(message))) if wanted(&message) => return true,
            Ok(Some(NetEvent::Closed { message, .. })) => {
                tracing::warn!("a demo bot could not join: {message}");
                return false;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// Whose turn it is and where in their clip: a pure schedule, stepped once per 20 ms frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    voice: usize,
    clip: usize,
    frame: usize,
    /// Frames of silence left before the next turn starts.
    gap: usize,
}

impl Turn {
    pub fn new(first_clip: usize) -> Self {
        Self {
            voice: 0,
            clip: first_clip,
            frame: 0,
            gap: 0,
        }
    }

    /// The (voice, clip, frame) to send now, or None during a gap. A new turn does not start
    /// while a person is talking; a turn under way finishes.
    pub fn next_frame(
        &mut self,
        clips: &[Clip],
        voices: usize,
        person_talking: bool,
    ) -> Option<(usize, usize, usize)> {
        if clips.is_empty() {
            return None;
        }
        if self.gap > 0 {
            self.gap -= 1;
            return None;
        }
        if self.frame == 0 && person_talking {
            return None;
        }
        let clip = self.clip % clips.len();
        let len = clips[clip].frames.len();
        if self.frame >= len {
            self.frame = 0;
            self.clip = self.clip.wrapping_add(1);
            self.voice = (self.voice + 1) % voices.max(1);
            self.gap = (TURN_GAP.as_millis() / FRAME.as_millis()) as usize;
            return None;
        }
        let out = (self.voice % voices.max(1), clip, self.frame);
        self.frame += 1;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(frames: usize) -> Clip {
        let header = crate::protocol::AudioHeader {
            speaker_id: 0,
            sequence: 0,
            timestamp_48k: 0,
            level: 20,
            voice: true,
        };
        let frame = Some(AudioFrame::new(header, &[1]).expect("a one-byte frame is valid"));
        Clip {
            name: "c".into(),
            frames: vec![frame; frames],
        }
    }

    #[test]
    fn speakers_take_turns_with_a_gap_between() {
        let clips = vec![clip(2), clip(3)];
        let mut turn = Turn::new(0);
        let mut sent = Vec::new();
        for _ in 0..100 {
            sent.push(turn.next_frame(&clips, 2, false));
        }
        let voices: Vec<usize> = sent.iter().flatten().map(|(v, _, _)| *v).collect();
        assert_eq!(
            &voices[..5],
            &[0, 0, 1, 1, 1],
            "voice 0 plays clip 0, then voice 1 plays clip 1"
        );
        let gap = sent.iter().skip(2).take_while(|s| s.is_none()).count();
        assert_eq!(gap, 1 + (TURN_GAP.as_millis() / FRAME.as_millis()) as usize);
    }

    #[test]
    fn no_new_turn_while_a_person_talks() {
        let clips = vec![clip(2)];
        let mut turn = Turn::new(0);
        assert!(turn.next_frame(&clips, 1, true).is_none());
        assert_eq!(turn.next_frame(&clips, 1, false), Some((0, 0, 0)));
        // A turn under way finishes even if someone starts talking.
        assert_eq!(turn.next_frame(&clips, 1, true), Some((0, 0, 1)));
    }
}
