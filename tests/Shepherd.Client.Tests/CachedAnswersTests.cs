using Shepherd.Server.Tests;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>A batch a Shepherd server answered from its answer cache, as the client reads it.</summary>
public sealed class CachedAnswersTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static NewBatch Prompts() => new()
    {
        Model = "gpt-4o-mini",
        Requests = [.. Enumerable.Range(0, 3).Select(i => BatchItem.FromPrompt($"r{i}", $"question {i}"))],
    };

    [Theory]
    [InlineData(BatchApi.Shepherd)]
    [InlineData(BatchApi.OpenAI)]
    public async Task TheBatch_SaysHowManyRequestsTheCacheAnswered_AndWhatItSaved(BatchApi api)
    {
        using var folder = new TempDirectory();
        await using var server = await RunningServer.StartAsync(tune: o => o.AnswerCache = new Server.ServerCacheOptions());
        using var client = ClientTests.ClientOf(server, api: api);
        var first = (await client.WaitForCompletionAsync((await client.CreateBatchAsync(Prompts(), Ct)).Id, cancellationToken: Ct)).Batch;
        await server.WaitForKeptAnswersAsync(3);

        var second = (await client.WaitForCompletionAsync((await client.CreateBatchAsync(Prompts(), Ct)).Id, cancellationToken: Ct)).Batch;

        Assert.Equal((0L, 0m), (first.Cached, first.CacheSavedUsd));
        Assert.True(first.CostUsd > 0);
        Assert.Equal((3L, 3L, first.CostUsd, 0m), (second.Succeeded, second.Cached, second.CacheSavedUsd, second.CostUsd));
        Assert.Equal(3L, (await client.GetBatchAsync(second.Id, Ct)).Cached);
    }
}
