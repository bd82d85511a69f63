//! Webhook deliveries from a Gitea/Forgejo forge: is this delivery authentic, and is it a
//! `!testme` command on a pull request? Pure functions over the raw request, so the HTTP
//! handler only has to verify, record and answer.
//!
//! Authenticity (reference/forge.md): an HMAC-SHA256 of the exact raw body with the hook's
//! secret, lowercase hex, in `X-Forgejo-Signature` / `X-Gitea-Signature` / `X-Gogs-Signature`,
//! or `sha256=`+hex in `X-Hub-Signature-256`. Checked in constant time, against every secret
//! configured (rotation), before the body is parsed. The SHA-1 `X-Hub-Signature` is ignored.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The largest body a delivery may have; a real comment event is a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Why a delivery is refused. Each is a 4xx; nothing is recorded or run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unsigned delivery")]
    Unsigned,
    #[error("bad signature")]
    BadSignature,
    #[error("body over {MAX_BODY} bytes")]
    TooLarge,
    #[error("body is not a webhook payload")]
    Malformed,
}

impl Refusal {
    /// The HTTP status the handler answers with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Unsigned | Refusal::BadSignature => 401,
            Refusal::TooLarge => 413,
            Refusal::Malformed => 400,
        }
    }

    /// The cause, as the webhook-rejection metric labels it.
    pub fn cause(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::BadSignature => "bad_signature",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
        }
    }
}

/// The signature a delivery carries, from its headers (`name`, `value` pairs, any case).
pub fn signature<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Vec<u8>> {
    signatures(headers).into_iter().next()
}

/// Every signature a delivery carries, in the order [`signature`] prefers them: one header
/// holding garbage does not hide a good one in another.
pub fn signatures<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Vec<u8>> {
    let (mut forge, mut hub) = (Vec::new(), Vec::new());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "x-forgejo-signature" | "x-gitea-signature" | "x-gogs-signature" => {
                forge.extend(decode_hex(value).filter(|v| !v.is_empty()));
            }
            "x-hub-signature-256" => hub.extend(
                value
                    .strip_prefix("sha256=")
                    .and_then(decode_hex)
                    .filter(|v| !v.is_empty()),
            ),
            _ => {}
        }
    }
    forge.extend(hub);
    forge
}

/// [`verify`] over every signature a delivery carries: authentic when any of them is.
pub fn verify_any(body: &[u8], signatures: &[Vec<u8>], secrets: &[Vec<u8>]) -> Result<(), Refusal> {
    if signatures.is_empty() {
        return verify(body, None, secrets);
    }
    let mut refusal = Refusal::BadSignature;
    for signature in signatures {
        match verify(body, Some(signature), secrets) {
            Ok(()) => return Ok(()),
            Err(r) => refusal = r,
        }
    }
    Err(refusal)
}

/// The signature a forge sends with `body`: HMAC-SHA256 under `secret`, in hex (what
/// [`verify`] checks, and what a client of serve's webhook endpoint must send).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `body` against `signature` with each of `secrets`, in constant time per secret.
pub fn verify(body: &[u8], signature: Option<&[u8]>, secrets: &[Vec<u8>]) -> Result<(), Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::TooLarge);
    }
    let Some(signature) = signature else {
        return Err(Refusal::Unsigned);
    };
    let authentic = secrets.iter().filter(|s| !s.is_empty()).any(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    });
    if authentic {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a `!testme` comment asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The stages named after `!testme`; empty means all.
    pub stages: Vec<String>,
}

/// The `!testme` command in a comment's Markdown, if its first line is one. A command quoted
/// (`> !testme`) or inside a code block or span is someone talking about it, not asking.
pub fn parse_command(body: &str) -> Option<Command> {
    let first = body.lines().find(|l| !l.trim().is_empty())?;
    // Four spaces or a tab make an indented code block in Markdown.
    if first.starts_with("    ") || first.starts_with('\t') {
        return None;
    }
    let mut words = first.split_whitespace();
    if words.next()? != "!testme" {
        return None;
    }
    Some(Command {
        stages: words.map(str::to_owned).collect(),
    })
}

/// The parts of an `issue_comment` delivery that matter.
#[derive(Clone, Debug, Deserialize)]
pub struct CommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    #[serde(default)]
    pub is_pull: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Issue {
    pub number: u64,
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    pub user: User,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Repository {
    pub full_name: String,
}

impl CommentEvent {
    /// A new comment on a pull request (not an edit, not a plain issue).
    pub fn is_new_pull_request_comment(&self) -> bool {
        self.action == "created"
            && (self.is_pull
                || self
                    .issue
                    .pull_request
                    .as_ref()
                    .is_some_and(|p| !p.is_null()))
    }
}

/// The parts of a `pull_request` delivery that matter: which pull request, and what happened
/// (`synchronized` is new commits).
#[derive(Clone, Debug, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub repository: Repository,
}

/// Parses a `pull_request` body that has already been verified.
pub fn parse_pull_request_event(body: &[u8]) -> Result<PullRequestEvent, Refusal> {
    serde_json::from_slice(body).map_err(|_| Refusal::Malformed)
}

/// The event a delivery carries, from its headers: `issue_comment`, `pull_request`, …
pub fn event_name<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let mut fallback = None;
    for (name, value) in headers {
        match name.to_ascii_lowercase().as_str() {
            "x-forgejo-event" | "x-gitea-event" => return Some(value.trim().to_string()),
            "x-gogs-event" | "x-github-event" => fallback = Some(value.trim().to_string()),
            _ => {}
        }
    }
    fallback
}

/// Parses an `issue_comment` body that has already been verified.
pub fn parse_comment_event(body: &[u8]) -> Result<CommentEvent, Refusal> {
    serde_json::from_slice(body).map_err(|_| Refusal::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forge_signature_in_any_header_verifies_with_any_configured_secret() {
        let body = br#"{"action":"created"}"#;
        let hex = sign(b"new-secret", body);
        let secrets = vec![b"old-secret".to_vec(), b"new-secret".to_vec()];
        for headers in [
            vec![("X-Gitea-Signature", hex.as_str())],
            vec![("x-forgejo-signature", hex.as_str())],
            vec![("X-Hub-Signature-256", &format!("sha256={hex}"))],
        ] {
            let sig = signature(headers.iter().map(|(k, v)| (*k, *v)));
            assert_eq!(verify(body, sig.as_deref(), &secrets), Ok(()));
        }
    }

    #[test]
    fn forged_unsigned_oversized_and_tampered_deliveries_are_refused() {
        let body = br#"{"action":"created"}"#;
        let secrets = vec![b"s3cret".to_vec()];
        let good = decode_hex(&sign(b"s3cret", body)).unwrap();
        assert_eq!(verify(body, None, &secrets), Err(Refusal::Unsigned));
        let forged = decode_hex(&sign(b"guess", body)).unwrap();
        assert_eq!(
            verify(body, Some(&forged), &secrets),
            Err(Refusal::BadSignature)
        );
        let tampered = br#"{"action":"created "}"#;
        assert_eq!(
            verify(tampered, Some(&good), &secrets),
            Err(Refusal::BadSignature)
        );
        let huge = vec![b' '; MAX_BODY + 1];
        assert_eq!(verify(&huge, Some(&good), &secrets), Err(Refusal::TooLarge));
        // An empty secret signs nothing.
        let empty = decode_hex(&sign(b"", body)).unwrap();
        assert_eq!(
            verify(body, Some(&empty), &[Vec::new()]),
            Err(Refusal::BadSignature)
        );
        assert_eq!(signature([("X-Gitea-Signature", "zz")]), None);
        assert_eq!(signature([("X-Hub-Signature", "sha1=abcd")]), None);
    }

    #[test]
    fn regression_a_garbage_signature_header_hid_a_good_one() {
        let body = br#"{"action":"created"}"#;
        let good = sign(b"s3cret", body);
        let headers = [
            ("X-Gitea-Signature", "not hex at all"),
            ("X-Hub-Signature-256", &format!("sha256={good}") as &str),
        ];
        let found = signatures(headers.iter().map(|(n, v)| (*n, *v)));
        assert_eq!(found.len(), 1);
        assert_eq!(verify_any(body, &found, &[b"s3cret".to_vec()]), Ok(()));
        let forged = [
            ("X-Gitea-Signature", "00ff"),
            ("X-Hub-Signature-256", "sha256=00ff"),
        ];
        let found = signatures(forged.iter().map(|(n, v)| (*n, *v)));
        assert_eq!(
            verify_any(body, &found, &[b"s3cret".to_vec()]),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify_any(body, &[], &[b"s3cret".to_vec()]),
            Err(Refusal::Unsigned)
        );
    }

    #[test]
    fn only_a_first_line_command_counts() {
        assert_eq!(parse_command("!testme"), Some(Command { stages: vec![] }));
        assert_eq!(
            parse_command("\n  !testme upgrade backup\nthanks"),
            Some(Command {
                stages: vec!["upgrade".into(), "backup".into()]
            })
        );
        for talk in [
            "> !testme",
            "`!testme`",
            "```\n!testme\n```",
            "    !testme",
            "\t!testme",
            "please !testme",
            "!testmeplease",
            "",
        ] {
            assert_eq!(parse_command(talk), None, "{talk:?}");
        }
    }

    #[test]
    fn pull_request_comments_are_told_from_issue_comments_and_edits() {
        let pr = br#"{"action":"created","is_pull":true,"issue":{"number":3,"pull_request":{"merged":false}},
            "comment":{"id":7,"body":"!testme","user":{"login":"maintainer"}},
            "repository":{"full_name":"coop-cloud/demo"}}"#;
        let event = parse_comment_event(pr).unwrap();
        assert!(event.is_new_pull_request_comment());
        assert_eq!((event.issue.number, event.comment.id), (3, 7));
        let issue = br#"{"action":"created","issue":{"number":4,"pull_request":null},
            "comment":{"id":8,"body":"!testme","user":{"login":"m"}},
            "repository":{"full_name":"coop-cloud/demo"}}"#;
        assert!(
            !parse_comment_event(issue)
                .unwrap()
                .is_new_pull_request_comment()
        );
        let edit = br#"{"action":"edited","is_pull":true,"issue":{"number":3},
            "comment":{"id":7,"body":"!testme","user":{"login":"m"}},
            "repository":{"full_name":"coop-cloud/demo"}}"#;
        assert!(
            !parse_comment_event(edit)
                .unwrap()
                .is_new_pull_request_comment()
        );
        assert_eq!(
            parse_comment_event(b"not json").unwrap_err(),
            Refusal::Malformed
        );
    }
}
