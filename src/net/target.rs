//! Where to connect: a server URL, a room link (`URL/rooms/ID`, with `?share=SECRET` for a
//! private room shared by link) naming a room on it, or an invitation link
//! (`URL/invite/CODE`) that makes an account there.

use url::Url;

use super::NetError;

/// A server's base URL and, from a room link, a room id; from an invitation link, the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: Url,
    pub room: Option<String>,
    /// A private room's share secret, from its share link.
    pub share: Option<String>,
    pub invitation: Option<String>,
}

impl Target {
    /// Parses `http://host:port`, `https://host/`, `host:port` (http assumed), a room link
    /// `http://host:port/rooms/ID` or an invitation link `http://host:port/invite/CODE`.
    pub fn parse(text: &str) -> Result<Self, NetError> {
        let trimmed = text.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let invalid = || NetError::InvalidUrl(text.to_string());
        let mut url = Url::parse(&with_scheme).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid());
        }
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let (room, invitation) = match segments.as_slice() {
            [] => (None, None),
            [rooms, id] if rooms == "rooms" && !id.is_empty() => (Some(id.clone()), None),
            [invite, code] if invite == "invite" && !code.is_empty() => (None, Some(code.clone())),
            _ => return Err(invalid()),
        };
        let share = room.as_ref().and_then(|_| {
            url.query_pairs()
                .find(|(k, _)| k == "share")
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        });
        url.set_path("/");
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self {
            server: url,
            room,
            share,
            invitation,
        })
    }

    /// The link to a private room shared by link: whoever holds it may join.
    pub fn share_link(server: &Url, room: &str, secret: &str) -> String {
        let secret: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        format!("{}?share={secret}", Self::room_link(server, room))
    }

    /// The link people can share to a room on a server.
    pub fn room_link(server: &Url, room: &str) -> String {
        format!("{}/rooms/{room}", server.as_str().trim_end_matches('/'))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_servers_and_room_links() {
        let t = Target::parse("http://127.0.0.1:7600").unwrap();
        assert_eq!(
            (t.server.as_str(), t.room),
            ("http://127.0.0.1:7600/", None)
        );
        let t = Target::parse("localhost:7600/rooms/abc123").unwrap();
        assert_eq!(
            (t.server.as_str(), t.room.as_deref()),
            ("http://localhost:7600/", Some("abc123"))
        );
        let t = Target::parse("http://h:7600/invite/AbC-_9").unwrap();
        assert_eq!(
            (t.server.as_str(), t.room, t.invitation.as_deref()),
            ("http://h:7600/", None, Some("AbC-_9"))
        );
        let t = Target::parse("https://rooms.example.org/rooms/x/").unwrap();
        assert_eq!(
            (t.server.as_str(), t.room.as_deref()),
            ("https://rooms.example.org/", Some("x"))
        );
    }

    #[test]
    fn refuses_what_is_not_a_server() {
        for bad in [
            "",
            "ftp://host",
            "http://host/elsewhere",
            "http://host/rooms/",
            "http://host/invite/",
            "http://",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_round_trip() {
        let t = Target::parse("http://h:1/").unwrap();
        let link = Target::room_link(&t.server, "r1");
        assert_eq!(link, "http://h:1/rooms/r1");
        assert_eq!(Target::parse(&link).unwrap().room.as_deref(), Some("r1"));
        let shared = Target::share_link(&t.server, "r1", "s3-cr_et");
        assert_eq!(shared, "http://h:1/rooms/r1?share=s3-cr_et");
        let back = Target::parse(&shared).unwrap();
        assert_eq!(back.room.as_deref(), Some("r1"));
        assert_eq!(back.share.as_deref(), Some("s3-cr_et"));
        assert_eq!(
            back.server.as_str(),
            "http://h:1/",
            "the secret is not in the server URL"
        );
    }
}
