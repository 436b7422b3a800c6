//! Scheduled rooms (#15): a host announces a room ahead of time; the hallway lists it under
//! "Upcoming" (rooms of people you follow first), the host starts it from the list, and
//! once it is live the host's followers see it start. Kept by the server's store, so they
//! survive restarts.

use serde::{Deserialize, Serialize};

use super::User;

/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// How far ahead a room may be scheduled: a year.
pub const MAX_AHEAD_MS: u64 = 365 * 24 * 3_600_000;
/// A scheduled time this far in the past is still taken (a clock a little behind, a form
/// filled in slowly); further back is refused.
pub const PAST_SLACK_MS: u64 = 5 * 60_000;
/// A room not started this long after its time drops out of the upcoming list.
pub const LATE_MS: u64 = 6 * 3_600_000;
/// Upcoming rooms one host may have at once.
pub const MAX_UPCOMING_PER_HOST: u32 = 20;

/// `POST /api/v2/schedule` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRoom {
    pub title: String,
    /// When it starts, Unix ms.
    pub starts_at_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A scheduled room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRoom {
    pub id: u64,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub host: User,
    /// Unix ms.
    pub starts_at_ms: u64,
    pub created_at_ms: u64,
    /// The viewer follows the host (with a token).
    #[serde(default, skip_serializing_if = "is_false")]
    pub followed: bool,
    /// The live room, once the host started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `GET /api/v2/schedule`: upcoming rooms (and those started within the hour that are
/// still live), rooms of hosts the viewer follows first, then by time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleList {
    pub rooms: Vec<ScheduledRoom>,
}
