//! `Bundle` of type `searchset`: the matches of a search, page by page,
//! with `self` and `next` links (the next page through the same
//! tenant-bound cursors as the REST listings).

use serde_json::{Value, json};

/// Why an entry is in a searchset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// It matched the search.
    Match,
    /// It was added by `_include`.
    Include,
}

/// One entry: its full URL and resource.
#[derive(Debug)]
pub struct Entry {
    /// `<base>/<type>/<id>`.
    pub full_url: String,
    /// The resource.
    pub resource: Value,
    /// Match or include.
    pub mode: Mode,
}

impl Entry {
    /// `base`'s `kind` resource `id`, in the bundle as `mode` says.
    pub fn new(
        base: &str,
        kind: &str,
        id: impl std::fmt::Display,
        resource: Value,
        mode: Mode,
    ) -> Self {
        Self {
            full_url: format!("{base}/{kind}/{id}"),
            resource,
            mode,
        }
    }
}

/// A searchset bundle of `entries`; `self_url` is the search as asked,
/// `next_url` the next page's, if any.
pub fn searchset(self_url: &str, next_url: Option<&str>, entries: Vec<Entry>) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(next) = next_url {
        links.push(json!({"relation": "next", "url": next}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = entries
            .into_iter()
            .map(|e| {
                json!({
                    "fullUrl": e.full_url,
                    "resource": e.resource,
                    "search": {"mode": match e.mode { Mode::Match => "match", Mode::Include => "include" }},
                })
            })
            .collect();
    }
    bundle
}

/// `url` with its query's `_cursor` replaced by `cursor` (the next page).
pub fn with_cursor(base: &str, params: &[(String, String)], cursor: &str) -> String {
    let mut query: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "_cursor")
        .cloned()
        .collect();
    query.push(("_cursor".into(), cursor.into()));
    format!("{base}?{}", encode(&query))
}

/// The search as asked, for the `self` link.
pub fn self_link(base: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", encode(params))
    }
}

fn encode(params: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_replace_the_cursor_and_keep_the_search() {
        let params = vec![
            ("family".to_owned(), "Roe & Co".to_owned()),
            ("_cursor".to_owned(), "old".to_owned()),
        ];
        assert_eq!(
            with_cursor("https://h/fhir/R4/Patient", &params, "n+1"),
            "https://h/fhir/R4/Patient?family=Roe+%26+Co&_cursor=n%2B1"
        );
        let b = searchset("s", Some("n"), vec![]);
        assert_eq!(b["link"][1]["relation"], "next");
        assert!(b.get("entry").is_none(), "no empty arrays in FHIR JSON");
    }
}
