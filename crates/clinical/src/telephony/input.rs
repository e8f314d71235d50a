//! An organization's telephony account as an administrator enters it.

use secrecy::SecretString;

use super::{ProviderSid, TelephonyAccount, limits};
use crate::appointment::ivr::CallingHours;
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
    /// The front desk's number (E.164), where a reminder call's key 3 goes.
    pub front_desk_number: Option<String>,
    /// First calling hour (0-23, default 9).
    pub call_from_hour: Option<u8>,
    /// Hour calls stop (1-24, default 18).
    pub call_until_hour: Option<u8>,
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
        if self.front_desk_number.as_deref().is_some_and(|n| !e164(n)) {
            errors.push(FieldError::new(
                "front_desk_number",
                "must be E.164: + and 8 to 15 digits",
            ));
        }
        let hours = CallingHours::new(
            self.call_from_hour.unwrap_or(CallingHours::DEFAULT.from),
            self.call_until_hour.unwrap_or(CallingHours::DEFAULT.until),
        );
        if hours.is_none() {
            errors.push(FieldError::new(
                "call_until_hour",
                "calling hours must run from 0-23 to a later hour up to 24",
            ));
        }
        match (sid, hours) {
            (Some(account_sid), Some(calling_hours)) if errors.is_empty() => Ok(TelephonyAccount {
                account_sid,
                auth_token: self.auth_token,
                caller_number: self.caller_number,
                bot_stream_url: self.bot_stream_url,
                front_desk_number: self.front_desk_number,
                calling_hours,
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
            front_desk_number: None,
            call_from_hour: None,
            call_until_hour: None,
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
