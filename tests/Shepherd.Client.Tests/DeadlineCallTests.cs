using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Client.Backends;
using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>
/// Calls that can wait (<see cref="ShepherdClient.CallAsync(string, JsonObject, TimeSpan, CancellationToken)"/>):
/// answered as the provider answers their body, fetched again by id, refused and failed as other
/// calls are, riding out a restart of the server, and refused by the APIs that have none.
/// </summary>
public sealed class DeadlineCallTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    private static readonly TimeSpan Hour = TimeSpan.FromHours(1);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static JsonObject Chat(string prompt) => new()
    {
        ["model"] = "gpt-4o-mini",
        ["max_tokens"] = 20,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
    };

    /// <summary>A server that collects calls for a tenth of a second at most, and sends them in the simulator's batch jobs.</summary>
    private static Task<RunningServer> StartAsync(SimulatorOptions? simulator = null) => RunningServer.StartAsync(
        simulator,
        upstream: u => u.BatchApi = true,
        engine: e => e.Native.PollInterval = TimeSpan.FromMilliseconds(100),
        tune: o => o.CallCollectAge = TimeSpan.FromMilliseconds(100));

    /// <summary>The simulator's own answer to <paramref name="body"/>, asked without Shepherd.</summary>
    private static async Task<JsonElement> DirectAsync(RunningServer server, JsonObject body)
    {
        using var direct = new HttpClient { BaseAddress = server.Simulator.BaseUrl };
        using var response = await direct.PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.Clone();
    }

    private static string? Text(JsonElement completion) => completion.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();

    private static (long, long) Tokens(JsonElement completion) =>
        (completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt64(), completion.GetProperty("usage").GetProperty("completion_tokens").GetInt64());

    [Fact]
    public async Task CallsThatCanWait_GoOutInTheProvidersBatchJob_AreAnsweredAsTheProviderAnswersTheirBodies_AndAreFetchedAgainById()
    {
        await using var server = await StartAsync();
        using var client = ClientTests.ClientOf(server);
        var body = Chat("Review 1: fine.");
        var chat = new ChatRequest { System = "You rate reviews.", User = "Review 2: poor.", MaxTokens = 20 };

        var answers = await Task.WhenAll(
            client.CallAsync("/v1/chat/completions", body, Hour, Ct),
            client.CallAsync("gpt-4o-mini", chat, Hour, Ct));
        var (raw, typed) = (answers[0], answers[1]);
        var again = await client.GetCallAsync(raw.CallId, Ct);
        var direct = await DirectAsync(server, body);
        var directChat = await DirectAsync(server, Requests.BodyOf(chat, "/v1/chat/completions", "gpt-4o-mini"));

        Assert.Equal(2, server.Simulator.Provider.Stats().Batch.LinesSucceeded);
        Assert.Equal((200, 200), (raw.StatusCode, typed.StatusCode));
        Assert.StartsWith("call_", raw.CallId, StringComparison.Ordinal);
        Assert.NotEqual(raw.CallId, typed.CallId);
        Assert.Equal(Text(direct), raw.Text);
        Assert.Equal(Text(direct), Text(raw.Body));
        Assert.Equal(Tokens(direct), (raw.Usage!.InputTokens, raw.Usage.OutputTokens));
        Assert.Equal(Text(directChat), typed.Text);
        Assert.Equal((raw.CallId, 200, raw.Body.GetRawText()), (again.CallId, again.StatusCode, again.Body.GetRawText()));
        Assert.Equal(raw.CallId, again.Response.Headers["x-shepherd-call-id"]);
    }

    [Fact]
    public async Task AnUnknownCallId_AndAnotherTenantsCall_AreNotFound()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.CallCollectAge = Hour);
        using var client = ClientTests.ClientOf(server);
        using var other = ClientTests.ClientOf(server, RunningServer.OtherKey);
        var id = await client.StartCallAsync("/v1/chat/completions", Chat("Rate it."), Hour, Ct);

        var unknown = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetCallAsync("call_nothing_1", Ct));
        var malformed = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetCallAsync("whatever", Ct));
        var theirs = await Assert.ThrowsAsync<ShepherdApiException>(() => other.GetCallAsync(id, Ct));

        Assert.Equal((404, "not_found", "id", false, (string?)null), (unknown.StatusCode, unknown.ErrorCode, unknown.Param, unknown.IsTransient, unknown.CallId));
        Assert.Contains("call_nothing_1", unknown.Message, StringComparison.Ordinal);
        Assert.Equal((404, (string?)null), (malformed.StatusCode, malformed.CallId));
        Assert.Equal((404, "not_found", (string?)null), (theirs.StatusCode, theirs.ErrorCode, theirs.CallId));
    }

    [Fact]
    public async Task TheProvidersRefusal_IsThrownWithTheCallId_AndIsTheSameWhenFetchedAgain()
    {
        await using var server = await StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = 10 });
        using var client = ClientTests.ClientOf(server);

        var refused = await Assert.ThrowsAsync<ShepherdApiException>(() => client.CallAsync("/v1/chat/completions", Chat("Please summarise this long review of a rather ordinary hotel."), Hour, Ct));
        var again = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetCallAsync(refused.CallId!, Ct));

        Assert.Equal((400, "context_length_exceeded", false), (refused.StatusCode, refused.ErrorCode, refused.IsTransient));
        Assert.StartsWith("call_", refused.CallId, StringComparison.Ordinal);
        Assert.Equal((400, "context_length_exceeded", refused.CallId), (again.StatusCode, again.ErrorCode, again.CallId));
    }

    [Fact]
    public async Task TheWire_DeadlineAndPreferOnTheWayOut_AndAKeptFailureIsNotAskedForAgain()
    {
        const string Id = "call_abc_1";
        var handler = new ScriptedHandler(
            ScriptedHandler.Json(HttpStatusCode.Accepted, $$"""{"id":"{{Id}}","object":"shepherd.call","status":"pending","url":"/v1/calls/{{Id}}"}""", ("Retry-After", "0")),
            ScriptedHandler.Json(HttpStatusCode.Accepted, $$"""{"id":"{{Id}}","object":"shepherd.call","status":"pending","url":"/v1/calls/{{Id}}"}""", ("Retry-After", "0"), ("x-shepherd-call-id", Id)),
            ScriptedHandler.Json(HttpStatusCode.BadGateway, """{"error":{"message":"The upstream failed.","type":"server_error","param":null,"code":"upstream_error"}}""", ("x-shepherd-call-id", Id)));
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://127.0.0.1:1/v1"), ApiKey = "k", RetryBaseDelay = TimeSpan.FromMilliseconds(1) }, new HttpClient(handler));

        var failed = await Assert.ThrowsAsync<ShepherdApiException>(() => client.CallAsync("/v1/embeddings", new JsonObject { ["model"] = "e", ["input"] = "x" }, TimeSpan.FromMinutes(90), Ct));
        var again = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetCallAsync(Id, Ct));

        var sent = handler.Received;
        Assert.Equal(
            ["POST /v1/embeddings", $"GET /v1/calls/{Id}", $"GET /v1/calls/{Id}", $"GET /v1/calls/{Id}"],
            sent.Select(r => $"{r.Request.Method} {r.Request.RequestUri!.AbsolutePath}"));
        Assert.Equal(("90m", "respond-async"), (sent[0].Request.Headers.GetValues("x-shepherd-deadline").Single(), sent[0].Request.Headers.GetValues("Prefer").Single()));
        Assert.Equal("""{"model":"e","input":"x"}""", sent[0].Body);
        Assert.All(sent.Skip(1), r => Assert.Equal("wait=60", r.Request.Headers.GetValues("Prefer").Single()));
        Assert.Equal((502, "upstream_error", Id), (failed.StatusCode, failed.ErrorCode, failed.CallId));
        Assert.Equal((502, Id), (again.StatusCode, again.CallId));
    }

    [Fact]
    public async Task ACall_RidesOutARestartOfTheServer_AndIsAnswered()
    {
        var server = await RunningServer.StartAsync(tune: o => o.CallCollectAge = Hour);
        try
        {
            var looks = new Looks { InnerHandler = new SocketsHttpHandler() };
            using var client = ClientTests.ClientOf(server, http: new HttpClient(looks));
            var body = Chat("Rate it after the restart.");

            // Collected for an hour: the answer comes only once a restart starts what was left open.
            var call = client.CallAsync("/v1/chat/completions", body, Hour, Ct);
            await looks.Sent.Task.WaitAsync(Patience, Ct);
            server = await server.RestartAsync(() => looks.Failed.Task.WaitAsync(Patience, Ct), samePort: true);
            var answer = await call.WaitAsync(Patience, Ct);

            Assert.Equal(200, answer.StatusCode);
            Assert.Equal(Text(await DirectAsync(server, body)), answer.Text);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>Says when a look at a call was first sent, and when one first found no server.</summary>
    private sealed class Looks : DelegatingHandler
    {
        public TaskCompletionSource Sent { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Failed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var look = request.RequestUri!.AbsolutePath.StartsWith("/v1/calls/", StringComparison.Ordinal);
            if (look)
            {
                Sent.TrySetResult();
            }

            try
            {
                return await base.SendAsync(request, cancellationToken);
            }
            catch (HttpRequestException) when (look)
            {
                Failed.TrySetResult();
                throw;
            }
        }
    }

    [Theory]
    [InlineData(BatchApi.OpenAI)]
    [InlineData(BatchApi.Anthropic)]
    public async Task TheOpenAIAndAnthropicApis_RefuseCallsThatWait_BeforeAnythingIsSent(BatchApi api)
    {
        using var client = ClientTests.SendingNothing(api, out var handler);

        var call = await Assert.ThrowsAsync<NotSupportedException>(() => client.CallAsync("/v1/chat/completions", Chat("hi"), Hour, Ct));
        var chat = await Assert.ThrowsAsync<NotSupportedException>(() => client.CallAsync("gpt-4o-mini", new ChatRequest { User = "hi" }, Hour, Ct));
        var fetch = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetCallAsync("call_abc_1", Ct));

        Assert.All(new[] { call, chat, fetch }, e => Assert.Contains("Point the client at a Shepherd server", e.Message, StringComparison.Ordinal));
        Assert.Contains(api == BatchApi.OpenAI ? "The OpenAI API" : "The Anthropic API", call.Message, StringComparison.Ordinal);
        Assert.Empty(handler.Received);
    }
}
