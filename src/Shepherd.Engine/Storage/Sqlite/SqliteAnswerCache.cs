using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The answer cache in a SQLite file of its own (WAL mode, <c>synchronous = NORMAL</c>: a power cut
/// may lose the last answers, never half of one), for the runs of one user. Keys are kept as their 32
/// bytes. One connection writes, kept open, its statements prepared once; lookups read on connections of their own.
/// </summary>
public sealed class SqliteAnswerCache : AnswerCache
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS answer_cache (
            key BLOB NOT NULL PRIMARY KEY,
            status INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            used_at INTEGER NOT NULL,
            body BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS ix_answer_cache_used ON answer_cache (used_at, created_at, bytes);
        """;

    /// <summary>The table of the first caches, keyed by hex text: its answers move to the new one on open.</summary>
    private const string MoveFromFirstTable = """
        INSERT OR IGNORE INTO answer_cache (key, status, input_tokens, output_tokens, cached_tokens, bytes, created_at, used_at, body)
        SELECT unhex(key), status, input_tokens, output_tokens, cached_tokens, bytes, created_at, used_at, body
        FROM answers WHERE length(key) = 64 AND unhex(key) IS NOT NULL;
        DROP TABLE answers;
        """;

    private const string Insert = """
        INSERT INTO answer_cache (key, status, input_tokens, output_tokens, cached_tokens, bytes, created_at, used_at, body)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
        ON CONFLICT (key) DO NOTHING
        """;

    private const string Touch = "UPDATE answer_cache SET used_at = ?1 WHERE key = ?2";

    private const string Find = "SELECT status, body, input_tokens, output_tokens, cached_tokens FROM answer_cache WHERE key = ?1 AND created_at >= ?2";

    private const string RemoveOldest = """
        DELETE FROM answer_cache WHERE key IN (
            SELECT key FROM (
                SELECT key, bytes, SUM(bytes) OVER (ORDER BY used_at, created_at, key) AS running
                FROM (SELECT key, bytes, used_at, created_at FROM answer_cache ORDER BY used_at, created_at LIMIT 1000))
            WHERE running - bytes < $bytes)
        RETURNING bytes
        """;

    private readonly string _connectionString;
    private SqliteConnection? _write;
    private SqliteStatement? _insert;
    private SqliteStatement? _touch;

    /// <summary>The connection lookups read on, kept open with its statement prepared; one lookup at a time.</summary>
    private SqliteConnection? _read;
    private SqliteStatement? _find;
    private readonly SemaphoreSlim _reading = new(1, 1);

    private SqliteAnswerCache(string path, long maxBytes, TimeSpan maxAge, TimeProvider time)
        : base(path, maxBytes, maxAge, time) =>
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = true, DefaultTimeout = 30 }.ToString();

    /// <summary>Opens (or makes) the cache at <paramref name="path"/>.</summary>
    /// <param name="path">The cache's file.</param>
    /// <param name="maxBytes">The most bytes of answer bodies kept.</param>
    /// <param name="maxAge">How long an answer is kept.</param>
    /// <param name="time">The clock of ages and uses.</param>
    /// <param name="cancellationToken">Stops the opening.</param>
    /// <returns>The cache, writing behind.</returns>
    public static Task<SqliteAnswerCache> OpenAsync(string path, long maxBytes, TimeSpan maxAge, TimeProvider time, CancellationToken cancellationToken) =>
        StartAsync(new SqliteAnswerCache(path, maxBytes, maxAge, time), cancellationToken);

    /// <inheritdoc />
    public override async Task<AnswerCacheStats> StatsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created_at) FROM answer_cache";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new AnswerCacheStats(reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)));
    }

    /// <inheritdoc />
    protected override async Task PrepareAsync(CancellationToken cancellationToken)
    {
        if (System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Where)) is { } folder)
        {
            Directory.CreateDirectory(folder);
        }

        var connection = await OpenConnectionAsync(cancellationToken);
        _write = connection;
        await ExecuteAsync(connection, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;", cancellationToken);
        // One process at a time makes the table (and moves the first table's answers into it).
        await ExecuteAsync(connection, "BEGIN IMMEDIATE;" + Schema, cancellationToken);
        if (await ScalarAsync(connection, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'answers'", cancellationToken) > 0)
        {
            await ExecuteAsync(connection, MoveFromFirstTable, cancellationToken);
        }

        await ExecuteAsync(connection, "COMMIT", cancellationToken);

        _insert = SqliteStatement.Prepare(connection, Insert);
        _touch = SqliteStatement.Prepare(connection, Touch);
        _read = await OpenConnectionAsync(cancellationToken);
        _find = SqliteStatement.Prepare(_read, Find);
    }

    /// <inheritdoc />
    protected override async Task<Dictionary<string, CachedAnswer>> LookUpAsync(IReadOnlyCollection<string> keys, long oldest, CancellationToken cancellationToken)
    {
        var found = new Dictionary<string, CachedAnswer>(StringComparer.Ordinal);
        await _reading.WaitAsync(cancellationToken);
        try
        {
            // One prepared point lookup per key: a search of the key's index, without parsing SQL or a list of keys.
            foreach (var key in keys)
            {
                if (_find!.Bind(1, Convert.FromHexString(key)).Bind(2, oldest).ReadFirst(row =>
                    new CachedAnswer(row.Int32(0), row.Blob(1), row.Int32(2), row.Int32(3), row.Int32(4))) is { } answer)
                {
                    found[key] = answer;
                }
            }
        }
        finally
        {
            _reading.Release();
        }

        return found;
    }

    /// <inheritdoc />
    protected override async Task<long> WriteAsync(IReadOnlyList<KeptAnswer> answers, IReadOnlyCollection<string> used, long usedAt)
    {
        var connection = _write!;
        long added = 0;
        await using var tx = (SqliteTransaction)await connection.BeginTransactionAsync();
        // Synchronous: SQLite's work is on this thread either way, without a task per row.
        foreach (var (key, answer, at) in answers)
        {
            added += _insert!.Bind(1, Convert.FromHexString(key)).Bind(2, answer.StatusCode).Bind(3, answer.InputTokens).Bind(4, answer.OutputTokens)
                .Bind(5, answer.CachedTokens).Bind(6, answer.Body.LongLength).Bind(7, at).Bind(8, answer.Body).Execute() * answer.Body.LongLength;
        }

        foreach (var key in used)
        {
            _touch!.Bind(1, usedAt).Bind(2, Convert.FromHexString(key)).Execute();
        }

        await tx.CommitAsync();
        return added;
    }

    /// <inheritdoc />
    protected override Task<long> SizeAsync(CancellationToken cancellationToken) =>
        ScalarAsync(_write!, "SELECT COALESCE(SUM(bytes), 0) FROM answer_cache", cancellationToken);

    /// <inheritdoc />
    protected override async Task<(long Removed, long Bytes)> RemoveLeastRecentlyUsedAsync(long bytes, CancellationToken cancellationToken)
    {
        await using var command = _write!.CreateCommand();
        command.CommandText = RemoveOldest;
        command.Parameters.AddWithValue("$bytes", bytes);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await CountRemovedAsync(reader, cancellationToken);
    }

    /// <inheritdoc />
    protected override async Task<long> RemoveOlderThanAsync(long oldest, CancellationToken cancellationToken)
    {
        await using var command = _write!.CreateCommand();
        command.CommandText = "DELETE FROM answer_cache WHERE created_at < $oldest";
        command.Parameters.AddWithValue("$oldest", oldest);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <inheritdoc />
    protected override async Task<long> RemoveAllAsync(CancellationToken cancellationToken)
    {
        var removed = await ScalarAsync(_write!, "SELECT COUNT(*) FROM answer_cache", cancellationToken);
        await ExecuteAsync(_write!, "DELETE FROM answer_cache; VACUUM;", cancellationToken);
        return removed;
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeStorageAsync()
    {
        _insert?.Dispose();
        _touch?.Dispose();
        _find?.Dispose();
        foreach (var connection in new[] { _write, _read })
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }
        }

        _reading.Dispose();
    }

    private async Task<SqliteConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    private static async Task ExecuteAsync(SqliteConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<long> ScalarAsync(SqliteConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
    }
}
