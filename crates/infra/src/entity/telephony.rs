//! Telephony accounts, calls, processed callbacks and recordings.

pub mod telephony_account {
    use sea_orm::entity::prelude::*;

    // `auth_token` is ciphertext.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "telephony_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        pub key_version: i32,
        pub account_sid: String,
        pub auth_token: Vec<u8>,
        pub caller_number: String,
        pub bot_stream_url: String,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub front_desk_number: Option<String>,
        pub call_from_hour: i32,
        pub call_until_hour: i32,
    }

    no_relations!();
}

pub mod telephony_call {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "telephony_calls")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub call_sid: String,
        pub task_id: Uuid,
        pub state: String,
        pub placed_by: String,
        pub escalated_at: Option<TimeDateTimeWithTimeZone>,
        pub ended_at: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod telephony_callback {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "telephony_callbacks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub call_sid: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event: String,
        pub received_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod telephony_recording {
    use sea_orm::entity::prelude::*;

    // `audio` is ciphertext.
    tenant_model!("telephony_recordings" {
        pub recording_sid: String,
        pub call_sid: String,
        pub task_id: Uuid,
        pub key_version: i32,
        pub audio: Vec<u8>,
        pub duration_seconds: i32,
        pub transcript: Option<Vec<u8>>,
        pub deleted_at_provider: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
    });
}

pub mod telephony_voicemail {
    use sea_orm::entity::prelude::*;

    // `caller`, `audio` and `transcript` are ciphertext.
    tenant_model!("telephony_voicemails" {
        pub call_sid: String,
        pub key_version: i32,
        pub caller: Vec<u8>,
        pub patient_id: Option<Uuid>,
        pub recording_sid: Option<String>,
        pub audio: Option<Vec<u8>>,
        pub transcript: Option<Vec<u8>>,
        pub duration_seconds: Option<i32>,
        pub deleted_at_provider: Option<TimeDateTimeWithTimeZone>,
        pub received_at: TimeDateTimeWithTimeZone,
        pub recorded_at: Option<TimeDateTimeWithTimeZone>,
    });
}
