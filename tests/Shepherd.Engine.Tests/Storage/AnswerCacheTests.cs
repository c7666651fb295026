using System.Text;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The answer cache: keyed by what the provider sees, bounded by size (least recently used first) and by age, and written behind.</summary>
public sealed class AnswerCacheTests : IDisposable
{
    private readonly TempDirectory _folder = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    private static CachedAnswer Answer(int size) => new(200, Encoding.UTF8.GetBytes(new string('x', size)), 10, 5, 0);

    private Task<AnswerCache> OpenAsync(long maxBytes = 1 << 20, TimeSpan? maxAge = null) =>
        AnswerCache.OpenAsync(_folder.File("answers.db"), maxBytes, maxAge ?? TimeSpan.FromDays(30), _time, Ct);

    [Fact]
    public void TheKey_IsWhatTheProviderSees_TheKindTheEndpointAndTheBody()
    {
        var body = """{"model":"m","messages":[]}"""u8.ToArray();

        var key = AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", body);

        Assert.Equal(key, AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", body));
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.Anthropic, null, "/v1/chat/completions", body));
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/completions", body));
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", """{"model":"m2","messages":[]}"""u8.ToArray()));
    }

    [Fact]
    public void ATenantsKeys_AreItsOwn()
    {
        var body = """{"model":"m","messages":[]}"""u8.ToArray();

        var acme = AnswerCache.KeyOf(UpstreamKind.OpenAI, "acme", "/v1/chat/completions", body);

        Assert.Equal(acme, AnswerCache.KeyOf(UpstreamKind.OpenAI, "acme", "/v1/chat/completions", body));
        Assert.NotEqual(acme, AnswerCache.KeyOf(UpstreamKind.OpenAI, "globex", "/v1/chat/completions", body));
        Assert.NotEqual(acme, AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", body));
        // A name that holds what follows it in the key is still its own tenant.
        Assert.NotEqual(
            AnswerCache.KeyOf(UpstreamKind.OpenAI, "a\nopenai", "/v1/chat/completions", body),
            AnswerCache.KeyOf(UpstreamKind.OpenAI, "a", "/v1/chat/completions", body));
    }

    [Fact]
    public async Task AnAnswerKept_IsFoundAgain_AfterTheCacheIsOpenedAgain()
    {
        await using (var cache = await OpenAsync())
        {
            cache.Add("a", Answer(10));
            cache.Add("b", Answer(20));
        }

        await using var reopened = await OpenAsync();
        var found = await reopened.FindAsync(["a", "b", "c"], Ct);

        Assert.Equal(["a", "b"], found.Keys.Order());
        Assert.Equal((200, 20, 10, 5), (found["b"].StatusCode, found["b"].Body.Length, found["b"].InputTokens, found["b"].OutputTokens));
        Assert.Equal(new AnswerCacheStats(2, 30, _time.GetUtcNow()), await reopened.StatsAsync(Ct));
    }

    [Fact]
    public async Task OverItsSize_TheAnswersUsedLongestAgoGoFirst()
    {
        await using (var cache = await OpenAsync(maxBytes: 1000))
        {
            foreach (var key in new[] { "a", "b", "c" })
            {
                cache.Add(key, Answer(300));
                _time.Advance(TimeSpan.FromMinutes(1));
            }
        }

        await using (var cache = await OpenAsync(maxBytes: 1000))
        {
            // "a" is used again, so "b" is now the one used longest ago.
            Assert.Single(await cache.FindAsync(["a"], Ct));
            _time.Advance(TimeSpan.FromMinutes(1));
            cache.Add("d", Answer(300));
        }

        await using var reopened = await OpenAsync(maxBytes: 1000);
        Assert.Equal(["a", "c", "d"], (await reopened.FindAsync(["a", "b", "c", "d"], Ct)).Keys.Order());
        Assert.True((await reopened.StatsAsync(Ct)).Bytes <= 1000);
    }

    [Fact]
    public async Task AnAnswerPastItsAge_IsNotUsed_AndPruneAndClearRemoveWhatTheySay()
    {
        await using var cache = await OpenAsync(maxAge: TimeSpan.FromDays(1));
        cache.Add("old", Answer(10));
        await using (var flush = await OpenAsync(maxAge: TimeSpan.FromDays(1)))
        {
            // Another handle: the first writes behind, so wait for its write to be visible.
            await Poll.UntilAsync(async () => (await flush.StatsAsync(Ct)).Entries == 1, TimeSpan.FromSeconds(10), Ct);
        }

        _time.Advance(TimeSpan.FromDays(2));
        cache.Add("new", Answer(10));

        Assert.Empty(await cache.FindAsync(["old"], Ct));
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 2, TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(1, await cache.PruneAsync(Ct));
        Assert.Equal(["new"], (await cache.FindAsync(["old", "new"], Ct)).Keys);
        Assert.Equal(1, await cache.ClearAsync(Ct));
        Assert.Equal(0, (await cache.StatsAsync(Ct)).Entries);
    }
}
