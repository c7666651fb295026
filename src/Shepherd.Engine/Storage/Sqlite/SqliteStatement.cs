using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Shepherd.Engine.Storage;

/// <summary>
/// A statement prepared once on a connection and run many times, its parameters bound by position
/// (<c>?1</c>, <c>?2</c>, …) straight on the SQLite handle. The writes made once per request
/// (importing an item, recording an answer) and the answer cache's lookups go through these: an
/// ADO.NET command re-parses its SQL in every transaction, looks each parameter up by name and
/// leaves about a kilobyte of garbage per execution (docs/benchmarks.md).
/// </summary>
internal sealed class SqliteStatement : IDisposable
{
    private readonly sqlite3 _db;
    private readonly sqlite3_stmt _statement;

    private SqliteStatement(sqlite3 db, sqlite3_stmt statement)
    {
        _db = db;
        _statement = statement;
    }

    /// <summary>Prepares <paramref name="sql"/> on <paramref name="connection"/>, which must be open.</summary>
    public static SqliteStatement Prepare(SqliteConnection connection, string sql)
    {
        var db = connection.Handle ?? throw new InvalidOperationException("The connection is not open.");
        Check(raw.sqlite3_prepare_v2(db, sql, out var statement), db);
        return new SqliteStatement(db, statement);
    }

    /// <summary>Binds a number to parameter <paramref name="index"/> (from 1).</summary>
    public SqliteStatement Bind(int index, long value)
    {
        Check(raw.sqlite3_bind_int64(_statement, index, value), _db);
        return this;
    }

    /// <summary>Binds a number, or NULL, to parameter <paramref name="index"/> (from 1).</summary>
    public SqliteStatement Bind(int index, long? value) => value is { } number ? Bind(index, number) : BindNull(index);

    /// <summary>Binds text, or NULL, to parameter <paramref name="index"/> (from 1).</summary>
    public SqliteStatement Bind(int index, string? value)
    {
        Check(value is null ? raw.sqlite3_bind_null(_statement, index) : raw.sqlite3_bind_text(_statement, index, value), _db);
        return this;
    }

    /// <summary>Binds bytes, or NULL, to parameter <paramref name="index"/> (from 1); SQLite copies them.</summary>
    public SqliteStatement Bind(int index, byte[]? value)
    {
        Check(value is null ? raw.sqlite3_bind_null(_statement, index) : raw.sqlite3_bind_blob(_statement, index, value), _db);
        return this;
    }

    /// <summary>Runs the statement and returns how many rows it changed; the bindings are cleared for the next run.</summary>
    public int Execute()
    {
        Step();
        return raw.sqlite3_changes(_db);
    }

    /// <summary>Runs the statement and returns the first column of its first row, or null when it returned none.</summary>
    public long? ExecuteInt64() => Step();

    /// <summary>
    /// Runs the statement and hands its first row, if one came back, to <paramref name="read"/>
    /// (which reads the columns with <see cref="Int32"/> and <see cref="Blob"/>); null when none did.
    /// </summary>
    public T? ReadFirst<T>(Func<SqliteStatement, T> read)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(read);
        try
        {
            var rc = raw.sqlite3_step(_statement);
            if (rc is not (raw.SQLITE_ROW or raw.SQLITE_DONE))
            {
                Check(rc, _db);
            }

            return rc == raw.SQLITE_ROW ? read(this) : null;
        }
        finally
        {
            raw.sqlite3_reset(_statement);
            raw.sqlite3_clear_bindings(_statement);
        }
    }

    /// <summary>Column <paramref name="index"/> (from 0) of the row being read, as a number.</summary>
    public int Int32(int index) => raw.sqlite3_column_int(_statement, index);

    /// <summary>Column <paramref name="index"/> (from 0) of the row being read, as bytes (a copy).</summary>
    public byte[] Blob(int index) => raw.sqlite3_column_blob(_statement, index).ToArray();

    /// <summary>Finalizes the statement.</summary>
    public void Dispose() => _statement.Dispose();

    private SqliteStatement BindNull(int index)
    {
        Check(raw.sqlite3_bind_null(_statement, index), _db);
        return this;
    }

    /// <summary>Steps once (a write makes all its changes in its first step); the first column of the row that came back, if one did.</summary>
    private long? Step()
    {
        var rc = raw.sqlite3_step(_statement);
        try
        {
            if (rc is not (raw.SQLITE_ROW or raw.SQLITE_DONE))
            {
                Check(rc, _db);
            }

            return rc == raw.SQLITE_ROW ? raw.sqlite3_column_int64(_statement, 0) : null;
        }
        finally
        {
            raw.sqlite3_reset(_statement);
            raw.sqlite3_clear_bindings(_statement);
        }
    }

    private static void Check(int rc, sqlite3 db)
    {
        if (rc != raw.SQLITE_OK)
        {
            SqliteException.ThrowExceptionForRC(rc, db);
        }
    }
}
