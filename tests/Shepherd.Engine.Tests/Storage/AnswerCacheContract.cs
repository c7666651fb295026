using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>
/// The answer cache every backend must be: keyed by what the provider sees, bounded by size (least
/// recently used first) and by age, and written behind. Each backend's suite inherits it.
/// </summary>
public abstract class AnswerCacheContract : IAsyncLifetime
{
    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Makes the storage the test's caches open: a file, a database.</summary>
    public abstract ValueTask InitializeAsync();

    /// <summary>Removes the storage.</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    /// <summary>Opens a cache on the test's storage: each call a new handle on the same answers.</summary>
    protected abstract Task<AnswerCache> OpenAsync(long maxBytes = 1 << 20, TimeSpan? maxAge = null);

    protected static CachedAnswer Answer(int size) => new(200, Encoding.UTF8.GetBytes(new string('x', size)), 10, 5, 0);

    /// <summary>The key of a request whose body is <paramref name="name"/>.</summary>
    protected static string Key(string name) => AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", Encoding.UTF8.GetBytes(name));

    private static async Task<IEnumerable<string>> FoundAsync(AnswerCache cache, params string[] names) =>
        (await cache.FindAsync([.. names.Select(Key)], Ct)).Keys.Select(key => names.Single(name => Key(name) == key)).Order();

    [Fact]
    public void TheKey_IsWhatTheProviderSees_TheKindTheTenantTheEndpointAndTheBody()
    {
        var body = """{"model":"m","messages":[]}"""u8.ToArray();

        var key = AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", body);

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData([.. "openai\n/v1/chat/completions\n"u8, .. body])), key);
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.Anthropic, null, "/v1/chat/completions", body));
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/completions", body));
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", """{"model":"m2","messages":[]}"""u8.ToArray()));
        Assert.NotEqual(key, AnswerCache.KeyOf(UpstreamKind.OpenAI, "acme", "/v1/chat/completions", body));
        Assert.NotEqual(AnswerCache.KeyOf(UpstreamKind.OpenAI, "acme", "/v1/chat/completions", body), AnswerCache.KeyOf(UpstreamKind.OpenAI, "other", "/v1/chat/completions", body));
        // A name that holds what follows it in the key is still its own tenant.
        Assert.NotEqual(AnswerCache.KeyOf(UpstreamKind.OpenAI, "a\nopenai", "/v1/chat/completions", body), AnswerCache.KeyOf(UpstreamKind.OpenAI, "a", "/v1/chat/completions", body));
    }

    [Fact]
    public async Task AKeyNotMadeByKeyOf_IsRefused()
    {
        await using var cache = await OpenAsync();

        Assert.Throws<ArgumentException>(() => cache.Add("a", Answer(1)));
        await Assert.ThrowsAsync<ArgumentException>(() => cache.FindAsync([Key("a").ToUpperInvariant()], Ct));
    }

    [Fact]
    public async Task AnAnswerKept_IsFoundAgain_AfterTheCacheIsOpenedAgain()
    {
        await using (var cache = await OpenAsync())
        {
            cache.Add(Key("a"), Answer(10));
            cache.Add(Key("b"), Answer(20));
            cache.Add(Key("b"), Answer(30));
        }

        await using var reopened = await OpenAsync();
        var found = await reopened.FindAsync([Key("a"), Key("b"), Key("c")], Ct);

        Assert.Equal(["a", "b"], await FoundAsync(reopened, "a", "b", "c"));
        Assert.Equal((200, 20, 10, 5), (found[Key("b")].StatusCode, found[Key("b")].Body.Length, found[Key("b")].InputTokens, found[Key("b")].OutputTokens));
        Assert.Equal(new AnswerCacheStats(2, 30, Time.GetUtcNow()), await reopened.StatsAsync(Ct));
    }

    [Fact]
    public async Task AnAnswerJustAdded_IsFoundBeforeItIsWritten_AndWrittenOnce()
    {
        await using var cache = await OpenAsync();

        cache.Add(Key("a"), Answer(10));
        cache.Add(Key("a"), Answer(99));
        var found = await cache.FindAsync([Key("a"), Key("b")], Ct);

        Assert.Equal(10, Assert.Single(found, pair => pair.Key == Key("a")).Value.Body.Length);
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 1, TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(10, (await cache.FindAsync([Key("a")], Ct))[Key("a")].Body.Length);
    }

    [Fact]
    public async Task OverItsSize_TheAnswersUsedLongestAgoGoFirst()
    {
        await using (var cache = await OpenAsync(maxBytes: 1000))
        {
            foreach (var name in new[] { "a", "b", "c" })
            {
                cache.Add(Key(name), Answer(300));
                Time.Advance(TimeSpan.FromMinutes(1));
            }
        }

        await using (var cache = await OpenAsync(maxBytes: 1000))
        {
            // "a" is used again, so "b" is now the one used longest ago.
            Assert.Equal(["a"], await FoundAsync(cache, "a"));
            Time.Advance(TimeSpan.FromMinutes(1));
            cache.Add(Key("d"), Answer(300));
        }

        await using var reopened = await OpenAsync(maxBytes: 1000);
        Assert.Equal(["a", "c", "d"], await FoundAsync(reopened, "a", "b", "c", "d"));
        Assert.True((await reopened.StatsAsync(Ct)).Bytes <= 1000);
    }

    [Fact]
    public async Task AnAnswerPastItsAge_IsNotUsed_AndPruneAndClearRemoveWhatTheySay()
    {
        await using var cache = await OpenAsync(maxAge: TimeSpan.FromDays(1));
        cache.Add(Key("old"), Answer(10));
        await using (var flush = await OpenAsync(maxAge: TimeSpan.FromDays(1)))
        {
            // Another handle: the first writes behind, so wait for its write to be visible.
            await Poll.UntilAsync(async () => (await flush.StatsAsync(Ct)).Entries == 1, TimeSpan.FromSeconds(10), Ct);
        }

        Time.Advance(TimeSpan.FromDays(2));
        cache.Add(Key("new"), Answer(10));

        Assert.Empty(await FoundAsync(cache, "old"));
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 2, TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(1, await cache.PruneAsync(Ct));
        Assert.Equal(["new"], await FoundAsync(cache, "old", "new"));
        Assert.Equal(1, await cache.ClearAsync(Ct));
        Assert.Equal(0, (await cache.StatsAsync(Ct)).Entries);
    }

    [Fact]
    public async Task TwoHandles_ShareTheAnswers_AndKeepTheCacheWithinItsSize_EachReadingTheSizeTheOtherWrote()
    {
        await using var first = await OpenAsync(maxBytes: 1000);
        await using var second = await OpenAsync(maxBytes: 1000);

        foreach (var name in new[] { "a", "b", "c" })
        {
            first.Add(Key(name), Answer(300));
            Time.Advance(TimeSpan.FromSeconds(1));
        }

        await Poll.UntilAsync(async () => (await second.StatsAsync(Ct)).Entries == 3, TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(["a", "b", "c"], await FoundAsync(second, "a", "b", "c"));

        // The second read the size when it opened (nothing then); past the interval it reads it again before it trusts its estimate.
        Time.Advance(AnswerCache.SizeReading);
        second.Add(Key("d"), Answer(300));
        second.Add(Key("e"), Answer(300));

        // Over the cap, the answers used longest ago go until nine tenths of it are left: "a" and "b".
        await Poll.UntilAsync(async () => (await second.StatsAsync(Ct)).Bytes == 900 && (await FoundAsync(first, "e")).Any(), TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(["c", "d", "e"], await FoundAsync(first, "a", "b", "c", "d", "e"));
    }
}
