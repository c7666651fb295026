using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The answer cache contract in a PostgreSQL database: a fresh database on the test cluster per test, each handle a node.</summary>
public sealed class PostgresAnswerCacheTests : AnswerCacheContract
{
    private string _database = "";

    public override async ValueTask InitializeAsync()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        _database = await PostgresCluster.CreateDatabaseAsync(Ct);
    }

    protected override async Task<AnswerCache> OpenAsync(long maxBytes = 1 << 20, TimeSpan? maxAge = null) =>
        await PostgresAnswerCache.OpenAsync(_database, maxBytes, maxAge ?? TimeSpan.FromDays(30), Time, Ct);

    [Fact]
    public async Task NodesOpeningTogether_MakeTheTableOnce()
    {
        var caches = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => OpenAsync()));
        caches[0].Add(Key("a"), Answer(10));
        await Poll.UntilAsync(async () => (await caches[3].FindAsync([Key("a")], Ct)).Count == 1, TimeSpan.FromSeconds(10), Ct);

        foreach (var cache in caches)
        {
            await cache.DisposeAsync();
        }

        Assert.StartsWith("PostgreSQL at ", caches[0].Where, StringComparison.Ordinal);
    }
}
