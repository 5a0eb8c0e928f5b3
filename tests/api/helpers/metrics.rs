//! The process-global Prometheus recorder read in-process, and one sample read out of a
//! metrics page.

/// The metrics page as the admin listener would serve it. The recorder is process-global and
/// installed on first use, so a test asserts on series only it produces (its own profile
/// names) or on differences between two scrapes.
pub(crate) fn scrape() -> String {
    stsvend::metrics::install().render()
}

/// The value of the sample `name{labels}` in a metrics page: exactly those labels, in any order.
pub(crate) fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, mut found) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)?),
                None => (series, Vec::new()),
            };
            found.sort();
            (series_name == name && found == wanted).then(|| value.parse().ok())?
        })
        .next()
}

/// `k="v",k2="v2"` (with `\"`, `\\` and `\n` escapes) as pairs.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end + 1..];
    }
    Some(pairs)
}
