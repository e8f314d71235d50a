//! An organization's telephony account as an administrator enters it.

use secrecy::SecretString;

use super::{ProviderSid, TelephonyAccount, limits};
use crate::{ClinicalError, FieldError};

/// The account fields as received.
#[derive(Debug)]
pub struct AccountInput {
    /// The account id (`AC…`).
    pub account_sid: String,
    /// The auth token (16 to 128 visible ASCII characters).
    pub auth_token: SecretString,
    /// The organization's number in E.164 (`+` and 8 to 15 digits).
    pub caller_number: String,
    /// The bot's media-stream endpoint (`wss://host/…`).
    pub bot_stream_url: String,
}

fn e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn stream_url(s: &str) -> bool {
    s.len() <= limits::URL_MAX
        && s.strip_prefix("wss://").is_some_and(|rest| {
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            !host.is_empty() && !host.contains('@')
        })
        && s.chars().all(|c| c.is_ascii_graphic())
}

impl AccountInput {
    /// Validates every field, reporting every problem at once (never a
    /// value).
    pub fn parse(self) -> Result<TelephonyAccount, ClinicalError> {
        use secrecy::ExposeSecret as _;
        let mut errors = Vec::new();
        let sid = ProviderSid::parse(&self.account_sid);
        if sid.is_none() {
            errors.push(FieldError::new(
                "account_sid",
                "must be 2 to 64 letters and digits",
            ));
        }
        let token = self.auth_token.expose_secret();
        if !(16..=128).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(FieldError::new(
                "auth_token",
                "must be 16 to 128 visible ASCII characters",
            ));
        }
        if !e164(&self.caller_number) {
            errors.push(FieldError::new(
                "caller_number",
                "must be E.164: + and 8 to 15 digits",
            ));
        }
        if !stream_url(&self.bot_stream_url) {
            errors.push(FieldError::new(
                "bot_stream_url",
                "must be a wss:// URL of at most 500 characters",
            ));
        }
        match sid {
            Some(account_sid) if errors.is_empty() => Ok(TelephonyAccount {
                account_sid,
                auth_token: self.auth_token,
                caller_number: self.caller_number,
                bot_stream_url: self.bot_stream_url,
            }),
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(sid: &str, token: &str, number: &str, url: &str) -> AccountInput {
        AccountInput {
            account_sid: sid.to_owned(),
            auth_token: token.to_owned().into(),
            caller_number: number.to_owned(),
            bot_stream_url: url.to_owned(),
        }
    }

    #[test]
    fn a_good_account_parses_and_a_bad_one_names_every_field() {
        assert!(
            input(
                "AC123",
                "0123456789abcdef",
                "+16175550100",
                "wss://bot.example/media"
            )
            .parse()
            .is_ok()
        );
        let Err(ClinicalError::Invalid(errors)) =
            input("AC 1", "short", "617-555-0100", "https://bot.example/media").parse()
        else {
            unreachable!("invalid input must be refused");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "account_sid",
                "auth_token",
                "caller_number",
                "bot_stream_url"
            ]
        );
        for url in [
            "wss://",
            "wss://user@bot.example/",
            "wss://bot.example/ media",
            "ws://bot.example/media",
        ] {
            assert!(
                input("AC1", "0123456789abcdef", "+16175550100", url)
                    .parse()
                    .is_err(),
                "{url}"
            );
        }
    }
}
