//! Server aliases: a server's name in safe-string form.
//!
//! The alias is the name lowercased, with every run of characters other than ASCII
//! letters and digits turned into one `-`, and no `-` at either end ("Production EU!"
//! becomes `production-eu`). Letters with accents lose them only when they are plain
//! ASCII already; anything else becomes a separator. Names are unique in a project
//! (compared without case and surrounding space). When two different names give the
//! same alias ("Prod EU" and "prod-eu"), the later one gets a numbered suffix: `prod-eu-2`,
//! then `-3`, and so on.

/// The longest alias (a DNS label's length).
pub const MAX_LEN: usize = 63;

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
    out.truncate(MAX_LEN);
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// Whether `alias` is a valid alias.
pub fn valid(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= MAX_LEN
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
    // The suffix takes room from the base, so that a numbered alias is still valid.
    (2..).map(|n| numbered(&base, n)).find(|candidate| !taken.clone().any(|t| t == candidate))
}

/// `base-n`, with `base` cut so the whole stays within the alias length limit.
fn numbered(base: &str, n: u32) -> String {
    let suffix = format!("-{n}");
    let room = MAX_LEN - suffix.len();
    let base = base.get(..room.min(base.len())).unwrap_or(base).trim_end_matches('-');
    format!("{base}{suffix}")
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

    #[test]
    fn numbered_aliases_of_long_names_stay_valid() {
        let long = "x".repeat(100);
        let first = allocate(&long, std::iter::empty()).unwrap();
        assert_eq!(first.len(), MAX_LEN);
        let mut taken = vec![first];
        for _ in 0..12 {
            let next = allocate(&long, taken.iter().map(String::as_str)).unwrap();
            assert!(valid(&next), "{next}");
            assert!(!taken.contains(&next), "{next}");
            taken.push(next);
        }
        assert!(taken.last().unwrap().ends_with("-13"));
        // A cut that would end in `-` loses it.
        let dashed = format!("{}-y", "x".repeat(60));
        assert!(valid(&numbered(&dashed, 10)), "{}", numbered(&dashed, 10));
    }
}
