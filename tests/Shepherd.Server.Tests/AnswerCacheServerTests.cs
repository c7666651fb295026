using System.Text.Json;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>The server's answer cache: per tenant, on by configuration, and off or not replaying sampling per batch.</summary>
public sealed class AnswerCacheServerTests
{
    private static Task<RunningServer> StartWithCacheAsync(bool replaySampled = true) =>
        RunningServer.StartAsync(tune: o => o.AnswerCache = new ServerCacheOptions { ReplaySampled = replaySampled });

    [Fact]
    public async Task ATenantsRepeatedRequests_AreAnsweredFromTheCache_NeverAnotherTenants()
    {
        await using var server = await StartWithCacheAsync();
        using var other = server.Client(RunningServer.OtherKey);

        var first = await CreateAndWaitAsync(server.Http, Inline(3, ""));
        var sentOnce = server.Simulator.Provider.Stats().Requests;
        await server.WaitForKeptAnswersAsync(3);
        var again = await CreateAndWaitAsync(server.Http, Inline(3, ""));
        var otherTenants = await CreateAndWaitAsync(other, Inline(3, ""));

        Assert.Equal(3, sentOnce);
        Assert.Equal(6, server.Simulator.Provider.Stats().Requests);
        Assert.Equal((0L, 3L, 0L), ((await BatchAsync(server, first)).Cached, (await BatchAsync(server, again)).Cached, (await BatchAsync(server, otherTenants)).Cached));
        var results = await ResultsAsync(server.Http, again);
        Assert.All(results, line => Assert.True(line.GetProperty("cached").GetBoolean()));
        Assert.All(await ResultsAsync(server.Http, first), line => Assert.False(line.TryGetProperty("cached", out _)));
        Assert.True(File.Exists(Path.ChangeExtension(server.StatePath, ".answers.db")));
    }

    [Fact]
    public async Task NodesSharingAPostgresStore_ShareOneCache_InItsDatabase()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var database = await PostgresCluster.CreateDatabaseAsync(TestContext.Current.CancellationToken);
        await using var first = await RunningServer.StartAsync(
            tune: o => o.AnswerCache = new ServerCacheOptions(), sharedStore: new PostgresStoreOptions { ConnectionString = database, NodeName = "node-a" });
        await using var second = await RunningServer.StartAsync(
            tune: o => o.AnswerCache = new ServerCacheOptions(), sharedStore: new PostgresStoreOptions { ConnectionString = database, NodeName = "node-b" });

        await CreateAndWaitAsync(first.Http, Inline(3, ""));
        await second.WaitForKeptAnswersAsync(3);
        var again = await CreateAndWaitAsync(second.Http, Inline(3, ""));

        Assert.Equal(3, first.Simulator.Provider.Stats().Requests + second.Simulator.Provider.Stats().Requests);
        Assert.Equal(3, (await BatchAsync(second, again)).Cached);
        Assert.False(File.Exists(Path.ChangeExtension(first.StatePath, ".answers.db")));
    }

    [Fact]
    public async Task AnEstimate_LeavesOutWhatTheTenantsCacheHolds_UnlessTheBodyTurnsTheCacheOff()
    {
        await using var server = await StartWithCacheAsync();
        using var other = server.Client(RunningServer.OtherKey);
        await CreateAndWaitAsync(server.Http, Inline(2, ""));
        await server.WaitForKeptAnswersAsync(2);

        var (_, mine) = await server.PostAsync("/v1/batches/estimate", Inline(3, ""));
        var (_, off) = await server.PostAsync("/v1/batches/estimate", Inline(3, """ "cache":false """));
        var (_, theirs) = await RunningServer.SendAsync(other, HttpMethod.Post, "/v1/batches/estimate", Inline(3, ""));

        Assert.Equal((1L, 2L), (mine.GetProperty("requests").GetInt64(), mine.GetProperty("cached").GetInt64()));
        Assert.True(mine.GetProperty("cached_usd").GetDecimal() > 0);
        Assert.Equal((3L, 0L), (off.GetProperty("requests").GetInt64(), off.GetProperty("cached").GetInt64()));
        Assert.Equal((3L, 0L), (theirs.GetProperty("requests").GetInt64(), theirs.GetProperty("cached").GetInt64()));
    }

    [Fact]
    public async Task ABatchThatTurnsTheCacheOff_IsSentInFull_ByEitherDoor()
    {
        await using var server = await StartWithCacheAsync();
        await CreateAndWaitAsync(server.Http, Inline(2, ""));
        await server.WaitForKeptAnswersAsync(2);

        var inline = await CreateAndWaitAsync(server.Http, Inline(2, """ "cache":false """));
        var file = await server.UploadAsync(Enumerable.Range(0, 2).Select(i =>
            $$$"""{"custom_id":"r{{{i}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Rate review number {{{i}}}"}]}}"""));
        var (_, created) = await server.PostAsync("/v1/batches", $$$"""{"input_file_id":"{{{file}}}","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"shepherd_cache":"false"}}""");
        var fromFile = created.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(fromFile);

        Assert.Equal(6, server.Simulator.Provider.Stats().Requests);
        Assert.Equal((0L, 0L), ((await BatchAsync(server, inline)).Cached, (await BatchAsync(server, fromFile)).Cached));
    }

    [Fact]
    public async Task ABatchThatDoesNotReplaySampling_SendsItsSampledRequestsAgain()
    {
        await using var server = await StartWithCacheAsync(replaySampled: false);
        var requests = """
            {"custom_id":"hot","body":{"messages":[{"role":"user","content":"Write a slogan"}],"temperature":0.9}},
            {"custom_id":"cold","body":{"messages":[{"role":"user","content":"Name the capital of France"}],"temperature":0}}
            """;
        var body = $$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""";
        await CreateAndWaitAsync(server.Http, body);
        await server.WaitForKeptAnswersAsync(1);

        // The server's configuration sends sampled requests again, and keeps none of their answers.
        var unsampled = await CreateAndWaitAsync(server.Http, body);
        Assert.Equal(3, server.Simulator.Provider.Stats().Requests);
        Assert.Equal(["cold"], (await ResultsAsync(server.Http, unsampled)).Where(l => l.TryGetProperty("cached", out _)).Select(l => l.GetProperty("custom_id").GetString()));

        // A batch can ask to replay them: the first such keeps the answer drawn, the next replays it.
        var replaying = body.Replace("\"requests\"", "\"cache_sampled\":true,\"requests\"", StringComparison.Ordinal);
        var drawn = await CreateAndWaitAsync(server.Http, replaying);
        await server.WaitForKeptAnswersAsync(2);
        var replayed = await CreateAndWaitAsync(server.Http, replaying);

        Assert.Equal(4, server.Simulator.Provider.Stats().Requests);
        Assert.Equal((1L, 2L), ((await BatchAsync(server, drawn)).Cached, (await BatchAsync(server, replayed)).Cached));
    }

    [Fact]
    public async Task NativeBatches_KeepWhatTheProvidersJobsAnswer_AndAreNotHandedWhatTheCacheHolds()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider, tune: o => o.AnswerCache = new ServerCacheOptions());

        var first = await CreateAndWaitAsync(server.Http, Inline(3, """ "mode":"native" """));
        await server.WaitForKeptAnswersAsync(3);
        var second = await CreateAndWaitAsync(server.Http, Inline(4, """ "mode":"native" """));

        // The second batch's job holds only the request the first did not have.
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Equal([1, 3], jobs.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("request_counts").GetProperty("total").GetInt64()).Order());
        Assert.Equal((0L, 3L), ((await BatchAsync(server, first)).Cached, (await BatchAsync(server, second)).Cached));
        Assert.Equal((await ResultsAsync(server.Http, first)).Select(Answer), (await ResultsAsync(server.Http, second)).Take(3).Select(Answer));
        await server.WaitForKeptAnswersAsync(4);
    }

    [Fact]
    public async Task AJobHandedOverBeforeARestart_KeepsItsAnswersToo()
    {
        await using var provider = await RunningServer.StartAsync(new Simulator.SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1500) });
        var server = await RunningServer.StartAgainstAsync(provider, tune: o => o.AnswerCache = new ServerCacheOptions());
        var (_, created) = await server.PostAsync("/v1/batches", Inline(2, """ "mode":"native" """));
        var id = created.GetProperty("id").GetString()!;
        await provider.WaitForAsync("/v1/batches", list => list.GetProperty("data").GetArrayLength() == 1);

        await using var restarted = await server.RestartAsync(
            upstream: RunningServer.ProviderUpstream(provider), engine: e => e.Native.PollInterval = TimeSpan.FromMilliseconds(100), tune: o => o.AnswerCache = new ServerCacheOptions());
        await restarted.WaitForEndAsync(id);

        await restarted.WaitForKeptAnswersAsync(2);
        var again = await CreateAndWaitAsync(restarted.Http, Inline(2, """ "mode":"native" """));
        Assert.Equal(2, (await BatchAsync(restarted, again)).Cached);
    }

    /// <summary>The answer's text, for comparing a replayed answer with the first.</summary>
    private static string Answer(JsonElement line) => line.GetProperty("response").GetProperty("body").GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;

    [Fact]
    public async Task WithoutACache_AskingForOneIsRefused_AndTurningItOffIsNot()
    {
        await using var server = await RunningServer.StartAsync();

        var (refused, error) = await server.PostAsync("/v1/batches", Inline(1, """ "cache":true """));
        var (sampled, _) = await server.PostAsync("/v1/batches", Inline(1, """ "cache_sampled":false """));
        var (notBool, typed) = await server.PostAsync("/v1/batches", Inline(1, """ "cache":"yes" """));
        var (off, _) = await server.PostAsync("/v1/batches", Inline(1, """ "cache":false """));

        Assert.Equal((400, 400, 400, 200), (refused, sampled, notBool, off));
        Assert.Equal(("cache", "cache_unavailable"), (error.GetProperty("error").GetProperty("param").GetString(), error.GetProperty("error").GetProperty("code").GetString()));
        Assert.Equal("\"cache\" must be true or false.", typed.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task AMetadataValueThatIsNotTrueOrFalse_IsRefused_NamingIt()
    {
        await using var server = await StartWithCacheAsync();
        var file = await server.UploadAsync(["""{"custom_id":"r","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}"""]);

        var (status, error) = await server.PostAsync("/v1/batches", $$$"""{"input_file_id":"{{{file}}}","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"shepherd_cache":"nope"}}""");

        Assert.Equal(400, status);
        Assert.Equal("metadata.shepherd_cache", error.GetProperty("error").GetProperty("param").GetString());
        Assert.Equal(0, (await server.GetAsync("/v1/batches")).Body.GetProperty("data").GetArrayLength());
    }

    private static async Task<string> CreateAndWaitAsync(HttpClient http, string body)
    {
        var (status, created) = await RunningServer.SendAsync(http, HttpMethod.Post, "/v1/batches", body);
        Assert.Equal(200, status);
        var id = created.GetProperty("id").GetString()!;
        await Poll.UntilAsync(async () => (await RunningServer.SendAsync(http, HttpMethod.Get, $"/v1/batches/{id}")).Body.GetProperty("status").GetString() == "completed", TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        return id;
    }

    private static async Task<Engine.Model.BatchRecord> BatchAsync(RunningServer server, string id) => (await server.Store.GetBatchAsync(id, TestContext.Current.CancellationToken))!;

    private static async Task<List<JsonElement>> ResultsAsync(HttpClient http, string id)
    {
        var (_, page) = await RunningServer.SendAsync(http, HttpMethod.Get, $"/v1/batches/{id}/results");
        return [.. page.GetProperty("data").EnumerateArray()];
    }

    private static string Inline(int count, string fields)
    {
        var requests = string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"Rate review number {{i}}"}"""));
        var more = fields.Trim().Length == 0 ? "" : fields.Trim() + ",";
        return $$"""{"model":"gpt-4o-mini",{{more}}"requests":[{{requests}}]}""";
    }
}
