using System.Text.Json;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// What a server says of the lanes that serve a batch (a refused upstream key above all), budgets
/// on the OpenAI file door, and retries of a file batch of Anthropic lines.
/// </summary>
public sealed class LaneStateTests
{
    private const string RightKey = "sk-upstream-right";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Prompts(int count) =>
        $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""))}}]}""";

    private static string FileBatch(string fileId, string endpoint, string? budget = null) =>
        $$"""{"input_file_id":"{{fileId}}","endpoint":"{{endpoint}}","completion_window":"24h"{{(budget is null ? "" : ",\"budget_usd\":" + budget)}}}""";

    private static bool HasLaneIn(JsonElement batch, string state) =>
        batch.TryGetProperty("lanes", out var lanes) && lanes.EnumerateArray().Any(lane => lane.GetProperty("state").GetString() == state);

    [Fact]
    public async Task AWrongUpstreamKey_KeepsTheBatchInProgress_WithAKeyRefusedLane_UntilARestartWithTheRightKeyFinishesIt()
    {
        // The server presents RunningServer.UpstreamKey; the provider takes only RightKey.
        var first = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ApiKey = RightKey });
        string id;
        RunningServer restarted;
        try
        {
            var (_, created) = await first.PostAsync("/v1/batches", Prompts(20));
            id = created.GetProperty("id").GetString()!;

            var batch = await first.WaitForAsync($"/v1/batches/{id}", b => HasLaneIn(b, "key_refused"));

            Assert.Equal("in_progress", batch.GetProperty("status").GetString());
            Assert.Equal((0, 0), (batch.GetProperty("request_counts").GetProperty("completed").GetInt32(), batch.GetProperty("request_counts").GetProperty("failed").GetInt32()));
            var lane = Assert.Single(batch.GetProperty("lanes").EnumerateArray());
            Assert.Equal(("sim", "gpt-4o-mini"), (lane.GetProperty("upstream").GetString(), lane.GetProperty("model").GetString()));
            Assert.StartsWith("HTTP 401: Incorrect API key provided", lane.GetProperty("reason").GetString(), StringComparison.Ordinal);
            Assert.DoesNotContain(RunningServer.UpstreamKey, batch.GetRawText(), StringComparison.Ordinal);
            // A probe every 30 s: the next is due half a minute after the refusal (both in whole seconds).
            Assert.InRange(lane.GetProperty("next_probe_at").GetInt64() - lane.GetProperty("since").GetInt64(), 29, 31);
            Assert.InRange(first.Simulator.Provider.Stats().ByStatus[401], 1, 8);
            Assert.Empty(first.Simulator.Provider.ExecutedCounts());

            var (_, page) = await first.GetAsync($"/v1/dashboard/batches/{id}");
            var shown = Assert.Single(page.GetProperty("lanes").EnumerateArray());
            Assert.Equal("key_refused", shown.GetProperty("state").GetString());
            Assert.Equal(lane.GetProperty("reason").GetString(), shown.GetProperty("reason").GetString());

            // The gauge is read at scrape time: 3 is key_refused (0 sending, 1 paused, 2 down).
            using var scraper = first.Client(null);
            var metrics = await scraper.GetStringAsync("/metrics", Ct);
            var gauge = metrics.Split('\n').Where(l => l.StartsWith("shepherd_lane_state{", StringComparison.Ordinal)).ToList();
            // Servers of other tests in this process export through meters of the same name, so other
            // lanes of that upstream and model may show too; this one's is key_refused.
            Assert.Contains(gauge, l => l.Contains("upstream=\"sim\"", StringComparison.Ordinal) && l.Contains("model=\"gpt-4o-mini\"", StringComparison.Ordinal) && l.Split(' ')[^1] == "3");
        }
        finally
        {
            restarted = await first.RestartAsync(upstream: u => u.ApiKey = new Secret(RightKey));
        }

        await using (restarted)
        {
            var ended = await restarted.WaitForEndAsync(id);

            Assert.Equal("completed", ended.GetProperty("status").GetString());
            Assert.Equal(20, ended.GetProperty("request_counts").GetProperty("completed").GetInt32());
            Assert.Equal(20, restarted.Simulator.Provider.ExecutedCounts().Values.Sum());
        }
    }

    [Fact]
    public async Task TheFileDoor_KeepsABudget_AndRefusesABadOne()
    {
        await using var server = await RunningServer.StartAsync();
        var fileId = await server.UploadAsync(BatchFiles.OpenAIChat(5).Select(r => r.Line));

        var (noneStatus, none) = await server.PostAsync("/v1/batches", FileBatch(fileId, "/v1/chat/completions", budget: "0"));
        var (ampleStatus, ample) = await server.PostAsync("/v1/batches", FileBatch(fileId, "/v1/chat/completions", budget: "0.5"));
        var (negative, negativeError) = await server.PostAsync("/v1/batches", FileBatch(fileId, "/v1/chat/completions", budget: "-1"));
        var (text, textError) = await server.PostAsync("/v1/batches", FileBatch(fileId, "/v1/chat/completions", budget: "\"0.5\""));

        Assert.Equal((200, 200), (noneStatus, ampleStatus));
        Assert.Equal(0m, none.GetProperty("budget_usd").GetDecimal());
        Assert.Equal(0.5m, ample.GetProperty("budget_usd").GetDecimal());
        foreach (var (status, error) in new[] { (negative, negativeError), (text, textError) })
        {
            Assert.Equal(400, status);
            Assert.Equal(("invalid_budget", "budget_usd"), (error.GetProperty("error").GetProperty("code").GetString(), error.GetProperty("error").GetProperty("param").GetString()));
        }

        // A budget of nothing sends nothing; half a dollar covers five short answers.
        var broke = await server.WaitForEndAsync(none.GetProperty("id").GetString()!);
        var paid = await server.WaitForEndAsync(ample.GetProperty("id").GetString()!);
        Assert.Equal((0, 5, 5), (broke.GetProperty("request_counts").GetProperty("completed").GetInt32(), broke.GetProperty("request_counts").GetProperty("failed").GetInt32(), broke.GetProperty("budget_exceeded_requests").GetInt32()));
        Assert.Equal(5, paid.GetProperty("request_counts").GetProperty("completed").GetInt32());
        Assert.Equal(5, server.Simulator.Provider.Stats().Requests);
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal(2, list.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task RetryFailed_OfAFileBatchOfAnthropicLines_AnswersInTheAnthropicDialect()
    {
        await using var healthy = await Simulators.StartHttpAsync();
        var requests = BatchFiles.Anthropic(6);
        // Every prompt is over this provider's context: each request fails for good.
        var first = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 1 });
        string originalId;
        RunningServer restarted;
        try
        {
            var fileId = await first.UploadAsync(requests.Select(r => r.Line));
            var (status, created) = await first.PostAsync("/v1/batches", FileBatch(fileId, "/v1/messages"));
            Assert.True(status == 200, created.ToString());
            originalId = created.GetProperty("id").GetString()!;
            var failed = await first.WaitForEndAsync(originalId);
            Assert.Equal(6, failed.GetProperty("request_counts").GetProperty("failed").GetInt32());
        }
        finally
        {
            // The same server, now sending to a provider that answers.
            restarted = await first.RestartAsync(upstream: u => u.BaseUrl = new Uri(healthy.BaseUrl, "v1"));
        }

        await using (restarted)
        {
            var (status, retry) = await restarted.PostAsync($"/v1/batches/{originalId}/retry_failed");
            Assert.True(status == 200, retry.ToString());
            var retryId = retry.GetProperty("id").GetString()!;
            Assert.Equal(originalId, retry.GetProperty("metadata").GetProperty("retry_of").GetString());
            var ended = await restarted.WaitForEndAsync(retryId);
            Assert.Equal(6, ended.GetProperty("request_counts").GetProperty("completed").GetInt32());

            var (_, page) = await restarted.GetAsync($"/v1/batches/{retryId}/results");
            var lines = page.GetProperty("data").EnumerateArray().ToList();
            var output = await restarted.Http.GetStringAsync($"/v1/files/{ended.GetProperty("output_file_id").GetString()}/content", Ct);
            lines.AddRange(output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()));

            Assert.Equal(12, lines.Count);
            Assert.All(lines, line =>
            {
                Assert.False(line.TryGetProperty("response", out _), "an OpenAI result line: " + line);
                Assert.Equal("succeeded", line.GetProperty("result").GetProperty("type").GetString());
                Assert.Equal("message", line.GetProperty("result").GetProperty("message").GetProperty("type").GetString());
            });
            Assert.Equal(requests.Select(r => r.CustomId), lines.Take(6).Select(l => l.GetProperty("custom_id").GetString()));
            Assert.Equal(6, healthy.Provider.ExecutedCounts().Count);
        }
    }
}
