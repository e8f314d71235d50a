//! The organization directory, data keys and idempotency keys.

pub mod organization {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub slug: String,
        pub name: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub clinician_scope: String,
        pub phi_mfa: String,
        pub deleted_at: Option<TimeDateTimeWithTimeZone>,
        pub calendar_detail: String,
        pub external_referrals: bool,
        pub ai_baa: bool,
    }

    no_relations!();
}

pub mod org_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "org_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub wrapped_dek: Vec<u8>,
        pub wrapped_index_key: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("org_key::Model")
                .field("version", &self.version)
                .finish_non_exhaustive()
        }
    }

    no_relations!();
}

pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_hash: Vec<u8>,
        pub request_hash: Vec<u8>,
        pub state: String,
        pub status: Option<i32>,
        pub response: Option<Vec<u8>>,
        pub resource_type: Option<String>,
        pub resource_id: Option<String>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub expires_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}
