//! SeaORM entities. Private to this crate: nothing outside infra sees a row.

/// The parts of an entity that has no relations, which SeaORM wants
/// spelled out in every entity module.
macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// A tenant-scoped table keyed by `(org_id, id)`, with no relations: the
/// derive, the two key columns and the relation boilerplate every such
/// entity repeats. `$table` is its name, the rest its other columns.
macro_rules! tenant_model {
    ($table:tt { $($columns:tt)* }) => {
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = $table)]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub org_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            $($columns)*
        }

        no_relations!();
    };
}

mod tenancy;
pub use tenancy::{idempotency_key, org_key, organization};

mod patients;
pub use patients::{break_glass, care_assignment, patient, patient_id_hash};

mod accounts;
pub use accounts::{
    backend_assertion, login_address, login_address_failure, mfa_challenge_spent, password_reset,
    recovery_code, refresh_token, security_event, service_key, session, subject_block, user,
};

mod audit;
pub use audit::{alert_outbox, audit_chain, audit_checkpoint, audit_event};

mod scheduling;
pub use scheduling::{appointment, appointment_reminder, calendar_feed, reminder_opt_out};

mod clinical;
pub use clinical::{assistant_turn, consent, incoming_referral, medication, referral, side_effect};

mod verification;
pub use verification::{verification_setting, verification_task, verification_transcript};

mod exports;
pub use exports::{bulk_export, bulk_export_file};

mod telephony;
pub use telephony::{
    telephony_account, telephony_call, telephony_callback, telephony_recording, telephony_voicemail,
};
