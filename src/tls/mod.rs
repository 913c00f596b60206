//! The process's TLS crypto provider.
//!
//! rustls needs one process-wide crypto provider; the crates we use (redis, later reqwest)
//! are built without picking one, so we install `ring` before the first TLS connection.

use std::sync::Once;

/// Installs the `ring` provider once (a no-op when some provider is already installed).
pub fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider was installed first (by an embedding program): keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
