using Microsoft.Data.Sqlite;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The embedded store: one SQLite file in WAL mode. One connection writes (claims, commits,
/// imports), serialised by a lock; reads use pooled connections and never wait for writes.
/// </summary>
public sealed partial class SqliteBatchStore : IBatchStore
{
    private readonly SqliteStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly string _connectionString;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private SqliteConnection? _writer;

    /// <summary>The write connection's statements prepared once, by their SQL; touched under the write lock only.</summary>
    private readonly Dictionary<string, SqliteStatement> _prepared = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <summary>Creates a store over the file the options name; call <see cref="InitializeAsync"/> before use.</summary>
    public SqliteBatchStore(SqliteStoreOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _options = options.Validated();
        _time = timeProvider;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = _options.Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = (int)Math.Ceiling(_options.BusyTimeout.TotalSeconds),
        }.ToString();
    }

    /// <inheritdoc />
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_writer is not null)
            {
                return;
            }

            var writer = Open();
            try
            {
                Execute(writer, "PRAGMA journal_mode = WAL;");

                // All writes go through this connection, so its commits are the ones that checkpoint.
                // Every 10,000 pages (40 MB of log) rather than SQLite's 1,000: a page that many commits
                // change (an index page, a batch row) is copied back to the file once per checkpoint,
                // not ten times (a tenth less CPU for a dispatched request, see docs/benchmarks.md).
                Execute(writer, "PRAGMA wal_autocheckpoint = 10000;");
                var version = Convert.ToInt32(Scalar(writer, "PRAGMA user_version;"));
                if (version > SchemaVersion)
                {
                    throw new StoreException(
                        $"The state file {_options.Path} was written by a newer Shepherd (schema {version}; this version knows {SchemaVersion}). Use that version, or another --state file.");
                }

                if (version < SchemaVersion)
                {
                    using var tx = writer.BeginTransaction();
                    foreach (var migration in Migrations.Skip(version))
                    {
                        Execute(writer, migration, tx);
                    }

                    Execute(writer, $"PRAGMA user_version = {SchemaVersion};", tx);
                    tx.Commit();
                }
            }
            catch
            {
                writer.Dispose();
                throw;
            }

            _writer = writer;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _writeLock.WaitAsync();
        try
        {
            if (_writer is { } writer)
            {
                foreach (var statement in _prepared.Values)
                {
                    statement.Dispose();
                }

                _prepared.Clear();

                // Fold the write-ahead log back into the database so the state file stands alone.
                Execute(writer, "PRAGMA wal_checkpoint(TRUNCATE);");
                await writer.DisposeAsync();
                _writer = null;
            }
        }
        finally
        {
            _writeLock.Release();
        }

        SqliteConnection.ClearAllPools();
        _writeLock.Dispose();
    }

    /// <summary>
    /// A page by insertion order, newest first unless asked oldest first: <c>after</c> continues in
    /// the listing's order, <c>before</c> goes back to newer ones (read oldest first, then turned around by <see cref="StoreRows.ToPage{T}"/>).
    /// </summary>
    private static string PageQuery(string columns, string table, string filter, PageRequest page) =>
        page.Before is not null
            ? $"SELECT {columns} FROM {table} WHERE {filter} AND rowid > (SELECT rowid FROM {table} WHERE id = $before) ORDER BY rowid LIMIT $limit"
            : page.OldestFirst
                ? $"SELECT {columns} FROM {table} WHERE {filter} AND ($after IS NULL OR rowid > (SELECT rowid FROM {table} WHERE id = $after)) ORDER BY rowid LIMIT $limit"
                : $"SELECT {columns} FROM {table} WHERE {filter} AND ($after IS NULL OR rowid < (SELECT rowid FROM {table} WHERE id = $after)) ORDER BY rowid DESC LIMIT $limit";

    /// <summary>
    /// Updates the items of one batch that match <paramref name="filter"/>, 20,000 lines per statement,
    /// all in the caller's transaction; returns how many changed. SQLite keeps a statement's undo
    /// journal in memory, so one statement over a million items would hold tens of megabytes at once.
    /// </summary>
    private static int UpdateItemsInSteps(SqliteConnection writer, SqliteTransaction tx, string batchId, string set, string filter, params (string Name, object? Value)[] parameters)
    {
        const long Step = 20_000;
        var last = Scalar(writer, "SELECT MAX(line) FROM items WHERE batch_id = $id", tx, ("$id", batchId)) is long max ? max : 0;
        var changed = 0;
        for (var from = 0L; from < last; from += Step)
        {
            changed += Execute(writer, $"UPDATE items SET {set} WHERE batch_id = $id AND line > $from AND line <= $to AND {filter}", tx,
                [("$id", batchId), ("$from", from), ("$to", from + Step), .. parameters]);
        }

        return changed;
    }

    private async Task DeleteItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        // Small transactions, so a large rejected batch never holds the writer for long.
        while (await WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            Execute(writer, StoreSql.DeleteChunkOfAnswers, tx, ("@batch", batchId));
            var deleted = Execute(writer, StoreSql.DeleteChunkOfItems, tx, ("@batch", batchId));
            tx.Commit();
            return deleted;
        }, cancellationToken) > 0)
        {
        }
    }

    private async Task<T> WriteAsync<T>(Func<SqliteConnection, T> write, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            var writer = _writer ?? throw new InvalidOperationException("The store is not initialised.");
            return write(writer);
        }
        catch (SqliteException ex)
        {
            throw new StoreException($"The state file {_options.Path} could not be written: {ex.Message}", ex);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>The write connection's prepared statement for <paramref name="sql"/>; call under the write lock.</summary>
    private SqliteStatement Prepared(SqliteConnection writer, string sql)
    {
        if (!_prepared.TryGetValue(sql, out var statement))
        {
            statement = SqliteStatement.Prepare(writer, sql);
            _prepared.Add(sql, statement);
        }

        return statement;
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            connection.Open();
            // NORMAL is durable against a killed process in WAL mode; only a power loss can take the last commits.
            Execute(connection, $"PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {(int)_options.BusyTimeout.TotalMilliseconds}; PRAGMA temp_store = MEMORY;");
            return connection;
        }
        catch (SqliteException ex)
        {
            connection.Dispose();
            throw new StoreException($"The state file {_options.Path} could not be opened: {ex.Message}", ex);
        }
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Reads every row of <paramref name="sql"/> on a pooled connection of its own.</summary>
    private async Task<List<T>> QueryAsync<T>(string sql, Func<System.Data.Common.DbDataReader, T> read, params (string Name, object? Value)[] parameters)
    {
        await using var connection = Open();
        return Query(connection, read, sql, parameters);
    }

    private static List<BatchRecord> ReadBatches(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters) =>
        Query(connection, StoreRows.ReadBatch, sql, parameters);

    /// <summary>Reads every row of <paramref name="sql"/>, each as <paramref name="read"/> makes it.</summary>
    private static List<T> Query<T>(SqliteConnection connection, Func<System.Data.Common.DbDataReader, T> read, string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        Bind(command, parameters);
        using var reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    private static SqliteCommand Prepare(SqliteConnection connection, SqliteTransaction tx, string sql, params (string Name, SqliteType Type)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        foreach (var (name, type) in parameters)
        {
            command.Parameters.Add(name, type);
        }

        return command;
    }

    private static int Execute(SqliteConnection connection, string sql, SqliteTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        Bind(command, parameters);
        return command.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection connection, string sql, SqliteTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        Bind(command, parameters);
        return command.ExecuteScalar();
    }

    private static void Bind(SqliteCommand command, (string Name, object? Value)[] parameters)
    {
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
    }
}
