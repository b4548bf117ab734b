//! The environment's side of loading: which variables are ours
//! (`PRESENCE_BRIDGE__SECTION__KEY`), a warning with a suggestion for those
//! that look meant to be but are not, and error texts that never quote a
//! variable's value.

use super::ENV_PREFIX;

/// Variables that start like ours but belong to the project's tooling
/// (`docker-compose.yml`, the test suite, CI), so are not warned about.
const NOT_SETTINGS: &[&str] = &[
    "PRESENCE_BRIDGE_TOKEN",
    "PRESENCE_BRIDGE_TEST_BIN",
    "PRESENCE_BRIDGE_CI_VENV",
];

/// The variables that are settings, and a warning for each one that looks
/// like a setting but is not spelled as one.
pub(super) fn ours(
    env: impl IntoIterator<Item = (String, String)>,
) -> (config::Map<String, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut ours = config::Map::new();
    for (var, value) in env {
        if var.starts_with(&format!("{ENV_PREFIX}__")) {
            ours.insert(var, value);
        } else if looks_like_ours(&var) {
            warnings.push(format!(
                "environment variable {var} is ignored: it looks like a presence-bridge \
                 setting, but settings are {ENV_PREFIX}__SECTION__KEY with two underscores{}",
                suggest_variable(&var)
            ));
        }
    }
    (ours, warnings)
}

/// `reason` with `value` taken out; when it cannot be (a short value that
/// also occurs in the words), a reason that does not quote it.
pub(super) fn without_value(reason: &str, value: &str) -> String {
    let r = reason.replace(&format!("\"{value}\""), "<value>");
    // Fewer than four characters are no secret and would match ordinary words.
    if value.len() < 4 || !r.contains(value) {
        r
    } else {
        "cannot be read as this setting (value not shown)".to_owned()
    }
}

/// A variable that is not `PRESENCE_BRIDGE__...` but was likely meant to be:
/// one underscore, other letter case, or a prefix a typo or two away.
fn looks_like_ours(var: &str) -> bool {
    if NOT_SETTINGS.contains(&var) {
        return false;
    }
    let upper = var.to_ascii_uppercase();
    if upper.starts_with(ENV_PREFIX) {
        return true;
    }
    // The closest prefix of the name, one or two characters longer or shorter.
    let name: Vec<char> = upper.chars().collect();
    let lo = ENV_PREFIX.len().saturating_sub(2);
    (lo..=ENV_PREFIX.len() + 2)
        .filter(|n| *n <= name.len())
        .any(|n| edit_distance(&name[..n], ENV_PREFIX) <= 2)
}

fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let swap = i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb;
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            if swap {
                // A transposition counts once (`BRIGDE`).
                cur[j + 1] = cur[j + 1].min(prev[j].saturating_sub(1) + 1);
            }
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `; did you mean PRESENCE_BRIDGE__HTTP__LISTEN?` when the rest of the name
/// starts with a section.
fn suggest_variable(var: &str) -> String {
    const SECTIONS: &[&str] = &[
        "HTTP", "ADMIN", "KAFKA", "AUTH", "ACCESS", "LIMITS", "SPOOL", "LOG", "SHUTDOWN",
        "REJECTED",
    ];
    let upper = var.to_ascii_uppercase();
    let rest = upper
        .strip_prefix(ENV_PREFIX)
        .unwrap_or("")
        .trim_start_matches('_');
    for section in SECTIONS {
        if let Some(key) = rest.strip_prefix(section) {
            let key = key.trim_start_matches('_');
            if !key.is_empty() {
                return format!("; did you mean {ENV_PREFIX}__{section}__{key}?");
            }
        }
    }
    String::new()
}
