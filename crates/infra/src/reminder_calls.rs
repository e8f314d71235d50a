//! Reminder calls: the reminder deliverer's voice channel. A call rings
//! only inside the organization's calling hours in the appointment's zone
//! ([`call_time`]), says only the time ([`carapace_clinical::appointment::ivr::reminder_call_text`], built by
//! the deliverer) and asks for one key, which the provider posts (signed)
//! to the reminder's answer URL. Reminder calls are not recorded.

use carapace_clinical::appointment::ivr::{CallTime, call_time};
use carapace_clinical::appointment::{Notifier, NotifyError, ReminderMessage};
use carapace_clinical::telephony::{
    CallRepository as _, Callbacks, Script, Telephony as _, TelephonyError,
};
use carapace_tenancy::{SubjectId, TenantContext};
use time::OffsetDateTime;

use crate::calls::SeaCalls;
use crate::voice::VoiceProvider;

/// The voice [`Notifier`].
#[derive(Clone, Debug)]
pub struct VoiceReminders {
    api: VoiceProvider,
    calls: SeaCalls,
    public_url: String,
}

impl VoiceReminders {
    /// Calls through `api` with each organization's account in `calls`;
    /// answers come back under `public_url`.
    pub fn new(api: VoiceProvider, calls: SeaCalls, public_url: String) -> Self {
        Self {
            api,
            calls,
            public_url,
        }
    }
}

impl Notifier for VoiceReminders {
    async fn send(&self, message: &ReminderMessage) -> Result<(), NotifyError> {
        let system = SubjectId::parse("system:reminders")
            .map_err(|_| NotifyError::Permanent("static subject".into()))?;
        let ctx = TenantContext::new(message.org, system);
        let account = self
            .calls
            .account(&ctx)
            .await
            .map_err(|e| NotifyError::Temporary(e.to_string()))?
            .ok_or(NotifyError::NotConfigured)?;
        let now = OffsetDateTime::now_utc();
        match call_time(now, &message.zone, account.calling_hours, message.starts_at) {
            CallTime::Now => {}
            CallTime::At(at) => return Err(NotifyError::NotBefore(at)),
            CallTime::Never => return Err(NotifyError::TooLate),
        }
        let script = Script::Menu {
            text: message.text.clone(),
            answer_url: format!(
                "{}/api/v1/telephony/{}/reminders/{}/answer",
                self.public_url,
                message.org.as_uuid(),
                message.reminder
            ),
        };
        self.api
            .place(&account, &message.to, &script, &Callbacks::default())
            .await
            .map(|_| ())
            .map_err(|e| match e {
                TelephonyError::Unavailable(why) => NotifyError::Temporary(why),
                TelephonyError::Refused(why) => NotifyError::Permanent(why),
            })
    }
}
