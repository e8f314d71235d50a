//! Local accounts, sessions, tokens, resets, second factors, service keys and sign-in throttling.

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub password_hash: Option<String>,
        pub roles: String,
        pub active: bool,
        pub failed_logins: i32,
        pub locked_until: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub totp_seed: Option<Vec<u8>>,
        pub totp_enabled: bool,
        pub totp_last_step: Option<i64>,
        pub admin_locked: bool,
    }

    // Holds a password hash and an e-mail: never printed.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("user::Model")
                .field("id", &self.id)
                .finish_non_exhaustive()
        }
    }

    no_relations!();
}

pub mod session {
    use sea_orm::entity::prelude::*;

    tenant_model!("sessions" {
        pub user_id: Uuid,
        pub amr: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub last_used_at: TimeDateTimeWithTimeZone,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    });
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub hash: Vec<u8>,
        pub session_id: Uuid,
        pub used_at: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub successor: Option<Vec<u8>>,
    }

    no_relations!();
}

pub mod security_event {
    use sea_orm::entity::prelude::*;

    tenant_model!("security_events" {
        pub kind: String,
        pub subject: Option<String>,
        pub at: TimeDateTimeWithTimeZone,
    });
}

pub mod password_reset {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "password_resets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub hash: Vec<u8>,
        pub user_id: Uuid,
        pub expires_at: TimeDateTimeWithTimeZone,
        pub used_at: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod recovery_code {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recovery_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub hash: Vec<u8>,
        pub used_at: Option<TimeDateTimeWithTimeZone>,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod service_key {
    use sea_orm::entity::prelude::*;

    tenant_model!("service_keys" {
        pub name: String,
        pub hash: Vec<u8>,
        pub roles: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub last_used_at: Option<TimeDateTimeWithTimeZone>,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
        pub jwks: Option<String>,
    });
}

pub mod backend_assertion {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "backend_assertions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub expires_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod login_address {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_addresses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub address_hash: Vec<u8>,
        pub last_success_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}

pub mod login_address_failure {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_address_failures")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub address_hash: Vec<u8>,
        pub failures: i32,
        pub last_failure_at: TimeDateTimeWithTimeZone,
        pub throttled_until: Option<TimeDateTimeWithTimeZone>,
    }

    no_relations!();
}

pub mod mfa_challenge_spent {
    use sea_orm::entity::prelude::*;

    tenant_model!("mfa_challenges_spent" {
        pub expires_at: TimeDateTimeWithTimeZone,
    });
}

pub mod subject_block {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subject_blocks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub state: String,
        pub not_before: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    no_relations!();
}
