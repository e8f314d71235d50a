//! Bulk Data exports and their sealed files.

pub mod bulk_export {
    use sea_orm::entity::prelude::*;

    tenant_model!("bulk_exports" {
        pub requester: String,
        pub status: String,
        pub request_url: String,
        pub types: String,
        pub since: Option<TimeDateTimeWithTimeZone>,
        pub error: Option<String>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub expires_at: TimeDateTimeWithTimeZone,
        /// When the server writing it last renewed it (none: when started).
        pub renewed_at: Option<TimeDateTimeWithTimeZone>,
    });
}

pub mod bulk_export_file {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bulk_export_files")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub export_id: Uuid,
        pub n: i32,
        pub resource_type: String,
        pub lines: i64,
        pub key_version: i32,
        pub body: Vec<u8>,
    }

    // Rows hold PHI (sealed): never print them.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("bulk_export_file::Model")
                .field("export_id", &self.export_id)
                .field("n", &self.n)
                .finish_non_exhaustive()
        }
    }

    no_relations!();
}
