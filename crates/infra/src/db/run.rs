//! Running a statement with its failure already a [`StorageError`]: every
//! repository reads and writes through these, so none maps the error by
//! hand.

use carapace_tenancy::StorageError;
use sea_orm::sea_query::{
    Alias, CommonTableExpression, InsertStatement, PostgresQueryBuilder, WithClause,
};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DeleteMany, EntityTrait, Insert, Select,
    Selector, SelectorTrait, Statement, UpdateMany,
};

use super::storage_error;

/// A query that returns rows.
pub(crate) trait Fetch: Sized {
    /// One row.
    type Row;

    /// The first row, if any.
    async fn one_in<C: ConnectionTrait>(self, c: &C) -> Result<Option<Self::Row>, StorageError>;

    /// Every row.
    async fn all_in<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, StorageError>;
}

impl<E: EntityTrait> Fetch for Select<E> {
    type Row = E::Model;

    async fn one_in<C: ConnectionTrait>(self, c: &C) -> Result<Option<E::Model>, StorageError> {
        self.one(c).await.map_err(storage_error)
    }

    async fn all_in<C: ConnectionTrait>(self, c: &C) -> Result<Vec<E::Model>, StorageError> {
        self.all(c).await.map_err(storage_error)
    }
}

impl<S: SelectorTrait> Fetch for Selector<S> {
    type Row = S::Item;

    async fn one_in<C: ConnectionTrait>(self, c: &C) -> Result<Option<S::Item>, StorageError> {
        self.one(c).await.map_err(storage_error)
    }

    async fn all_in<C: ConnectionTrait>(self, c: &C) -> Result<Vec<S::Item>, StorageError> {
        self.all(c).await.map_err(storage_error)
    }
}

/// A statement that writes.
pub(crate) trait Run: Sized {
    /// What running it tells.
    type Done;

    /// Runs the statement.
    async fn run<C: ConnectionTrait>(self, c: &C) -> Result<Self::Done, StorageError>;
}

impl<E: EntityTrait> Run for DeleteMany<E> {
    type Done = sea_orm::DeleteResult;

    async fn run<C: ConnectionTrait>(self, c: &C) -> Result<Self::Done, StorageError> {
        self.exec(c).await.map_err(storage_error)
    }
}

impl<E: EntityTrait> Run for UpdateMany<E> {
    type Done = sea_orm::UpdateResult;

    async fn run<C: ConnectionTrait>(self, c: &C) -> Result<Self::Done, StorageError> {
        self.exec(c).await.map_err(storage_error)
    }
}

/// An insert whose rows are not read back: the number written.
impl<A: ActiveModelTrait> Run for Insert<A> {
    type Done = u64;

    async fn run<C: ConnectionTrait>(self, c: &C) -> Result<u64, StorageError> {
        self.exec_without_returning(c).await.map_err(storage_error)
    }
}

/// An insert of many rows, not read back: the number written.
impl<A: ActiveModelTrait> Run for sea_orm::InsertMany<A> {
    type Done = u64;

    async fn run<C: ConnectionTrait>(self, c: &C) -> Result<u64, StorageError> {
        self.exec_without_returning(c).await.map_err(storage_error)
    }
}

/// An insert that may do nothing on a conflict: whether it wrote.
impl<A: ActiveModelTrait> Run for sea_orm::TryInsert<A> {
    type Done = sea_orm::TryInsertResult<u64>;

    async fn run<C: ConnectionTrait>(self, c: &C) -> Result<Self::Done, StorageError> {
        self.exec_without_returning(c).await.map_err(storage_error)
    }
}

/// Writes `inserts` in `tx`, in order: on PostgreSQL in one statement and
/// one round trip (each but the last a data-modifying `WITH` part, which
/// PostgreSQL runs exactly once and to completion; foreign keys are checked
/// at the statement's end, so a later part may reference an earlier one's
/// row); on SQLite one after another.
pub(crate) async fn insert_all(
    tx: &sea_orm::DatabaseTransaction,
    mut inserts: Vec<InsertStatement>,
) -> Result<(), StorageError> {
    let backend = tx.get_database_backend();
    if backend != DbBackend::Postgres {
        for insert in &inserts {
            tx.execute_raw(backend.build(insert))
                .await
                .map_err(storage_error)?;
        }
        return Ok(());
    }
    let Some(last) = inserts.pop() else {
        return Ok(());
    };
    let mut with = WithClause::new();
    for (i, insert) in inserts.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(insert)
                .table_name(Alias::new(format!("written_{i}")))
                .to_owned(),
        );
    }
    let (sql, values) = with.query(last).build(PostgresQueryBuilder);
    tx.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .map_err(storage_error)?;
    Ok(())
}
