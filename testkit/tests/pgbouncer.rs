//! The services' database layer through PgBouncer in transaction pooling
//! (`?pgbouncer=true`): statements with arguments, in and out of
//! transactions, from many connections at once, each get their own answer;
//! services migrating one database at once apply each migration once and
//! leave no advisory lock behind.
//!
//! Without the relay of `shopeezy_common::db` (plain sqlx 0.8.6 through
//! PgBouncer 1.18), the first test's mix of queries fails with
//! `prepared statement "sqlx_s_N" already exists` / `does not exist`, with
//! `statement_cache_capacity(0)` as well, and with unnamed statements
//! (`persistent(false)`) about half of the answers are those of another
//! client's statement.

use shopeezy_common::db::{Db, Migrations, Pool};
use shopeezy_testkit::PgBouncer;
use shopeezy_testkit::servers::fresh_postgres;

const NO_MIGRATIONS: Migrations<'static> = Migrations {
    postgres: &[],
    sqlite: &[],
    mysql: &[],
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_statement_gets_its_own_answer() {
    let Some(pgbouncer) = PgBouncer::start().await else {
        return;
    };
    let Some(database) = fresh_postgres().await else {
        return;
    };
    let db = Db::connect(&pgbouncer.url_for(&database.url), 16, NO_MIGRATIONS)
        .await
        .expect("connects through PgBouncer");
    let Pool::Postgres(pool) = db.pool().clone() else {
        panic!("a PostgreSQL pool");
    };
    let tasks: Vec<_> = (0..400i64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                match i % 4 {
                    0 => sqlx::query_scalar::<_, i64>("SELECT $1::int8 * 2")
                        .bind(i)
                        .fetch_one(&pool)
                        .await
                        .map(|v| (v, i * 2)),
                    1 => sqlx::query_scalar::<_, i64>("SELECT $1::int8 + 1000000")
                        .bind(i)
                        .fetch_one(&pool)
                        .await
                        .map(|v| (v, i + 1_000_000)),
                    2 => sqlx::query_scalar::<_, i64>("SELECT $1::int8 - $2::int8")
                        .bind(i)
                        .bind(7i64)
                        .persistent(false)
                        .fetch_one(&pool)
                        .await
                        .map(|v| (v, i - 7)),
                    _ => {
                        let mut tx = pool.begin().await?;
                        let a: i64 = sqlx::query_scalar("SELECT $1::int8 * 3")
                            .bind(i)
                            .fetch_one(&mut *tx)
                            .await?;
                        let b: i64 = sqlx::query_scalar("SELECT $1::int8 + $2::int8")
                            .bind(a)
                            .bind(i)
                            .fetch_one(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok((b, i * 4))
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let (got, expected) = task
            .await
            .expect("the task ran")
            .expect("the statement ran");
        assert_eq!(got, expected);
    }
    // A statement that fails leaves the connection usable.
    assert!(
        sqlx::query("SELECT $1::int8 / 0")
            .bind(1i64)
            .execute(&pool)
            .await
            .is_err()
    );
    let one: i64 = sqlx::query_scalar("SELECT $1::int8")
        .bind(1i64)
        .fetch_one(&pool)
        .await
        .expect("the next statement runs");
    assert_eq!(one, 1);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_migrating_at_once_apply_each_migration_once() {
    let Some(pgbouncer) = PgBouncer::start().await else {
        return;
    };
    let Some(database) = fresh_postgres().await else {
        return;
    };
    const MIGRATIONS: Migrations<'static> = Migrations {
        postgres: &[
            ("0001_first", "CREATE TABLE first (id int PRIMARY KEY)"),
            (
                "0002_second",
                "CREATE TABLE second (id int PRIMARY KEY); INSERT INTO first VALUES (1)",
            ),
        ],
        sqlite: &[],
        mysql: &[],
    };
    let url = pgbouncer.url_for(&database.url);
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Db::connect(&url, 4, MIGRATIONS).await })
        })
        .collect();
    let mut dbs = Vec::new();
    for start in starts {
        dbs.push(
            start
                .await
                .expect("the task ran")
                .expect("migrates through PgBouncer"),
        );
    }
    let Pool::Postgres(pool) = dbs[0].pool().clone() else {
        panic!("a PostgreSQL pool");
    };
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("the migrations table");
    assert_eq!(applied, 2);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM first")
        .fetch_one(&pool)
        .await
        .expect("the migrated table");
    assert_eq!(rows, 1);
    let locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .expect("pg_locks");
    assert_eq!(locks, 0, "an advisory lock outlived the migrations");
    for db in dbs {
        db.close().await;
    }
}
