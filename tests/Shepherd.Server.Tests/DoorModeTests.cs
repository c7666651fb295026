using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Server.Tests;

/// <summary>
/// A deadline and a mode at every door: the inline fields, the OpenAI door's completion window and
/// its metadata's <c>shepherd_mode</c>, and the mode the configuration gives the Anthropic door.
/// Server A hands native work to server B's batch APIs, as in <see cref="NativeModeTests"/>.
/// </summary>
public sealed class DoorModeTests
{
    [Fact]
    public async Task InlineAuto_WithADeadline_GoesToTheProvidersBatchApi()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider);

        var (status, created) = await server.PostAsync("/v1/batches", Inline(5, """ "mode":"auto","deadline":"6h" """));

        Assert.Equal(200, status);
        Assert.Equal(("auto", "6h"), (created.GetProperty("mode").GetString(), created.GetProperty("completion_window").GetString()));
        Assert.Equal(6 * 3600, created.GetProperty("expires_at").GetInt64() - created.GetProperty("created_at").GetInt64());
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal(5, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Equal(5, Assert.Single(jobs.GetProperty("data").EnumerateArray()).GetProperty("request_counts").GetProperty("total").GetInt64());
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
    }

    [Fact]
    public async Task WithoutAMode_ABatchWithADeadlineIsPlanned_AndOneWithoutIsSentInRealtime()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider);

        // A deadline in seconds is kept in its largest whole unit.
        var (_, planned) = await server.PostAsync("/v1/batches", Inline(2, """ "deadline":5400 """));
        var (_, realtime) = await server.PostAsync("/v1/batches", Inline(2, ""));
        var (_, windowed) = await server.PostAsync("/v1/batches", Inline(2, """ "completion_window":"2h" """));

        Assert.Equal(("auto", "90m"), (planned.GetProperty("mode").GetString(), planned.GetProperty("completion_window").GetString()));
        Assert.Equal("realtime", realtime.GetProperty("mode").GetString());
        Assert.Equal("auto", windowed.GetProperty("mode").GetString());
        foreach (var batch in new[] { planned, realtime, windowed })
        {
            Assert.Equal("completed", (await server.WaitForEndAsync(batch.GetProperty("id").GetString()!)).GetProperty("status").GetString());
        }

        // The two planned batches went to the provider's batch API, each as a job of its own; the other did not.
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Equal([2, 2], jobs.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("request_counts").GetProperty("total").GetInt64()));
    }

    [Fact]
    public async Task NativeWithABudget_IsAccepted_AndItsJobsAreSplitToFitIt()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider);
        // Each request may cost at most its prompt and 100 tokens of answer at the batch price: some
        // $0.00003 for gpt-4o-mini; it costs far less, but a job holds its most until it ends.
        var bodies = string.Join(",", Enumerable.Range(0, 20).Select(i =>
            $$$"""{"custom_id":"r{{{i}}}","body":{"messages":[{"role":"user","content":"Rate review number {{{i}}}"}],"max_tokens":100}}"""));

        var (status, created) = await server.PostAsync("/v1/batches", $$"""{"model":"gpt-4o-mini","mode":"native","budget_usd":0.0002,"requests":[{{bodies}}]}""");

        Assert.Equal(200, status);
        Assert.Equal("native", created.GetProperty("mode").GetString());
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.InRange(NativeModeTests.Nanos(ended.GetProperty("cost_usd")), 1, 200_000);
        var succeeded = ended.GetProperty("outcomes").GetProperty("succeeded").GetInt64();
        Assert.Equal(20, succeeded + ended.GetProperty("budget_exceeded_requests").GetInt64());
        // No job was larger than the budget could pay for at the most, so several went, and the provider ran each line once.
        var (_, page) = await provider.GetAsync("/v1/batches?limit=100");
        var jobs = page.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("request_counts").GetProperty("total").GetInt64()).ToList();
        Assert.True(jobs.Count > 1, $"one provider batch of {jobs.Sum()} requests");
        Assert.All(jobs, total => Assert.InRange(total, 1, 6));
        Assert.Equal(succeeded, jobs.Sum());
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
    }

    [Fact]
    public async Task AFileBatch_TakesItsDeadlineFromTheCompletionWindow_AndItsModeFromItsMetadata()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider);
        var file = await server.UploadAsync(Enumerable.Range(0, 4).Select(i =>
            $$$"""{"custom_id":"f{{{i}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Line {{{i}}}"}]}}"""));

        var (badStatus, bad) = await server.PostAsync("/v1/batches",
            $$$"""{"input_file_id":"{{{file}}}","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"shepherd_mode":"later"}}""");
        var (status, created) = await server.PostAsync("/v1/batches",
            $$$"""{"input_file_id":"{{{file}}}","endpoint":"/v1/chat/completions","completion_window":"48h","metadata":{"shepherd_mode":"native","job":"nightly"}}""");

        Assert.Equal(400, badStatus);
        Assert.Equal(("metadata.shepherd_mode", "invalid_mode"), (bad.GetProperty("error").GetProperty("param").GetString(), bad.GetProperty("error").GetProperty("code").GetString()));
        Assert.Equal(200, status);
        Assert.Equal(("native", "48h"), (created.GetProperty("mode").GetString(), created.GetProperty("completion_window").GetString()));
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);
        Assert.Equal(4, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Single(jobs.GetProperty("data").EnumerateArray());
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);

        // Without the key, the OpenAI door's batch (which always has a window) is planned where it can be.
        var (_, unasked) = await server.PostAsync("/v1/batches", $$"""{"input_file_id":"{{file}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");
        Assert.Equal("auto", unasked.GetProperty("mode").GetString());
        await server.WaitForEndAsync(unasked.GetProperty("id").GetString()!);
    }

    [Fact]
    public async Task TheAnthropicDoor_RunsInTheModeTheServersConfigurationGivesIt()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAsync(
            tune: o => o.DefaultModes = new Dictionary<BatchDoor, BatchMode> { [BatchDoor.Anthropic] = BatchMode.Native, [BatchDoor.Inline] = BatchMode.Realtime },
            upstream: u =>
            {
                u.Kind = UpstreamKind.Anthropic;
                u.BaseUrl = provider.BaseUrl;
                u.ApiKey = new Secret(RunningServer.Key);
            },
            engine: e => e.Native.PollInterval = TimeSpan.FromMilliseconds(100));
        var requests = string.Join(",", Enumerable.Range(0, 3).Select(i =>
            $$$"""{"custom_id":"m{{{i}}}","params":{"model":"claude-haiku-4-5","max_tokens":20,"messages":[{"role":"user","content":"Say {{{i}}}"}]}}"""));

        var (status, created) = await server.PostAsync("/v1/messages/batches", $$"""{"requests":[{{requests}}]}""");

        Assert.Equal(200, status);
        var id = created.GetProperty("id").GetString()!;
        Assert.Equal("native", (await server.GetAsync($"/v1/batches/{id}")).Body.GetProperty("mode").GetString());
        var ended = await server.WaitForAsync($"/v1/messages/batches/{id}", b => b.GetProperty("processing_status").GetString() == "ended");
        Assert.Equal(3, ended.GetProperty("request_counts").GetProperty("succeeded").GetInt64());
        var (_, jobs) = await provider.GetAsync("/v1/messages/batches");
        Assert.Single(jobs.GetProperty("data").EnumerateArray());
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
        // The inline door's own setting: realtime, though a deadline is given.
        var (_, inline) = await server.PostAsync("/v1/batches", """{"model":"claude-haiku-4-5","endpoint":"/v1/messages","deadline":"6h","requests":[{"custom_id":"a","prompt":"hi"}]}""");
        Assert.Equal("realtime", inline.GetProperty("mode").GetString());
        await server.WaitForEndAsync(inline.GetProperty("id").GetString()!);
    }

    [Fact]
    public async Task AConfiguredModeNoUpstreamServes_IsRefusedNamingTheSetting()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.DefaultModes = new Dictionary<BatchDoor, BatchMode> { [BatchDoor.Anthropic] = BatchMode.Native });

        var (status, refused) = await server.PostAsync("/v1/messages/batches",
            """{"requests":[{"custom_id":"m","params":{"model":"claude-haiku-4-5","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}}]}""");

        Assert.Equal(400, status);
        Assert.Equal("invalid_request_error", refused.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("server.modes.anthropic", refused.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(""" "deadline":"soon" """, "deadline", "invalid_deadline")]
    [InlineData(""" "deadline":0 """, "deadline", "invalid_deadline")]
    [InlineData(""" "deadline":1.5 """, "deadline", "invalid_deadline")]
    [InlineData(""" "deadline":true """, "deadline", "invalid_deadline")]
    [InlineData(""" "deadline":"99999999d" """, "deadline", "invalid_deadline")]
    [InlineData(""" "deadline":"6h","completion_window":"6h" """, "deadline", "invalid_deadline")]
    [InlineData(""" "completion_window":"soon" """, "completion_window", "invalid_completion_window")]
    [InlineData(""" "mode":"Native" """, "mode", "invalid_mode")]
    [InlineData(""" "mode":"flex" """, "mode", "flex_unavailable")]
    public async Task ABadDeadlineOrMode_IsRefusedNamingTheField(string fields, string param, string code)
    {
        await using var server = await RunningServer.StartAsync();

        var (status, refused) = await server.PostAsync("/v1/batches", Inline(1, fields));

        Assert.Equal(400, status);
        var error = refused.GetProperty("error");
        Assert.Equal((param, code), (error.GetProperty("param").GetString(), error.GetProperty("code").GetString()));
        Assert.Contains(param, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(0, (await server.GetAsync("/v1/batches")).Body.GetProperty("data").GetArrayLength());
    }

    /// <summary>An inline create of <paramref name="count"/> prompts to gpt-4o-mini, with more <paramref name="fields"/> (JSON members, or none).</summary>
    private static string Inline(int count, string fields)
    {
        var requests = string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"Rate review number {{i}}"}"""));
        var more = fields.Trim().Length == 0 ? "" : fields.Trim() + ",";
        return $$"""{"model":"gpt-4o-mini",{{more}}"requests":[{{requests}}]}""";
    }
}
