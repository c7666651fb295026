using System.Globalization;
using System.Text.Json;
using System.Text;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// Native batch mode end to end: server A hands its batch to server B's batch APIs (OpenAI files
/// and batches, Anthropic message batches), and B, a Shepherd server too, runs it on its simulator;
/// or A hands it to the simulator's own batch API.
/// </summary>
public sealed class NativeModeTests
{
    private static readonly TimeSpan FastPoll = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task ANativeBatch_RunsAtTheProvider_AtTheBatchPrice_WithItsPermanentFailures()
    {
        await using var provider = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = 300 },
            engine: e => e.Dispatch.MaxAttempts = 1);
        await using var server = await RunningServer.StartAgainstAsync(provider);

        var (status, created) = await server.PostAsync("/v1/batches", Prompts(20, longOnes: 2));

        Assert.Equal(200, status);
        Assert.Equal("native", created.GetProperty("mode").GetString());
        var id = created.GetProperty("id").GetString()!;
        var ended = await server.WaitForEndAsync(id);
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal(20, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.Equal(2, ended.GetProperty("request_counts").GetProperty("failed").GetInt64());

        // One provider batch, no realtime request of A's own, and the provider ran each line once.
        var (_, batches) = await provider.GetAsync("/v1/batches");
        var providerBatch = Assert.Single(batches.GetProperty("data").EnumerateArray());
        Assert.Equal(22, providerBatch.GetProperty("request_counts").GetProperty("total").GetInt64());
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
        Assert.Equal(22, provider.Simulator.Provider.Stats().Requests);

        // Results match, and the long prompts failed with the provider's own error.
        var results = await ResultsAsync(server, id);
        Assert.Equal(22, results.Count);
        foreach (var (customId, line) in results)
        {
            var response = line.GetProperty("response");
            if (customId.StartsWith("long", StringComparison.Ordinal))
            {
                Assert.Equal("failed", line.GetProperty("status").GetString());
                Assert.Equal(400, response.GetProperty("status_code").GetInt32());
                Assert.Equal("context_length_exceeded", response.GetProperty("body").GetProperty("error").GetProperty("code").GetString());
            }
            else
            {
                Assert.Equal("succeeded", line.GetProperty("status").GetString());
                Assert.Equal(200, response.GetProperty("status_code").GetInt32());
                Assert.Equal("gpt-4o-mini", response.GetProperty("body").GetProperty("model").GetString());
            }
        }

        // Priced at the batch discount: half of what the provider, sending in realtime, paid for the same answers.
        var cost = Nanos(ended.GetProperty("cost_usd"));
        var realtime = Nanos((await provider.GetAsync($"/v1/batches/{providerBatch.GetProperty("id").GetString()}")).Body.GetProperty("cost_usd"));
        Assert.True(cost > 0);
        Assert.InRange((2 * cost) - realtime, -20, 20);
        Assert.Equal(
            ended.GetProperty("usage").GetProperty("total_tokens").GetInt64(),
            results.Values.Where(l => l.GetProperty("status").GetString() == "succeeded")
                .Sum(l => l.GetProperty("response").GetProperty("body").GetProperty("usage").GetProperty("total_tokens").GetInt64()));
    }

    [Fact]
    public async Task ANativeBatch_RunsOnTheSimulatorsOwnBatchApi_AtTheBatchPrice()
    {
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { BatchLatency = TimeSpan.FromMilliseconds(300), ContextTokens = 300 });
        await using var server = await RunningServer.StartAsync(
            upstream: u =>
            {
                u.Name = "simulator";
                u.BaseUrl = new Uri(simulator.BaseUrl, "v1");
                u.BatchApi = true;
            },
            engine: e => e.Native.PollInterval = FastPoll);

        var (_, created) = await server.PostAsync("/v1/batches", Prompts(10, longOnes: 1));
        var id = created.GetProperty("id").GetString()!;
        var ended = await server.WaitForEndAsync(id);

        Assert.Equal("native", created.GetProperty("mode").GetString());
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal((10, 1), (ended.GetProperty("request_counts").GetProperty("completed").GetInt64(), ended.GetProperty("request_counts").GetProperty("failed").GetInt64()));
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
        var stats = simulator.Provider.Stats();
        Assert.Equal(new BatchStats(1, 10, 1, 0, 0), stats.Batch);
        Assert.Equal(0, stats.Duplicates);

        // Each answer priced at the batch discount: half of what the same usage costs in realtime.
        var results = await ResultsAsync(server, id);
        var answered = results.Values.Where(l => l.GetProperty("status").GetString() == "succeeded").Select(l => l.GetProperty("response").GetProperty("body").GetProperty("usage")).ToList();
        Assert.Equal(10, answered.Count);
        var batchPrice = answered.Sum(u => PriceTable.BuiltIn.Price("gpt-4o-mini", u.GetProperty("prompt_tokens").GetInt64(), u.GetProperty("completion_tokens").GetInt64(), batch: true).Nanos);
        var realtimePrice = answered.Sum(u => PriceTable.BuiltIn.Price("gpt-4o-mini", u.GetProperty("prompt_tokens").GetInt64(), u.GetProperty("completion_tokens").GetInt64()).Nanos);
        var cost = Nanos(ended.GetProperty("cost_usd"));
        Assert.True(cost > 0);
        Assert.InRange(cost - batchPrice, -10, 10);
        Assert.InRange((2 * cost) - realtimePrice, -20, 20);
        var failed = Assert.Single(results.Values, l => l.GetProperty("status").GetString() == "failed");
        Assert.Equal("context_length_exceeded", failed.GetProperty("response").GetProperty("body").GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task LinesThatFailTransientlyAtTheProvider_AreResubmitted()
    {
        await using var provider = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), Error500Rate = 0.3 },
            engine: e =>
            {
                e.Dispatch.MaxAttempts = 1;
                e.Dispatch.BreakerFailuresToOpen = 1000;
            });
        await using var server = await RunningServer.StartAgainstAsync(provider, maxAttempts: 12);

        var (_, created) = await server.PostAsync("/v1/batches", Prompts(30, longOnes: 0));
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal(30, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        var (_, batches) = await provider.GetAsync("/v1/batches?limit=100");
        var jobs = batches.GetProperty("data").EnumerateArray().ToList();
        Assert.True(jobs.Count > 1, "the failed lines went in a second provider batch");
        Assert.True(jobs.Sum(j => j.GetProperty("request_counts").GetProperty("failed").GetInt64()) > 0);
        Assert.Equal(30, jobs.Sum(j => j.GetProperty("request_counts").GetProperty("completed").GetInt64()));
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
    }

    [Fact]
    public async Task ARestartWhileThePollGoesOn_ResumesTheSameProviderBatch()
    {
        await using var provider = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(400) });
        var first = await RunningServer.StartAgainstAsync(provider, poll: TimeSpan.FromHours(1));
        string id;
        RunningServer restarted;
        try
        {
            var (_, created) = await first.PostAsync("/v1/batches", Prompts(5, longOnes: 0));
            id = created.GetProperty("id").GetString()!;
            await WaitUntilAsync(async () => (await first.Store.ListNativeJobsAsync(id, TestContext.Current.CancellationToken)).Count == 1);
            Assert.Equal("in_progress", (await first.GetAsync($"/v1/batches/{id}")).Body.GetProperty("status").GetString());
        }
        finally
        {
            restarted = await first.RestartAsync(upstream: RunningServer.ProviderUpstream(provider), engine: e => e.Native.PollInterval = FastPoll);
        }

        await using (restarted)
        {
            var ended = await restarted.WaitForEndAsync(id);
            Assert.Equal("completed", ended.GetProperty("status").GetString());
            Assert.Equal(5, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
            var job = Assert.Single(await restarted.Store.ListNativeJobsAsync(id, TestContext.Current.CancellationToken));
            Assert.Equal(NativeJobStatus.Ended, job.Status);
            var (_, batches) = await provider.GetAsync("/v1/batches");
            Assert.Single(batches.GetProperty("data").EnumerateArray());
            Assert.Equal(5, provider.Simulator.Provider.Stats().Requests);
        }
    }

    [Fact]
    public async Task CancellingANativeBatch_CancelsTheProviderBatch_AndKeepsWhatFinished()
    {
        await using var provider = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(300) },
            tune: null,
            engine: e => e.Dispatch.Concurrency = 2);
        await using var server = await RunningServer.StartAgainstAsync(provider);

        var (_, created) = await server.PostAsync("/v1/batches", Prompts(20, longOnes: 0));
        var id = created.GetProperty("id").GetString()!;
        await WaitUntilAsync(async () => (await server.Store.ListNativeJobsAsync(id, TestContext.Current.CancellationToken)).Count == 1);
        var (cancelStatus, cancelling) = await server.PostAsync($"/v1/batches/{id}/cancel");

        Assert.Equal(200, cancelStatus);
        Assert.Equal("cancelling", cancelling.GetProperty("status").GetString());
        var ended = await server.WaitForEndAsync(id);
        Assert.Equal("cancelled", ended.GetProperty("status").GetString());
        var (_, batches) = await provider.GetAsync("/v1/batches");
        var providerBatch = Assert.Single(batches.GetProperty("data").EnumerateArray());
        Assert.Equal("cancelled", providerBatch.GetProperty("status").GetString());
        var done = providerBatch.GetProperty("request_counts").GetProperty("completed").GetInt64();
        Assert.True(done < 20, "the provider stopped before every line ran");
        Assert.Equal(done, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.Equal(20 - done, ended.GetProperty("request_counts").GetProperty("failed").GetInt64());
    }

    [Fact]
    public async Task ARestartWhileACancelGoesOn_EndsTheBatchCancelled()
    {
        await using var provider = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(700) },
            engine: e => e.Dispatch.Concurrency = 1);
        var first = await RunningServer.StartAgainstAsync(provider, poll: TimeSpan.FromHours(1));
        string id;
        RunningServer restarted;
        var ct = TestContext.Current.CancellationToken;
        try
        {
            var (_, created) = await first.PostAsync("/v1/batches", Prompts(5, longOnes: 0));
            id = created.GetProperty("id").GetString()!;
            await WaitUntilAsync(async () => (await first.Store.ListNativeJobsAsync(id, ct)).Count == 1);
            Assert.Equal(200, (await first.PostAsync($"/v1/batches/{id}/cancel")).Status);
            await WaitUntilAsync(async () => (await first.Store.ListNativeJobsAsync(id, ct)).Single().CancelRequested);
            Assert.Equal("cancelling", (await first.GetAsync($"/v1/batches/{id}")).Body.GetProperty("status").GetString());
        }
        finally
        {
            restarted = await first.RestartAsync(upstream: RunningServer.ProviderUpstream(provider), engine: e => e.Native.PollInterval = FastPoll);
        }

        await using (restarted)
        {
            var ended = await restarted.WaitForEndAsync(id);
            Assert.Equal("cancelled", ended.GetProperty("status").GetString());
            Assert.Equal(5, ended.GetProperty("request_counts").GetProperty("completed").GetInt64() + ended.GetProperty("request_counts").GetProperty("failed").GetInt64());
            var (_, batches) = await provider.GetAsync("/v1/batches");
            Assert.Equal("cancelled", Assert.Single(batches.GetProperty("data").EnumerateArray()).GetProperty("status").GetString());
        }
    }

    [Fact]
    public async Task AProviderThatRefusesTheJob_LeavesTheItemsQueued_AndIsTriedAgainLater()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAsync(
            upstream: u =>
            {
                RunningServer.ProviderUpstream(provider)(u);
                u.ApiKey = new Secret("sk-not-a-tenant");
            },
            engine: e => e.Native.PollInterval = TimeSpan.FromMilliseconds(300));

        var (_, created) = await server.PostAsync("/v1/batches", Prompts(3, longOnes: 0));
        var id = created.GetProperty("id").GetString()!;
        await Task.Delay(TimeSpan.FromSeconds(1), TimeProvider.System, TestContext.Current.CancellationToken);

        var (_, batch) = await server.GetAsync($"/v1/batches/{id}");
        Assert.Equal("in_progress", batch.GetProperty("status").GetString());
        Assert.Equal(0, batch.GetProperty("request_counts").GetProperty("completed").GetInt64() + batch.GetProperty("request_counts").GetProperty("failed").GetInt64());
        Assert.Empty(await server.Store.ListNativeJobsAsync(id, TestContext.Current.CancellationToken));
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
        Assert.Equal(200, (await server.PostAsync($"/v1/batches/{id}/cancel")).Status);
        Assert.Equal("cancelled", (await server.WaitForEndAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task AnAnthropicUpstream_TakesTheBatchAsAMessageBatch()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAsync(
            upstream: u =>
            {
                u.Kind = UpstreamKind.Anthropic;
                u.BaseUrl = provider.BaseUrl;
                u.ApiKey = new Secret(RunningServer.Key);
            },
            engine: e => e.Native.PollInterval = FastPoll);

        var requests = string.Join(",", Enumerable.Range(0, 6).Select(i => $$"""{"custom_id":"m{{i}}","prompt":"Say something about {{i}}"}"""));
        var (status, created) = await server.PostAsync("/v1/batches", $$"""
            {"model":"claude-haiku-4.5","endpoint":"/v1/messages","mode":"native","requests":[{{requests}}]}
            """);

        Assert.Equal(200, status);
        Assert.Equal("native", created.GetProperty("mode").GetString());
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal(6, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.True(Nanos(ended.GetProperty("cost_usd")) > 0);
        var (_, batches) = await provider.GetAsync("/v1/messages/batches");
        Assert.Single(batches.GetProperty("data").EnumerateArray());
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
        var results = await ResultsAsync(server, created.GetProperty("id").GetString()!);
        Assert.All(results.Values, line => Assert.Equal("message", line.GetProperty("response").GetProperty("body").GetProperty("type").GetString()));
    }

    [Fact]
    public async Task TheMode_IsCheckedAgainstTheUpstreams()
    {
        // The simulator upstream is an OpenAI-compatible server without a batch API or a flex tier.
        await using var server = await RunningServer.StartAsync();

        var (status, refused) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","mode":"native","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        Assert.Equal(400, status);
        Assert.Equal(("native_batch_unavailable", "mode"), (refused.GetProperty("error").GetProperty("code").GetString(), refused.GetProperty("error").GetProperty("param").GetString()));
        var (flexStatus, flex) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","mode":"flex","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        Assert.Equal(400, flexStatus);
        Assert.Equal("flex_unavailable", flex.GetProperty("error").GetProperty("code").GetString());
        var (badStatus, bad) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","mode":"sometimes","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        Assert.Equal(400, badStatus);
        Assert.Equal("invalid_mode", bad.GetProperty("error").GetProperty("code").GetString());

        // Asked for, auto is kept; with nothing cheaper to plan with, the planner sends it in realtime.
        var (autoStatus, auto) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","mode":"auto","deadline":"1h","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        Assert.Equal(200, autoStatus);
        Assert.Equal("auto", auto.GetProperty("mode").GetString());
        Assert.Equal("completed", (await server.WaitForEndAsync(auto.GetProperty("id").GetString()!)).GetProperty("status").GetString());
        Assert.Equal(1, server.Simulator.Provider.Stats().Requests);
        // Without a mode, a deadline is not enough: no upstream can do better than realtime.
        var (_, unasked) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","deadline":"1h","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        Assert.Equal("realtime", unasked.GetProperty("mode").GetString());
        await server.WaitForEndAsync(unasked.GetProperty("id").GetString()!);
    }

    [Fact]
    public async Task TheRealtimeClaim_NeverTakesItemsOfANativeBatch()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider, poll: TimeSpan.FromHours(1));
        var store = server.Store;
        var ct = TestContext.Current.CancellationToken;
        var now = server.Server.Services.GetService(typeof(TimeProvider)) is TimeProvider time ? time.GetUtcNow() : default;

        var batchId = await store.CreateBatchAsync(new NewBatch("batch_native_claim", null, "/v1/chat/completions") { Mode = BatchMode.Native, Door = BatchDoor.Inline }, ct);
        await store.AddItemsAsync(batchId, [new ImportItem(1, "a", "claim-test-model", Encoding.UTF8.GetBytes("""{"model":"claim-test-model"}"""))], ct);
        await store.AcceptBatchAsync(batchId, new AcceptedInput(Engine.Formats.InputFormat.OpenAI, "/v1/chat/completions", 1, null, 10), ct);

        Assert.Equal(BatchMode.Native, (await store.GetBatchAsync(batchId, ct))!.Mode);
        Assert.Empty(await store.ClaimAsync("claim-test-model", null, 10, now.AddMinutes(1), now.AddHours(1), ct));
        Assert.Null(await store.NextDueAsync("claim-test-model", null, ct));
        Assert.DoesNotContain("claim-test-model", await store.ListActiveModelsAsync(null, ct));
        Assert.Contains("claim-test-model", await store.ListActiveModelsAsync(batchId, ct));
    }

    private static string Prompts(int count, int longOnes)
    {
        var longPrompt = string.Join(' ', Enumerable.Repeat("verbose", 2000));
        var requests = Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"Rate review number {{i}}"}""")
            .Concat(Enumerable.Range(0, longOnes).Select(i => $$"""{"custom_id":"long{{i}}","prompt":"{{longPrompt}}"}"""));
        return $$"""{"model":"gpt-4o-mini","mode":"native","requests":[{{string.Join(",", requests)}}]}""";
    }

    internal static async Task<Dictionary<string, JsonElement>> ResultsAsync(RunningServer server, string id)
    {
        var (_, page) = await server.GetAsync($"/v1/batches/{id}/results?limit=1000");
        return page.GetProperty("data").EnumerateArray().ToDictionary(l => l.GetProperty("custom_id").GetString()!, l => l);
    }

    internal static long Nanos(JsonElement usd) => (long)Math.Round(decimal.Parse(usd.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture) * 1_000_000_000m);

    private static Task WaitUntilAsync(Func<Task<bool>> condition) =>
        Poll.UntilAsync(condition, TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
}
