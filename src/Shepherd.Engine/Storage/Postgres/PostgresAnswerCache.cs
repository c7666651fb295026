using Npgsql;
using NpgsqlTypes;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The answer cache in a table of a PostgreSQL database (<c>answer_cache</c>), shared by every node
/// that opens it there: an answer one node keeps, the others find. Keys are kept as their 32 bytes;
/// each group of answers is inserted in one statement and one transaction. One node at a time evicts
/// (a transaction-scoped advisory lock): the others skip eviction while it does and read the size
/// again before they next evict. How far the table may outgrow its cap: see <see cref="AnswerCache"/>.
/// </summary>
public sealed class PostgresAnswerCache : AnswerCache
{
    /// <summary>Taken while the table is made, and while one node evicts: the bytes of "answers".</summary>
    private const long Lock = 0x616e7377657273;

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS answer_cache (
            key bytea NOT NULL PRIMARY KEY,
            status integer NOT NULL,
            input_tokens integer NOT NULL,
            output_tokens integer NOT NULL,
            cached_tokens integer NOT NULL,
            bytes bigint NOT NULL,
            created_at bigint NOT NULL,
            used_at bigint NOT NULL,
            body bytea NOT NULL
        );
        CREATE INDEX IF NOT EXISTS ix_answer_cache_used ON answer_cache (used_at, created_at) INCLUDE (bytes);
        """;

    private const string Insert = """
        INSERT INTO answer_cache (key, status, input_tokens, output_tokens, cached_tokens, bytes, created_at, used_at, body)
        SELECT k, s, i, o, c, length(b), a, a, b FROM unnest(@keys, @statuses, @inputs, @outputs, @cached, @at, @bodies) AS u (k, s, i, o, c, a, b)
        ON CONFLICT (key) DO NOTHING
        RETURNING bytes
        """;

    private const string RemoveOldest = """
        DELETE FROM answer_cache WHERE key IN (
            SELECT key FROM (
                SELECT key, bytes, SUM(bytes) OVER (ORDER BY used_at, created_at, key) AS running
                FROM (SELECT key, bytes, used_at, created_at FROM answer_cache ORDER BY used_at, created_at LIMIT 1000) AS oldest) AS r
            WHERE running - bytes < @bytes)
        RETURNING bytes
        """;

    /// <summary>Keys and bodies go as arrays of <c>bytea</c>.</summary>
    private const NpgsqlDbType Bytes = NpgsqlDbType.Array | NpgsqlDbType.Bytea;

    private readonly NpgsqlDataSource _data;
    private readonly bool _ownsData;

    private PostgresAnswerCache(NpgsqlDataSource data, bool ownsData, long maxBytes, TimeSpan maxAge, TimeProvider time)
        : base(Describe(data), maxBytes, maxAge, time)
    {
        _data = data;
        _ownsData = ownsData;
    }

    /// <summary>Opens (or makes) the cache in the database <paramref name="connectionString"/> names.</summary>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <param name="maxBytes">The most bytes of answer bodies kept, by all the nodes together.</param>
    /// <param name="maxAge">How long an answer is kept.</param>
    /// <param name="time">The clock of ages and uses.</param>
    /// <param name="cancellationToken">Stops the opening.</param>
    /// <returns>The cache, writing behind.</returns>
    public static Task<PostgresAnswerCache> OpenAsync(string connectionString, long maxBytes, TimeSpan maxAge, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return StartAsync(new PostgresAnswerCache(NpgsqlDataSource.Create(connectionString), ownsData: true, maxBytes, maxAge, time), cancellationToken);
    }

    /// <summary>Opens (or makes) the cache in the database of a shared store (its connection string in either form it takes).</summary>
    /// <param name="store">The shared store whose database holds the cache.</param>
    /// <param name="maxBytes">The most bytes of answer bodies kept, by all the nodes together.</param>
    /// <param name="maxAge">How long an answer is kept.</param>
    /// <param name="time">The clock of ages and uses.</param>
    /// <param name="cancellationToken">Stops the opening.</param>
    /// <returns>The cache, writing behind.</returns>
    public static Task<PostgresAnswerCache> OpenAsync(PostgresStoreOptions store, long maxBytes, TimeSpan maxAge, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        return OpenAsync(store.NpgsqlConnectionString(), maxBytes, maxAge, time, cancellationToken);
    }

    /// <summary>Opens (or makes) the cache in the database of <paramref name="data"/>, which stays the caller's to dispose of.</summary>
    /// <param name="data">Connections to the database.</param>
    /// <param name="maxBytes">The most bytes of answer bodies kept, by all the nodes together.</param>
    /// <param name="maxAge">How long an answer is kept.</param>
    /// <param name="time">The clock of ages and uses.</param>
    /// <param name="cancellationToken">Stops the opening.</param>
    /// <returns>The cache, writing behind.</returns>
    public static Task<PostgresAnswerCache> OpenAsync(NpgsqlDataSource data, long maxBytes, TimeSpan maxAge, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(data);
        return StartAsync(new PostgresAnswerCache(data, ownsData: false, maxBytes, maxAge, time), cancellationToken);
    }

    /// <inheritdoc />
    public override async Task<AnswerCacheStats> StatsAsync(CancellationToken cancellationToken)
    {
        await using var command = _data.CreateCommand("SELECT COUNT(*), COALESCE(SUM(bytes), 0)::bigint, MIN(created_at) FROM answer_cache");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new AnswerCacheStats(reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)));
    }

    /// <inheritdoc />
    protected override Task PrepareAsync(CancellationToken cancellationToken) =>
        // Nodes that start together make the table one at a time: CREATE … IF NOT EXISTS alone may race.
        InTransactionAsync(async (connection, tx) =>
        {
            await using var command = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@lock); " + Schema, connection, tx);
            command.Parameters.AddWithValue("lock", Lock);
            return await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);

    /// <inheritdoc />
    protected override async Task<Dictionary<string, CachedAnswer>> LookUpAsync(IReadOnlyCollection<string> keys, long oldest, CancellationToken cancellationToken)
    {
        await using var command = _data.CreateCommand("""
            SELECT key, status, body, input_tokens, output_tokens, cached_tokens FROM answer_cache
            WHERE key = ANY(@keys) AND created_at >= @oldest
            """);
        command.Parameters.AddWithValue("keys", Bytes, keys.Select(Convert.FromHexString).ToArray());
        command.Parameters.AddWithValue("oldest", oldest);
        var found = new Dictionary<string, CachedAnswer>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            found[Convert.ToHexStringLower(reader.GetFieldValue<byte[]>(0))] = new CachedAnswer(reader.GetInt32(1), reader.GetFieldValue<byte[]>(2), reader.GetInt32(3), reader.GetInt32(4), reader.GetInt32(5));
        }

        return found;
    }

    /// <inheritdoc />
    protected override Task<long> WriteAsync(IReadOnlyList<KeptAnswer> answers, IReadOnlyCollection<string> used, long usedAt) =>
        InTransactionAsync(async (connection, tx) =>
        {
            long added = 0;
            if (answers.Count > 0)
            {
                await using var insert = new NpgsqlCommand(Insert, connection, tx);
                insert.Parameters.AddWithValue("keys", Bytes, answers.Select(a => Convert.FromHexString(a.Key)).ToArray());
                insert.Parameters.AddWithValue("statuses", answers.Select(a => a.Answer.StatusCode).ToArray());
                insert.Parameters.AddWithValue("inputs", answers.Select(a => a.Answer.InputTokens).ToArray());
                insert.Parameters.AddWithValue("outputs", answers.Select(a => a.Answer.OutputTokens).ToArray());
                insert.Parameters.AddWithValue("cached", answers.Select(a => a.Answer.CachedTokens).ToArray());
                insert.Parameters.AddWithValue("at", answers.Select(a => a.At).ToArray());
                insert.Parameters.AddWithValue("bodies", Bytes, answers.Select(a => a.Answer.Body).ToArray());
                await using var reader = await insert.ExecuteReaderAsync();
                while (await reader.ReadAsync())
                {
                    added += reader.GetInt64(0);
                }
            }

            if (used.Count > 0)
            {
                await using var touch = new NpgsqlCommand("UPDATE answer_cache SET used_at = GREATEST(used_at, @at) WHERE key = ANY(@keys)", connection, tx);
                touch.Parameters.AddWithValue("at", usedAt);
                touch.Parameters.AddWithValue("keys", Bytes, used.Select(Convert.FromHexString).ToArray());
                await touch.ExecuteNonQueryAsync();
            }

            return added;
        }, CancellationToken.None);

    /// <inheritdoc />
    protected override async Task<long> SizeAsync(CancellationToken cancellationToken)
    {
        await using var command = _data.CreateCommand("SELECT COALESCE(SUM(bytes), 0)::bigint FROM answer_cache");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <inheritdoc />
    protected override Task<(long Removed, long Bytes)> RemoveLeastRecentlyUsedAsync(long bytes, CancellationToken cancellationToken) =>
        InTransactionAsync(async (connection, tx) =>
        {
            await using (var locking = new NpgsqlCommand("SELECT pg_try_advisory_xact_lock(@lock)", connection, tx))
            {
                locking.Parameters.AddWithValue("lock", Lock);
                if (!(bool)(await locking.ExecuteScalarAsync(cancellationToken))!)
                {
                    // Another node is evicting: it reads the size first, so it frees what this one would.
                    return (0L, 0L);
                }
            }

            await using var remove = new NpgsqlCommand(RemoveOldest, connection, tx);
            remove.Parameters.AddWithValue("bytes", bytes);
            await using var reader = await remove.ExecuteReaderAsync(cancellationToken);
            return await CountRemovedAsync(reader, cancellationToken);
        }, cancellationToken);

    /// <inheritdoc />
    protected override async Task<long> RemoveOlderThanAsync(long oldest, CancellationToken cancellationToken)
    {
        await using var command = _data.CreateCommand("DELETE FROM answer_cache WHERE created_at < @oldest");
        command.Parameters.AddWithValue("oldest", oldest);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <inheritdoc />
    protected override async Task<long> RemoveAllAsync(CancellationToken cancellationToken)
    {
        await using var command = _data.CreateCommand("DELETE FROM answer_cache");
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeStorageAsync()
    {
        if (_ownsData)
        {
            await _data.DisposeAsync();
        }
    }

    private static string Describe(NpgsqlDataSource data)
    {
        var builder = new NpgsqlConnectionStringBuilder(data.ConnectionString);
        return $"PostgreSQL at {builder.Host}:{builder.Port}/{builder.Database}";
    }

    private async Task<T> InTransactionAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<T>> work, CancellationToken cancellationToken)
    {
        await using var connection = await _data.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        var result = await work(connection, tx);
        await tx.CommitAsync(cancellationToken);
        return result;
    }
}
