//! Medications, side effects, consents, referrals and assistant turns.

pub mod medication {
    use sea_orm::entity::prelude::*;

    // Every clinical column is ciphertext.
    tenant_model!("medication_statements" {
        pub patient_id: Uuid,
        pub key_version: i32,
        pub drug_name: Vec<u8>,
        pub dose: Vec<u8>,
        pub schedule: Vec<u8>,
        pub started_on: Vec<u8>,
        pub stopped_on: Option<Vec<u8>>,
        pub created_at: TimeDateTimeWithTimeZone,
    });
}

pub mod side_effect {
    use sea_orm::entity::prelude::*;

    // Every clinical column is ciphertext.
    tenant_model!("side_effects" {
        pub patient_id: Uuid,
        pub key_version: i32,
        pub symptom: Vec<u8>,
        pub severity: Vec<u8>,
        pub onset_on: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
    });
}

pub mod consent {
    use sea_orm::entity::prelude::*;

    tenant_model!("consents" {
        pub patient_id: Uuid,
        pub recipient_org: Uuid,
        pub recipient: String,
        pub sections: String,
        pub expires_at: TimeDateTimeWithTimeZone,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
        pub recorded_by: String,
        pub created_at: TimeDateTimeWithTimeZone,
    });
}

pub mod referral {
    use sea_orm::entity::prelude::*;

    tenant_model!("referrals" {
        pub patient_id: Uuid,
        pub consent_id: Uuid,
        pub from_subject: String,
        pub to_org: Uuid,
        pub to_subject: String,
        pub created_at: TimeDateTimeWithTimeZone,
    });
}

pub mod incoming_referral {
    use sea_orm::entity::prelude::*;

    tenant_model!("incoming_referrals" {
        pub source_org: Uuid,
        pub patient_id: Uuid,
        pub consent_id: Uuid,
        pub from_subject: String,
        pub to_subject: String,
        pub created_at: TimeDateTimeWithTimeZone,
    });
}

pub mod assistant_turn {
    use sea_orm::entity::prelude::*;

    // `content` is ciphertext.
    tenant_model!("assistant_turns" {
        pub subject: String,
        pub speaker: String,
        pub key_version: i32,
        pub content: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub patient_id: Option<Uuid>,
    });
}
