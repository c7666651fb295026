using System.Net;
using System.Text.Json;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>The JSON the dashboard reads, the page itself, and the health probes.</summary>
public sealed class DashboardApiTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Prompts(int count) =>
        $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""))}}]}""";

    [Fact]
    public async Task ABatchsPage_ShowsItsAnswersOverTime_ItsFailuresByKind_ItsLatencies_AndItsLane()
    {
        // One request in four fails for good (a 400 for prompts over the context), the rest succeed.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(20), ContextTokens = 30 });
        var body = $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", Enumerable.Range(0, 40).Select(i =>
            $$"""{"custom_id":"q{{i}}","prompt":"{{(i % 4 == 0 ? string.Join(' ', Enumerable.Repeat("long", 60)) : "short question " + i)}}"}"""))}}]}""";
        var (_, created) = await server.PostAsync("/v1/batches", body);
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(id);

        var (status, page) = await server.GetAsync($"/v1/dashboard/batches/{id}");

        Assert.Equal(200, status);
        var batch = page.GetProperty("batch");
        Assert.Equal(("completed", "inline", 40, 30, 10, 100.0), (batch.GetProperty("status").GetString(), batch.GetProperty("door").GetString(),
            batch.GetProperty("total").GetInt64(), batch.GetProperty("succeeded").GetInt64(), batch.GetProperty("failed").GetInt64(), batch.GetProperty("percent").GetDouble()));
        var realtime = batch.GetProperty("tiers").GetProperty("realtime");
        Assert.Equal((30L, batch.GetProperty("cost_usd").GetDecimal()), (realtime.GetProperty("requests").GetInt64(), realtime.GetProperty("cost_usd").GetDecimal()));
        Assert.Equal((0L, 0m), (batch.GetProperty("tiers").GetProperty("native").GetProperty("requests").GetInt64(), batch.GetProperty("saved_usd").GetDecimal()));
        var timeline = page.GetProperty("timeline").EnumerateArray().ToList();
        Assert.Equal(40, timeline.Sum(p => p.GetProperty("requests").GetInt64()));
        Assert.Equal(10, timeline.Sum(p => p.GetProperty("failed").GetInt64()));
        Assert.Equal(batch.GetProperty("input_tokens").GetInt64() + batch.GetProperty("output_tokens").GetInt64(), timeline.Sum(p => p.GetProperty("tokens").GetInt64()));
        Assert.True(page.GetProperty("bucket_seconds").GetInt32() >= 1);
        var error = Assert.Single(page.GetProperty("errors").EnumerateArray());
        Assert.Equal(("HTTP 400", 10), (error.GetProperty("kind").GetString(), error.GetProperty("count").GetInt64()));
        var latency = page.GetProperty("latency_ms");
        Assert.Equal(40, latency.GetProperty("count").GetInt32());
        Assert.InRange(latency.GetProperty("p50").GetInt32(), 15, 10_000);
        Assert.True(latency.GetProperty("p50").GetInt32() <= latency.GetProperty("p99").GetInt32());
        Assert.True(latency.GetProperty("p99").GetInt32() <= latency.GetProperty("max").GetInt32());
        var lane = Assert.Single(page.GetProperty("lanes").EnumerateArray());
        Assert.Equal("gpt-4o-mini", lane.GetProperty("model").GetString());
        Assert.True(lane.GetProperty("concurrency_limit").GetInt32() >= 1);

        // Results and errors download as the API's output and error files would.
        using var http = server.Client(RunningServer.Key);
        var results = await http.GetStringAsync($"/v1/dashboard/batches/{id}/download?kind=results", Ct);
        var errors = await http.GetStringAsync($"/v1/dashboard/batches/{id}/download?kind=errors", Ct);
        Assert.Equal(30, results.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal(10, errors.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.All(errors.Split('\n', StringSplitOptions.RemoveEmptyEntries), line => Assert.Equal(400, JsonDocument.Parse(line).RootElement.GetProperty("response").GetProperty("status_code").GetInt32()));
        var (bad, _) = await server.GetAsync($"/v1/dashboard/batches/{id}/download?kind=everything");
        Assert.Equal(400, bad);
    }

    [Fact]
    public async Task ARefusedBatchsPage_ListsWhyItsInputWasRefused()
    {
        await using var server = await RunningServer.StartAsync();
        var good = BatchFiles.OpenAIChat(1)[0].Line;
        var file = await server.UploadAsync([good, "{not json", good]);
        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"input_file_id":"{{file}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(id);

        var (status, page) = await server.GetAsync($"/v1/dashboard/batches/{id}");

        Assert.Equal(200, status);
        Assert.Equal("failed", page.GetProperty("batch").GetProperty("status").GetString());
        var refusals = page.GetProperty("input_errors").EnumerateArray().Select(e => (e.GetProperty("line").GetInt64(), e.GetProperty("code").GetString())).ToList();
        Assert.Equal([(2L, "invalid_json_line"), (3L, "duplicate_custom_id")], refusals);
        Assert.All(page.GetProperty("input_errors").EnumerateArray(), e => Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString())));
    }

    [Fact]
    public async Task ABatchsPage_ShowsTheLanesOfItsOwnModels_NotEveryLaneOfTheServer()
    {
        await using var server = await RunningServer.StartAsync();
        // The batch's model is a default: a request naming its own model is carried by that model's lane too.
        var (_, chat) = await server.PostAsync("/v1/batches",
            """{"model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"hi"},{"custom_id":"b","body":{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"hi"}]}}]}""");
        var (_, messages) = await server.PostAsync("/v1/messages/batches",
            """{"requests":[{"custom_id":"a1","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}}]}""");
        var chatId = chat.GetProperty("id").GetString()!;
        var messagesId = messages.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(chatId);
        await server.WaitForEndAsync(messagesId);

        var chatLanes = await LaneModelsAsync(server, chatId);
        var messagesLanes = await LaneModelsAsync(server, messagesId);

        Assert.Equal(["gpt-4.1-mini", "gpt-4o-mini"], chatLanes);
        Assert.Equal(["claude-haiku-4-5"], messagesLanes);
    }

    private static async Task<List<string?>> LaneModelsAsync(RunningServer server, string batchId)
    {
        var (status, page) = await server.GetAsync($"/v1/dashboard/batches/{batchId}");
        Assert.Equal(200, status);
        return [.. page.GetProperty("lanes").EnumerateArray().Select(l => l.GetProperty("model").GetString()).Order(StringComparer.Ordinal)];
    }

    [Fact]
    public async Task TheList_HoldsBatchesOfEveryDoor_OfTheCallersKeyOnly()
    {
        await using var server = await RunningServer.StartAsync();
        var (_, inline) = await server.PostAsync("/v1/batches", Prompts(2));
        using var other = server.Client(RunningServer.OtherKey);
        var (_, theirs) = await RunningServer.SendAsync(other, HttpMethod.Post, "/v1/batches", Prompts(1));
        var (_, anthropic) = await server.PostAsync("/v1/messages/batches",
            """{"requests":[{"custom_id":"a1","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}}]}""");

        var (status, list) = await server.GetAsync("/v1/dashboard/batches");

        Assert.Equal(200, status);
        var ids = list.GetProperty("data").EnumerateArray().Select(b => (b.GetProperty("id").GetString(), b.GetProperty("door").GetString())).ToList();
        Assert.Equal([(anthropic.GetProperty("id").GetString(), "anthropic"), (inline.GetProperty("id").GetString(), "inline")], ids);
        var (notFound, _) = await server.GetAsync($"/v1/dashboard/batches/{theirs.GetProperty("id").GetString()}");
        Assert.Equal(404, notFound);
        using var anonymous = server.Client(null);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/dashboard/batches", Ct)).StatusCode);
    }

    [Fact]
    public async Task ABatch_IsCancelledFromTheDashboard_OnceOnly_AndACompletedOneCannotBe()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(200) });
        var (_, created) = await server.PostAsync("/v1/batches", Prompts(200));
        var id = created.GetProperty("id").GetString()!;

        var (status, cancelled) = await server.PostAsync($"/v1/dashboard/batches/{id}/cancel");

        Assert.Equal(200, status);
        Assert.True(cancelled.GetProperty("status").GetString() is "cancelling" or "cancelled", cancelled.ToString());
        var ended = await server.WaitForAsync($"/v1/dashboard/batches/{id}", page => page.GetProperty("batch").GetProperty("status").GetString() == "cancelled");
        Assert.True(ended.GetProperty("batch").GetProperty("cancelled").GetInt64() > 0);
        var (again, same) = await server.PostAsync($"/v1/dashboard/batches/{id}/cancel");
        Assert.Equal((200, "cancelled"), (again, same.GetProperty("status").GetString()));

        var (_, small) = await server.PostAsync("/v1/batches", Prompts(1));
        await server.WaitForEndAsync(small.GetProperty("id").GetString()!);
        var (completed, refusal) = await server.PostAsync($"/v1/dashboard/batches/{small.GetProperty("id").GetString()}/cancel");
        Assert.Equal(409, completed);
        Assert.Contains("nothing to cancel", refusal.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ThePage_IsServedWithoutAKey_AndTheProbesAnswer()
    {
        await using var server = await RunningServer.StartAsync();
        using var anonymous = server.Client(null);

        using var page = await anonymous.GetAsync("/", Ct);
        using var missing = await anonymous.GetAsync("/dashboard/secrets.txt", Ct);

        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        var html = await page.Content.ReadAsStringAsync(Ct);
        foreach (var name in new[] { "format.js", "chart.js", "views.js", "app.js" })
        {
            using var script = await anonymous.GetAsync("/dashboard/" + name, Ct);
            Assert.Contains($"/dashboard/{name}", html, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        }

        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("ok", await anonymous.GetStringAsync("/healthz", Ct));
        Assert.Equal("ready", await anonymous.GetStringAsync("/readyz", Ct));
    }
}
