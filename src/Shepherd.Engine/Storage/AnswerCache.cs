using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Storage;

/// <summary>A successful answer as the cache keeps it: what the provider sent back, and its tokens.</summary>
/// <param name="StatusCode">The HTTP status of the answer.</param>
/// <param name="Body">The answer body.</param>
/// <param name="InputTokens">Input tokens the provider reported.</param>
/// <param name="OutputTokens">Output tokens the provider reported.</param>
/// <param name="CachedTokens">Of the input, tokens the provider read from its own cache.</param>
public sealed record CachedAnswer(int StatusCode, byte[] Body, int InputTokens, int OutputTokens, int CachedTokens);

/// <summary>What a cache holds.</summary>
/// <param name="Entries">Answers kept.</param>
/// <param name="Bytes">Their bodies' size.</param>
/// <param name="Oldest">When the oldest was kept; null when empty.</param>
public sealed record AnswerCacheStats(long Entries, long Bytes, DateTimeOffset? Oldest);

/// <summary>
/// Answers kept across runs and batches, by a key derived from what the provider sees (its kind,
/// the endpoint, and the body as sent), in a SQLite file of their own (WAL mode, each write a
/// transaction, so a crash never leaves half an entry). Lookups come in chunks, one query each;
/// answers to keep are written behind, in groups. The cache stays within its size, dropping the
/// answers used longest ago first, and an answer older than its age limit is neither used nor kept.
/// Memory stays flat whatever the file holds: nothing is held but what is about to be written.
/// </summary>
public sealed class AnswerCache : IAsyncDisposable
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS answers (
            key TEXT PRIMARY KEY,
            status INTEGER NOT NULL,
            body BLOB NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            used_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS ix_answers_used ON answers (used_at);
        """;

    /// <summary>How long the writer gathers answers before it writes them.</summary>
    private static readonly TimeSpan WriteGathering = TimeSpan.FromMilliseconds(50);

    private static readonly string[] InsertParameters = ["$key", "$status", "$body", "$in", "$out", "$cached", "$bytes", "$now"];

    private readonly string _connectionString;
    private readonly TimeProvider _time;
    private readonly Channel<(string Key, CachedAnswer Answer, long At)> _pending = Channel.CreateBounded<(string, CachedAnswer, long)>(
        new BoundedChannelOptions(10_000) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly SemaphoreSlim _write = new(1, 1);
    private Task _writer = Task.CompletedTask;
    private SqliteConnection? _connection;
    private long _bytes;

    private AnswerCache(string path, long maxBytes, TimeSpan maxAge, TimeProvider time)
    {
        Path = path;
        MaxBytes = maxBytes;
        MaxAge = maxAge;
        _time = time;
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = true, DefaultTimeout = 30 }.ToString();
    }

    /// <summary>Where the cache's file is.</summary>
    public string Path { get; }

    /// <summary>The most bytes of answer bodies kept.</summary>
    public long MaxBytes { get; }

    /// <summary>How long an answer is kept.</summary>
    public TimeSpan MaxAge { get; }

    /// <summary>Opens (or makes) the cache at <paramref name="path"/>.</summary>
    public static async Task<AnswerCache> OpenAsync(string path, long maxBytes, TimeSpan maxAge, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxAge, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(time);
        if (System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) is { } folder)
        {
            Directory.CreateDirectory(folder);
        }

        var cache = new AnswerCache(path, maxBytes, maxAge, time);
        // One connection writes, kept open: a cache's writes need not wait for the disk each time
        // (synchronous NORMAL keeps WAL consistent; a power cut may lose the last answers, never half one).
        var connection = await cache.OpenConnectionAsync(cancellationToken);
        cache._connection = connection;
        await ExecuteAsync(connection, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;", cancellationToken);
        await ExecuteAsync(connection, Schema, cancellationToken);
        cache._bytes = Convert.ToInt64(await ScalarAsync(connection, "SELECT COALESCE(SUM(bytes), 0) FROM answers", cancellationToken), CultureInfo.InvariantCulture);
        cache._writer = Task.Run(cache.WriteBehindAsync, CancellationToken.None);
        return cache;
    }

    /// <summary>
    /// The key of a request: the provider's kind, the endpoint and the body as sent, within
    /// <paramref name="tenant"/>'s keys (null for a node without tenants), so that no tenant is
    /// ever answered with another's answers. A request that asks for sampling has a key like any
    /// other: its answer is replayed, not drawn again.
    /// </summary>
    public static string KeyOf(UpstreamKind kind, string? tenant, string endpoint, ReadOnlySpan<byte> body)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        if (tenant is not null)
        {
            // Length first: no tenant's name can run into the next line and pass for another's.
            hash.AppendData(Encoding.UTF8.GetBytes($"tenant {Encoding.UTF8.GetByteCount(tenant)} {tenant}\n"));
        }

        hash.AppendData(Encoding.UTF8.GetBytes($"{(kind == UpstreamKind.Anthropic ? "anthropic" : "openai")}\n{endpoint}\n"));
        hash.AppendData(body);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The kept answers of <paramref name="keys"/> that are young enough, by key; each found is marked as just used.</summary>
    public async Task<IReadOnlyDictionary<string, CachedAnswer>> FindAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var found = new Dictionary<string, CachedAnswer>(StringComparer.Ordinal);
        if (keys.Count == 0)
        {
            return found;
        }

        var now = _time.GetUtcNow();
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT key, status, body, input_tokens, output_tokens, cached_tokens FROM answers
                WHERE key IN (SELECT value FROM json_each($keys)) AND created_at >= $oldest
                """;
            command.Parameters.AddWithValue("$keys", JsonList(keys));
            command.Parameters.AddWithValue("$oldest", (now - MaxAge).ToUnixTimeMilliseconds());
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                found[reader.GetString(0)] = new CachedAnswer(reader.GetInt32(1), (byte[])reader.GetValue(2), reader.GetInt32(3), reader.GetInt32(4), reader.GetInt32(5));
            }
        }

        if (found.Count > 0)
        {
            await WriteAsync(async write =>
            {
                await using var touch = write.CreateCommand();
                touch.CommandText = "UPDATE answers SET used_at = $now WHERE key IN (SELECT value FROM json_each($keys))";
                touch.Parameters.AddWithValue("$now", now.ToUnixTimeMilliseconds());
                touch.Parameters.AddWithValue("$keys", JsonList(found.Keys));
                return await touch.ExecuteNonQueryAsync(cancellationToken);
            }, cancellationToken);
        }

        return found;
    }

    /// <summary>Keeps an answer, written behind with others; one that does not fit while many wait is not kept.</summary>
    public void Add(string key, CachedAnswer answer)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(answer);
        _pending.Writer.TryWrite((key, answer, _time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    /// <summary>What the cache holds now.</summary>
    public async Task<AnswerCacheStats> StatsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created_at) FROM answers";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new AnswerCacheStats(reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)));
    }

    /// <summary>Removes the answers older than the age limit, then the ones used longest ago until the cache is within its size; returns how many went.</summary>
    public Task<long> PruneAsync(CancellationToken cancellationToken) =>
        WriteAsync(async connection =>
        {
            await using var expired = connection.CreateCommand();
            expired.CommandText = "DELETE FROM answers WHERE created_at < $oldest";
            expired.Parameters.AddWithValue("$oldest", (_time.GetUtcNow() - MaxAge).ToUnixTimeMilliseconds());
            var removed = (long)await expired.ExecuteNonQueryAsync(cancellationToken);
            _bytes = Convert.ToInt64(await ScalarAsync(connection, "SELECT COALESCE(SUM(bytes), 0) FROM answers", cancellationToken), CultureInfo.InvariantCulture);
            return removed + await EvictAsync(connection, cancellationToken);
        }, cancellationToken);

    /// <summary>Removes every answer; returns how many there were.</summary>
    public Task<long> ClearAsync(CancellationToken cancellationToken) =>
        WriteAsync(async connection =>
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM answers";
            var removed = await command.ExecuteNonQueryAsync(cancellationToken);
            _bytes = 0;
            await ExecuteAsync(connection, "VACUUM", cancellationToken);
            return (long)removed;
        }, cancellationToken);

    /// <summary>Writes what waits to be kept, then stops writing.</summary>
    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();
        await _writer;
        if (_connection is { } connection)
        {
            await connection.DisposeAsync();
        }

        _write.Dispose();
    }

    private async Task WriteBehindAsync()
    {
        var reader = _pending.Reader;
        var group = new List<(string Key, CachedAnswer Answer, long At)>();
        while (await reader.WaitToReadAsync())
        {
            // A moment for more to come: a few large transactions cost the sender less than many small ones.
            await Task.Delay(WriteGathering, TimeProvider.System);
            do
            {
                group.Clear();
                while (group.Count < 2000 && reader.TryRead(out var entry))
                {
                    group.Add(entry);
                }

                try
                {
                    await WriteAsync(connection => InsertAsync(connection, group), CancellationToken.None);
                }
                catch (SqliteException)
                {
                    // A cache that cannot be written only misses: the answers are in the batch's own store.
                }
            }
            while (group.Count == 2000);
        }
    }

    private async Task<long> InsertAsync(SqliteConnection connection, List<(string Key, CachedAnswer Answer, long At)> group)
    {
        await using (var tx = (SqliteTransaction)await connection.BeginTransactionAsync())
        {
            await using var insert = connection.CreateCommand();
            insert.Transaction = tx;
            insert.CommandText = """
                INSERT INTO answers (key, status, body, input_tokens, output_tokens, cached_tokens, bytes, created_at, used_at)
                VALUES ($key, $status, $body, $in, $out, $cached, $bytes, $now, $now)
                ON CONFLICT (key) DO NOTHING
                """;
            var parameters = InsertParameters.Select(name => insert.Parameters.AddWithValue(name, DBNull.Value)).ToArray();
            insert.Prepare();
            foreach (var (key, answer, at) in group)
            {
                object[] values = [key, answer.StatusCode, answer.Body, answer.InputTokens, answer.OutputTokens, answer.CachedTokens, answer.Body.LongLength, at];
                for (var i = 0; i < values.Length; i++)
                {
                    parameters[i].Value = values[i];
                }

                // Synchronous: SQLite's work is on this thread either way, without a task per row.
                if (insert.ExecuteNonQuery() == 1)
                {
                    _bytes += answer.Body.LongLength;
                }
            }

            await tx.CommitAsync();
        }

        return await EvictAsync(connection, CancellationToken.None);
    }

    /// <summary>Drops the answers used longest ago until the cache holds at most nine tenths of its size, when it holds more than its size.</summary>
    private async Task<long> EvictAsync(SqliteConnection connection, CancellationToken cancellationToken)
    {
        long removed = 0;
        var target = MaxBytes * 9 / 10;
        while (_bytes > MaxBytes || (removed > 0 && _bytes > target))
        {
            var victims = new List<string>();
            var freed = 0L;
            await using (var oldest = connection.CreateCommand())
            {
                oldest.CommandText = "SELECT key, bytes FROM answers ORDER BY used_at, created_at LIMIT 1000";
                await using var reader = await oldest.ExecuteReaderAsync(cancellationToken);
                while (_bytes - freed > target && await reader.ReadAsync(cancellationToken))
                {
                    victims.Add(reader.GetString(0));
                    freed += reader.GetInt64(1);
                }
            }

            if (victims.Count == 0)
            {
                break;
            }

            await using var delete = connection.CreateCommand();
            delete.CommandText = "DELETE FROM answers WHERE key IN (SELECT value FROM json_each($keys))";
            delete.Parameters.AddWithValue("$keys", JsonList(victims));
            await delete.ExecuteNonQueryAsync(cancellationToken);
            _bytes -= freed;
            removed += victims.Count;
        }

        return removed;
    }

    private async Task<T> WriteAsync<T>(Func<SqliteConnection, Task<T>> write, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken);
        try
        {
            return await write(_connection!);
        }
        finally
        {
            _write.Release();
        }
    }

    private async Task<SqliteConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>Keys as a JSON array, for <c>json_each</c>: one parameter however many keys (they are hex, so need no escaping).</summary>
    private static string JsonList(IEnumerable<string> keys) => "[\"" + string.Join("\",\"", keys) + "\"]";

    private static async Task ExecuteAsync(SqliteConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<object?> ScalarAsync(SqliteConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return await command.ExecuteScalarAsync(cancellationToken);
    }
}
