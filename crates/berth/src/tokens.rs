//! Where the CLI finds its tokens: `--token` / `BERTH_TOKEN`, else the admin token `berth
//! up` (or `berth server`) keeps in the user's config directory, so that `berth run` on the
//! same machine needs no flag.

use anyhow::{Context, bail};
use berth_core::Token;
use std::path::{Path, PathBuf};

/// The user's berth config directory: `$BERTH_CONFIG_DIR`, else `$XDG_CONFIG_HOME/berth`,
/// else `$HOME/.config/berth`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let from = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = from("BERTH_CONFIG_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = from("XDG_CONFIG_HOME") {
        return Ok(dir.join("berth"));
    }
    match from("HOME") {
        Some(home) => Ok(home.join(".config").join("berth")),
        None => bail!(
            "cannot find the user's config directory: set BERTH_CONFIG_DIR, XDG_CONFIG_HOME or HOME"
        ),
    }
}

/// The file the local admin token is kept in.
pub fn admin_token_file() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("token"))
}

/// Reads a token from `path` (surrounding whitespace ignored), checking its form.
pub fn read_token(path: &Path) -> anyhow::Result<Token> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    Token::parse(&text).with_context(|| format!("the token in {}", path.display()))
}

/// The admin token kept in `path`, or a new one written there (readable by the owner only)
/// if the file does not exist. Returns the token and whether it was created.
pub fn load_or_create(path: &Path) -> anyhow::Result<(Token, bool)> {
    if path.exists() {
        return Ok((read_token(path)?, false));
    }
    let token = Token::from_random(rand::random(), rand::random());
    berth_api::secret_file::write_private(path, &token.expose())
        .with_context(|| format!("writing the admin token to {}", path.display()))?;
    Ok((token, true))
}

/// The token a client command calls with: `given` (`--token` or `BERTH_TOKEN`), else the
/// kept admin token if there is one, else none (the server will answer 401 and say why).
pub fn client_token(given: Option<&str>) -> anyhow::Result<Option<String>> {
    if let Some(text) = given {
        let token = Token::parse(text).context("--token (or BERTH_TOKEN)")?;
        return Ok(Some(token.expose()));
    }
    let path = admin_token_file()?;
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_token(&path)?.expose()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_admin_token_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("token");
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again, first);
        std::fs::write(&path, "not a token").unwrap();
        let error = load_or_create(&path).unwrap_err();
        assert!(format!("{error:#}").contains("malformed"), "{error:#}");
    }
}
