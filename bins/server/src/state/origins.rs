//! The origins whose pages may make unsafe cookie-session requests (the
//! configured CORS origins).

/// The origins whose pages may make unsafe requests in a cookie session:
/// the configured CORS origins, compared as (scheme, host, port).
#[derive(Clone, Debug, Default)]
pub struct TrustedOrigins(Vec<url::Origin>);

impl TrustedOrigins {
    /// The origins of `listed`; entries that are not origins (the
    /// configuration check refuses them) are left out, never widened.
    pub fn new(listed: &[String]) -> Self {
        Self(
            listed
                .iter()
                .filter_map(|o| url::Url::parse(o).ok())
                .map(|u| u.origin())
                .filter(url::Origin::is_tuple)
                .collect(),
        )
    }

    /// Whether an `Origin` header's value is one of these: exactly a
    /// serialized origin (`null`, paths and anything else are not).
    pub fn allows_origin(&self, value: &str) -> bool {
        url::Url::parse(value).is_ok_and(|u| {
            let origin = u.origin();
            origin.ascii_serialization() == value && self.0.contains(&origin)
        })
    }

    /// Whether a `Referer` header's value is a URL of one of these.
    pub fn allows_referer(&self, value: &str) -> bool {
        url::Url::parse(value).is_ok_and(|u| self.0.contains(&u.origin()))
    }
}
