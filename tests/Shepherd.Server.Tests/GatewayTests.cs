using System.Net;
using System.Text;
using System.Text.Json;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The realtime door over plain HTTP: what it does to streams, to callers that leave, to bad
/// requests, and to calls that can wait (collected into batches, durable, fetched by id).
/// </summary>
public sealed class GatewayTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Chat(string prompt, int maxTokens = 20, bool stream = false) =>
        $$"""{"model":"gpt-4o-mini","max_tokens":{{maxTokens}},{{(stream ? "\"stream\":true," : "")}}"messages":[{"role":"user","content":"{{prompt}}"}]}""";

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, string path, string body, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
    }

    private static async Task<List<string>> EventsAsync(HttpResponseMessage response) =>
        [.. (await response.Content.ReadAsStringAsync(Ct)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)];

    [Fact]
    public async Task AStreamThatDidNotAskForUsage_GetsNone_ButIsPricedByIt()
    {
        await using var server = await RunningServer.StartAsync();
        using var direct = new HttpClient { BaseAddress = server.Simulator.BaseUrl };

        using var plainDirect = await PostAsync(direct, "/v1/chat/completions", Chat("Rate it.", stream: true));
        using var plain = await PostAsync(server.Http, "/v1/chat/completions", Chat("Rate it.", stream: true));
        var directEvents = await EventsAsync(plainDirect);
        var events = await EventsAsync(plain);

        Assert.Equal("text/event-stream", plain.Content.Headers.ContentType?.MediaType);
        Assert.Equal(directEvents.Count, events.Count);
        Assert.Equal("data: [DONE]", events[^1].Trim());
        Assert.DoesNotContain(events, e => e.Contains("\"choices\":[]", StringComparison.Ordinal));
        await Poll.UntilAsync(() => Task.FromResult(Cost(server) > 0), TimeSpan.FromSeconds(10), Ct);
    }

    private static long Cost(RunningServer server) =>
        Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Engine.Dispatch.Dispatcher>(server.Server.Services).RealtimeCost.GetValueOrDefault("tenant-one").CostNanos;

    [Theory]
    [InlineData("/v1/completions", """{"model":"gpt-4o-mini","prompt":"Rate it.","max_tokens":12}""")]
    [InlineData("/v1/completions", """{"model":"gpt-4o-mini","prompt":"Rate it.","max_tokens":12,"stream":true}""")]
    [InlineData("/v1/responses", """{"model":"gpt-4o-mini","input":"Rate it.","max_output_tokens":12}""")]
    [InlineData("/v1/responses", """{"model":"gpt-4o-mini","input":"Rate it.","max_output_tokens":12,"stream":true}""")]
    [InlineData("/v1/embeddings", """{"model":"text-embedding-3-small","input":"Rate it."}""")]
    [InlineData("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":12,"stream":true,"messages":[{"role":"user","content":"Rate it."}]}""")]
    public async Task EveryRoute_AnswersAsTheProviderDoes_AndIsPriced(string path, string body)
    {
        await using var server = await RunningServer.StartAsync();
        using var direct = new HttpClient { BaseAddress = server.Simulator.BaseUrl };

        using var expected = await PostAsync(direct, path, body);
        using var through = await PostAsync(server.Http, path, body);
        var directText = await expected.Content.ReadAsStringAsync(Ct);
        var text = await through.Content.ReadAsStringAsync(Ct);

        Assert.Equal(HttpStatusCode.OK, through.StatusCode);
        Assert.Equal(expected.Content.Headers.ContentType?.MediaType, through.Content.Headers.ContentType?.MediaType);
        // The completions stream asked for its usage through Shepherd, which took that chunk out again: the rest is the provider's.
        Assert.Equal(path == "/v1/completions" && body.Contains("stream", StringComparison.Ordinal) ? directText.Split("\n\n").Length : directText.Length,
            path == "/v1/completions" && body.Contains("stream", StringComparison.Ordinal) ? text.Split("\n\n").Length : text.Length);
        await Poll.UntilAsync(() => Task.FromResult(Cost(server) > 0), TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task AStreamFromAProviderThatReportsNoUsage_IsPricedByItsText()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { StreamWithoutUsage = true });

        using var response = await PostAsync(server.Http, "/v1/chat/completions", Chat("Rate it.", maxTokens: 40, stream: true));
        var events = await EventsAsync(response);

        Assert.Equal("data: [DONE]", events[^1].Trim());
        Assert.DoesNotContain(events, e => e.Contains("\"usage\":{", StringComparison.Ordinal));
        // Its prompt as counted and its text at four bytes a token: not nothing, and no more than the output it allowed.
        await Poll.UntilAsync(() => Task.FromResult(Cost(server) > 0), TimeSpan.FromSeconds(10), Ct);
        Assert.True(Cost(server) <= Engine.Pricing.PriceTable.BuiltIn.Price("gpt-4o-mini", 50, 40).Nanos, $"{Cost(server)} nanos");
    }

    [Fact]
    public async Task ACallerThatLeavesMidStream_CancelsTheUpstreamCall()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { StreamInterval = TimeSpan.FromMilliseconds(200) });

        // A client that closes what it leaves unread, as a browser tab or a killed process does.
        using var leaving = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.BaseUrl };
        leaving.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", RunningServer.Key);
        using (var response = await PostAsync(leaving, "/v1/chat/completions", Chat("Write a long answer.", maxTokens: 60, stream: true)))
        {
            await using var body = await response.Content.ReadAsStreamAsync(Ct);
            var first = new byte[16];
            Assert.True(await body.ReadAsync(first, Ct) > 0);
        }

        // Sixty events 200 ms apart would take 12 s: the provider sees the stream cut long before.
        await Poll.UntilAsync(() => Task.FromResult(server.Simulator.Provider.Stats().StreamsCut == 1), TimeSpan.FromSeconds(5), Ct);
    }

    [Theory]
    [InlineData("/v1/chat/completions", "{not json", 400, "invalid_json")]
    [InlineData("/v1/chat/completions", "[1,2]", 400, "invalid_json")]
    [InlineData("/v1/chat/completions", """{"messages":[]}""", 400, "model")]
    [InlineData("/v1/chat/completions", """{"model":"gpt-4o-mini","stream":"yes"}""", 400, "stream")]
    [InlineData("/v1/embeddings", """{"model":"text-embedding-3-small","input":"x","stream":true}""", 400, "stream")]
    [InlineData("/v1/messages", """{"model":7}""", 400, "model")]
    public async Task ABadCall_IsA4xxInTheDoorsEnvelope_AndNothingIsSent(string path, string body, int status, string says)
    {
        await using var server = await RunningServer.StartAsync();

        using var response = await PostAsync(server.Http, path, body);
        var text = await response.Content.ReadAsStringAsync(Ct);

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Contains(says, text, StringComparison.Ordinal);
        var error = JsonDocument.Parse(text).RootElement;
        Assert.Equal(path == "/v1/messages" ? "error" : null, error.TryGetProperty("type", out var type) ? type.GetString() : null);
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
    }

    [Theory]
    [InlineData("x-shepherd-deadline", "soon", "x-shepherd-deadline")]
    [InlineData("Prefer", "wait=abc", "Prefer")]
    public async Task ABadWaitHeader_IsA400NamingIt(string header, string value, string says)
    {
        await using var server = await RunningServer.StartAsync();

        using var response = await PostAsync(server.Http, "/v1/chat/completions", Chat("hi"), (header, value));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(says, await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CallsThatCanWait_OfManyCallers_GoOutInOneProviderBatchJob_AndEachCallerGetsItsAnswer()
    {
        await using var server = await RunningServer.StartAsync(
            upstream: u => u.BatchApi = true,
            engine: e => e.Native.PollInterval = TimeSpan.FromMilliseconds(100),
            tune: o =>
            {
                // The collection closes when the fifth call is in, however the machine spreads them.
                o.CallCollectSize = 5;
                o.CallCollectAge = TimeSpan.FromMinutes(1);
            });
        using var direct = new HttpClient { BaseAddress = server.Simulator.BaseUrl };

        var calls = Enumerable.Range(0, 5).Select(async i =>
        {
            using var http = server.Client(RunningServer.Key);
            using var response = await PostAsync(http, "/v1/chat/completions", Chat($"Review {i}: fine."), ("x-shepherd-deadline", "1h"));
            return (Status: (int)response.StatusCode, Id: response.Headers.GetValues("x-shepherd-call-id").Single(), Body: JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.Clone());
        }).ToList();
        var answers = await Task.WhenAll(calls);

        Assert.All(answers, a => Assert.Equal(200, a.Status));
        Assert.Equal(1, server.Simulator.Provider.Stats().Batch.Jobs);
        Assert.Equal(5, server.Simulator.Provider.Stats().Batch.LinesSucceeded);
        for (var i = 0; i < answers.Length; i++)
        {
            using var alone = await PostAsync(direct, "/v1/chat/completions", Chat($"Review {i}: fine."));
            var expected = JsonDocument.Parse(await alone.Content.ReadAsStringAsync(Ct)).RootElement;
            Assert.Equal(Text(expected), Text(answers[i].Body));
        }

        // Each is kept: fetched again by its id, by its tenant only.
        var (status, again) = await server.GetAsync("/v1/calls/" + answers[0].Id);
        using var other = server.Client(RunningServer.OtherKey);
        var (otherStatus, _) = await RunningServer.SendAsync(other, HttpMethod.Get, "/v1/calls/" + answers[0].Id);
        Assert.Equal(200, status);
        Assert.Equal(Text(answers[0].Body), Text(again));
        Assert.Equal(404, otherStatus);
    }

    [Fact]
    public async Task ACallThatCanWait_WhoseAnswersNeverFit_IsAskedAgainInTheNextJob_AndGetsTheLastAnswerMarked()
    {
        await using var server = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), BrokenJsonRate = 1, BatchLatency = TimeSpan.FromMilliseconds(200) },
            upstream: u => u.BatchApi = true,
            engine: e => e.Native.PollInterval = TimeSpan.FromMilliseconds(100),
            tune: o => o.CallCollectSize = 1);
        var body = """{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"Review: fine."}],"response_format":{"type":"json_object"}}""";

        using var response = await PostAsync(server.Http, "/v1/chat/completions", body, ("x-shepherd-deadline", "1h"));

        // Asked in a provider batch job, then twice more (the default), each time in the next job.
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("invalid_output", response.Headers.GetValues("x-shepherd-output").Single());
        Assert.Equal(3, server.Simulator.Provider.Stats().Batch.Jobs);
        using var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        Assert.Equal(JsonValueKind.Array, answer.RootElement.GetProperty("choices").ValueKind);
    }

    private static string Text(JsonElement completion) => completion.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;

    [Fact]
    public async Task ACallThatAsksToRespondAsync_Gets202AndALocation_AndSurvivesARestart()
    {
        var server = await RunningServer.StartAsync(tune: o => o.CallCollectAge = TimeSpan.FromHours(1));
        await using var _ = server;

        using var accepted = await PostAsync(server.Http, "/v1/chat/completions", Chat("Rate it."), ("Prefer", "respond-async"), ("x-shepherd-deadline", "2h"));
        var location = accepted.Headers.Location?.ToString();
        var body = JsonDocument.Parse(await accepted.Content.ReadAsStringAsync(Ct)).RootElement;
        var (pending, _) = await server.GetAsync(location!);

        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        Assert.Equal("/v1/calls/" + body.GetProperty("id").GetString(), location);
        Assert.Equal(202, pending);

        // Still collecting (for an hour) when the server stops: the next one starts it as it is.
        await using var restarted = await server.RestartAsync();
        using var wait = new HttpRequestMessage(HttpMethod.Get, location);
        wait.Headers.Add("Prefer", "wait=30");
        using var answer = await restarted.Http.SendAsync(wait, Ct);
        var completion = JsonDocument.Parse(await answer.Content.ReadAsStringAsync(Ct)).RootElement;

        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal("chat.completion", completion.GetProperty("object").GetString());
    }

    [Fact]
    public async Task RealtimeCalls_GoAheadOfARunningBatch_OnTheSameLane_AndTheProvidersLimitHoldsForBoth()
    {
        // The provider allows 1,200 requests a minute (20 a second); Shepherd's lane is told so.
        await using var server = await RunningServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), RequestsPerMinute = 1200 },
            upstream: u => u.Limits.RequestsPerMinute = 1200);
        var requests = Enumerable.Range(0, 80).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"Rate review number {{i}}"}""");
        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", requests)}}]}""");
        var id = created.GetProperty("id").GetString()!;
        await Poll.UntilAsync(async () => (await server.GetAsync($"/v1/batches/{id}")).Body.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 10, TimeSpan.FromSeconds(20), Ct);

        var calls = await Task.WhenAll(Enumerable.Range(0, 5).Select(async i =>
        {
            using var http = server.Client(RunningServer.Key);
            using var response = await PostAsync(http, "/v1/chat/completions", Chat($"Call {i}: now."));
            return (int)response.StatusCode;
        }));
        var (_, during) = await server.GetAsync($"/v1/batches/{id}");
        var ended = await server.WaitForEndAsync(id);

        // The calls went ahead of the batch's remaining requests: answered while it still had most to send.
        Assert.All(calls, status => Assert.Equal(200, status));
        Assert.Equal("in_progress", during.GetProperty("status").GetString());
        Assert.True(during.GetProperty("request_counts").GetProperty("completed").GetInt64() < 60);
        Assert.Equal(80, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        // One limit for both: the provider never had to refuse a request.
        Assert.False(server.Simulator.Provider.Stats().ByStatus.ContainsKey(429));
    }

    [Fact]
    public async Task ATenantsDailyBudget_HoldsForItsRealtimeCalls_AndTheLedgerOutlivesARestart()
    {
        // Each call may cost up to about $0.000015 (gpt-4o-mini, a short prompt, 20 tokens out): room for three or four.
        Action<ServerOptions> budget = o => o.GatewayKeys =
        [
            new GatewayKey(new Engine.Upstreams.Secret(RunningServer.Key), "tenant-one") { Limits = new TenantLimits(DailyBudgetUsd: 0.00005m) },
            new GatewayKey(new Engine.Upstreams.Secret(RunningServer.OtherKey), "tenant-two"),
        ];
        var server = await RunningServer.StartAsync(tune: budget);
        await using var _ = server;

        var statuses = new List<int>();
        HttpResponseMessage? refused = null;
        for (var i = 0; i < 10 && refused is null; i++)
        {
            var response = await PostAsync(server.Http, "/v1/chat/completions", Chat($"Review {i}: fine."));
            statuses.Add((int)response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                refused = response;
            }
            else
            {
                response.Dispose();
            }
        }

        Assert.NotNull(refused);
        using (refused)
        {
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error");
            Assert.Equal("budget_exceeded", error.GetProperty("code").GetString());
            Assert.NotNull(refused.Headers.RetryAfter);
        }

        Assert.InRange(statuses.Count(s => s == 200), 2, 4);
        Assert.True(Cost(server) <= 50_000, $"spent {Cost(server)} nanos of a 50,000 budget");
        using var other = server.Client(RunningServer.OtherKey);
        using (var theirs = await PostAsync(other, "/v1/chat/completions", Chat("Another tenant.")))
        {
            Assert.Equal(HttpStatusCode.OK, theirs.StatusCode);
        }

        // The day's spend is in the store: a restarted server still refuses.
        await Poll.UntilAsync(async () => (await server.Store.ListSpendAsync(DateOnly.FromDateTime(TimeProvider.System.GetUtcNow().UtcDateTime), Ct)).Any(s => s.Owner == "tenant-one" && s.CostNanos == Cost(server)), TimeSpan.FromSeconds(10), Ct);
        await using var restarted = await server.RestartAsync(tune: budget);
        await Poll.UntilAsync(async () => (await restarted.Store.ListSpendAsync(DateOnly.FromDateTime(TimeProvider.System.GetUtcNow().UtcDateTime), Ct)).Any(s => s.Owner == "tenant-one"), TimeSpan.FromSeconds(10), Ct);
        using var again = await PostAsync(restarted.Http, "/v1/chat/completions", Chat("One more."));
        Assert.Equal(HttpStatusCode.TooManyRequests, again.StatusCode);
    }

    [Fact]
    public async Task ACallThatCanWait_ForAModelNoUpstreamServes_Is404_AndNothingIsStored()
    {
        await using var server = await RunningServer.StartAsync(upstream: u => u.Models = ["gpt-4o-mini"]);

        using var response = await PostAsync(server.Http, "/v1/chat/completions", """{"model":"gpt-unknown","messages":[]}""", ("x-shepherd-deadline", "1h"));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("model_not_served", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Empty((await server.Store.ListBatchesAsync(new Engine.Model.OwnerScope(null, true), [Engine.Model.BatchDoor.Gateway], new Engine.Model.PageRequest(10), Ct)).Items);
    }

    [Fact]
    public async Task ACallDueWithinAMinute_IsSentAtOnce_AsARealtimeCall()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.CallCollectAge = TimeSpan.FromHours(1));

        using var response = await PostAsync(server.Http, "/v1/chat/completions", Chat("Quick."), ("x-shepherd-deadline", "5s"));
        var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("chat.completion", completion.GetProperty("object").GetString());
        Assert.False(response.Headers.Contains("x-shepherd-call-id"));
        Assert.DoesNotContain(await server.Store.ListActiveBatchesAsync(Ct), b => b.Door == Engine.Model.BatchDoor.Gateway);
    }

    [Fact]
    public async Task ACallWhoseBatchIsCancelled_Is409_AndAWaitOfNothing_Is202()
    {
        // The provider refuses Shepherd's key: the call's batch starts, but nothing of it can be sent.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ApiKey = "another-key" }, tune: o => o.CallCollectAge = TimeSpan.FromSeconds(0.2));

        using var held = await PostAsync(server.Http, "/v1/chat/completions", Chat("Later."), ("x-shepherd-deadline", "2h"), ("Prefer", "wait=0"));
        var id = held.Headers.GetValues("x-shepherd-call-id").Single();
        var batchId = "batch_" + id["call_".Length..id.LastIndexOf('_')];
        await Poll.UntilAsync(async () => (await server.GetAsync($"/v1/batches/{batchId}")).Body.GetProperty("status").GetString() == "in_progress", TimeSpan.FromSeconds(10), Ct);
        await server.PostAsync($"/v1/batches/{batchId}/cancel");
        await server.WaitForEndAsync(batchId);
        var (status, error) = await server.GetAsync("/v1/calls/" + id);

        Assert.Equal(HttpStatusCode.Accepted, held.StatusCode);
        Assert.Equal(409, status);
        Assert.Equal("call_cancelled", error.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task AnUnknownCallId_Is404()
    {
        await using var server = await RunningServer.StartAsync();

        var (status, body) = await server.GetAsync("/v1/calls/call_nothing_1");
        var (bad, _) = await server.GetAsync("/v1/calls/whatever");

        Assert.Equal(404, status);
        Assert.Equal("not_found", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(404, bad);
    }
}
