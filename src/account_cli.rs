//! The account commands: `hallway account`, `invite`, `profile`, `follow`, `block`,
//! `report` and `admin`. Each signs in with the device key and prints what it did; `--json`
//! where a script would read the answer. Everything from the server is escaped before it
//! is printed.

use anyhow::Context;

use crate::cli::{AccountCommand, AdminCommand, ClientArgs, Command, client_options};
use crate::client;
use crate::config::Config;
use crate::net::{Api, NetError, Target};
use crate::protocol::handle::Handle;
use crate::protocol::text::terminal_safe;
use crate::protocol::{ErrorCode, Me, Profile};
use crate::ui::text::date;

fn handle(text: &str) -> anyhow::Result<Handle> {
    Handle::parse(text)
        .map_err(|e| anyhow::anyhow!("{:?} is not a handle: {e}", terminal_safe(text)))
}

fn target(args: &ClientArgs, config: &Config) -> anyhow::Result<Target> {
    let text =
        args.server.as_ref().or(config.server.as_ref()).context(
            "no server configured: pass --server URL (or set `server` in the config file)",
        )?;
    Ok(Target::parse(text)?)
}

pub(crate) async fn signed_in(args: &ClientArgs, enroll: bool) -> anyhow::Result<Api> {
    let (path, config) = crate::cli::load_config(args)?;
    let target = target(args, &config)?;
    let options = client_options(args, &config, target, path, enroll)?;
    client::sign_in(&options).await
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `hallway account` as text.
pub fn account_text(me: &Me) -> String {
    let mut out = format!(
        "@{}  {}{}\n",
        terminal_safe(&me.user.handle),
        terminal_safe(&me.user.name),
        if me.admin { "  (admin)" } else { "" }
    );
    if !me.bio.is_empty() {
        out.push_str(&format!("{}\n", terminal_safe(&me.bio)));
    }
    out.push_str(&match me.invitations_left {
        Some(n) => format!("invitations left: {n}\n"),
        None => "invitations left: unlimited\n".to_string(),
    });
    out.push_str(&format!(
        "following {}, blocking {}\ndevices:\n",
        me.following.len(),
        me.blocking.len()
    ));
    for device in &me.devices {
        out.push_str(&format!(
            "  {:>4}  {:<20} {}  added {}{}\n",
            device.id,
            terminal_safe(&device.label),
            crate::identity::fingerprint_of(&device.sign_key, &device.agree_key),
            date(device.created_at_ms),
            if device.current {
                "  (this device)"
            } else {
                ""
            }
        ));
    }
    out
}

/// A profile card as text.
pub fn profile_text(p: &Profile) -> String {
    let mut out = format!(
        "{}  @{}{}\n",
        terminal_safe(&p.user.name),
        terminal_safe(&p.user.handle),
        if p.suspended { "  (suspended)" } else { "" }
    );
    if !p.bio.is_empty() {
        out.push_str(&format!("{}\n", terminal_safe(&p.bio)));
    }
    out.push_str(&format!("joined {}", date(p.joined_at_ms)));
    if let Some(by) = &p.invited_by {
        out.push_str(&format!(", invited by @{}", terminal_safe(by)));
    }
    out.push_str(&format!(
        "\n{} followers, {} following{}{}\n",
        p.followers,
        p.following,
        if p.followed { "; you follow them" } else { "" },
        if p.blocked { "; you block them" } else { "" }
    ));
    for device in &p.devices {
        out.push_str(&format!(
            "device key {}\n",
            crate::identity::fingerprint_of(&device.sign_key, &device.agree_key)
        ));
    }
    out
}

pub async fn run(args: &ClientArgs, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Account(account) => match account.command {
            None => {
                let me = signed_in(args, false).await?.me().await?;
                if account.json {
                    print_json(&me)
                } else {
                    print!("{}", account_text(&me));
                    Ok(())
                }
            }
            Some(AccountCommand::Create { invite }) => {
                let new_handle = args
                    .handle
                    .clone()
                    .context("say which handle: hallway account create --handle NAME")?;
                let (path, config) = crate::cli::load_config(args)?;
                let mut target = target(args, &config)?;
                if let Some(invite) = invite {
                    // A whole link or the code alone.
                    target.invitation = match Target::parse(&invite) {
                        Ok(link) if link.invitation.is_some() => link.invitation,
                        _ => Some(invite.trim().to_string()),
                    };
                }
                let mut options = client_options(args, &config, target, path, true)?;
                options.handle = Some(handle(&new_handle)?.as_str().to_string());
                let api = Api::new(options.target.server.clone());
                let name = args.name.clone().or(config.name.clone());
                let session = api
                    .create_account(
                        &options.key,
                        options.handle.as_deref().unwrap_or_default(),
                        name.as_deref(),
                        options.target.invitation.as_deref(),
                        &client::device_label(),
                    )
                    .await?;
                client::keep_token(
                    &options.config,
                    options.config_path.as_deref(),
                    &options.target.server,
                    &options.key,
                    &session.token,
                );
                println!(
                    "created @{} ({}) on {}",
                    terminal_safe(&session.user.handle),
                    terminal_safe(&session.user.name),
                    options.target.server
                );
                Ok(())
            }
            Some(AccountCommand::Link { code: None }) => {
                let api = signed_in(args, false).await?;
                let code = api.link_code().await?;
                println!(
                    "On the other device, within 10 minutes, run:\n\n    hallway --server {} account link {}\n",
                    terminal_safe(api.base().as_str().trim_end_matches('/')),
                    terminal_safe(&code.code)
                );
                Ok(())
            }
            Some(AccountCommand::Link { code: Some(code) }) => {
                let (path, config) = crate::cli::load_config(args)?;
                let options = client_options(args, &config, target(args, &config)?, path, false)?;
                let api = Api::new(options.target.server.clone());
                let session = api
                    .link_device(&options.key, &code, &client::device_label())
                    .await?;
                client::keep_token(
                    &options.config,
                    options.config_path.as_deref(),
                    &options.target.server,
                    &options.key,
                    &session.token,
                );
                println!(
                    "this device is now @{}",
                    terminal_safe(&session.user.handle)
                );
                Ok(())
            }
            Some(AccountCommand::Revoke { device }) => {
                signed_in(args, false).await?.revoke_device(device).await?;
                println!("device {device} is signed out for good");
                Ok(())
            }
            Some(AccountCommand::Edit { display_name, bio }) => {
                let me = signed_in(args, false)
                    .await?
                    .update_me(&crate::protocol::UpdateProfile {
                        name: display_name,
                        bio,
                    })
                    .await?;
                print!("{}", account_text(&me));
                Ok(())
            }
        },
        Command::Invite { json } => {
            let invitation = signed_in(args, false).await?.invite().await?;
            if json {
                return print_json(&invitation);
            }
            let left = match invitation.invitations_left {
                Some(n) => format!("{n} invitations left"),
                None => "unlimited invitations".into(),
            };
            println!(
                "Send this link (it works once, for 7 days; {left}):\n\n    hallway --server {}\n",
                terminal_safe(&invitation.url)
            );
            Ok(())
        }
        Command::Profile { who: h, json } => {
            let who = handle(&h)?;
            let profile = signed_in(args, false).await?.profile(&who).await?;
            if json {
                print_json(&profile)
            } else {
                print!("{}", profile_text(&profile));
                Ok(())
            }
        }
        Command::Follow { who: h } => toggle(args, &h, Relation::Follow, true).await,
        Command::Unfollow { who: h } => toggle(args, &h, Relation::Follow, false).await,
        Command::Block { who: h } => toggle(args, &h, Relation::Block, true).await,
        Command::Unblock { who: h } => toggle(args, &h, Relation::Block, false).await,
        Command::Report { who: h, reason } => {
            let who = handle(&h)?;
            signed_in(args, false).await?.report(&who, &reason).await?;
            println!("reported {who} to the server's admins");
            Ok(())
        }
        Command::Admin(AdminCommand::Reports { json }) => {
            let reports = signed_in(args, false).await?.reports().await?;
            if json {
                return print_json(&reports);
            }
            if reports.reports.is_empty() {
                println!("No reports.");
            }
            for r in &reports.reports {
                println!(
                    "{:>5}  {}  @{} reported @{}: {}",
                    r.id,
                    date(r.created_at_ms),
                    terminal_safe(&r.reporter),
                    terminal_safe(&r.reported),
                    terminal_safe(&r.reason)
                );
            }
            Ok(())
        }
        Command::Admin(AdminCommand::Suspend { who: h, reason }) => {
            let who = handle(&h)?;
            signed_in(args, false)
                .await?
                .suspend(&who, Some(&reason))
                .await?;
            println!(
                "suspended {who}: their connections are closed and their devices cannot sign in"
            );
            Ok(())
        }
        Command::Admin(AdminCommand::Unsuspend { who: h }) => {
            let who = handle(&h)?;
            signed_in(args, false).await?.suspend(&who, None).await?;
            println!("lifted the suspension of {who}");
            Ok(())
        }
        _ => anyhow::bail!("not an account command"),
    }
}

#[derive(Clone, Copy)]
enum Relation {
    Follow,
    Block,
}

async fn toggle(args: &ClientArgs, h: &str, relation: Relation, on: bool) -> anyhow::Result<()> {
    let who = handle(h)?;
    let api = signed_in(args, false).await?;
    let done = match relation {
        Relation::Follow => api.set_follow(&who, on).await,
        Relation::Block => api.set_block(&who, on).await,
    };
    match done {
        Ok(()) => {
            let verb = match (relation, on) {
                (Relation::Follow, true) => "following",
                (Relation::Follow, false) => "no longer following",
                (Relation::Block, true) => "blocking",
                (Relation::Block, false) => "no longer blocking",
            };
            println!("{verb} {who}");
            Ok(())
        }
        Err(NetError::Api {
            code: ErrorCode::UnknownHandle,
            ..
        }) => anyhow::bail!(
            "nobody on this server is {who}; check the handle (`hallway rooms` lists who is on stage)"
        ),
        Err(e) => Err(e.into()),
    }
}
