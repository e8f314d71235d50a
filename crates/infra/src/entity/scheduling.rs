//! Appointments, their reminders and opt-outs, and calendar feeds.

pub mod appointment {
    use sea_orm::entity::prelude::*;

    // `reason` is ciphertext; the rest are ids, times and states.
    tenant_model!("appointments" {
        pub patient_id: Uuid,
        pub practitioner: String,
        pub starts_at: TimeDateTimeWithTimeZone,
        pub ends_at: TimeDateTimeWithTimeZone,
        pub time_zone: String,
        pub status: String,
        pub key_version: i32,
        pub reason: Option<Vec<u8>>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    });
}

pub mod appointment_reminder {
    use sea_orm::entity::prelude::*;

    tenant_model!("appointment_reminders" {
        pub appointment_id: Uuid,
        pub channel: String,
        pub due_at: TimeDateTimeWithTimeZone,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: TimeDateTimeWithTimeZone,
        pub sent_at: Option<TimeDateTimeWithTimeZone>,
        pub last_error: Option<String>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub answer: Option<String>,
        pub answered_at: Option<TimeDateTimeWithTimeZone>,
    });
}

pub mod reminder_opt_out {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reminder_opt_outs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub patient_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod calendar_feed {
    use sea_orm::entity::prelude::*;

    tenant_model!("calendar_feeds" {
        pub practitioner: String,
        pub token_hash: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    });
}
