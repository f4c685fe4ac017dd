//! One statement for three backends: PostgreSQL numbers its placeholders
//! (`$1`, `$2`…), SQLite takes them too, MySQL takes only `?`. A statement
//! written once with `$N` is given to MySQL with each `$N` turned into `?`
//! (padded with spaces, so the text keeps its length) — at compile time, by
//! [`sql!`](crate::sql), which also refuses at compile time a statement
//! whose placeholders MySQL would bind wrongly (a `$N` used twice or out of
//! order: `?` binds by position). Such a statement is written for MySQL on
//! its own instead.

/// `sql` with every `$N` outside quotes turned into `?` and spaces; `N` is
/// `sql.len()`. Panics (at compile time, in a `const`) unless the
/// placeholders are `$1`, `$2`, … each once and in that order.
pub const fn question_marks<const N: usize>(sql: &str) -> [u8; N] {
    let bytes = sql.as_bytes();
    assert!(bytes.len() == N, "question_marks::<N> takes N = sql.len()");
    let mut out = [0u8; N];
    let mut i = 0;
    let mut next = 1;
    let mut quoted = false;
    while i < N {
        let c = bytes[i];
        if c == b'\'' {
            quoted = !quoted;
        }
        if !quoted && c == b'$' && i + 1 < N && bytes[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            let mut n = 0usize;
            while j < N && bytes[j].is_ascii_digit() {
                n = n * 10 + (bytes[j] - b'0') as usize;
                j += 1;
            }
            assert!(
                n == next,
                "for MySQL, a statement shared with PostgreSQL must use $1, $2, … each once and in order"
            );
            next += 1;
            out[i] = b'?';
            let mut k = i + 1;
            while k < j {
                out[k] = b' ';
                k += 1;
            }
            i = j;
            continue;
        }
        out[i] = c;
        i += 1;
    }
    out
}

/// The same as [`question_marks`], for a statement made at run time.
///
/// # Panics
/// Unless the placeholders are `$1`, `$2`, … each once and in that order: a
/// statement MySQL would bind wrongly is a bug, which a test on MySQL finds.
pub fn question_marks_of(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    let mut next = 1;
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted && c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            let mut n = 0usize;
            while let Some((_, d)) = chars.next_if(|(_, d)| d.is_ascii_digit()) {
                n = n * 10 + (d as usize - '0' as usize);
            }
            assert!(
                n == next,
                "a statement for MySQL must use $1, $2, … each once and in order (found ${n} where ${next} was due): {sql}"
            );
            next += 1;
            out.push('?');
            continue;
        }
        out.push(c);
    }
    out
}

/// A statement made at run time (with `$N` placeholders), as the backend of
/// `conn` takes it: `sqlx::query(&placeholders(pool, &sql))`.
pub fn placeholders<'a, C: Placeholders + ?Sized>(
    conn: &C,
    sql: &'a str,
) -> std::borrow::Cow<'a, str> {
    if conn.question_marks() {
        std::borrow::Cow::Owned(question_marks_of(sql))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

/// What a query runs on says which placeholders it takes.
pub trait Placeholders {
    /// Whether this backend takes `?` (MySQL) rather than `$N`.
    fn question_marks(&self) -> bool;
}

impl<DB: sqlx::Database> Placeholders for sqlx::Pool<DB> {
    fn question_marks(&self) -> bool {
        DB::NAME == <sqlx::MySql as sqlx::Database>::NAME
    }
}

impl Placeholders for sqlx::PgConnection {
    fn question_marks(&self) -> bool {
        false
    }
}

impl Placeholders for sqlx::SqliteConnection {
    fn question_marks(&self) -> bool {
        false
    }
}

impl Placeholders for sqlx::MySqlConnection {
    fn question_marks(&self) -> bool {
        true
    }
}

/// A statement written once with `$N` placeholders, as the backend of
/// `$conn` (a pool, a connection or a transaction) takes it:
/// `sqlx::query(sql!(pool, "SELECT … WHERE id = $1"))`. The statement is any
/// constant expression (a literal, `concat!`, a `const`); its MySQL form is
/// made at compile time.
///
/// `sql!(conn, shared, mysql: "…")` gives MySQL a statement of its own (with
/// `?` placeholders) where the two differ, e.g. `ON CONFLICT` against `ON
/// DUPLICATE KEY UPDATE`.
#[macro_export]
macro_rules! sql {
    ($conn:expr, $sql:expr, mysql: $mysql:expr) => {{
        #[allow(unused_imports)]
        use $crate::db::dialect::Placeholders as _;
        if ($conn).question_marks() {
            $mysql
        } else {
            $sql
        }
    }};
    ($conn:expr, $sql:expr) => {{
        const SHOPEEZY_SQL_SHARED: &str = $sql;
        const SHOPEEZY_SQL_MYSQL: &str = {
            const BYTES: &[u8] = &$crate::db::dialect::question_marks::<
                { SHOPEEZY_SQL_SHARED.len() },
            >(SHOPEEZY_SQL_SHARED);
            match ::core::str::from_utf8(BYTES) {
                Ok(text) => text,
                Err(_) => panic!("a statement is UTF-8"),
            }
        };
        #[allow(unused_imports)]
        use $crate::db::dialect::Placeholders as _;
        if ($conn).question_marks() {
            SHOPEEZY_SQL_MYSQL
        } else {
            SHOPEEZY_SQL_SHARED
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_question_marks_of_the_same_length() {
        const SQL: &str = "UPDATE t SET a = $1, b = '$2' WHERE id = $2 AND n > $3x";
        assert_eq!(
            question_marks_of(SQL),
            "UPDATE t SET a = ?, b = '$2' WHERE id = ? AND n > ?x"
        );
        const OK: &str = "SELECT $1, '$9', $2";
        let bytes = question_marks::<{ OK.len() }>(OK);
        assert_eq!(
            std::str::from_utf8(&bytes).expect("UTF-8"),
            "SELECT ? , '$9', ? "
        );
    }

    #[test]
    #[should_panic(expected = "each once and in order")]
    fn a_placeholder_used_twice_is_refused() {
        const SQL: &str = "SELECT $1, $1";
        let _ = question_marks::<{ SQL.len() }>(SQL);
    }

    #[test]
    #[should_panic(expected = "each once and in order")]
    fn a_placeholder_out_of_order_is_refused_at_run_time() {
        let _ = question_marks_of("SELECT $2, $1");
    }
}
