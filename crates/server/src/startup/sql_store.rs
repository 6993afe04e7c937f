//! The shared database of the scaled-out mode, PostgreSQL or MySQL, for what is not a port:
//! migrations, partition maintenance, the database's clock. Everything else goes through the
//! ports both stores implement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::UnixMillis;
use ordermill_core::ports::{
    DealStore, LimitStore, OrderStore, Outbox, ReportFiles, ReportStore, StoreError,
};
use ordermill_store::partitions::Maintenance;
use ordermill_store::{MysqlStore, PostgresStore};

use super::app::StartError;
use super::settings::{Settings, StoreUrl};

/// One of the two shared stores; cheap to clone.
#[derive(Clone, Debug)]
pub enum SqlStore {
    /// PostgreSQL.
    Postgres(Arc<PostgresStore>),
    /// MySQL 8 / MariaDB 10.6+.
    Mysql(Arc<MysqlStore>),
}

/// The ports a shared store serves, as trait objects.
pub struct Ports {
    pub store: Arc<dyn OrderStore>,
    pub deals: Arc<dyn DealStore>,
    pub limits: Arc<dyn LimitStore>,
    pub reports: Arc<dyn ReportStore>,
    pub report_files: Arc<dyn ReportFiles>,
    pub outbox: Arc<dyn Outbox>,
}

impl SqlStore {
    /// Opens the shared store `settings.store` names; `pool_size` overrides the settings'.
    ///
    /// # Errors
    /// [`StartError::Database`]; [`StartError::Config`] for the embedded store.
    pub async fn open(settings: &Settings, pool_size: Option<u32>) -> Result<SqlStore, StartError> {
        match &settings.store {
            StoreUrl::Postgres(url) => Ok(SqlStore::Postgres(Arc::new(
                PostgresStore::connect(
                    url.expose(),
                    settings.postgres.schema.as_deref(),
                    pool_size.unwrap_or(settings.postgres.pool_size),
                    settings.postgres.query_timeout.get(),
                )
                .await
                .map_err(StartError::Database)?,
            ))),
            StoreUrl::Mysql(url) => Ok(SqlStore::Mysql(Arc::new(
                MysqlStore::connect(
                    url.expose(),
                    settings.mysql.database.as_deref(),
                    pool_size.unwrap_or(settings.mysql.pool_size),
                    settings.mysql.query_timeout.get(),
                )
                .await
                .map_err(StartError::Database)?,
            ))),
            StoreUrl::Sqlite => Err(StartError::Config(
                "this needs a shared database: give --store postgres://... or --store mysql://..."
                    .into(),
            )),
        }
    }

    /// "PostgreSQL" or "MySQL", for messages.
    pub fn engine(&self) -> &'static str {
        match self {
            SqlStore::Postgres(_) => "PostgreSQL",
            SqlStore::Mysql(_) => "MySQL",
        }
    }

    /// Every port, as trait objects over this one store.
    pub fn ports(&self) -> Ports {
        match self {
            SqlStore::Postgres(s) => Ports {
                store: s.clone(),
                deals: s.clone(),
                limits: s.clone(),
                reports: s.clone(),
                report_files: s.clone(),
                outbox: s.clone(),
            },
            SqlStore::Mysql(s) => Ports {
                store: s.clone(),
                deals: s.clone(),
                limits: s.clone(),
                reports: s.clone(),
                report_files: s.clone(),
                outbox: s.clone(),
            },
        }
    }

    /// Applies the migrations this release has and the database lacks.
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        match self {
            SqlStore::Postgres(s) => s.migrate().await,
            SqlStore::Mysql(s) => s.migrate().await,
        }
    }

    /// The migrations not yet applied.
    ///
    /// # Errors
    /// On a backend failure.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        match self {
            SqlStore::Postgres(s) => s.pending_migrations().await,
            SqlStore::Mysql(s) => s.pending_migrations().await,
        }
    }

    /// Partition maintenance with `settings`' retention for this engine.
    ///
    /// # Errors
    /// On a backend failure.
    pub async fn maintain(&self, settings: &Settings) -> Result<Maintenance, StoreError> {
        match self {
            SqlStore::Postgres(s) => s.maintain(settings.postgres.processed_retention.get()).await,
            SqlStore::Mysql(s) => s.maintain(settings.mysql.processed_retention.get()).await,
        }
    }

    /// The setting that says how long consumers' records are kept, for messages.
    pub fn retention_key(&self) -> &'static str {
        match self {
            SqlStore::Postgres(_) => "postgres.processed_retention",
            SqlStore::Mysql(_) => "mysql.processed_retention",
        }
    }

    /// How often api nodes run [`SqlStore::maintain`].
    pub fn maintenance_interval(&self, settings: &Settings) -> Duration {
        match self {
            SqlStore::Postgres(_) => settings.postgres.maintenance_interval.get(),
            SqlStore::Mysql(_) => settings.mysql.maintenance_interval.get(),
        }
    }

    /// The database's clock, read now, and the local instant it was true at.
    ///
    /// # Errors
    /// When the database cannot be asked.
    pub async fn database_time(&self) -> Result<(UnixMillis, Instant), StoreError> {
        match self {
            SqlStore::Postgres(s) => s.database_time().await,
            SqlStore::Mysql(s) => s.database_time().await,
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            SqlStore::Postgres(s) => s.close().await,
            SqlStore::Mysql(s) => s.close().await,
        }
    }
}
