//! Insurance verification tasks, their settings and transcripts.

pub mod verification_task {
    use sea_orm::entity::prelude::*;

    // Payer, plan, codes, reference and reason are ciphertext.
    tenant_model!("verification_tasks" {
        pub patient_id: Uuid,
        pub key_version: i32,
        pub payer_name: Vec<u8>,
        pub payer_phone: Vec<u8>,
        pub plan: Vec<u8>,
        pub procedure_codes: Vec<u8>,
        pub status: String,
        pub claimed_by: Option<String>,
        pub reference_number: Option<Vec<u8>>,
        pub failure_reason: Option<Vec<u8>>,
        pub transcript_chunks: i32,
        pub created_by: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    });
}

pub mod verification_setting {
    use sea_orm::entity::prelude::*;

    // `supervisor_phone` is ciphertext.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "verification_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        pub key_version: i32,
        pub supervisor_phone: Option<Vec<u8>>,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod verification_transcript {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "verification_transcripts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub key_version: i32,
        pub chunk: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}
