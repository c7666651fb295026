using System.Text.Json;

namespace Shepherd.Server.Tests;

/// <summary>A server whose dispatcher answers from an answer cache: the batch object and the dashboard say how many answers came from it and what it saved.</summary>
public sealed class CachedAnswersTests
{
    private const string Prompts = """{"model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"one"},{"custom_id":"b","prompt":"two"},{"custom_id":"c","prompt":"three"}]}""";

    [Fact]
    public async Task ABatchAnsweredFromTheCache_SaysHowManyRequestsAndWhatTheyWouldHaveCost()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.AnswerCache = new ServerCacheOptions());
        var first = await RunAsync(server);
        await server.WaitForKeptAnswersAsync(3);

        var second = await RunAsync(server);

        Assert.Equal((0L, 0m), (first.GetProperty("cached").GetInt64(), first.GetProperty("cache_saved_usd").GetDecimal()));
        var paid = first.GetProperty("cost_usd").GetDecimal();
        Assert.True(paid > 0);
        Assert.Equal(3, server.Simulator.Provider.Stats().Requests);
        // The official fields are as they were: every request completed.
        Assert.Equal((3, 0), (second.GetProperty("request_counts").GetProperty("completed").GetInt32(), second.GetProperty("request_counts").GetProperty("failed").GetInt32()));
        Assert.Equal((3L, paid, 0m), (second.GetProperty("cached").GetInt64(), second.GetProperty("cache_saved_usd").GetDecimal(), second.GetProperty("cost_usd").GetDecimal()));
        Assert.Equal(0, second.GetProperty("tiers").GetProperty("realtime").GetProperty("requests").GetInt64());

        var (status, page) = await server.GetAsync($"/v1/dashboard/batches/{second.GetProperty("id").GetString()}");
        Assert.Equal(200, status);
        var shown = page.GetProperty("batch");
        Assert.Equal((3L, paid), (shown.GetProperty("cached").GetInt64(), shown.GetProperty("cache_saved_usd").GetDecimal()));
    }

    /// <summary>Creates the batch of <see cref="Prompts"/> at the inline door and returns its batch object once it has ended.</summary>
    private static async Task<JsonElement> RunAsync(RunningServer server)
    {
        var (status, created) = await server.PostAsync("/v1/batches", Prompts);
        Assert.Equal(200, status);
        return await server.WaitForEndAsync(created.GetProperty("id").GetString()!);
    }
}
