//! The client shell: signs in, owns the terminal, runs the event loop and carries out the
//! model's effects (REST calls, the live session, audio). All decisions live in `app`.

pub mod audio;
pub mod stderr;

use std::io::Stdout;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{
    Event, EventStream, KeyboardEnhancementFlags, PopKeyboardEnhancementFlags,
    PushKeyboardEnhancementFlags,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::prelude::CrosstermBackend;
use tokio::sync::mpsc;

use crate::app::{App, Change, Effect, Msg};
use crate::config::Config;
use crate::net::live::Backoff;
use crate::net::{Api, Credentials, Enroll, LiveSession, NetError, Target};
use crate::protocol::ErrorCode;
use crate::protocol::handle::Handle;
use crate::ui::{self, Theme};
pub use audio::AudioLink;

/// How often the screen is redrawn when something changed, and at least once a second for
/// clocks ("waited 1m20s").
const FRAME: Duration = Duration::from_millis(50);
/// How often the audio meters are read for the screen.
const METERS: Duration = Duration::from_millis(100);
/// How often the hallway's room list is refreshed while it is on screen.
const ROOMS_REFRESH: Duration = Duration::from_secs(2);
/// Messages from background tasks (REST answers, net events) waiting for the model. The
/// model drains them every frame; when full, senders wait (backpressure on the network).
const MSG_QUEUE: usize = 1_024;

/// What the client was asked to do.
pub struct ClientOptions {
    pub target: Target,
    /// The display name for a new account.
    pub name: String,
    /// This device's key.
    pub key: std::sync::Arc<crate::identity::DeviceKey>,
    /// The handle for a new account; made from the name when absent.
    pub handle: Option<String>,
    /// Create an account if the device has none on the server (with the invitation from
    /// the target link, if any).
    pub enroll: bool,
    /// The config as loaded: a token kept in it for this server is tried first.
    pub config: Config,
    /// Where to save a new session token; None to keep nothing.
    pub config_path: Option<std::path::PathBuf>,
}

/// What this machine is called in an account's device list.
pub fn device_label() -> String {
    rustix::system::uname()
        .nodename()
        .to_str()
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or("device")
        .chars()
        .take(40)
        .collect()
}

/// Where the config keeps the token of `key` on `server`: tokens are per server and per
/// device key, so `--key bot.key` never signs in with (or replaces) the person's own token.
pub fn token_slot(server: &url::Url, key: &crate::identity::DeviceKey) -> String {
    format!(
        "{} {}",
        server.as_str(),
        crate::identity::b64(&key.public().sign)
    )
}

/// Keeps a new token in the config file at `path` (a warning in the log if it cannot).
pub fn keep_token(
    config: &Config,
    path: Option<&std::path::Path>,
    server: &url::Url,
    key: &crate::identity::DeviceKey,
    token: &str,
) {
    let Some(path) = path else {
        return;
    };
    let mut config = config.clone();
    config
        .tokens
        .insert(token_slot(server, key), token.to_string());
    if let Err(e) = config.save(path) {
        tracing::warn!("could not keep the session token: {e}");
    }
}

/// Signs in to the server with the device key, reusing the token kept for it when it is
/// still good; creates an account when the device has none there and `enroll` says so.
pub async fn sign_in(options: &ClientOptions) -> anyhow::Result<Api> {
    let server_key = token_slot(&options.target.server, &options.key);
    let config = options.config.clone();
    let credentials = Credentials {
        key: options.key.clone(),
        enroll: options.enroll.then(|| Enroll {
            handle: options.handle.clone(),
            name: options.name.clone(),
            invitation: options.target.invitation.clone(),
            label: device_label(),
        }),
    };
    let api = Api::new(options.target.server.clone()).with_credentials(credentials);
    let info = api.info().await?;
    if info.protocol_version != crate::protocol::PROTOCOL_VERSION {
        anyhow::bail!(
            "{} speaks Hallway protocol version {}, this client {}; upgrade the older one",
            options.target.server,
            info.protocol_version,
            crate::protocol::PROTOCOL_VERSION
        );
    }
    if let Some(token) = config.tokens.get(&server_key) {
        let kept = api.clone().with_token(token.clone());
        match kept.me_once().await {
            Ok(_) => return Ok(kept),
            Err(NetError::Api {
                code: ErrorCode::Unauthorized,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let session = api.sign_in().await.map_err(|e| match e {
        NetError::Api {
            code: ErrorCode::UnknownDevice,
            ..
        } => anyhow::anyhow!(
            "this device has no account on {}: create one with `hallway account create --handle NAME` (or open an invitation link), or link it from another device with `hallway account link`",
            options.target.server
        ),
        e => anyhow::Error::new(e).context("cannot sign in"),
    })?;
    keep_token(
        &config,
        options.config_path.as_deref(),
        &options.target.server,
        &options.key,
        &session.token,
    );
    Ok(api)
}

/// Restores the terminal when dropped, on every exit path; the panic hook installed by
/// `ratatui::init` covers panics.
struct TerminalGuard {
    enhanced_keys: bool,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<(Self, Terminal<CrosstermBackend<Stdout>>)> {
        let terminal = ratatui::try_init()
            .context("cannot set up the terminal (is this an interactive terminal?)")?;
        // Key releases (kitty keyboard protocol) make hold-space-to-talk possible.
        let enhanced_keys = crossterm::terminal::supports_keyboard_enhancement().unwrap_or(false)
            && crossterm::execute!(
                std::io::stdout(),
                PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::REPORT_EVENT_TYPES)
            )
            .is_ok();
        if enhanced_keys {
            // ratatui's hook restores the screen on a panic; the key protocol must be popped
            // too, or the shell is left receiving kitty key codes.
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let _ = crossterm::execute!(std::io::stdout(), PopKeyboardEnhancementFlags);
                previous(info);
            }));
        }
        Ok((Self { enhanced_keys }, terminal))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.enhanced_keys {
            let _ = crossterm::execute!(std::io::stdout(), PopKeyboardEnhancementFlags);
        }
        ratatui::restore();
    }
}

/// Runs the terminal client until the user quits.
/// What the terminal client starts with, besides the server and the audio.
pub struct RunOptions {
    pub my_name: String,
    /// Go straight into this room, with a private room's share secret from its link.
    pub room: Option<String>,
    pub share: Option<String>,
    pub latency: crate::config::Latency,
    pub keys: crate::app::keymap::Keymap,
    /// The config as loaded (people marked verified), and where to keep changes to it.
    pub config: Config,
    pub config_path: Option<std::path::PathBuf>,
}

pub async fn run(api: Api, audio: AudioLink, options: RunOptions) -> anyhow::Result<()> {
    let (guard, mut terminal) = TerminalGuard::enter()?;
    let theme = Theme::from_env();
    let mut app = App::new(
        api.base().as_str().trim_end_matches('/'),
        options.my_name,
        guard.enhanced_keys,
    );
    app.latency = options.latency;
    app.keys = options.keys;
    app.verified = options.config.verified_on(api.base().as_str());
    let room = options.room;
    let mut shell = Shell::new(api, audio);
    shell.config_path = options.config_path;
    if let (Some(room), Some(share)) = (&room, options.share) {
        shell.shares.insert(room.clone(), share);
    }
    let mut meters = tokio::time::interval(METERS);
    meters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut keys = EventStream::new();
    let mut refresh = tokio::time::interval(ROOMS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    let mut pending = vec![Msg::Tick { now_ms: unix_ms() }, Msg::Started];
    if let Ok(size) = terminal.size() {
        pending.push(Msg::Resize {
            cols: size.width,
            rows: size.height,
        });
    }
    if let Some(id) = room {
        pending.push(Msg::OpenRoom { id });
    }
    let mut dirty = true;
    let mut last_draw = tokio::time::Instant::now();
    while !app.quit {
        for msg in pending.drain(..) {
            let effects = app.update(msg);
            dirty = true;
            for effect in effects {
                shell.run(effect).await;
            }
        }
        if app.quit {
            break;
        }
        tokio::select! {
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) => pending.push(Msg::Key(key)),
                Some(Ok(Event::Resize(cols, rows))) => pending.push(Msg::Resize { cols, rows }),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                None => break,
            },
            Some(msg) = shell.msg_rx.recv() => pending.push(msg),
            _ = meters.tick() => {
                pending.push(Msg::Audio(shell.audio.status()));
                if let Some(live) = &shell.live {
                    let stats = &live.stats;
                    pending.push(Msg::Sealing {
                        not_opened: stats.undecryptable.load(std::sync::atomic::Ordering::Relaxed),
                        not_sent: stats.unsealed.load(std::sync::atomic::Ordering::Relaxed),
                    });
                }
            }
            // The model decides what is due (the hallway's lists, only while it shows).
            _ = refresh.tick() => pending.push(Msg::Poll),
            // A change is drawn at most FRAME after the last draw; nothing changed, nothing
            // is drawn, and no timer wakes the screen (the meters' tick, 10 a second,
            // marks it changed while in a room; the clock on screen shows minutes).
            _ = tokio::time::sleep_until(last_draw + FRAME), if dirty => {
                app.update(Msg::Tick { now_ms: unix_ms() });
                let mut links = Vec::new();
                terminal
                    .draw(|f| links = ui::render(&app, &theme, f))
                    .context("cannot draw the screen")?;
                if theme.hyperlinks && !links.is_empty() {
                    write_hyperlinks(terminal.backend_mut(), &links)?;
                }
                last_draw = tokio::time::Instant::now();
                dirty = false;
            }
        }
    }
    shell.shutdown().await;
    drop(guard);
    Ok(())
}

/// Carries out effects; answers come back to the model as messages.
struct Shell {
    api: Api,
    msg_tx: mpsc::Sender<Msg>,
    msg_rx: mpsc::Receiver<Msg>,
    live: Option<LiveSession>,
    audio: AudioLink,
    /// Private rooms' share secrets, by room id, from a share link on the command line:
    /// joining those rooms presents it.
    shares: std::collections::HashMap<String, String>,
    /// Where the config file is, to keep who was marked verified (None: keep nothing).
    config_path: Option<std::path::PathBuf>,
    /// The replay being downloaded, if one is.
    replay_load: Option<tokio::task::AbortHandle>,
}

impl Shell {
    fn new(api: Api, audio: AudioLink) -> Self {
        let (msg_tx, msg_rx) = mpsc::channel(MSG_QUEUE);
        Self {
            api,
            msg_tx,
            msg_rx,
            live: None,
            audio,
            shares: std::collections::HashMap::new(),
            config_path: None,
            replay_load: None,
        }
    }

    /// Follows, blocks or reports someone; the model says how it went.
    fn change(&self, handle: String, change: Change, reason: Option<String>) {
        let (api, tx) = (self.api.clone(), self.msg_tx.clone());
        tokio::spawn(async move {
            let result = match Handle::parse(&handle) {
                Err(e) => Err(e.to_string()),
                Ok(who) => match (&change, reason) {
                    (Change::Follow(on), _) => api.set_follow(&who, *on).await,
                    (Change::Block(on), _) => api.set_block(&who, *on).await,
                    (Change::Report, reason) => {
                        api.report(&who, reason.as_deref().unwrap_or_default())
                            .await
                    }
                }
                .map_err(|e| e.to_string()),
            };
            let _ = tx
                .send(Msg::Changed {
                    handle,
                    change,
                    result,
                })
                .await;
        });
    }

    async fn run(&mut self, effect: Effect) {
        match effect {
            Effect::RefreshRooms => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = api.rooms().await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Rooms(result)).await;
                    let upcoming = api.upcoming().await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Upcoming(upcoming)).await;
                });
            }
            Effect::RefreshReplays => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = api
                        .replays(Some(crate::app::replay::REPLAYS_LISTED))
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Replays(result)).await;
                });
            }
            Effect::LoadReplay { id } => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                // One download at a time: Enter, Esc, Enter does not fetch it twice.
                if let Some(earlier) = self.replay_load.take() {
                    earlier.abort();
                }
                let task = tokio::spawn(async move {
                    let result = load_replay(&api, &id).await;
                    let _ = tx.send(Msg::ReplayLoaded { id, result }).await;
                });
                self.replay_load = Some(task.abort_handle());
            }
            Effect::DeleteReplay { id } => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = api.delete_replay(&id).await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::ReplayDeleted { id, result }).await;
                });
            }
            Effect::Replay(command) => {
                if command == crate::audio::replay::ReplayCommand::Stop
                    && let Some(load) = self.replay_load.take()
                {
                    // Left before it loaded: stop downloading it.
                    load.abort();
                }
                self.audio.replay(command);
            }
            Effect::Clip { room } => {
                let source = self.audio.clip_source();
                let tx = self.msg_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match (source, audio::clips_dir()) {
                        (None, _) => Err("no speakers are open, so nothing was played".into()),
                        (_, None) => Err("no data directory for clips (is HOME set?)".into()),
                        (Some(source), Some(dir)) => audio::save_clip(&source.clip(), &dir, &room),
                    };
                    let _ = tx.blocking_send(Msg::ClipSaved { room, result });
                });
            }
            Effect::Schedule(request) => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = api.schedule(&request).await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Scheduled(result)).await;
                });
            }
            Effect::StartScheduled { id } => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = api
                        .start_scheduled(id)
                        .await
                        .map(|d| d.summary.id)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::RoomCreated(result)).await;
                });
            }
            Effect::CreateRoom {
                title,
                private,
                replay,
            } => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = api
                        .create(&crate::protocol::CreateRoom {
                            title,
                            private,
                            replay,
                        })
                        .await
                        .map(|d| d.summary.id)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::RoomCreated(result)).await;
                });
            }
            Effect::JoinRoom { id } => {
                self.leave().await;
                let (net_tx, mut net_rx) = mpsc::channel(MSG_QUEUE);
                let msg_tx = self.msg_tx.clone();
                tokio::spawn(async move {
                    while let Some(event) = net_rx.recv().await {
                        if msg_tx.send(Msg::Net(event)).await.is_err() {
                            break;
                        }
                    }
                });
                let live = LiveSession::start_shared(
                    &self.api,
                    &id,
                    self.shares.get(&id).cloned(),
                    net_tx,
                    self.audio.audio_handler(),
                    Backoff::default(),
                );
                self.audio.attach(live.audio_sender());
                self.live = Some(live);
            }
            Effect::Send(command) => {
                if let Some(live) = &self.live {
                    live.send(command);
                }
            }
            Effect::SendTagged { command, id } => {
                if let Some(live) = &self.live {
                    live.send_tagged(command, id);
                }
            }
            Effect::LeaveRoom => self.leave().await,
            Effect::SetMicOpen(open) => self.audio.set_mic_open(open),
            Effect::SetMicLive(live) => self.audio.set_mic_live(live),
            Effect::SetLatency(profile) => self.audio.set_latency(profile),
            Effect::SetOutputVolume(volume) => self.audio.set_output_volume(volume),
            Effect::SetSpeakerVolume { user_id, volume } => {
                self.audio.set_speaker_volume(user_id, volume)
            }
            Effect::ForgetSpeaker(user_id) => self.audio.speaker_left(user_id),
            Effect::SetBlocked(ids) => self.audio.set_blocked(ids),
            Effect::FetchProfile { handle } => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    let result = match Handle::parse(&handle) {
                        Ok(h) => api.profile(&h).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(Msg::Profile { handle, result }).await;
                });
            }
            Effect::SetFollow { handle, on } => self.change(handle, Change::Follow(on), None),
            Effect::SetBlock { handle, on } => self.change(handle, Change::Block(on), None),
            Effect::SetVerified {
                handle,
                agree_keys,
                on,
            } => {
                // Read afresh and written back: another client may have kept a token since.
                if let Some(path) = &self.config_path {
                    let server = self.api.base().as_str().to_string();
                    let kept = Config::load(path).and_then(|mut config| {
                        config.set_verified(&server, &handle, &agree_keys, on);
                        config.save(path)
                    });
                    if let Err(e) = kept {
                        tracing::warn!("could not keep who is verified: {e}");
                    }
                }
            }
            Effect::Report { handle, reason } => self.change(handle, Change::Report, Some(reason)),
            Effect::FetchMe => {
                let (api, tx) = (self.api.clone(), self.msg_tx.clone());
                tokio::spawn(async move {
                    match api.me().await {
                        Ok(me) => {
                            let _ = tx.send(Msg::Me(me)).await;
                        }
                        Err(e) => tracing::warn!("cannot read the account: {e}"),
                    }
                });
            }
            Effect::Quit => {}
        }
    }

    /// Leaves in the background: the screen goes back to the hallway at once.
    async fn leave(&mut self) {
        self.audio.detach();
        // A clip holds one room's audio: whatever comes next starts afresh.
        self.audio.clear_clip();
        if let Some(live) = self.live.take() {
            tokio::spawn(live.leave());
        }
    }

    /// Leaves and waits (briefly) so the room hears it before the process ends.
    async fn shutdown(&mut self) {
        self.audio.log_summary();
        self.audio.detach();
        if let Some(live) = self.live.take() {
            live.leave().await;
        }
    }
}

/// Downloads a replay's tracks and reads them into a timeline (off the async threads).
async fn load_replay(
    api: &Api,
    id: &str,
) -> Result<std::sync::Arc<crate::audio::replay::Timeline>, String> {
    let info = api.replay(id).await.map_err(|e| e.to_string())?;
    let tracks = crate::replay_cli::download_tracks(api, &info)
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        crate::audio::replay::Timeline::parse(&info, tracks)
            .map(std::sync::Arc::new)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    u64::try_from(crate::audio::clock::unix_us() / 1000).unwrap_or(u64::MAX)
}

/// Writes each link's text again over the drawn frame, inside an OSC 8 hyperlink.
fn write_hyperlinks(out: &mut impl std::io::Write, links: &[ui::Hyperlink]) -> anyhow::Result<()> {
    for link in links {
        crossterm::queue!(
            out,
            crossterm::cursor::MoveTo(link.x, link.y),
            crossterm::style::Print(ui::hyperlink_sequence(link))
        )
        .context("cannot draw a link")?;
    }
    out.flush().context("cannot draw a link")
}
