//! Playing a replay (#15) in the TUI: the hallway lists the replays of rooms that ended;
//! Enter loads one (the shell downloads its tracks and parses them) and the playout plays
//! it, mixed by the client, with ±15 s seeks, five speeds and a pause.
//!
//! The model asks for every change ([`Effect::Replay`]) and the engine reports where it is
//! ([`ReplayProgress`], with the meters). A report made before the engine took the latest
//! change would undo it on screen for a moment (the play head back where it was, "paused"
//! after play): each report carries the number of seeks, speeds and pauses the engine has
//! done, and one behind those asked for is not believed.

use std::sync::Arc;

use crossterm::event::KeyEvent;

use super::keymap::Action;
use super::{App, Effect, Screen};
use crate::audio::replay::{ReplayCommand, ReplayProgress, Timeline};
use crate::protocol::UserId;
use crate::protocol::replay::ReplayInfo;

/// How far ←/→ move.
pub const SEEK_MS: u64 = 15_000;
/// The speeds `<`/`>` step through; 1× is the second.
pub const SPEEDS: [f32; 5] = [0.75, 1.0, 1.25, 1.5, 2.0];
/// How often the hallway's list of replays is asked for again while the hallway is on
/// screen (and at once when coming back to it).
pub const REPLAYS_EVERY_MS: u64 = 30_000;
/// The newest replays the hallway lists.
pub const REPLAYS_LISTED: usize = 20;

/// A replay on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayScreen {
    pub info: ReplayInfo,
    pub state: ReplayState,
    /// What is being heard, ms from the room's start.
    pub position_ms: u64,
    pub length_ms: u64,
    /// Index into [`SPEEDS`].
    pub speed: usize,
    pub paused: bool,
    pub ended: bool,
    /// Whose tracks sound now.
    pub speaking: Vec<UserId>,
    /// Speakers not played (a replay of more than [`crate::audio::replay::MAX_TRACKS`]).
    pub left_out: usize,
    /// Seeks, speeds and pauses asked for since it started playing, to know a report that
    /// came before the last one took effect.
    commands: u64,
}

/// Where loading the replay is.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayState {
    /// Its tracks are being downloaded and read.
    Loading,
    Playing,
    /// Why it cannot be played.
    Failed(String),
}

impl ReplayScreen {
    pub fn speed(&self) -> f32 {
        SPEEDS.get(self.speed).copied().unwrap_or(1.0)
    }

    /// The effect that asks the engine for `command`, counted (see the module's docs).
    fn command(&mut self, command: ReplayCommand) -> Effect {
        self.commands += 1;
        Effect::Replay(command)
    }
}

impl App {
    /// The replay on screen, when one is.
    pub fn replay(&self) -> Option<&ReplayScreen> {
        match &self.screen {
            Screen::Replay(replay) => Some(replay),
            _ => None,
        }
    }

    fn replay_mut(&mut self) -> Option<&mut ReplayScreen> {
        match &mut self.screen {
            Screen::Replay(replay) => Some(replay),
            _ => None,
        }
    }

    /// Opens a replay from the hallway: its screen at once, loading.
    pub(super) fn open_replay(&mut self, info: ReplayInfo) -> Vec<Effect> {
        self.overlay = None;
        self.filtering = false;
        let length_ms = info.length_ms();
        let id = info.id.clone();
        self.screen = Screen::Replay(Box::new(ReplayScreen {
            info,
            state: ReplayState::Loading,
            position_ms: 0,
            length_ms,
            speed: 1,
            paused: false,
            ended: false,
            speaking: Vec::new(),
            left_out: 0,
            commands: 0,
        }));
        vec![Effect::LoadReplay { id }]
    }

    /// The replay's tracks were read (or could not be): play it, if it is still the one
    /// on screen; a replay loaded after its screen was left is not played.
    pub(super) fn replay_loaded(
        &mut self,
        id: &str,
        result: Result<Arc<Timeline>, String>,
    ) -> Vec<Effect> {
        let Some(replay) = self
            .replay_mut()
            .filter(|r| r.info.id == id && r.state == ReplayState::Loading)
        else {
            return Vec::new();
        };
        match result {
            Ok(timeline) => {
                replay.state = ReplayState::Playing;
                replay.length_ms = timeline.length_ms();
                replay.left_out = timeline.left_out();
                let mut effects = vec![Effect::Replay(ReplayCommand::Play(timeline))];
                if replay.speed() != 1.0 {
                    effects.push(replay.command(ReplayCommand::Speed(replay.speed())));
                }
                if replay.paused {
                    effects.push(replay.command(ReplayCommand::Pause(true)));
                }
                effects
            }
            Err(e) => {
                replay.state = ReplayState::Failed(e.clone());
                self.say(format!("Could not play the replay: {e}"));
                Vec::new()
            }
        }
    }

    /// Where the engine is in the replay.
    pub(super) fn replay_progress(&mut self, progress: Option<&ReplayProgress>) {
        let Some(replay) = self.replay_mut() else {
            return;
        };
        let Some(progress) = progress.filter(|_| replay.state == ReplayState::Playing) else {
            return;
        };
        if progress.commands >= replay.commands {
            replay.position_ms = progress.position_ms.min(replay.length_ms);
            replay.ended = progress.ended;
            replay.paused = progress.paused;
            replay.speaking.clone_from(&progress.speaking);
        }
    }

    /// A replay was deleted (by me, its host): gone from the list, and from the screen if
    /// it is on it.
    pub(super) fn replay_deleted(&mut self, id: &str, result: Result<(), String>) -> Vec<Effect> {
        match result {
            Ok(()) => {
                let title = self
                    .replays
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| r.title.clone());
                let before = self.selected_key();
                self.replays.retain(|r| r.id != id);
                self.keep_selection(before);
                let effects = if self.replay().is_some_and(|r| r.info.id == id) {
                    self.leave_replay()
                } else {
                    Vec::new()
                };
                self.say(match title {
                    Some(title) => format!("Deleted the replay of \u{201c}{title}\u{201d}."),
                    None => "Deleted the replay.".to_string(),
                });
                effects
            }
            Err(e) => {
                self.say(format!("Could not delete the replay: {e}"));
                Vec::new()
            }
        }
    }

    /// Back to the hallway from a replay.
    fn leave_replay(&mut self) -> Vec<Effect> {
        self.screen = Screen::Hallway;
        self.overlay = None;
        self.replays_asked_ms = Some(self.now_ms);
        vec![
            Effect::Replay(ReplayCommand::Stop),
            Effect::RefreshRooms,
            Effect::RefreshReplays,
        ]
    }

    pub(super) fn on_replay_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(action) = self.keys.in_replay(key.code) else {
            return Vec::new();
        };
        match action {
            Action::Quit => self.quit(),
            Action::Help => {
                self.overlay = Some(super::Overlay::Help { scroll: 0 });
                Vec::new()
            }
            Action::Leave => self.leave_replay(),
            Action::DeleteReplay => {
                let Some(replay) = self.replay() else {
                    return Vec::new();
                };
                let (id, title) = (replay.info.id.clone(), replay.info.title.clone());
                let host = replay.info.host.handle.clone();
                if !self.is_my_handle(&host) {
                    self.say(format!("Only its host, @{host}, can delete this replay."));
                    return Vec::new();
                }
                self.overlay = Some(super::Overlay::ConfirmDeleteReplay { id, title });
                Vec::new()
            }
            Action::VolumeUp => self.change_volume(true),
            Action::VolumeDown => self.change_volume(false),
            Action::SeekBack | Action::SeekAhead => {
                let Some(replay) = self
                    .replay_mut()
                    .filter(|r| r.state == ReplayState::Playing)
                else {
                    return Vec::new();
                };
                let target = if action == Action::SeekAhead {
                    (replay.position_ms + SEEK_MS).min(replay.length_ms)
                } else {
                    replay.position_ms.saturating_sub(SEEK_MS)
                };
                replay.position_ms = target;
                let mut effects = vec![replay.command(ReplayCommand::Seek { ms: target })];
                // Back from the end plays on from there; to the end, it has ended.
                if replay.ended && target < replay.length_ms {
                    replay.paused = false;
                    effects.push(replay.command(ReplayCommand::Pause(false)));
                }
                replay.ended = target >= replay.length_ms;
                effects
            }
            Action::PlayPause => {
                let Some(replay) = self.replay_mut() else {
                    return Vec::new();
                };
                if replay.state != ReplayState::Playing {
                    // While loading, the choice waits for it; a failed one has nothing.
                    replay.paused = !replay.paused;
                    return Vec::new();
                }
                if replay.ended {
                    // Once it has ended: again from the start.
                    replay.ended = false;
                    replay.paused = false;
                    replay.position_ms = 0;
                    return vec![
                        replay.command(ReplayCommand::Seek { ms: 0 }),
                        replay.command(ReplayCommand::Pause(false)),
                    ];
                }
                replay.paused = !replay.paused;
                vec![replay.command(ReplayCommand::Pause(replay.paused))]
            }
            Action::Slower | Action::Faster => {
                let Some(replay) = self.replay_mut() else {
                    return Vec::new();
                };
                let speed = if action == Action::Faster {
                    (replay.speed + 1).min(SPEEDS.len() - 1)
                } else {
                    replay.speed.saturating_sub(1)
                };
                if speed == replay.speed {
                    let which = if action == Action::Faster {
                        "fastest"
                    } else {
                        "slowest"
                    };
                    let at = replay.speed();
                    self.say(format!("{at}\u{d7} is the {which} a replay plays."));
                    return Vec::new();
                }
                replay.speed = speed;
                if replay.state == ReplayState::Playing {
                    vec![replay.command(ReplayCommand::Speed(replay.speed()))]
                } else {
                    Vec::new()
                }
            }
            // The hallway's, a room's and a card's keys are not in the replay's table.
            Action::Down
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
            | Action::Mute
            | Action::Talk
            | Action::Invite
            | Action::ToAudience
            | Action::MuteSpeaker
            | Action::Remove
            | Action::MakeModerator
            | Action::Card
            | Action::Follow
            | Action::Block
            | Action::Report
            | Action::Verify
            | Action::Close
            | Action::Schedule
            | Action::Clip
            | Action::Chat
            | Action::Write
            | Action::React(_)
            | Action::SilenceChat
            | Action::DeleteChat
            | Action::WhoMayChat
            | Action::Pin => Vec::new(),
        }
    }
}
