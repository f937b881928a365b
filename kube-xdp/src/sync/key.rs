//! The pair's shared flow-sync key: what the key file holds, and the HMAC
//! key made of it.

use std::fmt;

use ring::hmac;
use thiserror::Error;

/// The shortest key accepted, in bytes (after trailing whitespace is
/// trimmed): 128 bits, even if an operator types one by hand. `head -c 32
/// /dev/urandom | base64` gives 44.
pub const MIN_KEY_LEN: usize = 16;

/// The largest key file read, in bytes.
pub const MAX_KEY_FILE_LEN: usize = 4096;

/// Why a key file's contents are not a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Fewer than [`MIN_KEY_LEN`] bytes once trailing whitespace is gone.
    #[error(
        "holds {len} bytes of key, fewer than {MIN_KEY_LEN}: make one with \
         `head -c 32 /dev/urandom | base64`"
    )]
    TooShort {
        /// The key's length after trimming.
        len: usize,
    },
    /// More than [`MAX_KEY_FILE_LEN`] bytes.
    #[error("is longer than {MAX_KEY_FILE_LEN} bytes: a key file holds one key")]
    TooLong,
}

/// The pair's shared secret: the bytes of `sync_key_file` without trailing
/// whitespace, used as the HMAC-SHA256 key of every sync datagram. Both
/// boxes use the file's bytes as they are (base64 text is not decoded), so
/// the same file on both boxes is the same key.
///
/// Its `Debug` never shows the key: whoever knows it can install NAT state
/// on the pair.
#[derive(Clone)]
pub struct SyncKey {
    bytes: Vec<u8>,
    hmac: hmac::Key,
}

impl SyncKey {
    /// The key in a key file's contents (trailing whitespace and newlines
    /// trimmed).
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the file is too long or the key too short.
    pub fn from_file_bytes(contents: &[u8]) -> Result<SyncKey, KeyError> {
        if contents.len() > MAX_KEY_FILE_LEN {
            return Err(KeyError::TooLong);
        }
        let len = contents
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |last| last + 1);
        if len < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len });
        }
        Ok(SyncKey::new(&contents[..len]))
    }

    /// A key of exactly these bytes (tests, and callers that already hold
    /// a key).
    pub fn new(bytes: &[u8]) -> SyncKey {
        SyncKey {
            bytes: bytes.to_vec(),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true for a key made by [`SyncKey::from_file_bytes`].
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The HMAC-SHA256 key.
    pub(crate) fn hmac(&self) -> &hmac::Key {
        &self.hmac
    }

    /// The SipHash key of the datapath's SYN cookies
    /// (`Settings::cookie_key`): HMAC-SHA256 of a fixed label under this
    /// key, so both boxes of a pair make and check the same cookies, and
    /// the cookies reveal nothing of the sync key (the label keeps the two
    /// uses of the secret apart).
    pub fn cookie_key(&self) -> [u64; 2] {
        let tag = hmac::sign(&self.hmac, COOKIE_KEY_LABEL);
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&tag.as_ref()[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        [word(0), word(1)]
    }
}

/// What [`SyncKey::cookie_key`] signs. Changing it changes every pair's
/// cookie key: both boxes must run the same label.
const COOKIE_KEY_LABEL: &[u8] = b"kube-xdp SYN cookie key v1";

impl PartialEq for SyncKey {
    /// Whether two plans hold the same key (a reload that changes the key
    /// is seen). Not an authentication check: that is
    /// [`ring::hmac::verify`]'s, in constant time.
    fn eq(&self, other: &SyncKey) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for SyncKey {}

impl fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncKey({} bytes, redacted)", self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_whitespace_is_not_part_of_the_key() {
        let a = SyncKey::from_file_bytes(b"0123456789abcdefXYZ\n").unwrap();
        let b = SyncKey::from_file_bytes(b"0123456789abcdefXYZ \r\n\t\n").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 19);
        // Leading whitespace is the operator's: kept.
        assert_ne!(
            a,
            SyncKey::from_file_bytes(b" 0123456789abcdefXYZ\n").unwrap()
        );
    }

    #[test]
    fn a_short_or_empty_key_is_refused() {
        assert_eq!(
            SyncKey::from_file_bytes(b"0123456789abcde\n"),
            Err(KeyError::TooShort { len: 15 })
        );
        assert_eq!(
            SyncKey::from_file_bytes(b"\n\n  \n"),
            Err(KeyError::TooShort { len: 0 })
        );
        assert!(SyncKey::from_file_bytes(b"0123456789abcdef").is_ok());
        assert_eq!(
            SyncKey::from_file_bytes(&[b'k'; MAX_KEY_FILE_LEN + 1]),
            Err(KeyError::TooLong)
        );
    }

    #[test]
    fn the_cookie_key_is_the_pairs_and_not_the_sync_key() {
        let a = SyncKey::from_file_bytes(b"0123456789abcdefXYZ\n").unwrap();
        let b = SyncKey::from_file_bytes(b"0123456789abcdefXYZ").unwrap();
        // The same file on both boxes: the same cookie key.
        assert_eq!(a.cookie_key(), b.cookie_key());
        assert_ne!(a.cookie_key(), [0, 0]);
        let other = SyncKey::from_file_bytes(b"0123456789abcdefXYz").unwrap();
        assert_ne!(a.cookie_key(), other.cookie_key());
        // HMAC-SHA256(key, label), its first 16 bytes as two LE words:
        // pinned, since both boxes of a pair must agree on it.
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdefXYZ"),
            COOKIE_KEY_LABEL,
        );
        assert_eq!(a.cookie_key()[0].to_le_bytes(), tag.as_ref()[..8]);
        assert_eq!(a.cookie_key()[1].to_le_bytes(), tag.as_ref()[8..16]);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SyncKey::from_file_bytes(b"very-secret-sync-key\n").unwrap();
        let shown = format!("{key:?} {:?}", Some(&key));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("20 bytes"), "{shown}");
    }
}
