//! Snapshots of every screen and state, drawn with ratatui's `TestBackend`. States are
//! built through the model (`App::new`, then `App::update`) so a snapshot shows what a
//! person would see after those events; the clock is fixed so frames are deterministic.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::{Theme, render};
use crate::app::{App, AudioStatus, Effect, Msg, Overlay};
use crate::net::NetEvent;
use crate::protocol::chat::{ChatLine, Reacted, Reaction, ReactionCount};
use crate::protocol::replay::{ReplayInfo, ReplayTrack};
use crate::protocol::schedule::ScheduledRoom;
use crate::protocol::{
    PROTOCOL_VERSION, Participant, Profile, Role, RoomDetail, RoomSummary, ServerMessage,
    StageMember, User, UserId,
};

/// A fixed "now": 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000_000;
const MINUTE: u64 = 60_000;
/// The person at the keyboard.
const ME: UserId = 1;
const ROOM_ID: &str = "k3x9ab";

fn draw(app: &App, theme: &Theme, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| {
            render(app, theme, frame);
        })
        .unwrap();
    terminal
}

fn screen(app: &App, width: u16, height: u16) -> String {
    draw(app, &Theme::color(), width, height)
        .backend()
        .to_string()
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn char_key(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn new_app() -> App {
    let mut app = App::new("127.0.0.1:7600", "ada", true);
    app.update(Msg::Tick { now_ms: NOW });
    app
}

fn member(id: UserId, name: &str, role: Role, speaking: bool) -> StageMember {
    StageMember {
        id,
        handle: name.to_lowercase(),
        name: name.into(),
        role,
        muted: !speaking,
        speaking,
    }
}

fn summary(
    id: &str,
    title: &str,
    age_min: u64,
    stage: Vec<StageMember>,
    listeners: usize,
) -> RoomSummary {
    let host = stage.iter().find(|m| m.role == Role::Host).map(|m| User {
        id: m.id,
        handle: m.handle.clone(),
        name: m.name.clone(),
    });
    RoomSummary {
        followed: false,
        id: id.into(),
        title: title.into(),
        host,
        speakers: stage,
        listener_count: listeners,
        created_at_ms: NOW - age_min * MINUTE,
        recording: false,
        private: false,
        replay: false,
    }
}

fn many_rooms() -> Vec<RoomSummary> {
    vec![
        summary(
            "r1",
            "Rust async office hours",
            12,
            vec![
                member(10, "grace", Role::Host, true),
                member(11, "linus", Role::Moderator, false),
                member(12, "margaret", Role::Speaker, true),
            ],
            42,
        ),
        summary(
            "r2",
            "Late-night synth jam: modular patches, field recordings and a lot of feedback",
            95,
            vec![
                member(
                    20,
                    "Bartholomew Featherstonehaugh-Smythe",
                    Role::Host,
                    false,
                ),
                member(21, "kat", Role::Speaker, true),
                member(22, "ren", Role::Speaker, false),
                member(23, "sol", Role::Speaker, false),
                member(24, "tove", Role::Speaker, false),
                member(25, "uma", Role::Speaker, false),
                member(26, "vik", Role::Speaker, false),
            ],
            1_312,
        ),
        summary(
            "r3",
            "Just started",
            0,
            vec![member(30, "newcomer", Role::Host, false)],
            1,
        ),
        summary(
            "r4",
            "Book club: Dune",
            47,
            vec![member(40, "frank", Role::Host, true)],
            7,
        ),
        summary(
            "r5",
            "Rust and embedded: probe-rs Q&A",
            200,
            vec![
                member(50, "jorge", Role::Host, false),
                member(51, "ana", Role::Speaker, true),
            ],
            88,
        ),
        summary(
            "r6",
            "Morning coffee",
            3,
            vec![member(60, "lea", Role::Host, false)],
            0,
        ),
        summary(
            "r7",
            "Startup pitch practice",
            31,
            vec![member(70, "omar", Role::Host, true)],
            15,
        ),
        summary(
            "r8",
            "日本語で話そう",
            64,
            vec![member(80, "はると", Role::Host, true)],
            9,
        ),
        summary("r9", "Host stepped out", 20, Vec::new(), 3),
    ]
}

fn hallway_with(rooms: Vec<RoomSummary>) -> App {
    let mut app = new_app();
    app.update(Msg::Rooms(Ok(rooms)));
    app
}

fn participant(id: UserId, name: &str, role: Role) -> Participant {
    Participant {
        id,
        handle: name.to_lowercase(),
        name: name.into(),
        role,
        muted: true,
        hand_raised_at_ms: None,
        invited: false,
        speaking: false,
        recording: false,
        device_key: None,
        key_epoch: None,
        chat_silenced: false,
    }
}

/// The room, with me (ada) in `my_role`, and `extra_listeners` more in the audience.
fn room_detail(my_role: Role, extra_listeners: usize) -> RoomDetail {
    let mut participants = vec![
        Participant {
            muted: false,
            speaking: true,
            ..participant(10, "grace", Role::Host)
        },
        Participant {
            muted: false,
            ..participant(11, "linus", Role::Moderator)
        },
        participant(12, "margaret", Role::Speaker),
        Participant {
            muted: false,
            speaking: true,
            ..participant(13, "Bartholomew Featherstonehaugh-Smythe", Role::Speaker)
        },
        participant(ME, "ada", my_role),
    ];
    for (i, name) in [
        "carol", "dave", "erin", "frank", "heidi", "ivan", "judy", "mallory", "niaj",
    ]
    .iter()
    .enumerate()
    {
        participants.push(participant(20 + i as UserId, name, Role::Listener));
    }
    for i in 0..extra_listeners {
        participants.push(participant(
            100 + i as UserId,
            &format!("listener{i}"),
            Role::Listener,
        ));
    }
    RoomDetail {
        summary: RoomSummary {
            followed: false,
            id: ROOM_ID.into(),
            title: "Rust async office hours".into(),
            host: Some(User {
                id: 10,
                handle: "grace".into(),
                name: "grace".into(),
            }),
            speakers: Vec::new(),
            listener_count: 0,
            created_at_ms: NOW - 12 * MINUTE,
            recording: false,
            private: false,
            replay: false,
        },
        participants,
        hands: Vec::new(),
        stage_limit: 13,
        unlisted: 0,
        share_secret: None,
        life: Default::default(),
    }
}

fn server(app: &mut App, message: ServerMessage) {
    app.update(Msg::Net(NetEvent::Server(message)));
}

/// In the room as `my_role`: joined, connected, snapshot in, two hands up (carol 1m20s
/// ago, dave 12s ago) and audio meters flowing.
fn in_room(my_role: Role, extra_listeners: usize) -> App {
    let mut app = new_app();
    app.update(Msg::RoomCreated(Ok(ROOM_ID.into())));
    app.update(Msg::Net(NetEvent::Connected));
    app.update(Msg::Net(NetEvent::RoundTrip { rtt_ms: 42 }));
    server(
        &mut app,
        ServerMessage::RoomSnapshot {
            protocol_version: PROTOCOL_VERSION,
            you: ME,
            room: room_detail(my_role, extra_listeners),
        },
    );
    server(
        &mut app,
        ServerMessage::HandRaised {
            user_id: 20,
            raised_at_ms: NOW - 80_000,
        },
    );
    server(
        &mut app,
        ServerMessage::HandRaised {
            user_id: 21,
            raised_at_ms: NOW - 12_000,
        },
    );
    app.update(Msg::Audio(AudioStatus {
        input_level_dbov: -70.0,
        jitter_ms: 60,
        concealed: 3,
        speaker_levels: HashMap::from([(10, -14.0), (13, -35.0)]),
        ..AudioStatus::default()
    }));
    app
}

/// Presses `j` until the person called `name` is selected.
fn select(app: &mut App, name: &str) {
    for _ in 0..10_000 {
        let room = app.room().unwrap();
        let listed = room.view.as_ref().unwrap().listed();
        if listed[room.selected].name == name {
            return;
        }
        app.update(char_key('j'));
    }
    panic!("{name} is not in the room");
}

#[test]
fn hallway_loading() {
    insta::assert_snapshot!(screen(&new_app(), 80, 24));
}

#[test]
fn hallway_empty() {
    insta::assert_snapshot!(screen(&hallway_with(Vec::new()), 80, 24));
}

#[test]
fn hallway_error() {
    let mut app = new_app();
    app.update(Msg::Rooms(Err(
        "cannot reach the Hallway server at http://127.0.0.1:7600/: is it running? (start one with `hallway serve`)"
            .into(),
    )));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hallway_stale_list_after_error() {
    let mut app = hallway_with(many_rooms());
    app.update(Msg::Rooms(Err("timed out".into())));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hallway_many_rooms() {
    let mut app = hallway_with(many_rooms());
    for _ in 0..4 {
        app.update(char_key('j'));
    }
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hallway_many_rooms_wide() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('j'));
    insta::assert_snapshot!(screen(&app, 120, 40));
}

#[test]
fn hallway_filter_typing() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('/'));
    for c in "rust".chars() {
        app.update(char_key(c));
    }
    assert!(app.filtering);
    let terminal = draw(&app, &Theme::color(), 80, 24);
    // The terminal cursor sits after the typed text: " / filter: rust".
    let mut terminal = terminal;
    assert_eq!(terminal.get_cursor_position().unwrap(), (15, 1).into());
    insta::assert_snapshot!(terminal.backend().to_string());
}

#[test]
fn hallway_filter_set_no_match() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('/'));
    for c in "zzz".chars() {
        app.update(char_key(c));
    }
    app.update(key(KeyCode::Enter));
    assert!(!app.filtering);
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hallway_notice_after_room_ended() {
    let mut app = hallway_with(many_rooms());
    app.update(Msg::RoomCreated(Ok(ROOM_ID.into())));
    app.update(Msg::Net(NetEvent::Closed {
        code: Some(crate::protocol::ErrorCode::RoomEnded),
        message: "room ended".into(),
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_joining() {
    let mut app = hallway_with(many_rooms());
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_joining_reconnecting() {
    let mut app = new_app();
    app.update(Msg::RoomCreated(Ok(ROOM_ID.into())));
    app.update(Msg::Net(NetEvent::Reconnecting {
        attempt: 2,
        reason: "connection refused".into(),
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_listener_hand_raised() {
    let mut app = in_room(Role::Listener, 0);
    app.update(char_key('h'));
    // The server answers the raise; the model learns of it as everyone does.
    server(
        &mut app,
        ServerMessage::HandRaised {
            user_id: ME,
            raised_at_ms: NOW - 5_000,
        },
    );
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_invitation_pending() {
    let mut app = in_room(Role::Listener, 0);
    server(
        &mut app,
        ServerMessage::HandRaised {
            user_id: ME,
            raised_at_ms: NOW - 30_000,
        },
    );
    server(
        &mut app,
        ServerMessage::Invited {
            user_id: ME,
            by: 10,
        },
    );
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_moderator() {
    let mut app = in_room(Role::Moderator, 0);
    select(&mut app, "carol");
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_moderator_wide() {
    let mut app = in_room(Role::Moderator, 40);
    select(&mut app, "margaret");
    insta::assert_snapshot!(screen(&app, 120, 40));
}

#[test]
fn room_speaker_live() {
    let mut app = in_room(Role::Speaker, 0);
    server(
        &mut app,
        ServerMessage::MuteChanged {
            user_id: ME,
            muted: false,
            by: None,
        },
    );
    server(
        &mut app,
        ServerMessage::Speaking {
            user_id: ME,
            speaking: true,
        },
    );
    app.update(Msg::Audio(AudioStatus {
        input_level_dbov: -18.0,
        input_voice: true,
        jitter_ms: 40,
        speaker_levels: HashMap::from([(10, -50.0)]),
        ..AudioStatus::default()
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_speaker_talking_while_muted() {
    let mut app = in_room(Role::Speaker, 0);
    app.update(Msg::Audio(AudioStatus {
        input_level_dbov: -20.0,
        input_voice: true,
        jitter_ms: 60,
        ..AudioStatus::default()
    }));
    assert!(app.talking_while_muted());
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_reconnecting() {
    let mut app = in_room(Role::Speaker, 0);
    app.update(Msg::Net(NetEvent::Reconnecting {
        attempt: 3,
        reason: "connection reset by peer".into(),
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_no_audio_device() {
    let mut app = in_room(Role::Listener, 0);
    app.update(Msg::Audio(AudioStatus {
        unavailable: Some("no sound card (ALSA: cannot find card '0')".into()),
        ..AudioStatus::default()
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_big_audience() {
    let mut app = in_room(Role::Listener, 320);
    select(&mut app, "listener200");
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_big_audience_front_rows() {
    // 5,000 listening; like most members of a big room, ada is sent only the front rows.
    let mut app = in_room(Role::Listener, 40);
    server(
        &mut app,
        ServerMessage::AudienceChanged {
            unlisted: 5_000 - 50,
        },
    );
    let screen = screen(&app, 80, 24);
    assert!(
        screen.contains("AUDIENCE 5,000 · front 50 shown"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn room_narrow() {
    let mut app = in_room(Role::Moderator, 0);
    select(&mut app, "Bartholomew Featherstonehaugh-Smythe");
    insta::assert_snapshot!(screen(&app, 40, 14));
}

#[test]
fn overlay_help() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('?'));
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn overlay_help_scrolled_on_a_small_screen() {
    let mut app = in_room(Role::Speaker, 0);
    app.update(Msg::Resize { cols: 50, rows: 20 });
    app.update(char_key('?'));
    app.update(key(KeyCode::End));
    insta::assert_snapshot!(screen(&app, 50, 20));
}

#[test]
fn overlay_help_narrow() {
    let mut app = in_room(Role::Speaker, 0);
    app.update(char_key('?'));
    insta::assert_snapshot!(screen(&app, 50, 40));
}

#[test]
fn overlay_new_room() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('n'));
    for c in "Rust async, honestly".chars() {
        app.update(char_key(c));
    }
    let mut terminal = draw(&app, &Theme::color(), 80, 24);
    // The cursor follows the typed title inside the box.
    let cursor = terminal.get_cursor_position().unwrap();
    assert_eq!(cursor.y, 11);
    assert_eq!(cursor.x, 12 + 20);
    insta::assert_snapshot!(terminal.backend().to_string());
}

#[test]
fn overlay_new_room_empty() {
    let mut app = hallway_with(Vec::new());
    app.update(char_key('n'));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn overlay_confirm_remove() {
    let mut app = in_room(Role::Moderator, 0);
    select(&mut app, "carol");
    app.update(char_key('K'));
    assert!(matches!(app.overlay, Some(Overlay::ConfirmRemove { .. })));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn plain_theme_room_moderator() {
    let mut app = in_room(Role::Moderator, 0);
    select(&mut app, "carol");
    // Debug of the buffer lists the modifiers too: selection, headings and badges
    // must be told apart by bold and reverse alone.
    let terminal = draw(&app, &Theme::plain(), 80, 24);
    insta::assert_snapshot!(format!("{:?}", terminal.backend().buffer()));
}

/// Every state the tests draw, for the checks that cover them all.
fn all_states() -> Vec<App> {
    let mut states = vec![
        new_app(),
        hallway_with(Vec::new()),
        hallway_with(many_rooms()),
    ];
    let mut error = new_app();
    error.update(Msg::Rooms(Err("no route to host".into())));
    states.push(error);
    let mut filtering = hallway_with(many_rooms());
    filtering.update(char_key('/'));
    filtering.update(char_key('r'));
    states.push(filtering);
    let mut joining = new_app();
    joining.update(Msg::RoomCreated(Ok(ROOM_ID.into())));
    states.push(joining);
    for role in [Role::Listener, Role::Speaker, Role::Moderator, Role::Host] {
        states.push(in_room(role, 0));
        states.push(in_room(role, 500));
    }
    let mut reconnecting = in_room(Role::Speaker, 3);
    reconnecting.update(Msg::Net(NetEvent::Reconnecting {
        attempt: 1,
        reason: "x".repeat(300),
    }));
    states.push(reconnecting);
    for overlay_key in ['?', 'n'] {
        let mut app = hallway_with(many_rooms());
        app.update(char_key(overlay_key));
        states.push(app);
    }
    let mut confirm = in_room(Role::Moderator, 0);
    select(&mut confirm, "carol");
    confirm.update(char_key('K'));
    states.push(confirm);
    states.push(with_life(in_room(Role::Listener, 0)));
    states.push(hallway_with_upcoming().0);
    let mut schedule = hallway_with(many_rooms());
    schedule.update(char_key('S'));
    states.push(schedule);
    let mut wide_chat = with_life(in_room(Role::Moderator, 500));
    wide_chat.update(key(KeyCode::Esc));
    states.push(wide_chat);
    let mut pin = in_room(Role::Moderator, 0);
    pin.update(char_key('P'));
    states.push(pin);
    let mut replays = hallway_with(many_rooms());
    replays.update(Msg::Replays(Ok(vec![grace_talk()])));
    states.push(replays);
    let mut loading = hallway_with(Vec::new());
    loading.update(Msg::Replays(Ok(vec![grace_talk()])));
    loading.update(key(KeyCode::Enter));
    states.push(loading);
    states.push(playing(724_000));
    states
}

#[test]
fn plain_theme_emits_no_colour() {
    for app in all_states() {
        let terminal = draw(&app, &Theme::plain(), 80, 24);
        for cell in terminal.backend().buffer().content() {
            assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
        }
    }
}

#[test]
fn colour_theme_does_colour() {
    let terminal = draw(&hallway_with(many_rooms()), &Theme::color(), 80, 24);
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .any(|cell| cell.fg != Color::Reset || cell.bg != Color::Reset)
    );
}

#[test]
fn no_color_env_value_picks_the_theme() {
    use std::ffi::OsStr;
    assert_eq!(Theme::for_no_color(None), Theme::color());
    assert_eq!(Theme::for_no_color(Some(OsStr::new(""))), Theme::color());
    assert_eq!(Theme::for_no_color(Some(OsStr::new("1"))), Theme::plain());
}

#[test]
fn never_panics_at_any_size() {
    let sizes = [
        (0, 0),
        (0, 24),
        (80, 0),
        (1, 1),
        (2, 2),
        (10, 3),
        (3, 10),
        (12, 5),
        (20, 6),
        (25, 9),
        (40, 12),
        (60, 16),
        (80, 24),
        (300, 100),
    ];
    for app in all_states() {
        for (width, height) in sizes {
            for theme in [Theme::color(), Theme::plain()] {
                draw(&app, &theme, width, height);
            }
        }
    }
    // And every size in a small range, for off-by-one edges.
    for app in all_states() {
        for width in 0..30 {
            for height in 0..12 {
                draw(&app, &Theme::color(), width, height);
            }
        }
    }
}

#[test]
fn tiny_terminal_shows_something() {
    insta::assert_snapshot!(screen(&in_room(Role::Moderator, 0), 10, 3));
}

/// What a hostile server might put in a name, a title or an error: a window-title change,
/// a clipboard write, a screen clear, a right-to-left override and a C1 CSI.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}]52;c;aGk=\u{7}\u{1b}[2J\u{202e}x\u{9b}31m";

fn assert_drawn_safely(screen: &str) {
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(
            !screen.contains(bad),
            "U+{:04X} was drawn:\n{screen}",
            u32::from(bad)
        );
    }
}

#[test]
fn a_hostile_servers_names_titles_and_errors_are_drawn_escaped() {
    let hostile = summary(
        "r1",
        &format!("Title {HOSTILE}"),
        3,
        vec![member(10, &format!("Host {HOSTILE}"), Role::Host, true)],
        4,
    );
    let hallway = screen(&hallway_with(vec![hostile]), 120, 24);
    assert_drawn_safely(&hallway);
    assert!(
        hallway.contains("\\u{1b}"),
        "the escape is shown:\n{hallway}"
    );

    let mut failed = new_app();
    failed.update(Msg::Rooms(Err(format!("refused: {HOSTILE}"))));
    assert_drawn_safely(&screen(&failed, 120, 24));

    let mut room = in_room(Role::Listener, 0);
    server(
        &mut room,
        ServerMessage::ParticipantJoined {
            participant: participant(40, &format!("Eve {HOSTILE}"), Role::Listener),
        },
    );
    assert_drawn_safely(&screen(&room, 120, 30));

    // A replay's title, host, speakers and why it is incomplete are the server's words.
    let mut app = hallway_with(Vec::new());
    let info = ReplayInfo {
        incomplete: true,
        why_incomplete: Some(format!("disk {HOSTILE}")),
        ..replay(
            &format!("r{HOSTILE}"),
            &format!("Title {HOSTILE}"),
            (10, &format!("Host {HOSTILE}")),
            &[(11, &format!("Eve {HOSTILE}"))],
        )
    };
    app.update(Msg::Replays(Ok(vec![info])));
    assert_drawn_safely(&screen(&app, 120, 24));
    app.update(key(KeyCode::Enter));
    app.update(Msg::Audio(AudioStatus {
        unavailable: Some(format!("no speakers {HOSTILE}")),
        ..AudioStatus::default()
    }));
    assert_drawn_safely(&screen(&app, 120, 24));
}

fn profile(id: UserId, handle: &str, name: &str) -> Profile {
    Profile {
        user: User {
            id,
            handle: handle.into(),
            name: name.into(),
        },
        bio: "Writes the Rust async book; hosts office hours on Tuesdays.".into(),
        joined_at_ms: NOW - 40 * 24 * 60 * MINUTE,
        invited_by: Some("linus".into()),
        followers: 1_204,
        following: 87,
        followed: true,
        blocked: false,
        devices: vec![crate::protocol::PublicDevice {
            sign_key: crate::identity::b64(&[7; 32]),
            agree_key: crate::identity::b64(&[8; 32]),
            // What the server says; the card computes its own from the key.
            fingerprint: "0000 0000 0000 0000 0000".into(),
        }],
        suspended: false,
    }
}

#[test]
fn overlay_profile_card() {
    let mut app = in_room(Role::Listener, 0);
    select(&mut app, "grace");
    let effects = app.update(char_key('p'));
    assert_eq!(
        effects,
        vec![Effect::FetchProfile {
            handle: "grace".into()
        }]
    );
    insta::assert_snapshot!("overlay_profile_card_loading", screen(&app, 80, 24));
    app.update(Msg::Profile {
        handle: "grace".into(),
        result: Ok(profile(10, "grace", "grace")),
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn overlay_report_box() {
    let mut app = in_room(Role::Listener, 0);
    select(&mut app, "grace");
    app.update(char_key('p'));
    app.update(Msg::Profile {
        handle: "grace".into(),
        result: Ok(profile(10, "grace", "grace")),
    });
    app.update(char_key('r'));
    for c in "spam on stage".chars() {
        app.update(char_key(c));
    }
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hallway_followed_rooms_first_and_marked() {
    // The server orders and marks them (`followed`); the hallway shows them so.
    let mut rooms = many_rooms();
    let mut followed = rooms.remove(1);
    followed.followed = true;
    rooms.insert(0, followed);
    insta::assert_snapshot!(screen(&hallway_with(rooms), 80, 24));
}

#[test]
fn room_blocked_persons_hand_is_not_shown() {
    let mut app = in_room(Role::Moderator, 0);
    let carol = app
        .room()
        .and_then(|r| r.view.as_ref())
        .and_then(|v| v.listed().iter().find(|p| p.name == "carol").map(|p| p.id))
        .expect("carol is in the room");
    let before = screen(&app, 80, 24);
    assert!(before.contains("✋ carol"), "{before}");
    app.blocking.insert(carol);
    let after = screen(&app, 80, 24);
    assert!(!after.contains("✋ carol"), "{after}");
    assert!(after.contains("carol blocked"), "{after}");
}

#[test]
fn the_title_bar_names_my_handle_and_my_help_key() {
    let mut app = hallway_with(many_rooms());
    app.update(Msg::Me(crate::protocol::Me {
        user: User {
            id: ME,
            handle: "ada_l".into(),
            name: "ada".into(),
        },
        bio: String::new(),
        admin: false,
        invitations_left: Some(3),
        devices: Vec::new(),
        following: Vec::new(),
        blocking: Vec::new(),
    }));
    let screen = screen(&app, 80, 24);
    let title = screen.lines().next().unwrap_or_default();
    assert!(title.contains("ada @ada_l"), "{title}");
    assert!(title.contains("? help"), "{title}");
    app.keys = crate::app::keymap::Keymap::with(&[("help".into(), vec!["F1".into()])])
        .expect("a valid rebinding");
    let screen = self::screen(&app, 80, 24);
    assert!(
        screen
            .lines()
            .next()
            .unwrap_or_default()
            .contains("F1 help")
    );
}

/// A private room as its host sees it: the lock, the share link, who holds the key and the
/// code to compare; someone still without the key says so.
fn private_room(keys: Option<crate::e2e::agent::KeyStatus>) -> App {
    let mut app = new_app();
    app.update(Msg::RoomCreated(Ok(ROOM_ID.into())));
    app.update(Msg::Net(NetEvent::Connected));
    app.update(Msg::Net(NetEvent::RoundTrip { rtt_ms: 42 }));
    let mut detail = room_detail(Role::Moderator, 0);
    detail.summary.private = true;
    detail.share_secret = Some("Zm9vYmFyYmF6cXV4".into());
    for p in &mut detail.participants {
        // Everyone but carol has opened the key.
        p.key_epoch = (p.name != "carol").then_some(3);
        if p.handle == "grace" {
            p.device_key = Some(crate::identity::b64(&[8; 32]));
        }
    }
    server(
        &mut app,
        ServerMessage::RoomSnapshot {
            protocol_version: PROTOCOL_VERSION,
            you: ME,
            room: detail,
        },
    );
    if let Some(keys) = keys {
        app.update(Msg::Net(NetEvent::Keys(keys)));
    }
    app
}

#[test]
fn room_private_with_the_key() {
    let app = private_room(Some(crate::e2e::agent::KeyStatus {
        epoch: Some(3),
        safety_code: Some("04128 83319 07551 29384".into()),
        leader: Some(10),
        ..Default::default()
    }));
    insta::assert_snapshot!(screen(&app, 120, 30));
}

#[test]
fn room_private_waiting_for_the_key() {
    let app = private_room(Some(crate::e2e::agent::KeyStatus {
        waiting: Some(
            "no key yet after 6 s: the host's client has not sent one (it may not support private rooms); audio stays silent until it does".into(),
        ),
        ..Default::default()
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hallway_lists_a_private_room_with_a_lock() {
    let mut rooms = many_rooms();
    rooms[1].private = true;
    let app = hallway_with(rooms);
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn overlay_new_private_room() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('n'));
    for c in "Board".chars() {
        app.update(char_key(c));
    }
    // Public, then replay on, then private.
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Tab));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn overlay_new_room_with_a_replay() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('n'));
    for c in "On the record".chars() {
        app.update(char_key(c));
    }
    app.update(key(KeyCode::Tab));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_with_a_replay_says_so_the_whole_time() {
    let mut app = new_app();
    app.update(Msg::RoomCreated(Ok(ROOM_ID.into())));
    let mut detail = room_detail(Role::Listener, 0);
    detail.summary.replay = true;
    server(
        &mut app,
        ServerMessage::RoomSnapshot {
            protocol_version: PROTOCOL_VERSION,
            you: ME,
            room: detail,
        },
    );
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// A card whose device keys I compared, and that person in a private room: both marked.
#[test]
fn a_verified_person_on_their_card_and_in_a_private_room() {
    let mut app = private_room(None);
    // The key grace is in the room with, and her card's device, is [8; 32].
    let grace_key = crate::identity::b64(&[8; 32]);
    app.verified
        .insert("grace".into(), [grace_key].into_iter().collect());
    insta::assert_snapshot!("private_room_verified_person", screen(&app, 80, 24));
    select(&mut app, "grace");
    app.update(char_key('p'));
    app.update(Msg::Profile {
        handle: "grace".into(),
        result: Ok(profile(10, "grace", "grace")),
    });
    insta::assert_snapshot!("card_verified", screen(&app, 80, 24));
}

#[test]
fn room_private_with_frames_that_did_not_open() {
    let mut app = private_room(Some(crate::e2e::agent::KeyStatus {
        epoch: Some(3),
        safety_code: Some("04128 83319 07551 29384".into()),
        leader: Some(10),
        ..Default::default()
    }));
    app.update(Msg::Sealing {
        not_opened: 12,
        not_sent: 0,
    });
    insta::assert_snapshot!(screen(&app, 120, 30));
}

// ---- Chat, reactions and the pin (#15) ----

fn chat_line(id: u64, user_id: UserId, name: &str, text: &str) -> ChatLine {
    ChatLine {
        id,
        user_id,
        handle: name.to_lowercase(),
        name: name.into(),
        text: text.into(),
        at_ms: NOW,
    }
}

/// The room with a pinned link, four chat lines (one from mallory, whom I block),
/// reactions beside margaret and carol and the room's counts, and the chat open with a
/// line being written.
fn with_life(mut app: App) -> App {
    server(
        &mut app,
        ServerMessage::Pinned {
            text: Some("https://example.org/agenda".into()),
            by: 10,
        },
    );
    server(
        &mut app,
        ServerMessage::Chat {
            lines: vec![
                chat_line(1, 10, "grace", "Welcome! Questions in the chat, please."),
                chat_line(
                    2,
                    22,
                    "erin",
                    "How does the executor pick the next task when several wake at once? Is it fair?",
                ),
                chat_line(3, 27, "mallory", "buy followers at spam.example"),
                chat_line(4, ME, "ada", "great talk \u{1f44f}"),
            ],
        },
    );
    app.blocking.insert(27);
    server(
        &mut app,
        ServerMessage::Reactions {
            shown: vec![
                Reacted {
                    user_id: 12,
                    reaction: Reaction::Clap,
                },
                Reacted {
                    user_id: 20,
                    reaction: Reaction::Heart,
                },
            ],
            counts: vec![
                ReactionCount {
                    reaction: Reaction::Clap,
                    count: 41,
                },
                ReactionCount {
                    reaction: Reaction::Laugh,
                    count: 3,
                },
                ReactionCount {
                    reaction: Reaction::Heart,
                    count: 1_204,
                },
            ],
        },
    );
    app.update(char_key('c'));
    for c in "so is it fair".chars() {
        app.update(char_key(c));
    }
    app
}

#[test]
fn room_chat_narrow_takes_the_audiences_place() {
    let app = with_life(in_room(Role::Listener, 0));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn room_chat_wide_beside_the_room() {
    let mut app = with_life(in_room(Role::Moderator, 40));
    app.update(key(KeyCode::Esc));
    server(
        &mut app,
        ServerMessage::ChatPolicy {
            who: crate::protocol::chat::ChatPolicy::Stage,
            by: 10,
        },
    );
    insta::assert_snapshot!(screen(&app, 120, 40));
}

#[test]
fn room_chat_plain_theme_draws_reactions_as_words() {
    let app = with_life(in_room(Role::Listener, 0));
    let terminal = draw(&app, &Theme::plain(), 80, 24);
    insta::assert_snapshot!(terminal.backend().to_string());
}

#[test]
fn room_chat_hidden_counts_new_lines() {
    let mut app = in_room(Role::Listener, 0);
    server(
        &mut app,
        ServerMessage::Chat {
            lines: vec![
                chat_line(1, 10, "grace", "hello"),
                chat_line(2, 22, "erin", "hi"),
            ],
        },
    );
    let screen = screen(&app, 100, 24);
    assert!(screen.contains("c chat (2 new)"), "{screen}");
}

#[test]
fn overlay_pin() {
    let mut app = in_room(Role::Moderator, 0);
    app.update(char_key('P'));
    for c in "https://example.org/agenda".chars() {
        app.update(char_key(c));
    }
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn a_pinned_link_is_handed_back_where_it_is_drawn() {
    let app = with_life(in_room(Role::Listener, 0));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut links = Vec::new();
    terminal
        .draw(|frame| links = render(&app, &Theme::color(), frame))
        .unwrap();
    let [link] = links.as_slice() else {
        panic!("one link: {links:?}");
    };
    assert_eq!(link.url, "https://example.org/agenda");
    // The text is where the link says.
    let buffer = terminal.backend().buffer();
    let drawn: String = (0..link.text.chars().count() as u16)
        .map(|i| buffer[(link.x + i, link.y)].symbol().to_string())
        .collect();
    assert_eq!(drawn, link.text);
    let sequence = super::hyperlink_sequence(link);
    assert_eq!(
        sequence,
        "\x1b]8;;https://example.org/agenda\x1b\\\x1b[4mhttps://example.org/agenda\x1b[24m\x1b]8;;\x1b\\"
    );
    // A hostile URL cannot end the sequence early.
    let hostile = super::Hyperlink {
        url: "https://x.example/\x1b\\\x07evil".into(),
        ..link.clone()
    };
    assert!(!super::hyperlink_sequence(&hostile).contains("\x07"));
    // A box over the screen: no link written over it.
    let mut covered = app.clone();
    covered.update(key(KeyCode::Esc));
    covered.update(char_key('?'));
    terminal
        .draw(|frame| links = render(&covered, &Theme::color(), frame))
        .unwrap();
    assert!(links.is_empty());
}

// ---- Scheduled rooms (#15) ----

fn upcoming(id: u64, host: (UserId, &str), title: &str, starts_at_ms: u64) -> ScheduledRoom {
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

/// The hallway with two live rooms and three upcoming ones (a followed host's first, one
/// with a description, one started), times shown in the machine's zone replaced by a
/// placeholder so the snapshot is the same everywhere.
fn hallway_with_upcoming() -> (App, Vec<u64>) {
    let mut app = hallway_with(many_rooms().into_iter().take(2).collect());
    let times = vec![NOW + 2 * 60 * MINUTE, NOW + 26 * 60 * MINUTE, NOW - MINUTE];
    app.update(Msg::Upcoming(Ok(vec![
        ScheduledRoom {
            followed: true,
            ..upcoming(1, (10, "grace"), "Async Rust, live Q&A", times[0])
        },
        ScheduledRoom {
            description: "Bring a patch".into(),
            ..upcoming(2, (30, "kat"), "Modular synth clinic", times[1])
        },
        ScheduledRoom {
            room: Some("zz9".into()),
            ..upcoming(3, (31, "ren"), "Started but not listed yet", times[2])
        },
    ])));
    (app, times)
}

fn without_times(screen: String, times: &[u64]) -> String {
    times.iter().fold(screen, |s, &t| {
        let shown = super::text::local_time(t);
        s.replace(
            &shown,
            &"<local time>"
                .chars()
                .chain(std::iter::repeat_n(
                    ' ',
                    shown.chars().count().saturating_sub(12),
                ))
                .collect::<String>(),
        )
    })
}

#[test]
fn hallway_upcoming() {
    let (mut app, times) = hallway_with_upcoming();
    for _ in 0..2 {
        app.update(char_key('j'));
    }
    insta::assert_snapshot!(without_times(screen(&app, 80, 24), &times));
}

#[test]
fn hallway_only_upcoming() {
    let mut app = hallway_with(Vec::new());
    app.update(Msg::Upcoming(Ok(vec![upcoming(
        5,
        (10, "grace"),
        "Tomorrow's talk",
        NOW + 24 * 60 * MINUTE,
    )])));
    let times = [NOW + 24 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(screen(&app, 80, 24), &times));
}

#[test]
fn overlay_schedule() {
    let mut app = hallway_with(many_rooms());
    app.update(char_key('S'));
    for c in "Office hours".chars() {
        app.update(char_key(c));
    }
    app.update(key(KeyCode::Tab));
    for c in "2026-12-03 18:".chars() {
        app.update(char_key(c));
    }
    insta::assert_snapshot!(screen(&app, 80, 24));
}

// ---- Replays (#15) ----

fn replay(id: &str, title: &str, host: (UserId, &str), spoke: &[(UserId, &str)]) -> ReplayInfo {
    let person = |(id, name): (UserId, &str)| User {
        id,
        handle: name.to_lowercase(),
        name: name.into(),
    };
    ReplayInfo {
        id: id.into(),
        title: title.into(),
        host: person(host),
        started_at_ms: NOW - 26 * 60 * MINUTE,
        last_ms: None,
        ended_at_ms: Some(NOW - 26 * 60 * MINUTE + 42 * MINUTE + 10_000),
        incomplete: false,
        why_incomplete: None,
        tracks: spoke
            .iter()
            .map(|&who| ReplayTrack {
                user: person(who),
                first_ms: NOW - 26 * 60 * MINUTE,
                packets: 1_000,
                bytes: 2_100_000,
            })
            .collect(),
    }
}

fn grace_talk() -> ReplayInfo {
    replay(
        "rp1",
        "Async Rust, live Q&A",
        (10, "Grace"),
        &[(10, "Grace"), (11, "Linus"), (12, "Kat")],
    )
}

#[test]
fn hallway_replays() {
    let mut app = hallway_with(many_rooms().into_iter().take(2).collect());
    let broken = ReplayInfo {
        incomplete: true,
        why_incomplete: Some("the disk filled".into()),
        ..replay("rp2", "Modular synth clinic", (30, "Kat"), &[(30, "Kat")])
    };
    app.update(Msg::Replays(Ok(vec![grace_talk(), broken])));
    for _ in 0..2 {
        app.update(char_key('j'));
    }
    let times = [NOW - 26 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(screen(&app, 80, 24), &times));
}

/// The replay screen of Grace's talk, loaded and reported at `position_ms`.
fn playing(position_ms: u64) -> App {
    let mut app = hallway_with(Vec::new());
    let info = grace_talk();
    app.update(Msg::Replays(Ok(vec![info.clone()])));
    app.update(key(KeyCode::Enter));
    let timeline =
        std::sync::Arc::new(crate::audio::replay::Timeline::parse(&info, Vec::new()).unwrap());
    app.update(Msg::ReplayLoaded {
        id: info.id.clone(),
        result: Ok(timeline),
    });
    app.update(Msg::Audio(AudioStatus {
        replay: Some(crate::audio::replay::ReplayProgress {
            position_ms,
            length_ms: 2_530_000,
            paused: false,
            ended: false,
            commands: 0,
            speaking: vec![11],
        }),
        ..AudioStatus::default()
    }));
    app
}

#[test]
fn replay_loading() {
    let mut app = hallway_with(Vec::new());
    app.update(Msg::Replays(Ok(vec![grace_talk()])));
    app.update(key(KeyCode::Enter));
    let times = [NOW - 26 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(screen(&app, 80, 24), &times));
}

#[test]
fn replay_playing_faster() {
    let mut app = playing(724_000);
    app.update(char_key('>'));
    app.update(char_key('>'));
    let times = [NOW - 26 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(screen(&app, 80, 24), &times));
}

#[test]
fn replay_paused_without_speakers_incomplete() {
    let mut app = hallway_with(Vec::new());
    let info = ReplayInfo {
        incomplete: true,
        why_incomplete: Some("the server stopped before the room ended".into()),
        ..grace_talk()
    };
    app.update(Msg::Replays(Ok(vec![info.clone()])));
    app.update(key(KeyCode::Enter));
    let timeline =
        std::sync::Arc::new(crate::audio::replay::Timeline::parse(&info, Vec::new()).unwrap());
    app.update(Msg::ReplayLoaded {
        id: info.id.clone(),
        result: Ok(timeline),
    });
    app.update(char_key(' '));
    app.update(Msg::Audio(AudioStatus {
        unavailable: Some("no speakers (no sound card)".into()),
        ..AudioStatus::default()
    }));
    let times = [NOW - 26 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(screen(&app, 60, 16), &times));
}

#[test]
fn replay_ended_plain() {
    let mut app = playing(0);
    app.update(Msg::Audio(AudioStatus {
        replay: Some(crate::audio::replay::ReplayProgress {
            position_ms: 2_530_000,
            length_ms: 2_530_000,
            paused: true,
            ended: true,
            commands: 0,
            speaking: Vec::new(),
        }),
        ..AudioStatus::default()
    }));
    let terminal = draw(&app, &Theme::plain(), 80, 24);
    let times = [NOW - 26 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(terminal.backend().to_string(), &times));
}

#[test]
fn overlay_confirm_delete_replay() {
    let mut app = playing(724_000);
    app.update(Msg::Me(crate::protocol::Me {
        user: User {
            id: 10,
            handle: "grace".into(),
            name: "Grace".into(),
        },
        bio: String::new(),
        admin: false,
        invitations_left: None,
        devices: Vec::new(),
        following: Vec::new(),
        blocking: Vec::new(),
    }));
    app.update(char_key('D'));
    assert!(matches!(
        app.overlay,
        Some(Overlay::ConfirmDeleteReplay { .. })
    ));
    let times = [NOW - 26 * 60 * MINUTE];
    insta::assert_snapshot!(without_times(screen(&app, 80, 24), &times));
}
