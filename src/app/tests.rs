//! The model's behaviour, key by key and event by event. Room events come from the real
//! room core (`server::room::Room`), so the client is tested against what the server sends.

#![allow(clippy::unwrap_used)]

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::*;
use std::sync::Arc;

use crate::audio::LatencyProfile;
use crate::protocol::{Participant, StageMember, User};
use crate::server::room::{Addressed, AudioVerdict, Delivery, Room, RoomLimits};

const HOST: UserId = 1;
const ADA: UserId = 2;
const BOB: UserId = 3;
const CY: UserId = 4;
const NAMES: [&str; 5] = ["", "Host", "Ada", "Bob", "Cy"];

const AUDIENCE_HINT: &str = "You are in the audience: press h to raise your hand and ask to speak.";

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn release(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new_with_kind(
        code,
        KeyModifiers::NONE,
        KeyEventKind::Release,
    ))
}

fn repeat(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new_with_kind(
        code,
        KeyModifiers::NONE,
        KeyEventKind::Repeat,
    ))
}

fn ctrl_c() -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))
}

fn server(message: ServerMessage) -> Msg {
    Msg::Net(NetEvent::Server(message))
}

fn send(command: ClientCommand) -> Vec<Effect> {
    vec![Effect::Send(command)]
}

fn user(id: UserId) -> User {
    User {
        id,
        handle: NAMES[id as usize].to_lowercase(),
        name: NAMES[id as usize].into(),
    }
}

fn summary(id: &str, title: &str, speakers: &[&str]) -> RoomSummary {
    RoomSummary {
        followed: false,
        id: id.into(),
        title: title.into(),
        host: None,
        speakers: speakers
            .iter()
            .zip(1..)
            .map(|(name, id)| StageMember {
                id,
                handle: name.to_lowercase(),
                name: (*name).into(),
                role: Role::Speaker,
                muted: true,
                speaking: false,
            })
            .collect(),
        listener_count: 3,
        created_at_ms: 0,
        recording: false,
        private: false,
        replay: false,
    }
}

fn rooms() -> Vec<RoomSummary> {
    vec![
        summary("r1", "Rust in production", &["Grace", "Linus"]),
        summary("r2", "Late night JAZZ", &["Miles"]),
        summary("r3", "Gardening", &["Ada Lovelace"]),
    ]
}

fn hallway() -> App {
    let mut app = App::new("http://localhost:7600", "Ada", true);
    assert!(app.update(Msg::Rooms(Ok(rooms()))).is_empty());
    app
}

fn visible(app: &App) -> Vec<&str> {
    app.visible_rooms().iter().map(|r| r.id.as_str()).collect()
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert!(app.update(ch(c)).is_empty(), "typing {c:?}");
    }
}

/// A client in room "r1" of a real room core: Host on stage, Ada and Bob in the audience,
/// then whoever else joins. `me` walked in from the hallway and holds the snapshot.
struct Live {
    room: Room,
    app: App,
    me: UserId,
    now_ms: u64,
}

impl Live {
    fn new(me: UserId) -> Self {
        Self::with(me, true, &[HOST, ADA, BOB])
    }

    fn with(me: UserId, key_release: bool, people: &[UserId]) -> Self {
        let mut room = Room::new("r1".into(), "Rust".into(), HOST, 0, RoomLimits::default());
        for &id in people {
            room.join(&user(id), 1).unwrap();
        }
        let mut app = App::new("http://localhost:7600", NAMES[me as usize], key_release);
        app.update(Msg::Rooms(Ok(vec![room.summary()])));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Effect::JoinRoom { id: "r1".into() }]
        );
        assert_eq!(app.room().unwrap().connection, Connection::Connecting);
        assert!(app.update(Msg::Net(NetEvent::Connected)).is_empty());
        let mut live = Self {
            room,
            app,
            me,
            now_ms: 10,
        };
        // A second join of someone present is answered with a fresh snapshot for them.
        let out = live.room.join(&user(me), 1).unwrap();
        // In the room: playout is told what to favour and, on stage, the microphone opens
        // (it sends nothing until unmuted); nothing else happens.
        let effects = live.deliver(out);
        let on_stage = live.myself().role.on_stage();
        assert!(
            match effects.as_slice() {
                [Effect::SetMicOpen(true), Effect::SetLatency(_)] => on_stage,
                [Effect::SetLatency(_)] => !on_stage,
                _ => false,
            },
            "{effects:?}"
        );
        live
    }

    fn view(&self) -> &RoomView {
        self.app.room().unwrap().view.as_ref().unwrap()
    }

    fn myself(&self) -> &Participant {
        self.view().myself().unwrap()
    }

    fn notice(&self) -> Option<&str> {
        self.app.current_notice()
    }

    fn press(&mut self, msg: Msg) -> Vec<Effect> {
        self.app.update(msg)
    }

    /// Hands what the room addressed to me to the model, as the live session would.
    fn deliver(&mut self, out: Vec<Delivery>) -> Vec<Effect> {
        let me = self.me;
        let mut effects = Vec::new();
        for addressed in self.room.address(out) {
            let msg = match addressed {
                Addressed::Message { to, message } if to.includes(me) => server(message),
                Addressed::Disconnect {
                    user,
                    code,
                    message,
                } if user == me => Msg::Net(NetEvent::Closed {
                    code: Some(code),
                    message,
                }),
                Addressed::Message { .. } | Addressed::Disconnect { .. } => continue,
            };
            effects.extend(self.app.update(msg));
        }
        effects
    }

    /// Someone does something in the room.
    fn by(&mut self, who: UserId, command: ClientCommand) -> Vec<Effect> {
        self.advance_for(&command);
        let out = self.room.command(who, &command, self.now_ms).unwrap();
        self.deliver(out)
    }

    /// Time passes before a command: 10 ms, or for a toggle (hand, recording) the room's
    /// shortest time between visible toggles, so these tests see each one at once (the
    /// room's own tests cover the coalescing).
    fn advance_for(&mut self, command: &ClientCommand) {
        use ClientCommand::*;
        self.now_ms += match command {
            RaiseHand | LowerHand { .. } | StartRecording | StopRecording => {
                crate::server::room::TOGGLE_EVERY_MS
            }
            _ => 10,
        };
    }

    /// Runs the commands the model asked to send; refusals come back as `error`s.
    fn serve(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut answers = Vec::new();
        for effect in effects {
            let (command, id) = match effect {
                Effect::Send(command) => (command, None),
                Effect::SendTagged { command, id } => (command, Some(id)),
                _ => continue,
            };
            self.advance_for(&command);
            match self.room.command(self.me, &command, self.now_ms) {
                Ok(out) => {
                    answers.extend(self.deliver(out));
                    if let Some(id) = id {
                        let ok = ServerMessage::Ok { id: id.into() };
                        answers.extend(self.app.update(server(ok)));
                    }
                }
                Err(refusal) => answers.extend(self.app.update(server(ServerMessage::error(
                    id.map(serde_json::Value::from),
                    refusal.code,
                    refusal.message,
                )))),
            }
        }
        answers
    }

    fn speak(&mut self, who: UserId) -> Vec<Effect> {
        self.now_ms += 10;
        let AudioVerdict::Forward(out) = self.room.audio(who, 20, true, self.now_ms) else {
            panic!("{who} may not speak");
        };
        self.deliver(out)
    }

    /// Moves the selection onto `who` with j, as a person would.
    fn select(&mut self, who: UserId) {
        for _ in 0..10 {
            if self.selected() == Some(who) {
                return;
            }
            assert!(self.press(ch('j')).is_empty());
        }
        panic!("{who} is not listed");
    }

    fn selected(&self) -> Option<UserId> {
        let room = self.app.room().unwrap();
        self.view().listed().get(room.selected).map(|p| p.id)
    }

    /// My copy of the room holds what the server holds (order and summary aside).
    fn assert_in_sync(&self) {
        let mut seen = self.view().detail.participants.clone();
        let mut expected = self.room.detail().participants;
        seen.sort_by_key(|p| p.id);
        expected.sort_by_key(|p| p.id);
        assert_eq!(seen, expected);
        assert_eq!(self.view().detail.hands, self.room.detail().hands);
    }

    /// Host and a speaker, Ada, who is live.
    fn ada_live() -> Self {
        let mut live = Self::new(ADA);
        live.by(HOST, ClientCommand::InviteToSpeak { user_id: ADA });
        live.by(ADA, ClientCommand::AcceptInvite);
        assert_eq!(
            live.by(ADA, ClientCommand::Unmute),
            vec![Effect::SetMicLive(true)]
        );
        live
    }
}

// ---- Hallway ----

#[test]
fn a_new_app_is_in_the_hallway_waiting_for_rooms() {
    let app = App::new("http://localhost:7600", "Ada", false);
    assert_eq!(app.screen, Screen::Hallway);
    assert!(!app.rooms_loaded && app.rooms.is_empty() && app.room().is_none());
    assert_eq!((app.output_volume, app.quit), (1.0, false));
    assert_eq!(app.current_notice(), None);
}

#[test]
fn the_room_list_arrives_or_says_why_not() {
    let mut app = App::new("http://localhost:7600", "Ada", false);
    assert!(
        app.update(Msg::Rooms(Err("cannot reach the server".into())))
            .is_empty()
    );
    assert!(app.rooms_loaded);
    assert_eq!(app.rooms_error.as_deref(), Some("cannot reach the server"));
    app.update(Msg::Rooms(Ok(rooms())));
    assert_eq!((app.rooms.len(), app.rooms_error.clone()), (3, None));
    // A failed refresh keeps the rooms we had.
    app.update(Msg::Rooms(Err("timed out".into())));
    assert_eq!(app.rooms.len(), 3);
}

#[test]
fn visible_rooms_match_titles_and_speaker_names_ignoring_case() {
    let mut app = hallway();
    assert_eq!(visible(&app), vec!["r1", "r2", "r3"]);
    for (filter, expected) in [
        ("jazz", vec!["r2"]),
        ("RUST", vec!["r1"]),
        ("miles", vec!["r2"]),
        ("ada", vec!["r3"]),
        ("LINUS", vec!["r1"]),
        ("a", vec!["r1", "r2", "r3"]),
        ("nobody", vec![]),
    ] {
        app.filter = filter.into();
        assert_eq!(visible(&app), expected, "filter {filter:?}");
    }
}

#[test]
fn slash_types_a_filter_that_enter_keeps_and_esc_clears() {
    let mut app = hallway();
    app.update(ch('j'));
    assert!(app.update(ch('/')).is_empty());
    assert!(app.filtering);
    // Keys that mean something in the hallway are text while filtering.
    type_text(&mut app, "rqnx");
    assert_eq!((app.filter.as_str(), app.quit), ("rqnx", false));
    assert_eq!(app.overlay, None);
    app.update(key(KeyCode::Backspace));
    app.update(key(KeyCode::Backspace));
    app.update(key(KeyCode::Backspace));
    assert_eq!(app.filter, "r");
    assert_eq!(app.selected_room, 0, "a new filter starts at the top");
    assert!(
        app.update(key(KeyCode::Enter)).is_empty(),
        "Enter ends typing, it does not join"
    );
    assert!(!app.filtering);
    assert_eq!(app.filter, "r");
    // Esc in the hallway clears a kept filter.
    app.update(key(KeyCode::Esc));
    assert_eq!(app.filter, "");
    // Esc while typing drops the filter and stops typing.
    app.update(ch('/'));
    type_text(&mut app, "jazz");
    assert_eq!(visible(&app), vec!["r2"]);
    app.update(key(KeyCode::Esc));
    assert!(!app.filtering && app.filter.is_empty());
    assert_eq!(visible(&app).len(), 3);
}

#[test]
fn arrows_leave_the_filter_and_move_the_selection() {
    let mut app = hallway();
    app.update(ch('/'));
    app.update(ch('n'));
    assert_eq!(visible(&app), vec!["r1", "r2", "r3"]);
    app.update(key(KeyCode::Down));
    assert!(!app.filtering);
    assert_eq!((app.filter.as_str(), app.selected_room), ("n", 1));
    app.update(ch('/'));
    app.update(key(KeyCode::Up));
    assert_eq!((app.filtering, app.selected_room), (false, 0));
    app.update(ch('/'));
    app.update(key(KeyCode::Up));
    assert_eq!(app.selected_room, 2, "Up from the top wraps to the bottom");
}

#[test]
fn selection_moves_with_j_k_arrows_and_tab_and_wraps_around() {
    let mut app = hallway();
    let mut seen = Vec::new();
    for msg in [
        ch('j'),
        key(KeyCode::Down),
        key(KeyCode::Tab),
        ch('k'),
        key(KeyCode::Up),
        key(KeyCode::BackTab),
    ] {
        assert!(app.update(msg).is_empty());
        seen.push(app.selected_room);
    }
    assert_eq!(seen, vec![1, 2, 0, 2, 1, 0]);
    // Nothing to select: nothing moves.
    app.update(Msg::Rooms(Ok(Vec::new())));
    app.update(ch('j'));
    app.update(ch('k'));
    assert_eq!(app.selected_room, 0);
}

#[test]
fn selection_stays_on_the_list_when_the_list_shrinks() {
    let mut app = hallway();
    app.update(key(KeyCode::Up));
    assert_eq!(app.selected_room, 2);
    app.update(Msg::Rooms(Ok(rooms()[..2].to_vec())));
    assert_eq!(app.selected_room, 1);
    app.update(Msg::Rooms(Ok(Vec::new())));
    assert_eq!(app.selected_room, 0);
    assert!(
        app.update(key(KeyCode::Enter)).is_empty(),
        "no room to join"
    );
    assert_eq!(app.screen, Screen::Hallway);
}

#[test]
fn enter_joins_the_selected_visible_room() {
    let mut app = hallway();
    app.update(ch('/'));
    type_text(&mut app, "ni");
    app.update(key(KeyCode::Enter));
    app.update(ch('j'));
    assert_eq!(visible(&app), vec!["r2", "r3"]);
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::JoinRoom { id: "r3".into() }]
    );
    let room = app.room().unwrap();
    assert_eq!(
        (room.id.as_str(), &room.connection, room.view.is_none()),
        ("r3", &Connection::Connecting, true)
    );
}

#[test]
fn r_refreshes_and_q_quits() {
    let mut app = hallway();
    assert_eq!(app.update(ch('r')), vec![Effect::RefreshRooms]);
    assert_eq!(app.update(ch('q')), vec![Effect::Quit]);
    assert!(app.quit);
}

#[test]
fn ctrl_c_quits_from_anywhere() {
    let mut app = hallway();
    app.update(ch('/'));
    assert_eq!(app.update(ctrl_c()), vec![Effect::Quit]);
    let mut app = hallway();
    app.update(ch('n'));
    assert_eq!(app.update(ctrl_c()), vec![Effect::Quit]);
    let mut app = hallway();
    app.update(ch('?'));
    assert_eq!(app.update(ctrl_c()), vec![Effect::Quit]);
    let mut live = Live::new(ADA);
    assert_eq!(live.press(ctrl_c()), vec![Effect::LeaveRoom, Effect::Quit]);
    assert!(live.app.quit);
}

#[test]
fn help_opens_with_question_mark_and_any_key_closes_it() {
    let mut app = hallway();
    assert!(app.update(ch('?')).is_empty());
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    assert!(
        app.update(ch('q')).is_empty(),
        "q closes help, it does not quit"
    );
    assert_eq!((app.overlay.clone(), app.quit), (None, false));
    app.update(ch('?'));
    assert!(
        app.update(key(KeyCode::Enter)).is_empty(),
        "Enter closes help, it does not join"
    );
    assert_eq!((app.overlay.clone(), app.room().is_none()), (None, true));
    // Where it all fits, `j` closes it like any key.
    app.update(Msg::Resize {
        cols: 100,
        rows: 40,
    });
    app.update(ch('?'));
    app.update(ch('j'));
    assert_eq!(app.overlay, None);
}

#[test]
fn the_help_scrolls_where_the_screen_is_too_small_and_other_keys_close_it() {
    let mut app = hallway();
    app.update(Msg::Resize { cols: 50, rows: 20 });
    let max = crate::app::keymap::HelpLayout::new(50, 20).max_scroll();
    assert!(max > 0, "one column of 16 rows cannot show every binding");
    app.update(ch('?'));
    app.update(ch('j'));
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 1 }));
    app.update(key(KeyCode::End));
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: max }));
    app.update(ch('j'));
    assert_eq!(
        app.overlay,
        Some(Overlay::Help { scroll: max }),
        "stops at the end"
    );
    for _ in 0..5 {
        app.update(key(KeyCode::PageUp));
    }
    app.update(ch('k'));
    assert_eq!(
        app.overlay,
        Some(Overlay::Help { scroll: 0 }),
        "stops at the top"
    );
    // Growing the screen takes back scrolling that is no longer needed.
    app.update(key(KeyCode::End));
    app.update(Msg::Resize { cols: 50, rows: 60 });
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    app.update(Msg::Resize { cols: 50, rows: 20 });
    assert!(
        app.update(ch('q')).is_empty(),
        "q closes help, it does not quit"
    );
    assert_eq!((app.overlay.clone(), app.quit), (None, false));
}

#[test]
fn n_opens_a_title_box_that_enter_submits() {
    let mut app = hallway();
    assert!(app.update(ch('n')).is_empty());
    assert_eq!(
        app.overlay,
        Some(Overlay::NewRoom {
            title: String::new(),
            private: false,
            replay: false,
        })
    );
    assert!(
        app.update(key(KeyCode::Enter)).is_empty(),
        "no empty titles"
    );
    assert!(app.overlay.is_some());
    type_text(&mut app, " Jazz?q/jk ");
    app.update(key(KeyCode::Backspace));
    app.update(key(KeyCode::Backspace));
    assert_eq!(
        app.overlay,
        Some(Overlay::NewRoom {
            title: " Jazz?q/j".into(),
            private: false,
            replay: false,
        })
    );
    assert!(!app.quit && !app.filtering);
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::CreateRoom {
            title: "Jazz?q/j".into(),
            private: None,
            replay: false,
        }]
    );
    assert_eq!(app.overlay, None);
    assert_eq!(
        app.current_notice(),
        Some("Creating \u{201c}Jazz?q/j\u{201d}\u{2026}")
    );
}

#[test]
fn a_title_stops_at_one_hundred_characters() {
    let mut app = hallway();
    app.update(ch('n'));
    type_text(&mut app, &"x".repeat(120));
    assert_eq!(
        app.overlay,
        Some(Overlay::NewRoom {
            title: "x".repeat(100),
            private: false,
            replay: false,
        })
    );
}

#[test]
fn esc_closes_the_title_box_without_creating() {
    let mut app = hallway();
    app.update(ch('n'));
    type_text(&mut app, "Jazz");
    assert!(app.update(key(KeyCode::Esc)).is_empty());
    assert_eq!(app.overlay, None);
    // A fresh box starts empty.
    app.update(ch('n'));
    assert_eq!(
        app.overlay,
        Some(Overlay::NewRoom {
            title: String::new(),
            private: false,
            replay: false,
        })
    );
}

#[test]
fn a_created_room_is_joined_and_a_failure_is_said() {
    let mut app = hallway();
    assert!(
        app.update(Msg::RoomCreated(Err("the title is too long".into())))
            .is_empty()
    );
    assert_eq!(
        app.current_notice(),
        Some("Could not create the room: the title is too long")
    );
    assert_eq!(
        app.update(Msg::RoomCreated(Ok("new1".into()))),
        vec![Effect::JoinRoom { id: "new1".into() }]
    );
    assert_eq!(app.room().unwrap().id, "new1");
}

#[test]
fn a_room_created_while_typing_a_filter_takes_the_keys_to_the_room() {
    let mut app = hallway();
    app.update(ch('n'));
    type_text(&mut app, "Jazz");
    app.update(key(KeyCode::Enter));
    // The person starts filtering while the server creates the room.
    app.update(ch('/'));
    app.update(Msg::RoomCreated(Ok("new1".into())));
    assert!(!app.filtering);
    assert_eq!(
        app.update(ch('L')),
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
}

#[test]
fn notices_fade_after_notice_ms() {
    let mut app = hallway();
    app.update(Msg::Tick { now_ms: 1_000 });
    app.update(Msg::RoomCreated(Err("no".into())));
    app.update(Msg::Tick {
        now_ms: 1_000 + NOTICE_MS - 1,
    });
    assert!(app.current_notice().is_some());
    assert!(
        app.update(Msg::Tick {
            now_ms: 1_000 + NOTICE_MS
        })
        .is_empty()
    );
    assert_eq!(app.current_notice(), None);
}

#[test]
fn live_session_events_in_the_hallway_are_ignored() {
    let mut app = hallway();
    let before = app.clone();
    for event in [
        NetEvent::Connected,
        NetEvent::RoundTrip { rtt_ms: 5 },
        NetEvent::Closed {
            code: Some(ErrorCode::Removed),
            message: "late".into(),
        },
        NetEvent::Server(ServerMessage::error(None, ErrorCode::Forbidden, "late")),
    ] {
        assert!(app.update(Msg::Net(event)).is_empty());
    }
    assert_eq!(app, before);
}

// ---- Joining ----

#[test]
fn while_joining_only_leaving_and_quitting_work() {
    let mut app = hallway();
    app.update(key(KeyCode::Enter));
    for c in ['m', 'h', ' ', 'a', 'i', 'K', '+', ']', 'j'] {
        assert!(app.update(ch(c)).is_empty(), "{c:?} while joining");
    }
    assert_eq!(app.output_volume, 1.0);
    assert_eq!(
        app.update(key(KeyCode::Esc)),
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
    assert_eq!(app.screen, Screen::Hallway);
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.update(ch('L')),
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
    app.update(key(KeyCode::Enter));
    assert_eq!(app.update(ch('q')), vec![Effect::LeaveRoom, Effect::Quit]);
}

#[test]
fn the_connection_state_follows_the_live_session() {
    let mut app = hallway();
    app.update(key(KeyCode::Enter));
    let connection = |app: &App| app.room().unwrap().connection.clone();
    assert_eq!(connection(&app), Connection::Connecting);
    app.update(Msg::Net(NetEvent::Connected));
    assert_eq!(connection(&app), Connection::Live { rtt_ms: None });
    app.update(Msg::Net(NetEvent::RoundTrip { rtt_ms: 42 }));
    assert_eq!(connection(&app), Connection::Live { rtt_ms: Some(42) });
    let reconnecting = NetEvent::Reconnecting {
        attempt: 2,
        reason: "connection reset".into(),
    };
    assert!(app.update(Msg::Net(reconnecting)).is_empty());
    assert_eq!(
        connection(&app),
        Connection::Reconnecting {
            attempt: 2,
            reason: "connection reset".into()
        }
    );
    app.update(Msg::Net(NetEvent::Connected));
    assert_eq!(connection(&app), Connection::Live { rtt_ms: None });
}

#[test]
fn the_snapshot_fills_the_room() {
    let live = Live::new(ADA);
    assert_eq!(live.view().me, ADA);
    assert_eq!(
        live.view()
            .listed()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![HOST, ADA, BOB]
    );
    assert_eq!(live.app.room().unwrap().selected, 0);
    live.assert_in_sync();
}

#[test]
fn an_error_before_the_snapshot_is_still_said() {
    let mut app = hallway();
    app.update(key(KeyCode::Enter));
    app.update(server(ServerMessage::error(
        None,
        ErrorCode::Forbidden,
        "not yet",
    )));
    assert_eq!(app.current_notice(), Some("Not yet"));
}

// ---- Keys in a room ----

#[test]
fn m_unmutes_and_mutes_on_stage_and_the_mic_follows() {
    let mut live = Live::new(HOST);
    let unmute = live.press(ch('m'));
    assert_eq!(unmute, send(ClientCommand::Unmute));
    assert!(
        !live.view().mic_live(),
        "nothing changes until the server says so"
    );
    assert_eq!(live.serve(unmute), vec![Effect::SetMicLive(true)]);
    let mute = live.press(ch('m'));
    assert_eq!(mute, send(ClientCommand::Mute));
    assert_eq!(live.serve(mute), vec![Effect::SetMicLive(false)]);
    live.assert_in_sync();
}

#[test]
fn m_in_the_audience_explains_how_to_speak() {
    let mut live = Live::new(ADA);
    assert!(live.press(ch('m')).is_empty());
    assert_eq!(live.notice(), Some(AUDIENCE_HINT));
}

#[test]
fn h_raises_and_lowers_a_hand_in_the_audience() {
    let mut live = Live::new(ADA);
    let raise = live.press(ch('h'));
    assert_eq!(raise, send(ClientCommand::RaiseHand));
    assert_eq!(live.notice(), Some("Hand raised: the moderators see it."));
    live.serve(raise);
    assert!(live.myself().hand_raised_at_ms.is_some());
    assert_eq!(live.view().detail.hands, vec![ADA]);
    let lower = live.press(ch('h'));
    assert_eq!(lower, send(ClientCommand::LowerHand { user_id: None }));
    live.serve(lower);
    assert!(live.view().detail.hands.is_empty());
    live.assert_in_sync();
}

#[test]
fn h_on_stage_says_to_unmute_instead() {
    let mut live = Live::new(HOST);
    assert!(live.press(ch('h')).is_empty());
    assert_eq!(
        live.notice(),
        Some("You are on the stage already: press m to unmute and talk.")
    );
}

#[test]
fn a_and_d_without_an_invitation_say_there_is_none() {
    let mut live = Live::new(ADA);
    for c in ['a', 'd'] {
        assert!(live.press(ch(c)).is_empty());
        assert_eq!(live.notice(), Some("There is no invitation to answer."));
    }
}

#[test]
fn accepting_an_invitation_puts_me_on_stage_muted_until_i_unmute() {
    let mut live = Live::new(ADA);
    live.serve(vec![Effect::Send(ClientCommand::RaiseHand)]);
    assert!(
        live.by(HOST, ClientCommand::InviteToSpeak { user_id: ADA })
            .is_empty()
    );
    assert_eq!(
        live.notice(),
        Some("Host invited you to speak \u{2014} [a]ccept [d]ecline")
    );
    let accept = live.press(ch('a'));
    assert_eq!(accept, send(ClientCommand::AcceptInvite));
    assert_eq!(
        live.serve(accept),
        vec![
            Effect::SetMicOpen(true),
            Effect::SetLatency(LatencyProfile::Low)
        ],
        "on stage but muted: the microphone opens for its meter but sends nothing; \
         playout turns to low delay"
    );
    assert_eq!(live.myself().role, Role::Speaker);
    assert!(live.myself().muted);
    assert_eq!(
        live.notice(),
        Some("You are on the stage, muted: press m (or hold space) to talk.")
    );
    let unmute = live.press(ch('m'));
    assert_eq!(live.serve(unmute), vec![Effect::SetMicLive(true)]);
    // Live now: the hint to unmute is done with, not left on the event line for 8 s.
    assert_eq!(live.notice(), None);
    live.assert_in_sync();
}

#[test]
fn a_notice_that_is_not_about_unmuting_stays_when_the_mic_goes_live() {
    let mut live = Live::ada_live();
    let mute = live.press(ch('m'));
    live.serve(mute);
    let out = live.room.join(&user(CY), 50).unwrap();
    live.deliver(out);
    let shown = live.notice().map(str::to_string);
    assert_eq!(shown.as_deref(), Some("Cy joined."));
    let unmute = live.press(ch('m'));
    live.serve(unmute);
    assert_eq!(live.notice().map(str::to_string), shown);
}

#[test]
fn declining_an_invitation_clears_it() {
    let mut live = Live::new(ADA);
    live.by(HOST, ClientCommand::InviteToSpeak { user_id: ADA });
    let decline = live.press(ch('d'));
    assert_eq!(decline, send(ClientCommand::DeclineInvite));
    assert!(live.serve(decline).is_empty());
    assert!(!live.myself().invited);
    assert!(live.press(ch('a')).is_empty(), "nothing left to accept");
    live.assert_in_sync();
}

#[test]
fn holding_space_talks_and_releasing_it_mutes() {
    let mut live = Live::new(HOST);
    let press = live.press(ch(' '));
    assert_eq!(press, send(ClientCommand::Unmute));
    // Repeats before and after the server's answer send nothing more.
    assert!(live.press(repeat(KeyCode::Char(' '))).is_empty());
    assert!(live.press(ch(' ')).is_empty());
    assert_eq!(live.serve(press), vec![Effect::SetMicLive(true)]);
    assert!(live.press(repeat(KeyCode::Char(' '))).is_empty());
    assert!(
        live.press(release(KeyCode::Char('m'))).is_empty(),
        "other releases mean nothing"
    );
    let release = live.press(release(KeyCode::Char(' ')));
    assert_eq!(release, send(ClientCommand::Mute));
    assert_eq!(live.serve(release), vec![Effect::SetMicLive(false)]);
    assert!(!live.app.room().unwrap().talking_by_space);
}

#[test]
fn space_while_already_unmuted_leaves_the_mic_alone_on_release() {
    let mut live = Live::new(HOST);
    let unmute = live.press(ch('m'));
    live.serve(unmute);
    assert!(live.press(ch(' ')).is_empty());
    assert!(live.press(release(KeyCode::Char(' '))).is_empty());
    assert!(live.view().mic_live());
}

#[test]
fn space_toggles_mute_where_the_terminal_reports_no_releases() {
    let mut live = Live::with(HOST, false, &[HOST, ADA]);
    let on = live.press(ch(' '));
    assert_eq!(on, send(ClientCommand::Unmute));
    assert_eq!(
        live.notice(),
        Some("This terminal does not report key releases, so space toggles mute (like m).")
    );
    assert_eq!(live.serve(on), vec![Effect::SetMicLive(true)]);
    let off = live.press(ch(' '));
    assert_eq!(off, send(ClientCommand::Mute));
    assert_eq!(live.serve(off), vec![Effect::SetMicLive(false)]);
}

#[test]
fn space_in_the_audience_explains_how_to_speak() {
    let mut live = Live::new(ADA);
    assert!(live.press(ch(' ')).is_empty());
    assert!(live.press(release(KeyCode::Char(' '))).is_empty());
    assert_eq!(live.notice(), Some(AUDIENCE_HINT));
}

#[test]
fn plus_and_minus_set_the_output_volume_between_0_and_2() {
    let mut live = Live::new(ADA);
    assert_eq!(
        live.press(ch('+')),
        vec![Effect::SetOutputVolume(live.app.output_volume)]
    );
    assert!((live.app.output_volume - 1.1).abs() < 1e-6);
    assert_eq!(live.notice(), Some("Volume 110%"));
    live.press(ch('='));
    assert!((live.app.output_volume - 1.2).abs() < 1e-6);
    for _ in 0..20 {
        live.press(ch('+'));
    }
    assert_eq!(live.app.output_volume, 2.0);
    assert_eq!(live.notice(), Some("Volume 200%"));
    for _ in 0..30 {
        live.press(ch('-'));
    }
    assert_eq!(live.app.output_volume, 0.0);
    assert_eq!(live.press(ch('-')), vec![Effect::SetOutputVolume(0.0)]);
    assert_eq!(live.notice(), Some("Volume 0%"));
}

#[test]
fn brackets_set_the_selected_persons_volume() {
    let mut live = Live::new(ADA);
    live.select(BOB);
    assert_eq!(
        live.press(ch(']')),
        vec![Effect::SetSpeakerVolume {
            user_id: BOB,
            volume: 1.1
        }]
    );
    assert_eq!(live.notice(), Some("Bob: volume 110%"));
    for _ in 0..20 {
        live.press(ch(']'));
    }
    assert_eq!(live.app.room().unwrap().volumes[&BOB], 2.0);
    for _ in 0..30 {
        live.press(ch('['));
    }
    assert_eq!(
        live.press(ch('[')),
        vec![Effect::SetSpeakerVolume {
            user_id: BOB,
            volume: 0.0
        }]
    );
    live.select(HOST);
    assert_eq!(
        live.press(ch('[')),
        vec![Effect::SetSpeakerVolume {
            user_id: HOST,
            volume: 0.9
        }]
    );
    assert_eq!(
        live.app.room().unwrap().volumes[&BOB],
        0.0,
        "each person has their own"
    );
}

#[test]
fn j_k_arrows_and_tab_walk_the_room_list_and_wrap() {
    let mut live = Live::new(ADA);
    let mut seen = Vec::new();
    for msg in [
        ch('j'),
        key(KeyCode::Down),
        key(KeyCode::Tab),
        ch('k'),
        key(KeyCode::Up),
        key(KeyCode::BackTab),
    ] {
        assert!(live.press(msg).is_empty());
        seen.push(live.selected().unwrap());
    }
    assert_eq!(seen, vec![ADA, BOB, HOST, BOB, ADA, HOST]);
}

#[test]
fn help_in_a_room_closes_on_any_key_without_acting() {
    let mut live = Live::new(HOST);
    live.press(ch('?'));
    assert_eq!(live.app.overlay, Some(Overlay::Help { scroll: 0 }));
    assert!(live.press(ch('m')).is_empty(), "the key only closes help");
    assert_eq!(live.app.overlay, None);
}

#[test]
fn l_leaves_for_the_hallway_and_closes_a_live_mic() {
    let mut live = Live::new(ADA);
    assert_eq!(
        live.press(ch('L')),
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
    assert_eq!(live.app.screen, Screen::Hallway);
    let mut live = Live::ada_live();
    assert_eq!(
        live.press(ch('L')),
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays,
            Effect::SetMicLive(false),
            Effect::SetMicOpen(false)
        ]
    );
}

#[test]
fn q_in_a_room_leaves_and_quits() {
    let mut live = Live::new(ADA);
    assert_eq!(live.press(ch('q')), vec![Effect::LeaveRoom, Effect::Quit]);
}

#[test]
fn moderator_keys_act_on_the_selected_person() {
    let mut live = Live::new(HOST);
    live.select(ADA);
    let invite = live.press(ch('i'));
    assert_eq!(invite, send(ClientCommand::InviteToSpeak { user_id: ADA }));
    assert_eq!(live.notice(), Some("Invited Ada to speak."));
    live.serve(invite);
    live.by(ADA, ClientCommand::AcceptInvite);
    // Ada is on the stage now, second in the list.
    live.select(ADA);
    assert!(live.press(ch('i')).is_empty());
    assert_eq!(live.notice(), Some("Ada is on the stage already."));
    let mute = live.press(ch('M'));
    assert_eq!(mute, send(ClientCommand::MuteSpeaker { user_id: ADA }));
    let moderator = live.press(ch('o'));
    assert_eq!(
        moderator,
        send(ClientCommand::MakeModerator { user_id: ADA })
    );
    let to_audience = live.press(ch('x'));
    assert_eq!(
        to_audience,
        send(ClientCommand::MoveToAudience { user_id: ADA })
    );
    live.serve(to_audience);
    assert_eq!(live.view().participant(ADA).unwrap().role, Role::Listener);
    live.assert_in_sync();
}

#[test]
fn k_asks_before_removing_and_y_or_enter_confirms() {
    let mut live = Live::new(HOST);
    live.select(BOB);
    assert!(live.press(ch('K')).is_empty());
    assert_eq!(
        live.app.overlay,
        Some(Overlay::ConfirmRemove {
            user_id: BOB,
            name: "Bob".into()
        })
    );
    let remove = live.press(ch('y'));
    assert_eq!(remove, send(ClientCommand::Remove { user_id: BOB }));
    assert_eq!(live.app.overlay, None);
    assert_eq!(live.notice(), Some("Removing Bob\u{2026}"));
    live.serve(remove);
    assert!(live.view().participant(BOB).is_none());
    assert_eq!(live.notice(), Some("Bob was removed."));
    live.select(ADA);
    live.press(ch('K'));
    assert_eq!(
        live.press(key(KeyCode::Enter)),
        send(ClientCommand::Remove { user_id: ADA })
    );
    live.assert_in_sync();
}

#[test]
fn k_then_anything_but_yes_removes_nobody() {
    let mut live = Live::new(HOST);
    live.select(BOB);
    for answer in [ch('n'), key(KeyCode::Esc), ch('x')] {
        live.press(ch('K'));
        assert!(live.press(answer).is_empty());
        assert_eq!(live.app.overlay, None);
    }
    assert!(live.view().participant(BOB).is_some());
}

#[test]
fn k_on_myself_says_to_leave_instead() {
    let mut live = Live::new(HOST);
    live.select(HOST);
    assert!(live.press(ch('K')).is_empty());
    assert_eq!(live.app.overlay, None);
    assert_eq!(live.notice(), Some("To go, leave the room with L."));
}

#[test]
fn moderator_keys_from_a_listener_only_explain() {
    let mut live = Live::new(ADA);
    live.select(BOB);
    for c in ['i', 'x', 'M', 'o', 'K'] {
        assert!(live.press(ch(c)).is_empty(), "{c:?}");
        assert_eq!(live.notice(), Some("Only moderators can do that."));
        assert_eq!(live.app.overlay, None);
    }
}

#[test]
fn a_refused_command_is_said() {
    let mut live = Live::new(HOST);
    live.select(HOST);
    let to_audience = live.press(ch('x'));
    assert!(live.serve(to_audience).is_empty());
    assert_eq!(live.notice(), Some("Nobody can do that to the host"));
}

// ---- Server events in a room ----

#[test]
fn joins_and_departures_are_announced() {
    let mut live = Live::new(ADA);
    let out = live.room.join(&user(CY), 50).unwrap();
    assert!(live.deliver(out).is_empty());
    assert_eq!(live.notice(), Some("Cy joined."));
    live.by(CY, ClientCommand::Leave);
    assert_eq!(live.notice(), Some("Cy left."));
    let out = live.room.depart(BOB, LeaveReason::Disconnected, 100);
    live.deliver(out);
    assert_eq!(live.notice(), Some("Bob left."));
    live.assert_in_sync();
}

#[test]
fn removal_of_someone_else_is_announced_and_of_me_sends_me_home() {
    let mut live = Live::new(ADA);
    live.by(HOST, ClientCommand::Remove { user_id: BOB });
    assert_eq!(live.notice(), Some("Bob was removed."));
    let effects = live.by(HOST, ClientCommand::Remove { user_id: ADA });
    assert_eq!(
        effects,
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
    assert_eq!(live.app.screen, Screen::Hallway);
    assert_eq!(
        live.notice(),
        Some("A moderator removed you from the room.")
    );
}

#[test]
fn the_room_ending_sends_everyone_home_with_the_reason() {
    for (reason, text) in [
        (
            RoomEndReason::EndedByModerator,
            "A moderator ended the room.",
        ),
        (
            RoomEndReason::NoModerator,
            "The room ended: no moderator was left.",
        ),
        (
            RoomEndReason::ServerShutdown,
            "The server is shutting down.",
        ),
    ] {
        let mut live = Live::ada_live();
        let effects = live.press(server(ServerMessage::RoomEnded { reason, by: None }));
        assert_eq!(
            effects,
            vec![
                Effect::LeaveRoom,
                Effect::RefreshRooms,
                Effect::RefreshReplays,
                Effect::SetMicLive(false),
                Effect::SetMicOpen(false)
            ]
        );
        assert_eq!(
            (&live.app.screen, live.notice()),
            (&Screen::Hallway, Some(text))
        );
    }
    // Through the real room: the end, then the close that follows it, which changes nothing.
    let mut live = Live::new(ADA);
    let effects = live.by(HOST, ClientCommand::EndRoom);
    assert_eq!(
        effects,
        vec![
            Effect::LeaveRoom,
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
    assert_eq!(live.notice(), Some("A moderator ended the room."));
}

#[test]
fn a_closed_session_sends_me_home_with_the_reason() {
    for (code, message, text) in [
        (
            Some(ErrorCode::Removed),
            "x",
            "A moderator removed you from the room.",
        ),
        (Some(ErrorCode::RoomEnded), "x", "The room has ended."),
        (
            Some(ErrorCode::Banned),
            "you cannot rejoin",
            "you cannot rejoin",
        ),
        (None, "gave up reconnecting", "gave up reconnecting"),
    ] {
        let mut live = Live::new(ADA);
        let closed = NetEvent::Closed {
            code,
            message: message.into(),
        };
        assert_eq!(
            live.press(Msg::Net(closed)),
            vec![
                Effect::LeaveRoom,
                Effect::RefreshRooms,
                Effect::RefreshReplays
            ]
        );
        assert_eq!(
            (&live.app.screen, live.notice()),
            (&Screen::Hallway, Some(text))
        );
    }
}

#[test]
fn server_errors_are_said_with_a_capital() {
    let mut live = Live::new(ADA);
    let error = ServerMessage::error(None, ErrorCode::StageFull, "the stage is full");
    assert!(live.press(server(error)).is_empty());
    assert_eq!(live.notice(), Some("The stage is full"));
}

#[test]
fn hands_are_listed_in_the_order_raised_and_announced() {
    let mut live = Live::with(HOST, true, &[HOST, ADA, BOB, CY]);
    live.by(CY, ClientCommand::RaiseHand);
    assert_eq!(live.notice(), Some("Cy raised a hand."));
    live.by(ADA, ClientCommand::RaiseHand);
    let listed: Vec<UserId> = live.view().listed().iter().map(|p| p.id).collect();
    assert_eq!(listed, vec![HOST, CY, ADA, BOB]);
    live.by(CY, ClientCommand::LowerHand { user_id: None });
    assert_eq!(live.view().detail.hands, vec![ADA]);
    live.assert_in_sync();
}

#[test]
fn others_declining_an_invitation_is_announced() {
    let mut live = Live::new(HOST);
    live.by(HOST, ClientCommand::InviteToSpeak { user_id: BOB });
    assert!(live.view().participant(BOB).unwrap().invited);
    live.by(BOB, ClientCommand::DeclineInvite);
    assert_eq!(live.notice(), Some("Bob declined to speak."));
    live.assert_in_sync();
}

#[test]
fn being_made_a_moderator_unlocks_the_moderator_keys() {
    let mut live = Live::new(ADA);
    live.by(ADA, ClientCommand::RaiseHand);
    live.by(HOST, ClientCommand::MakeModerator { user_id: ADA });
    assert_eq!(live.notice(), Some("Host made you a moderator."));
    assert_eq!(live.myself().role, Role::Moderator);
    assert!(live.myself().muted, "promoted muted: no SetMicLive");
    live.select(BOB);
    assert_eq!(
        live.press(ch('i')),
        send(ClientCommand::InviteToSpeak { user_id: BOB })
    );
    live.assert_in_sync();
}

#[test]
fn the_host_role_passes_to_me_when_the_host_leaves() {
    let mut live = Live::new(ADA);
    live.by(HOST, ClientCommand::MakeModerator { user_id: ADA });
    live.by(HOST, ClientCommand::Leave);
    assert_eq!(live.notice(), Some("You are now the host."));
    assert_eq!(live.myself().role, Role::Host);
    live.assert_in_sync();
}

#[test]
fn a_moderator_muting_me_closes_the_mic_and_says_so() {
    let mut live = Live::ada_live();
    let effects = live.by(HOST, ClientCommand::MuteSpeaker { user_id: ADA });
    assert_eq!(effects, vec![Effect::SetMicLive(false)]);
    assert_eq!(
        live.notice(),
        Some("Host muted you; press m to unmute when you are ready.")
    );
    live.assert_in_sync();
}

#[test]
fn being_moved_to_the_audience_while_live_closes_the_mic() {
    let mut live = Live::ada_live();
    live.speak(ADA);
    assert!(live.myself().speaking);
    let effects = live.by(HOST, ClientCommand::MoveToAudience { user_id: ADA });
    assert_eq!(
        effects,
        vec![
            // Whoever leaves the stage, their playout state goes (the shell no longer
            // decides that on its own).
            Effect::ForgetSpeaker(ADA),
            Effect::SetMicLive(false),
            Effect::SetMicOpen(false),
            Effect::SetLatency(LatencyProfile::Smooth)
        ],
        "exactly once"
    );
    assert_eq!(live.notice(), Some("Host moved you to the audience."));
    assert!(!live.myself().speaking);
    live.assert_in_sync();
}

#[test]
fn being_moved_to_the_audience_while_holding_space_keeps_the_news_on_screen() {
    let mut live = Live::new(ADA);
    live.by(HOST, ClientCommand::InviteToSpeak { user_id: ADA });
    live.by(ADA, ClientCommand::AcceptInvite);
    let talk = live.press(ch(' '));
    assert_eq!(live.serve(talk), vec![Effect::SetMicLive(true)]);
    let moved = live.by(HOST, ClientCommand::MoveToAudience { user_id: ADA });
    assert_eq!(
        moved,
        vec![
            Effect::ForgetSpeaker(ADA),
            Effect::SetMicLive(false),
            Effect::SetMicOpen(false),
            Effect::SetLatency(LatencyProfile::Smooth)
        ]
    );
    // Releasing space must not send a mute the server would refuse with an error that
    // replaces "moved you to the audience" on the event line.
    assert!(live.press(release(KeyCode::Char(' '))).is_empty());
    assert!(!live.app.room().unwrap().talking_by_space);
    assert_eq!(live.notice(), Some("Host moved you to the audience."));
}

#[test]
fn speaking_lights_follow_the_room() {
    let mut live = Live::new(ADA);
    live.by(HOST, ClientCommand::Unmute);
    assert!(live.speak(HOST).is_empty());
    assert!(live.view().participant(HOST).unwrap().speaking);
    let out = live.room.tick(live.now_ms + 1_000);
    live.deliver(out);
    assert!(!live.view().participant(HOST).unwrap().speaking);
    live.assert_in_sync();
}

#[test]
fn talking_while_muted_needs_the_stage_a_muted_mic_and_a_loud_voice() {
    let voice = |level: f32| {
        Msg::Audio(AudioStatus {
            input_voice: true,
            input_level_dbov: level,
            ..AudioStatus::default()
        })
    };
    let mut live = Live::new(HOST);
    live.press(voice(-20.0));
    assert!(live.app.talking_while_muted());
    live.press(voice(TALKING_WHILE_MUTED_DBOV - 1.0));
    assert!(!live.app.talking_while_muted(), "too quiet");
    live.press(Msg::Audio(AudioStatus {
        input_voice: false,
        input_level_dbov: -20.0,
        ..AudioStatus::default()
    }));
    assert!(!live.app.talking_while_muted(), "noise, not a voice");
    live.press(voice(-20.0));
    let unmute = live.press(ch('m'));
    live.serve(unmute);
    assert!(!live.app.talking_while_muted(), "unmuted: just talking");
    let mut listener = Live::new(ADA);
    listener.press(voice(-20.0));
    assert!(
        !listener.app.talking_while_muted(),
        "listeners have no microphone"
    );
    assert!(!hallway().talking_while_muted());
}

#[test]
fn the_selection_stays_on_the_list_when_people_leave() {
    let mut live = Live::with(HOST, true, &[HOST, ADA, BOB, CY]);
    live.select(CY);
    assert_eq!(live.app.room().unwrap().selected, 3);
    live.by(CY, ClientCommand::Leave);
    assert_eq!(live.app.room().unwrap().selected, 2);
    live.by(BOB, ClientCommand::Leave);
    live.by(ADA, ClientCommand::Leave);
    assert_eq!(live.selected(), Some(HOST));
}

#[test]
fn the_selection_follows_its_person_when_the_list_reorders() {
    let mut live = Live::with(HOST, true, &[HOST, ADA, BOB, CY]);
    live.select(BOB);
    // Cy's hand takes Cy to the top of the audience; Bob stays selected, so a moderator
    // key pressed next still acts on Bob.
    live.by(CY, ClientCommand::RaiseHand);
    assert_eq!(live.selected(), Some(BOB));
    live.by(ADA, ClientCommand::Leave);
    assert_eq!(live.selected(), Some(BOB));
    live.press(ch('K'));
    assert_eq!(
        live.app.overlay,
        Some(Overlay::ConfirmRemove {
            user_id: BOB,
            name: "Bob".into()
        })
    );
}

#[test]
fn a_fresh_snapshot_after_a_reconnect_closes_a_live_mic() {
    let mut live = Live::ada_live();
    live.press(Msg::Net(NetEvent::Reconnecting {
        attempt: 1,
        reason: "reset".into(),
    }));
    live.press(Msg::Net(NetEvent::Connected));
    // The server kept Ada's role through the drop, muted.
    // Ada's connection was down, so she never hears of her own departure.
    live.room.depart(ADA, LeaveReason::Disconnected, 500);
    let out = live.room.join(&user(ADA), 600).unwrap();
    assert_eq!(live.deliver(out), vec![Effect::SetMicLive(false)]);
    assert_eq!(live.myself().role, Role::Speaker);
    live.assert_in_sync();
}

#[test]
fn a_held_toggle_key_acts_once_but_held_arrows_keep_moving() {
    use crossterm::event::KeyEventState;
    let repeat = |code| {
        Msg::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Repeat,
            state: KeyEventState::NONE,
        })
    };
    let mut app = App::new("http://h", "ada", true);
    app.update(Msg::Rooms(Ok(vec![
        summary("r1", "One", &[]),
        summary("r2", "Two", &[]),
    ])));
    app.update(repeat(KeyCode::Down));
    assert_eq!(app.selected_room, 1, "held arrows move");
    assert!(
        app.update(repeat(KeyCode::Char('q'))).is_empty(),
        "a repeated q is not a second press"
    );
    assert!(!app.quit);
}

#[test]
fn raised_hands_are_news_for_moderators_only() {
    let mut listener = Live::with(BOB, true, &[HOST, ADA, BOB, CY]);
    listener.by(CY, ClientCommand::RaiseHand);
    assert_eq!(
        listener.notice(),
        None,
        "a listener is not told of others' hands"
    );
    assert_eq!(
        listener.view().detail.hands,
        vec![CY],
        "but sees them on screen"
    );
    let mut host = Live::with(HOST, true, &[HOST, ADA, BOB, CY]);
    host.by(CY, ClientCommand::RaiseHand);
    assert_eq!(host.notice(), Some("Cy raised a hand."));
}

#[test]
fn a_big_room_does_not_announce_every_arrival() {
    let mut live = Live::new(ADA);
    live.room
        .join(&user(CY), 20)
        .map(|out| live.deliver(out))
        .unwrap();
    assert_eq!(live.notice(), Some("Cy joined."), "a small room does");
    for id in 100..(100 + QUIET_ROOM_SIZE as UserId) {
        let out = live
            .room
            .join(
                &User {
                    id,
                    handle: format!("guest_{id}"),
                    name: format!("guest {id}"),
                },
                30,
            )
            .unwrap();
        live.deliver(out);
    }
    live.app.notice = None;
    let out = live
        .room
        .join(
            &User {
                id: 999,
                handle: "late".into(),
                name: "late".into(),
            },
            40,
        )
        .unwrap();
    live.deliver(out);
    assert_eq!(live.notice(), None);
    let out = live
        .room
        .command(HOST, &ClientCommand::Remove { user_id: 999 }, 50)
        .unwrap();
    live.deliver(out);
    assert_eq!(
        live.notice(),
        Some("late was removed."),
        "removals are always said"
    );
}

#[test]
fn the_audio_quality_word_follows_recent_losses_and_recovers() {
    let mut q = crate::app::AudioQuality::default();
    let mut now = 0;
    let mut total = 0;
    for _ in 0..50 {
        now += 100;
        q.observe(total, now);
    }
    assert_eq!(q.word(), "good");
    // A stall: 25 frames concealed within a second.
    for _ in 0..10 {
        now += 100;
        total += 3;
        q.observe(total, now);
    }
    assert_eq!(q.word(), "poor", "{q:?}");
    // Calm again: within half a minute it is good again.
    for _ in 0..300 {
        now += 100;
        q.observe(total, now);
    }
    assert_eq!(q.word(), "good", "{q:?}");
    // Leaving and joining again restarts the counters: no false alarm.
    q.observe(0, now + 100);
    assert_eq!(q.word(), "good");
}

#[test]
fn playout_favours_smoothness_in_the_audience_and_low_delay_on_stage() {
    let mut live = Live::with(ADA, true, &[HOST, ADA]);
    let latency = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::SetLatency(p) => Some(*p),
            _ => None,
        })
    };
    // Joined as a listener (`Live::with` delivers the snapshot): smooth.
    assert_eq!(live.app.latency, crate::config::Latency::Auto);
    let raise = live.press(ch('h'));
    live.serve(raise);
    let invited = live.by(HOST, ClientCommand::InviteToSpeak { user_id: ADA });
    assert_eq!(latency(&invited), None, "an invitation changes nothing yet");
    let accept = live.press(ch('a'));
    let effects = live.serve(accept);
    assert_eq!(latency(&effects), Some(LatencyProfile::Low), "{effects:?}");
    let back = live.by(HOST, ClientCommand::MoveToAudience { user_id: ADA });
    assert_eq!(latency(&back), Some(LatencyProfile::Smooth), "{back:?}");
}

fn me_with(handle: &str, following: Vec<UserId>, blocking: Vec<UserId>) -> Me {
    Me {
        user: User {
            id: ADA,
            handle: handle.into(),
            name: "Ada".into(),
        },
        bio: String::new(),
        admin: false,
        invitations_left: Some(3),
        devices: Vec::new(),
        following,
        blocking,
    }
}

fn card_of(handle: &str, followed: bool, blocked: bool) -> Profile {
    Profile {
        user: User {
            id: 7,
            handle: handle.into(),
            name: handle.into(),
        },
        bio: String::new(),
        joined_at_ms: 0,
        invited_by: None,
        followers: 0,
        following: 0,
        followed,
        blocked,
        devices: Vec::new(),
        suspended: false,
    }
}

#[test]
fn a_card_follows_blocks_and_reports_the_person_it_shows() {
    let mut app = hallway();
    app.update(Msg::Me(me_with("ada", Vec::new(), Vec::new())));
    // In the hallway, `p` opens the selected room's host's card; r3's host is unknown.
    let mut rooms = rooms();
    rooms[0].host = Some(User {
        id: 7,
        handle: "grace_h".into(),
        name: "Grace".into(),
    });
    app.update(Msg::Rooms(Ok(rooms)));
    assert_eq!(
        app.update(ch('p')),
        vec![Effect::FetchProfile {
            handle: "grace_h".into()
        }]
    );
    // Keys do nothing until the card is there.
    assert!(app.update(ch('f')).is_empty());
    app.update(Msg::Profile {
        handle: "GRACE_H".into(),
        result: Ok(card_of("grace_h", false, false)),
    });
    assert_eq!(
        app.update(ch('f')),
        vec![Effect::SetFollow {
            handle: "grace_h".into(),
            on: true
        }]
    );
    app.update(Msg::Profile {
        handle: "grace_h".into(),
        result: Ok(card_of("grace_h", true, false)),
    });
    assert_eq!(
        app.update(ch('f')),
        vec![Effect::SetFollow {
            handle: "grace_h".into(),
            on: false
        }]
    );
    assert_eq!(
        app.update(ch('b')),
        vec![Effect::SetBlock {
            handle: "grace_h".into(),
            on: true
        }]
    );
    // The answer: said, then my account and the open card brought up to date.
    assert_eq!(
        app.update(Msg::Changed {
            handle: "grace_h".into(),
            change: Change::Block(true),
            result: Ok(()),
        }),
        vec![
            Effect::FetchMe,
            Effect::FetchProfile {
                handle: "grace_h".into()
            }
        ]
    );
    assert!(
        app.current_notice()
            .is_some_and(|n| n.starts_with("Blocked @grace_h: you will not hear them"))
    );
    app.update(Msg::Changed {
        handle: "grace_h".into(),
        change: Change::Follow(true),
        result: Err("the server is unreachable".into()),
    });
    assert_eq!(
        app.current_notice(),
        Some("Could not do that: the server is unreachable")
    );
    // `r` asks why; Enter sends it; an empty reason is not sent.
    assert!(app.update(ch('r')).is_empty());
    assert!(matches!(app.overlay, Some(Overlay::Report { .. })));
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    type_text(&mut app, "spam");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::Report {
            handle: "grace_h".into(),
            reason: "spam".into()
        }]
    );
    assert_eq!(app.overlay, None);
    // A card for another person arriving late does not replace the one open.
    app.update(ch('p'));
    app.update(Msg::Profile {
        handle: "someone_else".into(),
        result: Ok(card_of("someone_else", false, false)),
    });
    match &app.overlay {
        Some(Overlay::Card(card)) => assert!(card.profile.is_none()),
        other => panic!("{other:?}"),
    }
    assert!(app.update(key(KeyCode::Esc)).is_empty());
    assert_eq!(app.overlay, None);
}

#[test]
fn your_own_card_cannot_follow_or_block_you() {
    let mut live = Live::new(HOST);
    live.app
        .update(Msg::Me(me_with("host", Vec::new(), Vec::new())));
    // The host is on the stage, listed first and selected.
    assert_eq!(
        live.app.update(ch('p')),
        vec![Effect::FetchProfile {
            handle: "host".into()
        }]
    );
    live.app.update(Msg::Profile {
        handle: "host".into(),
        result: Ok(card_of("host", false, false)),
    });
    for k in ['f', 'b', 'r'] {
        assert!(live.app.update(ch(k)).is_empty());
        assert_eq!(live.notice(), Some("That is your own card."));
    }
}

#[test]
fn whom_i_block_is_not_played_and_changes_reach_the_audio() {
    let mut app = hallway();
    assert_eq!(app.update(Msg::Started), vec![Effect::FetchMe]);
    assert_eq!(
        app.update(Msg::Me(me_with("ada", vec![1], vec![9, 3]))),
        vec![Effect::SetBlocked(vec![3, 9])]
    );
    // The same list again changes nothing.
    assert!(
        app.update(Msg::Me(me_with("ada", vec![1], vec![3, 9])))
            .is_empty()
    );
    assert_eq!(
        app.update(Msg::Me(me_with("ada", vec![1], Vec::new()))),
        vec![Effect::SetBlocked(Vec::new())]
    );
}

#[test]
fn the_event_line_tells_when_someone_followed_starts_a_room_or_steps_on_a_stage() {
    let mut app = hallway();
    // Grace is id 1 in r1 ("Grace", "Linus"); Linus is id 2.
    app.update(Msg::Me(me_with("ada", vec![2, 50], Vec::new())));
    // Nothing new: nothing said.
    app.update(Msg::Rooms(Ok(rooms())));
    assert_eq!(app.current_notice(), None);
    let mut more = rooms();
    let mut started = summary("r9", "Late show", &[]);
    started.speakers.push(StageMember {
        id: 50,
        handle: "miles_d".into(),
        name: "Miles".into(),
        role: Role::Host,
        muted: false,
        speaking: false,
    });
    more.push(started);
    app.update(Msg::Rooms(Ok(more.clone())));
    assert_eq!(
        app.current_notice(),
        Some("@miles_d (you follow them) started \u{201c}Late show\u{201d}.")
    );
    // Linus moves to r2's stage.
    more[1].speakers.push(StageMember {
        id: 2,
        handle: "linus".into(),
        name: "Linus".into(),
        role: Role::Speaker,
        muted: true,
        speaking: false,
    });
    app.update(Msg::Rooms(Ok(more)));
    assert_eq!(
        app.current_notice(),
        Some("@linus (you follow them) is on the stage in \u{201c}Late night JAZZ\u{201d}.")
    );
}

#[test]
fn a_card_marks_someones_device_keys_verified_and_unmarks_them() {
    let mut app = hallway();
    app.update(Msg::Me(me_with("ada", Vec::new(), Vec::new())));
    let mut rooms = rooms();
    rooms[0].host = Some(User {
        id: 7,
        handle: "Grace_H".into(),
        name: "Grace".into(),
    });
    app.update(Msg::Rooms(Ok(rooms)));
    app.update(ch('p'));
    assert!(
        app.update(ch('v')).is_empty(),
        "nothing until the card is there"
    );
    let mut card = card_of("Grace_H", false, false);
    card.devices = vec![
        crate::protocol::PublicDevice {
            sign_key: "s1".into(),
            agree_key: "a1".into(),
            fingerprint: String::new(),
        },
        crate::protocol::PublicDevice {
            sign_key: "s2".into(),
            agree_key: "a2".into(),
            fingerprint: String::new(),
        },
    ];
    app.update(Msg::Profile {
        handle: "Grace_H".into(),
        result: Ok(card),
    });
    assert_eq!(
        app.update(ch('v')),
        vec![Effect::SetVerified {
            handle: "grace_h".into(),
            agree_keys: vec!["a1".into(), "a2".into()],
            on: true,
        }]
    );
    assert_eq!(
        app.verified["grace_h"].iter().collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert!(
        matches!(app.overlay, Some(Overlay::Card(_))),
        "the card stays open"
    );
    assert_eq!(
        app.update(ch('v')),
        vec![Effect::SetVerified {
            handle: "grace_h".into(),
            agree_keys: vec!["a1".into(), "a2".into()],
            on: false,
        }]
    );
    assert!(!app.verified.contains_key("grace_h"));
}

// ---- Chat, reactions and the pin (#15) ----

fn chat_texts(live: &Live) -> Vec<String> {
    live.view().chat.iter().map(|l| l.text.clone()).collect()
}

/// Time passes until the room's waiting chat and reactions are due, and they are sent.
fn flush_life(live: &mut Live) {
    if let Some(due) = live.room.life_deadline_ms() {
        live.now_ms = live.now_ms.max(due);
        let out = live.room.tick(live.now_ms);
        live.deliver(out);
    }
}

#[test]
fn c_opens_the_chat_and_what_is_typed_there_is_text_not_keys() {
    let mut live = Live::new(ADA);
    assert!(live.press(ch('c')).is_empty());
    let life = &live.app.room().unwrap().life;
    assert!(life.chat_open && life.draft.is_some());
    // `h` does not raise a hand and `q` does not quit while writing.
    type_text(&mut live.app, "hi q h");
    assert!(!live.app.quit);
    let effects = live.press(key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::SendTagged {
            command: ClientCommand::Chat {
                text: "hi q h".into()
            },
            id: 1
        }]
    );
    live.serve(effects);
    assert_eq!(chat_texts(&live), ["hi q h"]);
    assert!(
        live.app.room().unwrap().life.awaiting.is_empty(),
        "answered ok"
    );
    // Still writing after sending; an empty line sends nothing.
    assert!(live.press(key(KeyCode::Enter)).is_empty());
    // Esc stops writing, the pane stays; `c` then hides it.
    live.press(key(KeyCode::Esc));
    let life = &live.app.room().unwrap().life;
    assert!(life.chat_open && life.draft.is_none());
    live.press(ch('c'));
    assert!(!live.app.room().unwrap().life.chat_open);

    // Lines that come while it is hidden are counted, less those of people I block.
    live.app.blocking.insert(HOST);
    live.by(BOB, ClientCommand::Chat { text: "one".into() });
    live.by(HOST, ClientCommand::Chat { text: "two".into() });
    flush_life(&mut live);
    assert_eq!(chat_texts(&live), ["hi q h", "one", "two"]);
    assert_eq!(live.app.room().unwrap().life.unread, 1);
    // Enter opens it to write, and the count goes.
    live.press(key(KeyCode::Enter));
    let life = &live.app.room().unwrap().life;
    assert!(life.chat_open && life.draft.is_some() && life.unread == 0);
}

#[test]
fn a_refused_line_is_said_on_the_event_line() {
    let mut live = Live::new(ADA);
    live.press(ch('c'));
    type_text(&mut live.app, "may I?");
    // The host closes the chat to the audience while Ada writes.
    live.by(
        HOST,
        ClientCommand::SetChat {
            who: crate::protocol::chat::ChatPolicy::Stage,
        },
    );
    let effects = live.press(key(KeyCode::Enter));
    live.serve(effects);
    assert!(
        live.notice()
            .is_some_and(|n| n.contains("nly the stage may chat")),
        "{:?}",
        live.notice()
    );
    // Now `c` shows the chat to read and says why writing is not possible.
    live.press(key(KeyCode::Esc));
    live.press(ch('c'));
    live.press(ch('c'));
    let life = &live.app.room().unwrap().life;
    assert!(life.chat_open && life.draft.is_none());
    assert_eq!(live.notice(), Some("Only the stage may chat in this room."));
}

#[test]
fn number_keys_react_at_once_and_the_room_counts_them() {
    use crate::protocol::chat::{Reaction, ReactionCount};
    let mut live = Live::new(ADA);
    let effects = live.press(ch('4'));
    assert_eq!(
        effects,
        send(ClientCommand::React {
            reaction: Reaction::Heart
        })
    );
    let now = live.app.now_ms;
    assert_eq!(
        live.app.room().unwrap().life.reaction_of(ADA, now),
        Some(Reaction::Heart)
    );
    live.serve(effects);
    live.by(
        BOB,
        ClientCommand::React {
            reaction: Reaction::Heart,
        },
    );
    flush_life(&mut live);
    let life = &live.app.room().unwrap().life;
    assert_eq!(
        life.counts_now(now),
        [ReactionCount {
            reaction: Reaction::Heart,
            count: 1
        }],
        "Bob's came in the next second's count"
    );
    assert_eq!(life.reaction_of(BOB, now), Some(Reaction::Heart));
    // Gone after a moment.
    assert_eq!(life.reaction_of(BOB, now + 3_000), None);
}

#[test]
fn moderators_delete_silence_choose_who_chats_and_pin_with_keys() {
    use crate::protocol::chat::ChatPolicy;
    let mut live = Live::new(HOST);
    live.by(
        BOB,
        ClientCommand::Chat {
            text: "spam".into(),
        },
    );
    live.select(BOB);
    let effects = live.press(ch('D'));
    assert_eq!(effects, send(ClientCommand::DeleteChat { message_id: 1 }));
    live.serve(effects);
    assert!(chat_texts(&live).is_empty());
    assert!(live.press(ch('D')).is_empty());
    assert!(live.notice().is_some_and(|n| n.contains("no chat lines")));

    let effects = live.press(ch('s'));
    assert_eq!(
        effects,
        send(ClientCommand::SilenceChat {
            user_id: BOB,
            silenced: true
        })
    );
    live.serve(effects);
    assert!(live.view().participant(BOB).unwrap().chat_silenced);
    let effects = live.press(ch('s'));
    assert_eq!(
        effects,
        send(ClientCommand::SilenceChat {
            user_id: BOB,
            silenced: false
        })
    );
    live.serve(effects);

    let effects = live.press(ch('W'));
    assert_eq!(
        effects,
        send(ClientCommand::SetChat {
            who: ChatPolicy::Stage
        })
    );
    live.serve(effects);
    assert_eq!(live.view().detail.life.chat, ChatPolicy::Stage);

    live.press(ch('P'));
    assert!(matches!(live.app.overlay, Some(Overlay::Pin { .. })));
    type_text(&mut live.app, "https://example.org/agenda");
    let effects = live.press(key(KeyCode::Enter));
    live.serve(effects);
    let pin = live.app.room().unwrap().life.pin.clone().unwrap();
    assert_eq!(pin.link.as_deref(), Some("https://example.org/agenda"));
    // The box opens with the pin in it; emptied, it takes the pin down.
    live.press(ch('P'));
    for _ in 0..pin.text.chars().count() {
        live.press(key(KeyCode::Backspace));
    }
    let effects = live.press(key(KeyCode::Enter));
    assert_eq!(effects, send(ClientCommand::Unpin));
    live.serve(effects);
    assert_eq!(live.app.room().unwrap().life.pin, None);
}

#[test]
fn listeners_are_told_the_chat_keys_are_for_moderators() {
    let mut live = Live::new(ADA);
    live.select(BOB);
    for c in ['s', 'D', 'W', 'P'] {
        assert!(live.press(ch(c)).is_empty(), "{c}");
        assert_eq!(live.notice(), Some("Only moderators can do that."));
        assert!(live.app.overlay.is_none());
    }
}

// ---- Scheduled rooms (#15) ----

fn scheduled(id: u64, host: (UserId, &str), title: &str, starts_at_ms: u64) -> ScheduledRoom {
    ScheduledRoom {
        id,
        title: title.into(),
        description: String::new(),
        host: User {
            id: host.0,
            handle: host.1.to_lowercase(),
            name: host.1.into(),
        },
        starts_at_ms,
        created_at_ms: 0,
        followed: false,
        room: None,
    }
}

fn me_as(handle: &str) -> Me {
    Me {
        user: User {
            id: 42,
            handle: handle.into(),
            name: handle.into(),
        },
        bio: String::new(),
        admin: false,
        invitations_left: None,
        devices: Vec::new(),
        following: vec![7],
        blocking: Vec::new(),
    }
}

#[test]
fn upcoming_rooms_follow_the_live_ones_and_enter_starts_mine_or_says_when() {
    let mut app = hallway();
    app.update(Msg::Me(me_as("ada")));
    let mine = scheduled(1, (42, "ada"), "My talk", 5_000_000);
    let theirs = ScheduledRoom {
        followed: true,
        ..scheduled(2, (7, "Grace"), "Grace's talk", 6_000_000)
    };
    app.update(Msg::Upcoming(Ok(vec![theirs.clone(), mine.clone()])));
    let items = app.hallway_items();
    let live = app.visible_rooms().len();
    assert_eq!(items.len(), live + 2);
    assert!(matches!(items[live], HallwayItem::Upcoming(s) if s.id == 2));
    // The filter looks at upcoming titles and hosts too.
    app.filter = "grace's talk".into();
    assert_eq!(app.hallway_items().len(), 1);
    app.filter.clear();

    for _ in 0..live {
        app.update(ch('j'));
    }
    assert!(
        app.update(key(KeyCode::Enter)).is_empty(),
        "not mine: nothing to do"
    );
    assert!(
        app.current_notice()
            .is_some_and(|n| n.contains("Grace starts it")),
        "{:?}",
        app.current_notice()
    );
    app.update(ch('j'));
    // Before its time, Enter asks first; again, it starts; a third does not start it twice.
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(
        app.current_notice()
            .is_some_and(|n| n.contains("press Enter again to start it now")),
        "{:?}",
        app.current_notice()
    );
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::StartScheduled { id: 1 }]
    );
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    // Started (the answer is the live room), it is joined like a created one.
    assert_eq!(
        app.update(Msg::RoomCreated(Ok("live1".into()))),
        vec![Effect::JoinRoom { id: "live1".into() }]
    );
}

#[test]
fn a_followed_hosts_scheduled_room_starting_is_told_and_entered_with_enter() {
    let mut app = hallway();
    let waiting = ScheduledRoom {
        followed: true,
        ..scheduled(2, (7, "Grace"), "Grace's talk", 6_000_000)
    };
    app.update(Msg::Upcoming(Ok(vec![waiting.clone()])));
    let started = ScheduledRoom {
        room: Some("live2".into()),
        ..waiting
    };
    app.update(Msg::Upcoming(Ok(vec![started])));
    assert!(
        app.current_notice()
            .is_some_and(|n| n.contains("@grace (you follow them) started")),
        "{:?}",
        app.current_notice()
    );
    let live = app.visible_rooms().len();
    for _ in 0..live {
        app.update(ch('j'));
    }
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::JoinRoom { id: "live2".into() }]
    );
}

#[test]
fn s_schedules_a_room_from_the_hallway() {
    let mut app = hallway();
    app.update(ch('S'));
    assert!(matches!(app.overlay, Some(Overlay::Schedule { .. })));
    type_text(&mut app, "Office hours");
    // Enter moves to the time; a time that cannot be read is said, and the box stays.
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    type_text(&mut app, "tomorrow-ish");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(matches!(app.overlay, Some(Overlay::Schedule { .. })));
    assert!(
        app.current_notice()
            .is_some_and(|n| n.contains("2026-12-03 18:00")),
        "{:?}",
        app.current_notice()
    );
    for _ in 0.."tomorrow-ish".len() {
        app.update(key(KeyCode::Backspace));
    }
    type_text(&mut app, "2031-05-06T07:08:00+00:00");
    let effects = app.update(key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::Schedule(ScheduleRoom {
            title: "Office hours".into(),
            starts_at_ms: 1_935_817_680_000,
            description: String::new(),
        })]
    );
    assert!(app.overlay.is_none());
    // The server's answer is said, and the list refreshed.
    let made = scheduled(9, (42, "ada"), "Office hours", 1_935_817_680_000);
    assert_eq!(
        app.update(Msg::Scheduled(Ok(made))),
        vec![Effect::RefreshRooms]
    );
    assert!(
        app.current_notice()
            .is_some_and(|n| n.contains("Scheduled \u{201c}Office hours\u{201d}"))
    );
}

#[test]
fn capital_c_keeps_a_clip_once_in_ten_seconds_and_announces_it_when_saved() {
    let mut live = Live::new(ADA);
    assert_eq!(
        live.press(ch('C')),
        vec![Effect::Clip { room: "r1".into() }]
    );
    assert!(live.press(ch('C')).is_empty(), "not twice in ten seconds");
    assert!(live.notice().is_some_and(|n| n.contains("a moment ago")));
    let effects = live.press(Msg::ClipSaved {
        room: "r1".into(),
        result: Ok(("/tmp/c.wav".into(), 30)),
    });
    assert_eq!(effects, send(ClientCommand::Clip { seconds: 30 }));
    assert!(live.notice().is_some_and(|n| n.contains("/tmp/c.wav")));
    live.serve(effects);
    assert!(
        live.notice().is_some_and(|n| n.contains("/tmp/c.wav")),
        "my own announcement leaves where it was kept on screen"
    );
    // A clip of another room (saved after leaving it) is not announced here.
    assert!(
        live.press(Msg::ClipSaved {
            room: "elsewhere".into(),
            result: Ok(("/tmp/d.wav".into(), 5)),
        })
        .is_empty()
    );
    // Others see it.
    live.by(BOB, ClientCommand::Clip { seconds: 12 });
    assert_eq!(
        live.notice(),
        Some("Bob kept a clip of the last 12 s of this room.")
    );
}

#[test]
fn the_hallway_selection_stays_on_its_room_when_the_lists_change() {
    let mut app = hallway();
    let mine = scheduled(1, (42, "ada"), "My talk", 5_000_000);
    app.update(Msg::Upcoming(Ok(vec![mine])));
    let live = app.visible_rooms().len();
    for _ in 0..live {
        app.update(ch('j'));
    }
    assert!(matches!(
        app.hallway_items()[app.selected_room],
        HallwayItem::Upcoming(s) if s.id == 1
    ));
    // A live room ends: the selection does not slide onto something else.
    let fewer: Vec<RoomSummary> = app.rooms.iter().skip(1).cloned().collect();
    app.update(Msg::Rooms(Ok(fewer)));
    assert!(matches!(
        app.hallway_items()[app.selected_room],
        HallwayItem::Upcoming(s) if s.id == 1
    ));
}

// ---- Replays in the TUI (#15) ----

fn replay_info(id: &str, title: &str, speakers: &[UserId], length_ms: u64) -> ReplayInfo {
    use crate::protocol::replay::ReplayTrack;
    ReplayInfo {
        id: id.into(),
        title: title.into(),
        host: user(HOST),
        started_at_ms: 1_000_000,
        last_ms: None,
        ended_at_ms: Some(1_000_000 + length_ms),
        incomplete: false,
        why_incomplete: None,
        tracks: speakers
            .iter()
            .map(|&id| ReplayTrack {
                user: user(id),
                first_ms: 1_000_000,
                packets: 10,
                bytes: 1_000,
            })
            .collect(),
    }
}

/// Moves past the live rooms to the first replay listed and plays it (Enter).
fn play_first_replay(app: &mut App) {
    for _ in 0..app.visible_rooms().len() {
        app.update(ch('j'));
    }
    assert!(matches!(
        app.hallway_items()[app.selected_room],
        HallwayItem::Replay(_)
    ));
    app.update(key(KeyCode::Enter));
}

/// What the engine reports: `position_ms` heard, after `seeks` seeks.
fn progress(position_ms: u64, length_ms: u64, seeks: u64, ended: bool) -> Msg {
    Msg::Audio(AudioStatus {
        replay: Some(crate::audio::replay::ReplayProgress {
            position_ms,
            length_ms,
            paused: ended,
            ended,
            commands: seeks,
            speaking: vec![BOB],
        }),
        ..AudioStatus::default()
    })
}

fn seek(ms: u64) -> Effect {
    Effect::Replay(ReplayCommand::Seek { ms })
}

#[test]
fn replays_are_listed_after_the_rooms_and_enter_plays_one_with_seeks_speeds_and_a_pause() {
    let mut app = hallway();
    let talk = replay_info("r1", "Rust on the stage", &[HOST, BOB], 600_000);
    let other = replay_info("r2", "Synth clinic", &[CY], 60_000);
    app.update(Msg::Replays(Ok(vec![talk.clone(), other])));
    let live = app.visible_rooms().len();
    let items = app.hallway_items();
    assert_eq!(items.len(), live + 2);
    assert!(matches!(items[live], HallwayItem::Replay(r) if r.id == "r1"));
    // The filter finds a replay by who spoke in it.
    app.filter = "cy".into();
    assert!(matches!(app.hallway_items()[..], [HallwayItem::Replay(r)] if r.id == "r2"));
    app.filter.clear();
    for _ in 0..live {
        app.update(ch('j'));
    }
    // Enter: the replay's screen at once, its tracks asked for.
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::LoadReplay { id: "r1".into() }]
    );
    let replay = app.replay().unwrap();
    assert_eq!(replay.state, ReplayState::Loading);
    assert_eq!(replay.length_ms, 600_000);
    // Keys while it loads: a faster speed is kept for when it plays; seeks do nothing.
    assert!(app.update(ch('>')).is_empty());
    assert!(app.update(key(KeyCode::Right)).is_empty());
    // Another replay's tracks (one left a moment ago) are not played.
    let timeline = Arc::new(Timeline::parse(&talk, Vec::new()).unwrap());
    assert!(
        app.update(Msg::ReplayLoaded {
            id: "r2".into(),
            result: Ok(timeline.clone())
        })
        .is_empty()
    );
    assert_eq!(
        app.update(Msg::ReplayLoaded {
            id: "r1".into(),
            result: Ok(timeline.clone())
        }),
        vec![
            Effect::Replay(ReplayCommand::Play(timeline.clone())),
            Effect::Replay(ReplayCommand::Speed(1.25)),
        ]
    );
    // A report from before the engine took the speed is not believed; one after is.
    app.update(progress(99_000, 600_000, 0, false));
    assert_eq!(app.replay().unwrap().position_ms, 0);
    app.update(progress(100_000, 600_000, 1, false));
    assert_eq!(app.replay().unwrap().position_ms, 100_000);
    assert_eq!(app.replay().unwrap().speaking, vec![BOB]);
    // → 15 s on, at once; a report from before the seek does not move it back.
    assert_eq!(app.update(key(KeyCode::Right)), vec![seek(115_000)]);
    app.update(progress(100_100, 600_000, 1, false));
    assert_eq!(app.replay().unwrap().position_ms, 115_000);
    app.update(progress(115_040, 600_000, 2, false));
    assert_eq!(app.replay().unwrap().position_ms, 115_040);
    // ← 15 s back; never before the start, never past the end.
    assert_eq!(app.update(key(KeyCode::Left)), vec![seek(100_040)]);
    app.update(progress(10_000, 600_000, 3, false));
    assert_eq!(app.update(key(KeyCode::Left)), vec![seek(0)]);
    app.update(progress(595_000, 600_000, 4, false));
    assert_eq!(app.update(key(KeyCode::Right)), vec![seek(600_000)]);
    // At the end it has ended: space plays it again from the start.
    assert!(app.replay().unwrap().ended);
    assert_eq!(
        app.update(ch(' ')),
        vec![seek(0), Effect::Replay(ReplayCommand::Pause(false))]
    );
    // Space pauses and plays on.
    assert_eq!(
        app.update(ch(' ')),
        vec![Effect::Replay(ReplayCommand::Pause(true))]
    );
    assert_eq!(
        app.update(ch(' ')),
        vec![Effect::Replay(ReplayCommand::Pause(false))]
    );
    // Speeds: up to 2×, then said; `<` and `,` slow it.
    assert_eq!(
        app.update(ch('>')),
        vec![Effect::Replay(ReplayCommand::Speed(1.5))]
    );
    assert_eq!(
        app.update(ch('.')),
        vec![Effect::Replay(ReplayCommand::Speed(2.0))]
    );
    assert!(app.update(ch('>')).is_empty());
    assert_eq!(
        app.current_notice(),
        Some("2× is the fastest a replay plays.")
    );
    assert_eq!(
        app.update(ch(',')),
        vec![Effect::Replay(ReplayCommand::Speed(1.5))]
    );
    // Ended as it played: it holds at the end; space plays it again from the start.
    app.update(progress(600_000, 600_000, 12, true));
    let replay = app.replay().unwrap();
    assert!(replay.ended && replay.paused);
    assert_eq!(
        app.update(ch(' ')),
        vec![seek(0), Effect::Replay(ReplayCommand::Pause(false))]
    );
    // Keys of a room mean nothing here (h would raise a hand).
    assert!(app.update(ch('h')).is_empty());
    // Esc: back to the hallway, the replay stopped, the lists asked for.
    assert_eq!(
        app.update(key(KeyCode::Esc)),
        vec![
            Effect::Replay(ReplayCommand::Stop),
            Effect::RefreshRooms,
            Effect::RefreshReplays
        ]
    );
    assert_eq!(app.screen, Screen::Hallway);
    // Tracks arriving after leaving are not played.
    assert!(
        app.update(Msg::ReplayLoaded {
            id: "r1".into(),
            result: Ok(timeline)
        })
        .is_empty()
    );
}

#[test]
fn a_replay_that_cannot_be_loaded_says_why_and_keys_do_nothing_to_it() {
    let mut app = hallway();
    app.update(Msg::Replays(Ok(vec![replay_info(
        "r1",
        "Gone",
        &[HOST],
        60_000,
    )])));
    play_first_replay(&mut app);
    app.update(Msg::ReplayLoaded {
        id: "r1".into(),
        result: Err("no replay \"r1\": it was deleted".into()),
    });
    assert!(matches!(
        &app.replay().unwrap().state,
        ReplayState::Failed(e) if e.contains("deleted")
    ));
    assert!(app.current_notice().unwrap().contains("deleted"));
    assert!(app.update(key(KeyCode::Right)).is_empty());
    assert!(app.update(ch(' ')).is_empty());
    // Engine reports (from nothing playing) change nothing.
    app.update(progress(5_000, 60_000, 0, false));
    assert_eq!(app.replay().unwrap().position_ms, 0);
    assert_eq!(app.update(ch('L'))[0], Effect::Replay(ReplayCommand::Stop));
}

#[test]
fn the_hallway_asks_for_replays_every_30_s_and_on_coming_back_and_not_from_a_room() {
    let mut app = hallway();
    app.update(Msg::Tick { now_ms: 1_000 });
    assert_eq!(
        app.update(Msg::Poll),
        vec![Effect::RefreshRooms, Effect::RefreshReplays]
    );
    app.update(Msg::Tick { now_ms: 3_000 });
    assert_eq!(app.update(Msg::Poll), vec![Effect::RefreshRooms]);
    app.update(Msg::Tick { now_ms: 31_000 });
    assert_eq!(
        app.update(Msg::Poll),
        vec![Effect::RefreshRooms, Effect::RefreshReplays]
    );
    app.update(Msg::OpenRoom { id: "k3".into() });
    app.update(Msg::Tick { now_ms: 90_000 });
    assert!(
        app.update(Msg::Poll).is_empty(),
        "nothing polled from a room"
    );
    let back = app.update(ch('L'));
    assert!(back.contains(&Effect::RefreshReplays), "{back:?}");
    // The list of replays is cut to the newest 20.
    let many: Vec<ReplayInfo> = (0..30)
        .map(|i| replay_info(&format!("r{i}"), "t", &[HOST], 1_000))
        .collect();
    app.update(Msg::Replays(Ok(many)));
    assert_eq!(app.replays.len(), replay::REPLAYS_LISTED);
}

#[test]
fn a_room_that_opens_over_a_replay_stops_it() {
    let mut app = hallway();
    app.update(Msg::Replays(Ok(vec![replay_info(
        "r1",
        "t",
        &[HOST],
        60_000,
    )])));
    play_first_replay(&mut app);
    assert!(app.replay().is_some());
    // The answer to a room created a moment before arrives.
    assert_eq!(
        app.update(Msg::RoomCreated(Ok("new1".into()))),
        vec![
            Effect::Replay(ReplayCommand::Stop),
            Effect::JoinRoom { id: "new1".into() }
        ]
    );
    assert!(app.room().is_some());
}

#[test]
fn the_host_deletes_a_replay_from_its_screen_after_saying_yes_and_no_one_else_can() {
    let mut app = hallway();
    let talk = replay_info("r1", "Rust on the stage", &[HOST], 60_000);
    app.update(Msg::Replays(Ok(vec![talk.clone()])));
    play_first_replay(&mut app);
    // Someone else: told who can.
    app.update(Msg::Me(me_as("ada")));
    assert!(app.update(ch('D')).is_empty());
    assert_eq!(
        app.current_notice(),
        Some("Only its host, @host, can delete this replay.")
    );
    assert_eq!(app.overlay, None);
    // Its host: asked first; anything but yes keeps it.
    app.update(Msg::Me(me_as("host")));
    assert!(app.update(ch('D')).is_empty());
    assert!(matches!(
        &app.overlay,
        Some(Overlay::ConfirmDeleteReplay { id, .. }) if id == "r1"
    ));
    assert!(app.update(ch('n')).is_empty());
    assert_eq!(app.overlay, None);
    app.update(ch('D'));
    assert_eq!(
        app.update(ch('y')),
        vec![Effect::DeleteReplay { id: "r1".into() }]
    );
    // The server refuses: said, and the replay stays.
    app.update(Msg::ReplayDeleted {
        id: "r1".into(),
        result: Err("only the room's host can delete its replay".into()),
    });
    assert!(
        app.current_notice()
            .unwrap()
            .contains("only the room's host")
    );
    assert!(app.replay().is_some());
    // Deleted: gone from the list, and the screen goes back to the hallway.
    let effects = app.update(Msg::ReplayDeleted {
        id: "r1".into(),
        result: Ok(()),
    });
    assert_eq!(effects[0], Effect::Replay(ReplayCommand::Stop));
    assert_eq!(app.screen, Screen::Hallway);
    assert!(app.replays.is_empty());
    assert_eq!(
        app.current_notice(),
        Some("Deleted the replay of \u{201c}Rust on the stage\u{201d}.")
    );
}

#[test]
fn a_refused_chat_line_comes_back_to_the_box() {
    let mut live = Live::new(ADA);
    live.press(ch('c'));
    // Lines sent faster than they go out: one is refused, and comes back to be sent again.
    let mut refused = None;
    for k in 0..6 {
        type_text(&mut live.app, &format!("line {k}"));
        let effects = live.press(key(KeyCode::Enter));
        live.serve(effects);
        let draft = live.app.room().unwrap().life.draft.clone();
        if draft.as_deref().is_some_and(|d| !d.is_empty()) {
            assert_eq!(draft, Some(format!("line {k}")), "the refused line itself");
            refused = Some(k);
            break;
        }
    }
    assert!(
        refused.is_some_and(|k| k > 0),
        "{refused:?}: the first goes"
    );
    assert!(
        live.notice().unwrap().contains("back in the box"),
        "{:?}",
        live.notice()
    );
    // An error about something else (no id of mine) leaves the box alone.
    live.press(key(KeyCode::Esc));
    live.app.update(server(ServerMessage::error(
        Some(serde_json::Value::from(99u64)),
        ErrorCode::RateLimited,
        "slow down",
    )));
    assert_eq!(live.app.room().unwrap().life.draft, None);

    // Refused after leaving the box: keys stay keys (no box opens under them); the next
    // line started begins with it.
    live.press(key(KeyCode::Enter));
    type_text(&mut live.app, "kept");
    let Some(Effect::SendTagged { id, .. }) = live.press(key(KeyCode::Enter)).pop() else {
        panic!("no line sent");
    };
    live.press(key(KeyCode::Esc));
    live.app.update(server(ServerMessage::error(
        Some(serde_json::Value::from(id)),
        ErrorCode::RateLimited,
        "slow down.",
    )));
    assert_eq!(live.app.room().unwrap().life.draft, None, "not writing");
    assert_eq!(
        live.notice(),
        Some("Slow down (the next line you start begins with it.)")
    );
    live.press(key(KeyCode::Enter));
    assert_eq!(live.app.room().unwrap().life.draft.as_deref(), Some("kept"));

    // A line with no answer when the connection drops may be lost: given back too.
    live.press(key(KeyCode::Enter));
    live.app.update(Msg::Net(NetEvent::Reconnecting {
        attempt: 1,
        reason: "the connection dropped".into(),
    }));
    assert_eq!(live.app.room().unwrap().life.draft.as_deref(), Some("kept"));
    assert_eq!(
        live.notice(),
        Some("Your last line may not have gone out: your line is back in the box.")
    );
}

#[test]
fn esc_and_a_key_arriving_as_alt_key_stop_writing_and_then_act() {
    let mut live = Live::new(ADA);
    live.press(ch('c'));
    type_text(&mut live.app, "hi");
    let alt_one = Msg::Key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::ALT));
    let effects = live.press(alt_one);
    assert_eq!(
        live.app.room().unwrap().life.draft,
        None,
        "no longer writing"
    );
    assert_eq!(
        effects,
        send(ClientCommand::React {
            reaction: crate::protocol::chat::Reaction::Clap
        })
    );
}

#[test]
fn a_refused_pin_comes_back_at_the_next_p() {
    let mut live = Live::new(HOST);
    live.press(ch('P'));
    type_text(&mut live.app, "agenda v2");
    let Some(Effect::SendTagged { id, command }) = live.press(key(KeyCode::Enter)).pop() else {
        panic!("no pin sent");
    };
    assert_eq!(
        command,
        ClientCommand::Pin {
            text: "agenda v2".into()
        }
    );
    // No box opens under the keys; the next `P` brings the text back.
    live.app.update(server(ServerMessage::error(
        Some(serde_json::Value::from(id)),
        ErrorCode::RateLimited,
        "the pin changed 5 times in a row; it can change again in 2 s",
    )));
    assert_eq!(live.app.overlay, None);
    assert_eq!(
        live.notice(),
        Some(
            "The pin changed 5 times in a row; it can change again in 2 s (P brings your pin back.)"
        )
    );
    live.press(ch('P'));
    assert_eq!(
        live.app.overlay,
        Some(Overlay::Pin {
            text: "agenda v2".into()
        })
    );
    // Taken: the answer clears it, and the box then opens with what is pinned.
    let effects = live.press(key(KeyCode::Enter));
    live.serve(effects);
    assert!(live.app.room().unwrap().life.awaiting.is_empty());
    live.press(ch('P'));
    assert_eq!(
        live.app.overlay,
        Some(Overlay::Pin {
            text: "agenda v2".into()
        })
    );
}
