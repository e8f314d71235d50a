//! The audit trail: events, chain, checkpoints and the alert outbox.

pub mod audit_event {
    use sea_orm::entity::prelude::*;

    tenant_model!("audit_events" {
        pub recorded_at: TimeDateTimeWithTimeZone,
        pub actor: String,
        pub action: String,
        pub resource_type: String,
        pub resource_id: Option<String>,
        pub outcome: String,
        pub body: String,
    });
}

pub mod audit_chain {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_chain")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i64,
        pub event_id: Uuid,
        pub leaf: Vec<u8>,
        pub link: Vec<u8>,
    }

    no_relations!();
}

pub mod audit_checkpoint {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_checkpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i64,
        pub link: Vec<u8>,
        pub signed_at: TimeDateTimeWithTimeZone,
        pub signature: Vec<u8>,
    }

    no_relations!();
}

pub mod alert_outbox {
    use sea_orm::entity::prelude::*;

    tenant_model!("alert_outbox" {
        pub rule: String,
        pub payload: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub attempts: i32,
        pub next_attempt_at: TimeDateTimeWithTimeZone,
        pub delivered_at: Option<TimeDateTimeWithTimeZone>,
        pub last_error: Option<String>,
    });
}
