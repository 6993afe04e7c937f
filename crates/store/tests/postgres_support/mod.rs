//! What the PostgreSQL tests share: the server's URL, a schema of its own per test, fixtures.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
#![allow(dead_code)] // each test file uses its own part of it

use ordermill_store::PostgresStore;
pub use ordermill_store::contract::product_for_tests as product;
use ordermill_store::postgres::DEFAULT_QUERY_TIMEOUT;
use uuid::Uuid;

pub fn postgres_url() -> Option<String> {
    ordermill_core::test_support::service_url(
        "ORDERMILL_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// A schema of its own for one test, dropped (with everything in it) when the test ends,
/// passed or panicked.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    pub fn new(url: &str) -> TestSchema {
        TestSchema { url: url.to_owned(), name: format!("om_test_{}", Uuid::now_v7().simple()) }
    }

    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, Some(&self.name), 4, DEFAULT_QUERY_TIMEOUT).await.unwrap()
    }

    pub async fn migrated_store(&self) -> PostgresStore {
        let store = self.store().await;
        store.migrate().await.unwrap();
        store
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: clean up from a
        // thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        if let Ok(Err(error)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

/// A connection of the test's own to the schema, for what the store does not expose.
pub async fn raw(schema: &TestSchema) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET search_path TO \"{}\"", schema.name)))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}
