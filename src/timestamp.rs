//! Timestamps as ccci writes them: RFC 3339, UTC, second precision.

/// Now, as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `unix` seconds as RFC 3339, for messages; the far future reads as such rather than
/// overflowing.
pub fn rfc3339_of_unix(unix: u64) -> String {
    std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(unix))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "the far future".to_string())
}
