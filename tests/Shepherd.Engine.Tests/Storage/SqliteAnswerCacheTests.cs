using Microsoft.Data.Sqlite;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The answer cache contract on a SQLite file.</summary>
public sealed class SqliteAnswerCacheTests : AnswerCacheContract
{
    private readonly TempDirectory _folder = new();

    private string CachePath => _folder.File("answers.db");

    public override ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        SqliteConnection.ClearAllPools();
        _folder.Dispose();
    }

    protected override async Task<AnswerCache> OpenAsync(long maxBytes = 1 << 20, TimeSpan? maxAge = null) =>
        await SqliteAnswerCache.OpenAsync(CachePath, maxBytes, maxAge ?? TimeSpan.FromDays(30), Time, Ct);

    [Fact]
    public async Task TheAnswersOfTheFirstCaches_KeyedByHexText_AreKeptOnOpen()
    {
        await using (var connection = new SqliteConnection($"Data Source={CachePath};Pooling=False"))
        {
            await connection.OpenAsync(Ct);
            await using var command = connection.CreateCommand();
            command.CommandText = $"""
                CREATE TABLE answers (key TEXT PRIMARY KEY, status INTEGER NOT NULL, body BLOB NOT NULL, input_tokens INTEGER NOT NULL,
                    output_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, used_at INTEGER NOT NULL);
                INSERT INTO answers VALUES ('{Key("a")}', 200, x'7878', 10, 5, 0, 2, {Time.GetUtcNow().ToUnixTimeMilliseconds()}, 0);
                """;
            await command.ExecuteNonQueryAsync(Ct);
        }

        await using var cache = await OpenAsync();

        Assert.Equal("xx"u8.ToArray(), (await cache.FindAsync([Key("a")], Ct))[Key("a")].Body);
        Assert.Equal(1, (await cache.StatsAsync(Ct)).Entries);
    }
}
