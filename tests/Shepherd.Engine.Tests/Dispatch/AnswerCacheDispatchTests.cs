using System.Net;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>The dispatcher with an answer cache: what it has answered once is answered from the cache, not sent, at no cost.</summary>
public sealed class AnswerCacheDispatchTests : DispatchTestBase
{
    private const string Answer = """{"id":"c1","object":"chat.completion","model":"gpt-4.1-mini","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150}}""";

    [Fact]
    public async Task ARequestAnsweredBefore_IsAnsweredFromTheCache_NotSent_AtNoCost()
    {
        using var folder = new TempDirectory();
        await using var cache = await SqliteAnswerCache.OpenAsync(folder.File("answers.db"), 1 << 20, TimeSpan.FromDays(30), Time, Ct);
        var requests = BatchFiles.OpenAIChat(5);
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, Answer));
        var (first, _) = await ImportAsync(5, prefix: "a-", requests: requests);
        var dispatcher = CreateDispatcher(handler);
        dispatcher.AnswerCache = cache;
        await RunToCompletionAsync(dispatcher, first);
        await Poll.UntilAsync(async () => (await cache.StatsAsync(Ct)).Entries == 5, TimeSpan.FromSeconds(10), Ct);

        var (second, _) = await ImportAsync(5, prefix: "b-", requests: requests);
        await RunToCompletionAsync(dispatcher, second);

        Assert.Equal(5, handler.Received.Count);
        var batch = (await Store.GetBatchAsync(second, Ct))!;
        var price = PriceTable.BuiltIn.Price("gpt-4.1-mini", 100, 50).Nanos;
        Assert.Equal((5L, 5L, 0L, 5 * price), (batch.Succeeded, batch.Cached, batch.CostNanos, batch.CacheSavedNanos));
        Assert.Equal(0, batch.Tiers.RealtimeSucceeded(batch));
        Assert.All(await ResultsAsync(second), result => Assert.Equal((ItemState.Succeeded, true, 0L, 200), (result.State, result.Result!.Cached, result.Result.CostNanos, result.Result.StatusCode!.Value)));
        Assert.All(await ResultsAsync(first), result => Assert.False(result.Result!.Cached));
    }
}
