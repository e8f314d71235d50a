//! SigV4-signed calls to an AWS service or a local stand-in speaking its
//! API: the one client the KMS key provider and the S3 witness and archive
//! share (no redirects followed, a timeout on every call and connect).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

/// As whom to call: static or temporary credentials.
pub(crate) struct AwsIdentity<'a> {
    /// Access key id.
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret_access_key: &'a SecretString,
    /// Session token of temporary credentials.
    pub session_token: Option<&'a SecretString>,
}

/// A client signing each request for one service in one region.
pub(crate) struct AwsClient {
    http: reqwest::Client,
    service: &'static str,
    region: String,
    credentials: Credentials,
    signing: SigningSettings,
}

impl AwsClient {
    /// A client for `service` in `region`; no call is made yet.
    pub(crate) fn new(
        service: &'static str,
        region: &str,
        identity: &AwsIdentity<'_>,
        signing: SigningSettings,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default TLS provider; ring is the one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            service,
            region: region.to_owned(),
            credentials: Credentials::new(
                identity.access_key_id,
                identity.secret_access_key.expose_secret(),
                identity.session_token.map(|t| t.expose_secret().to_owned()),
                None,
                "carapace-settings",
            ),
            signing,
        })
    }

    /// The request, with `headers` and signed (not sent); why signing
    /// failed otherwise.
    pub(crate) fn signed(
        &self,
        method: &str,
        url: Url,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(self.signing.clone())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.http.request(method, url);
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        Ok(request.body(body))
    }
}
