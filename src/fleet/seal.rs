//! Sealing: every value stsvend puts in Redis is encrypted and authenticated with
//! ChaCha20-Poly1305, so nothing in the store is readable (or forgeable) without the key.
//!
//! A sealed value is `[format 1][key id, 4 bytes][nonce, 12 bytes][ciphertext and tag]`. The key
//! id lets a replica holding the new and the previous key open values sealed with either while
//! the key is rolled. The associated data binds the value to its Redis key name: a ciphertext
//! copied to another key does not open.
//!
//! Redis key names never hold a subject either: [`Keyring::digest`] names them with a keyed hash
//! (HMAC-SHA256 under a key derived from the encryption key), since a plain hash of a guessable
//! subject such as an e-mail address could be reversed by trying candidates.
//!
//! ChaCha20-Poly1305 rather than AES-256-GCM: it is constant-time in software on every CPU, and
//! a random 96-bit nonce is safe for the volumes a token store sees (far below 2^32 seals/key).

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretSlice};
use sha2::Sha256;

/// The only format written; a future one gets a new number.
const FORMAT: u8 = 1;
const KEY_ID_LEN: usize = 4;
pub const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// The shortest sealed value: header and tag around an empty plaintext.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;
/// Bytes a sealed value adds to its plaintext.
pub const OVERHEAD: usize = MIN_SEALED_LEN;
const AAD_CONTEXT: &[u8] = b"stsvend fleet value v1\0";

/// A 32-byte encryption key, zeroed on drop and never shown.
pub struct EncryptionKey(SecretBox<[u8; 32]>);

impl EncryptionKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    fn bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Clone for EncryptionKey {
    fn clone(&self) -> Self {
        Self::new(*self.bytes())
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(** redacted **)")
    }
}

/// Why a sealed value was refused. None of these carries any part of the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the stored value is not a sealed value of a known format")]
    Malformed,
    #[error("the stored value was sealed with a key this replica does not hold")]
    UnknownKey,
    #[error("the stored value does not open: tampered with, or moved from another key")]
    Refused,
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("the value is too large to seal")]
    TooLarge,
}

/// A plaintext that [`Keyring::open`] recovered.
#[derive(Debug)]
pub struct Opened {
    pub plaintext: SecretSlice<u8>,
    /// Sealed with the previous key: the caller may re-seal it with the current one.
    pub with_previous_key: bool,
}

struct KeyMaterial {
    id: [u8; KEY_ID_LEN],
    cipher: ChaCha20Poly1305,
    /// The HMAC key for Redis key names, derived so that it differs from the cipher key.
    names: SecretBox<[u8; 32]>,
}

impl KeyMaterial {
    fn new(key: &EncryptionKey) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
                .expect("HMAC takes a key of any length");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let full_id = derive(b"stsvend fleet key id");
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&full_id[..KEY_ID_LEN]);
        Self {
            id,
            cipher: ChaCha20Poly1305::new(&Key::from(*key.bytes())),
            names: SecretBox::new(Box::new(derive(b"stsvend fleet key names"))),
        }
    }

    fn digest(&self, domain: &str, parts: &[&[u8]]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.names.expose_secret())
            .expect("HMAC takes a key of any length");
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") never share a name.
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        // 128 bits: collisions are out of reach, names stay short.
        full[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The current key, and the previous one while a new key is rolled out.
pub struct Keyring {
    current: KeyMaterial,
    previous: Option<KeyMaterial>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &"** redacted **")
            .field(
                "previous",
                &self.previous.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

fn aad(header: &[u8], name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + header.len() + name.len());
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(header);
    aad.extend_from_slice(name.as_bytes());
    aad
}

impl Keyring {
    pub fn new(current: &EncryptionKey, previous: Option<&EncryptionKey>) -> Self {
        Self {
            current: KeyMaterial::new(current),
            previous: previous.map(KeyMaterial::new),
        }
    }

    /// Whether a previous key is held (values and names may then exist under it).
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// Seals `plaintext` for the Redis key `name` with a nonce from the operating system.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        self.seal_with_nonce(name, plaintext, nonce)
    }

    /// Seals with a given nonce. Pure; a nonce must never be used twice with one key.
    pub fn seal_with_nonce(
        &self,
        name: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, SealError> {
        let mut sealed = Vec::with_capacity(plaintext.len() + OVERHEAD);
        sealed.push(FORMAT);
        sealed.extend_from_slice(&self.current.id);
        sealed.extend_from_slice(&nonce);
        let aad = aad(&sealed, name);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLarge)?;
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens a value read from the Redis key `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Opened, SealError> {
        if sealed.len() < MIN_SEALED_LEN || sealed[0] != FORMAT {
            return Err(SealError::Malformed);
        }
        let (header, ciphertext) = sealed.split_at(HEADER_LEN);
        let id = &header[1..1 + KEY_ID_LEN];
        let (material, with_previous_key) = if id == self.current.id {
            (&self.current, false)
        } else {
            match &self.previous {
                Some(previous) if id == previous.id => (previous, true),
                _ => return Err(SealError::UnknownKey),
            }
        };
        let mut nonce = [0; NONCE_LEN];
        nonce.copy_from_slice(&header[1 + KEY_ID_LEN..]);
        let plaintext = material
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(header, name),
                },
            )
            .map_err(|_| SealError::Refused)?;
        Ok(Opened {
            plaintext: SecretSlice::from(plaintext),
            with_previous_key,
        })
    }

    /// A Redis key name part for `parts` under `domain`: 32 hex digits, keyed by the current
    /// key, revealing nothing of the parts.
    pub fn digest(&self, domain: &str, parts: &[&[u8]]) -> String {
        self.current.digest(domain, parts)
    }

    /// The same name part under the previous key, while one is held.
    pub fn previous_digest(&self, domain: &str, parts: &[&[u8]]) -> Option<String> {
        self.previous.as_ref().map(|p| p.digest(domain, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::new([byte; 32])
    }

    const NONCE: [u8; NONCE_LEN] = [7; NONCE_LEN];

    #[test]
    fn a_sealed_value_opens_under_its_own_name_only() {
        let ring = Keyring::new(&key(1), None);
        let sealed = ring
            .seal_with_nonce("stsvend:tok:a", b"secret-value", NONCE)
            .unwrap();
        assert_eq!(sealed.len(), b"secret-value".len() + OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let opened = ring.open("stsvend:tok:a", &sealed).unwrap();
        assert_eq!(opened.plaintext.expose_secret(), b"secret-value");
        assert!(!opened.with_previous_key);
        assert_eq!(
            ring.open("stsvend:tok:b", &sealed).unwrap_err(),
            SealError::Refused
        );
    }

    #[test]
    fn a_fixed_nonce_gives_a_fixed_ciphertext() {
        let ring = Keyring::new(&key(1), None);
        let a = ring.seal_with_nonce("n", b"x", NONCE).unwrap();
        let b = ring.seal_with_nonce("n", b"x", NONCE).unwrap();
        assert_eq!(a, b);
        let c = ring.seal("n", b"x").unwrap();
        assert_ne!(a, c, "the OS nonce differs from the fixed one");
    }

    #[test]
    fn the_previous_key_opens_old_values_and_a_stranger_key_is_refused() {
        let old = Keyring::new(&key(1), None);
        let sealed = old.seal_with_nonce("n", b"old value", NONCE).unwrap();
        let rolled = Keyring::new(&key(2), Some(&key(1)));
        let opened = rolled.open("n", &sealed).unwrap();
        assert_eq!(opened.plaintext.expose_secret(), b"old value");
        assert!(opened.with_previous_key);
        let stranger = Keyring::new(&key(3), None);
        assert_eq!(
            stranger.open("n", &sealed).unwrap_err(),
            SealError::UnknownKey
        );
        // A key whose id collides is still refused by the tag (forged header).
        let mut forged = rolled.seal_with_nonce("n", b"v", NONCE).unwrap();
        forged[1..5].copy_from_slice(&sealed[1..5]);
        assert_eq!(rolled.open("n", &forged).unwrap_err(), SealError::Refused);
    }

    #[test]
    fn tampering_and_garbage_are_refused_without_panicking() {
        let ring = Keyring::new(&key(1), None);
        let sealed = ring.seal_with_nonce("n", b"value", NONCE).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(ring.open("n", &bad).is_err(), "bit flip at {i} accepted");
        }
        for len in 0..sealed.len() {
            assert!(ring.open("n", &sealed[..len]).is_err());
        }
        assert_eq!(ring.open("n", b"").unwrap_err(), SealError::Malformed);
        assert_eq!(ring.open("n", &[9; 64]).unwrap_err(), SealError::Malformed);
    }

    #[test]
    fn digests_are_keyed_and_unambiguous() {
        let ring = Keyring::new(&key(1), Some(&key(2)));
        let d = ring.digest("tok", &[b"profile", b"alice@example.com"]);
        assert_eq!(d.len(), 32);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(d, ring.digest("tok", &[b"profile", b"alice@example.com"]));
        assert_ne!(d, ring.digest("tok", &[b"profil", b"ealice@example.com"]));
        assert_ne!(d, ring.digest("rl", &[b"profile", b"alice@example.com"]));
        let previous = ring.previous_digest("tok", &[b"profile", b"alice@example.com"]);
        assert_eq!(
            previous.as_deref(),
            Some(
                Keyring::new(&key(2), None)
                    .digest("tok", &[b"profile", b"alice@example.com"])
                    .as_str()
            )
        );
        assert_ne!(previous.as_deref(), Some(d.as_str()));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let shown = format!(
            "{:?} {:?}",
            key(0x41),
            Keyring::new(&key(0x41), Some(&key(0x42)))
        );
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("65"), "{shown}");
        assert!(!shown.contains("AAAA"), "{shown}");
    }
}
