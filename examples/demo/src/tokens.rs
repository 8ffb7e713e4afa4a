//! Signed login tokens: the login cookie's value and the bearer token.
//!
//! A token carries its login (a random login id, the user, the display
//! name, the organisation) and its expiry, signed with the demo's secret:
//! every node with the same `PRESENCE_DEMO_SECRET` accepts it, also after a
//! restart, without asking anyone. Logouts are the one thing a token cannot
//! say; `revocations` keeps those.
//!
//! The format: `BASE64URL(payload) "." BASE64URL(HMAC-SHA256(secret,
//! payload))`, unpadded, where the payload is a small JSON object. A token
//! that is malformed, forged, altered or expired is no login at all.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::accounts::{Login, User};

/// The longest token even looked at: real ones are about 200 bytes, and a
/// huge header should cost no decoding or hashing.
const MAX_TOKEN_BYTES: usize = 1024;

/// The key that signs tokens. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    /// The size of a random secret.
    const RANDOM_BYTES: usize = 32;

    /// A configured secret (`settings` checked its length).
    pub(crate) fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// A fresh random secret, from the operating system.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0; Self::RANDOM_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// What a token says, as JSON with short keys (the cookie travels with
/// every request).
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The login id: random, and all presence ever learns of the login.
    lid: String,
    /// The user id.
    sub: String,
    /// The display name.
    name: String,
    org: String,
    /// Valid before this instant, in seconds since the Unix epoch.
    exp: i64,
}

/// Issues and verifies tokens with one secret.
#[derive(Clone)]
pub(crate) struct Tokens {
    /// The keyed MAC, cloned for each token (the key is hashed once).
    mac: Hmac<Sha256>,
    lifetime: TimeDelta,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret`, each valid for `lifetime` (whole
    /// seconds; at least one).
    pub(crate) fn new(secret: &Secret, lifetime: Duration) -> Self {
        // HMAC takes a key of any length: this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        let lifetime = TimeDelta::try_seconds(seconds.max(1)).unwrap_or(TimeDelta::MAX);
        Self { mac, lifetime }
    }

    /// A new login of `user`, with a fresh login id, and its token.
    pub(crate) fn issue(&self, user: User, now: DateTime<Utc>) -> (Login, String) {
        // Whole seconds: the login is exactly what its token will say.
        let exp = now
            .checked_add_signed(self.lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .timestamp();
        let expires = DateTime::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let claims = Claims {
            lid: uuid::Uuid::new_v4().simple().to_string(),
            sub: user.id,
            name: user.display_name,
            org: user.org,
            exp,
        };
        // A struct of strings and an integer always serializes.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.sign(&payload))
        );
        (login_of(claims, expires), token)
    }

    /// The login a token stands for, if this secret signed it and it has
    /// not expired at `now`. Says nothing about logouts.
    pub(crate) fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<Login> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let (payload, signature) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        // In constant time: a forger learns nothing from how long it took.
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_slice(&signature).ok()?;
        // Only what this secret signed is parsed.
        let claims: Claims = serde_json::from_slice(&payload).ok()?;
        let expires = DateTime::from_timestamp(claims.exp, 0)?;
        (now < expires).then(|| login_of(claims, expires))
    }

    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

fn login_of(claims: Claims, expires: DateTime<Utc>) -> Login {
    Login {
        id: claims.lid,
        user: claims.sub,
        display_name: claims.name,
        org: claims.org,
        expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&Secret::new(secret), Duration::from_secs(3_600))
    }

    fn alice() -> User {
        User {
            id: "alice".into(),
            display_name: "Alice".into(),
            org: "acme".into(),
        }
    }

    #[test]
    fn a_token_carries_its_login_until_it_expires() {
        let tokens = tokens("a secret of the demo");
        let now = Utc::now();
        let (login, token) = tokens.issue(alice(), now);
        assert_eq!(login.user, "alice");
        assert_eq!(login.display_name, "Alice");
        assert_eq!(login.org, "acme");
        assert_eq!(
            login.expires.timestamp(),
            (now + TimeDelta::hours(1)).timestamp()
        );
        assert_eq!(tokens.verify(&token, now), Some(login.clone()));
        let later = now + TimeDelta::minutes(59);
        assert_eq!(tokens.verify(&token, later), Some(login.clone()));
        assert_eq!(tokens.verify(&token, login.expires), None, "expired");
        let (other, _) = tokens.issue(alice(), now);
        assert_ne!(login.id, other.id, "each login has its own id");
    }

    #[test]
    fn tampered_tokens_are_no_login() {
        let tokens = tokens("a secret of the demo");
        let now = Utc::now();
        let (_, token) = tokens.issue(alice(), now);
        let (payload, signature) = token.split_once('.').expect("two parts");
        // Bob's claims under Alice's signature.
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("base64"))
            .expect("utf-8")
            .replace("alice", "bob");
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(claims));
        assert_eq!(tokens.verify(&forged, now), None, "claims changed");
        // Every single character changed, one at a time.
        for at in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).expect("ascii");
            assert_eq!(tokens.verify(&altered, now), None, "changed at {at}");
        }
        // Signed with another secret.
        let (_, theirs) = self::tokens("another secret, not ours").issue(alice(), now);
        assert_eq!(tokens.verify(&theirs, now), None, "another secret");
    }

    #[test]
    fn an_expired_token_is_no_login_even_when_signed() {
        let tokens = tokens("a secret of the demo");
        let issued = Utc::now() - TimeDelta::hours(2);
        let (_, token) = tokens.issue(alice(), issued);
        assert_eq!(tokens.verify(&token, Utc::now()), None);
    }

    #[test]
    fn garbage_is_no_login_and_no_panic() {
        let tokens = tokens("a secret of the demo");
        let now = Utc::now();
        let signed = |payload: &[u8]| {
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(payload),
                URL_SAFE_NO_PAD.encode(tokens.sign(payload))
            )
        };
        let huge = "A".repeat(MAX_TOKEN_BYTES + 1);
        for garbage in [
            String::new(),
            ".".into(),
            "..".into(),
            "forged".into(),
            "a.b.c".into(),
            "not base64!.also not".into(),
            "e30.".into(),
            format!("{huge}.{huge}"),
            "\u{1F600}.\u{1F600}".into(),
            // Signed, yet not a login: not JSON, the wrong JSON, a time
            // out of range.
            signed(b"not json"),
            signed(b"{}"),
            signed(br#"{"lid":"x","sub":"a","name":"A","org":"o","exp":"soon"}"#),
            signed(br#"{"lid":"x","sub":"a","name":"A","org":"o","exp":9223372036854775807}"#),
        ] {
            assert_eq!(tokens.verify(&garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn secrets_are_random_and_never_shown() {
        let secret = Secret::new("sixteen bytes!!!");
        assert_eq!(format!("{secret:?}"), "Secret(<16 bytes>)");
        let random = Secret::random().expect("random");
        assert_eq!(random.0.len(), 32);
        assert_ne!(random.0, Secret::random().expect("random").0);
    }
}
