//! Server aliases: a server's name in safe-string form.
//!
//! The alias is the name lowercased, with every run of characters other than ASCII
//! letters and digits turned into one `-`, and no `-` at either end ("Production EU!"
//! becomes `production-eu`). Letters with accents lose them only when they are plain
//! ASCII already; anything else becomes a separator. Names are unique in a project
//! (compared without case and surrounding space). When two different names give the
//! same alias ("Prod EU" and "prod-eu"), the later one gets a numbered suffix: `prod-eu-2`,
//! then `-3`, and so on.

/// The safe-string form of `name`, or `None` if nothing is left of it.
pub fn slug(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut pending_dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    out.truncate(63);
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// Whether `alias` is a valid alias.
pub fn valid(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 63
        && !alias.starts_with('-')
        && !alias.ends_with('-')
        && alias.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The alias for a new server named `name`, given the aliases already taken.
pub fn allocate<'a>(name: &str, taken: impl Iterator<Item = &'a str> + Clone) -> Option<String> {
    let base = slug(name)?;
    if !taken.clone().any(|t| t == base) {
        return Some(base);
    }
    (2..).map(|n| format!("{base}-{n}")).find(|candidate| !taken.clone().any(|t| t == candidate))
}

/// Whether two server names are the same name.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Production EU!").as_deref(), Some("production-eu"));
        assert_eq!(slug("  staging  ").as_deref(), Some("staging"));
        assert_eq!(slug("a__b--c").as_deref(), Some("a-b-c"));
        assert_eq!(slug("Café 2").as_deref(), Some("caf-2"));
        assert_eq!(slug("!!!"), None);
        assert!(valid(&slug(&"x".repeat(100)).unwrap()));
    }

    #[test]
    fn clashes_get_numbered_suffixes() {
        let taken = ["prod-eu", "prod-eu-2"];
        assert_eq!(allocate("Prod EU", taken.iter().copied()).as_deref(), Some("prod-eu-3"));
        assert_eq!(allocate("Staging", taken.iter().copied()).as_deref(), Some("staging"));
    }
}
