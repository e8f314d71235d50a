//! Outbound HTTP that cannot be turned against the inside (SSRF): https
//! only (unless explicitly relaxed for tests), a host allowlist, every
//! resolved address checked (private, loopback, link-local, CGNAT,
//! multicast and unspecified ranges refused) and the connection pinned to
//! the checked address, no redirects, timeouts and a response-size cap.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

/// What outbound requests may reach.
#[derive(Clone, Debug)]
pub struct OutboundPolicy {
    /// Refuse `http://` (production).
    pub https_only: bool,
    /// Hosts that may be called (exact, case-insensitive).
    pub allowed_hosts: Vec<String>,
    /// Allow loopback addresses (tests with a local receiver only).
    pub allow_loopback: bool,
    /// Connect and whole-request timeout.
    pub timeout: Duration,
    /// Largest response body read.
    pub max_response_bytes: usize,
}

/// Why a request was not made or failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL breaks the policy (scheme, host, address).
    #[error("refused: {0}")]
    Refused(String),
    /// The request failed (network, timeout, redirect, size).
    #[error("failed: {0}")]
    Failed(String),
    /// The server answered with this non-2xx status.
    #[error("failed: status {0}")]
    Status(u16),
}

/// Whether `ip` is an address outbound requests must never reach.
pub fn is_forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_loopback() && !allow_loopback)
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4), allow_loopback);
            }
            let first = v6.segments()[0];
            (v6.is_loopback() && !allow_loopback)
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x0064 // NAT64 well-known prefix 64:ff9b::/96
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
        }
    }
}

/// An outbound HTTP client under a policy.
#[derive(Clone, Debug)]
pub struct SafeHttp {
    policy: OutboundPolicy,
}

/// The media type of a form body.
const FORM: &str = "application/x-www-form-urlencoded";

/// `pairs` as an `application/x-www-form-urlencoded` body.
fn form_body(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

impl SafeHttp {
    /// A client under `policy`.
    pub fn new(policy: OutboundPolicy) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self { policy }
    }

    /// Checks `raw` against the policy and resolves it: the address to
    /// connect to (the first allowed one; all must be allowed).
    pub async fn vet(&self, raw: &str) -> Result<(Url, SocketAddr), OutboundError> {
        let url = Url::parse(raw).map_err(|_| OutboundError::Refused("not a URL".into()))?;
        match url.scheme() {
            "https" => {}
            "http" if !self.policy.https_only => {}
            other => return Err(OutboundError::Refused(format!("scheme {other}"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::Refused("credentials in the URL".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| OutboundError::Refused("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self
            .policy
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&host))
        {
            return Err(OutboundError::Refused(format!("host {host} not allowed")));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| OutboundError::Refused("no port".into()))?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(
                self.policy.timeout,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| OutboundError::Failed("DNS timeout".into()))?
            .map_err(|e| OutboundError::Failed(format!("DNS: {e}")))?
            .collect(),
        };
        // Every answer must be allowed: a name that also resolves inside is refused.
        if let Some(bad) = addrs
            .iter()
            .find(|a| is_forbidden(a.ip(), self.policy.allow_loopback))
        {
            return Err(OutboundError::Refused(format!(
                "address {} not allowed",
                bad.ip()
            )));
        }
        let addr = addrs
            .first()
            .copied()
            .ok_or_else(|| OutboundError::Failed("no address".into()))?;
        Ok((url, addr))
    }

    /// POSTs `body` as JSON with `headers` to `url`; a 2xx answer is
    /// success. The connection goes to the vetted address (no second DNS
    /// lookup), redirects are not followed, and at most
    /// `max_response_bytes` of the answer are read.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, OutboundError> {
        self.post(url, "application/json", headers, body)
            .await
            .map(|(status, _)| status)
    }

    /// Like [`Self::post_json`], returning the answer's body (at most
    /// `max_response_bytes`).
    pub async fn post_json_read(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, OutboundError> {
        self.post(url, "application/json", headers, body)
            .await
            .map(|(_, answer)| answer)
    }

    /// Like [`Self::post_json`] for an `application/x-www-form-urlencoded`
    /// body.
    pub async fn post_form(
        &self,
        url: &str,
        headers: &[(&str, String)],
        form: &[(&str, &str)],
    ) -> Result<u16, OutboundError> {
        self.post(url, FORM, headers, form_body(form))
            .await
            .map(|(status, _)| status)
    }

    /// Like [`Self::post_form`], returning the 2xx answer's body.
    pub async fn post_form_read(
        &self,
        url: &str,
        headers: &[(&str, String)],
        form: &[(&str, &str)],
    ) -> Result<Vec<u8>, OutboundError> {
        self.post(url, FORM, headers, form_body(form))
            .await
            .map(|(_, answer)| answer)
    }

    /// POSTs `body` of `content_type` (multipart uploads) with `headers`
    /// to `url`: the 2xx answer's body.
    pub async fn post_read(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, OutboundError> {
        self.post(url, content_type, headers, body)
            .await
            .map(|(_, answer)| answer)
    }

    /// GETs `url` with `headers`: the 2xx answer's body (at most the
    /// policy's response size).
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Vec<u8>, OutboundError> {
        self.send(reqwest::Method::GET, url, None, headers, Vec::new())
            .await
            .map(|(_, answer)| answer)
    }

    /// DELETEs `url` with `headers`: the 2xx status.
    pub async fn delete(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<u16, OutboundError> {
        self.send(reqwest::Method::DELETE, url, None, headers, Vec::new())
            .await
            .map(|(status, _)| status)
    }

    async fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), OutboundError> {
        self.send(
            reqwest::Method::POST,
            url,
            Some(content_type),
            headers,
            body,
        )
        .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), OutboundError> {
        let (url, addr) = self.vet(url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.policy.timeout)
            .connect_timeout(self.policy.timeout)
            .resolve(&host, addr)
            .no_proxy()
            .build()
            .map_err(|e| OutboundError::Failed(e.to_string()))?;
        let mut request = client.request(method, url);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type).body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| OutboundError::Failed(format!("request: {e}")))?;
        let status = response.status();
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OutboundError::Failed(format!("response: {e}")))?
        {
            answer.extend_from_slice(&chunk);
            if answer.len() > self.policy.max_response_bytes {
                return Err(OutboundError::Failed("response too large".into()));
            }
        }
        if status.is_success() {
            Ok((status.as_u16(), answer))
        } else if status.is_redirection() {
            Err(OutboundError::Failed(format!(
                "redirect ({status}) not followed"
            )))
        } else {
            Err(OutboundError::Status(status.as_u16()))
        }
    }
}
