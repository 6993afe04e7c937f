//! What the MySQL tests share: the server's URL, a database of its own per test, fixtures.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
#![allow(dead_code)] // each test file uses its own part of it

use ordermill_store::MysqlStore;
pub use ordermill_store::contract::product_for_tests as product;
use ordermill_store::mysql::DEFAULT_QUERY_TIMEOUT;
use sqlx::Connection;
use uuid::Uuid;

pub fn mysql_url() -> Option<String> {
    ordermill_core::test_support::service_url(
        "ORDERMILL_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
    )
}

/// A database of its own for one test, dropped when the test ends, passed or panicked.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub fn new(url: &str) -> TestDb {
        TestDb { url: url.to_owned(), name: format!("om_test_{}", Uuid::now_v7().simple()) }
    }

    pub async fn store(&self) -> MysqlStore {
        MysqlStore::connect(&self.url, Some(&self.name), 4, DEFAULT_QUERY_TIMEOUT).await.unwrap()
    }

    pub async fn migrated_store(&self) -> MysqlStore {
        let store = self.store().await;
        store.migrate().await.unwrap();
        store
    }

    /// A connection of the test's own, for what the store does not expose.
    pub async fn raw(&self) -> sqlx::MySqlConnection {
        let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("USE `{}`", self.name)))
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: clean up from a
        // thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = sqlx::MySqlConnection::connect(&url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        if let Ok(Err(error)) = cleanup.join() {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}
