//! Patients, their care teams, break-glass grants and the cross-organization id markers.

pub mod patient {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub key_version: i32,
        pub given_name: Vec<u8>,
        pub family_name: Vec<u8>,
        pub birth_date: Vec<u8>,
        pub member_id: Option<Vec<u8>>,
        pub phone: Option<Vec<u8>>,
        pub email: Option<Vec<u8>>,
        pub sex: Option<Vec<u8>>,
        pub member_id_idx: Option<Vec<u8>>,
        pub name_dob_idx: Vec<u8>,
        pub phone_idx: Option<Vec<u8>>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub account_subject: Option<String>,
    }

    // Rows hold PHI: never print them.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("patient::Model")
                .field("org_id", &self.org_id)
                .field("id", &self.id)
                .finish_non_exhaustive()
        }
    }

    no_relations!();
}

pub mod care_assignment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "care_assignments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub patient_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub role: String,
    }

    no_relations!();
}

pub mod break_glass {
    use sea_orm::entity::prelude::*;

    // Holds a free-text reason (may mention clinical context): not printed.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "break_glass_grants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub patient_id: Uuid,
        pub subject: String,
        /// A fixed marker: the reason itself is in `reason_sealed`.
        pub reason: String,
        /// The reason, encrypted with the organization's data key.
        pub reason_sealed: Option<Vec<u8>>,
        pub expires_at: TimeDateTimeWithTimeZone,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("break_glass::Model")
                .field("id", &self.id)
                .finish_non_exhaustive()
        }
    }

    no_relations!();
}

pub mod patient_id_hash {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient_id_hashes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub hash: Vec<u8>,
    }

    no_relations!();
}
