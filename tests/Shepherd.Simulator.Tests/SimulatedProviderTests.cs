using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;

namespace Shepherd.Simulator.Tests;

public sealed class SimulatedProviderTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static SimulatedRequest Post(string path, string body, string? auth = null, string? key = null) =>
        new("POST", path, Encoding.UTF8.GetBytes(body), auth, key);

    private static JsonElement Json(SimulatedResponse response) => JsonDocument.Parse(response.Body).RootElement.Clone();

    private static string Header(SimulatedResponse response, string name) => response.Headers.Single(h => h.Key == name).Value;

    private const string Chat = """{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"Classify: the battery is great."}],"max_tokens":200}""";

    [Fact]
    public async Task ChatCompletion_HasTheOpenAIShape_AndUsage()
    {
        var response = await Simulators.Create(time: _time).HandleAsync(Post("/v1/chat/completions", Chat), Ct);

        Assert.Equal(200, response.StatusCode);
        var root = Json(response);
        Assert.StartsWith("chatcmpl-", root.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        Assert.Equal("gpt-4.1-mini", root.GetProperty("model").GetString());
        Assert.Equal(_time.GetUtcNow().ToUnixTimeSeconds(), root.GetProperty("created").GetInt64());
        var choice = root.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.False(string.IsNullOrWhiteSpace(choice.GetProperty("message").GetProperty("content").GetString()));
        var usage = root.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), 1, 200);
        Assert.StartsWith("req_", Header(response, "x-request-id"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task APromptBeyondTheContext_IsRefusedForGood()
    {
        var simulator = Simulators.Create(new SimulatorOptions { ContextTokens = 20 }, _time);
        var longPrompt = Chat.Replace("Classify: the battery is great.", string.Join(' ', Enumerable.Repeat("battery", 200)), StringComparison.Ordinal);

        var refused = await simulator.HandleAsync(Post("/v1/chat/completions", longPrompt), Ct);
        var answered = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);

        Assert.Equal((400, 200), (refused.StatusCode, answered.StatusCode));
        Assert.Equal("context_length_exceeded", Json(refused).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task TheSameRequest_GetsTheSameAnswer()
    {
        var simulator = Simulators.Create(time: _time);

        var first = Json(await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct));
        var second = Json(await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct));
        var other = Json(await simulator.HandleAsync(Post("/v1/chat/completions", Chat.Replace("great", "poor", StringComparison.Ordinal)), Ct));

        Assert.Equal(first.GetRawText(), second.GetRawText());
        Assert.NotEqual(first.GetProperty("id").GetString(), other.GetProperty("id").GetString());
        Assert.Equal(1, simulator.Stats().Duplicates);
    }

    [Fact]
    public async Task OutputTokens_StayWithinMaxTokens()
    {
        var response = Json(await Simulators.Create(time: _time).HandleAsync(Post("/v1/chat/completions", """{"model":"m","messages":[],"max_tokens":3}"""), Ct));

        Assert.Equal(3, response.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", response.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task AnthropicMessage_HasTheAnthropicShape()
    {
        var response = await Simulators.Create(time: _time).HandleAsync(Post("/v1/messages", """{"model":"claude-haiku-4.5","max_tokens":100,"system":"be brief","messages":[{"role":"user","content":"hi there"}]}"""), Ct);

        var root = Json(response);
        Assert.Equal(("message", "assistant", "claude-haiku-4.5"), (root.GetProperty("type").GetString(), root.GetProperty("role").GetString(), root.GetProperty("model").GetString()));
        Assert.Equal("text", root.GetProperty("content")[0].GetProperty("type").GetString());
        Assert.True(root.GetProperty("usage").GetProperty("input_tokens").GetInt32() > 0);
        Assert.True(root.GetProperty("usage").GetProperty("output_tokens").GetInt32() > 0);
        Assert.StartsWith("req_", Header(response, "request-id"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Embeddings_HaveOneVectorPerInput_OfTheAskedDimensions()
    {
        var root = Json(await Simulators.Create(time: _time).HandleAsync(Post("/v1/embeddings", """{"model":"text-embedding-3-small","input":["a","bb","ccc"],"dimensions":4}"""), Ct));

        Assert.Equal("list", root.GetProperty("object").GetString());
        var data = root.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], data.Select(d => d.GetProperty("index").GetInt32()));
        Assert.All(data, d =>
        {
            var vector = d.GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble()).ToList();
            Assert.Equal(4, vector.Count);
            Assert.InRange(Math.Sqrt(vector.Sum(v => v * v)), 0.999, 1.001);
        });
        Assert.Equal(root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), root.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Embeddings_AskedForAsBase64_AreFloat32Vectors_OfTheAskedDimensions()
    {
        var base64 = Json(await Simulators.Create(time: _time).HandleAsync(Post("/v1/embeddings", """{"model":"text-embedding-3-small","input":"a","dimensions":6,"encoding_format":"base64"}"""), Ct));

        var bytes = base64.GetProperty("data")[0].GetProperty("embedding").GetBytesFromBase64();
        var decoded = Enumerable.Range(0, bytes.Length / 4).Select(i => (double)System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4))).ToArray();

        // The OpenAI SDKs ask for base64 by default and decode little-endian float32s: a unit vector of the asked size.
        Assert.Equal(24, bytes.Length);
        Assert.InRange(Math.Sqrt(decoded.Sum(v => v * v)), 0.999, 1.001);
    }

    [Theory]
    [InlineData("/v1/completions", "text_completion")]
    [InlineData("/v1/responses", "response")]
    public async Task OtherEndpoints_AnswerInTheirShape(string path, string objectName)
    {
        var root = Json(await Simulators.Create(time: _time).HandleAsync(Post(path, """{"model":"m","prompt":"x","input":"y"}"""), Ct));

        Assert.Equal(objectName, root.GetProperty("object").GetString());
        Assert.True(root.TryGetProperty("usage", out _));
    }

    [Theory]
    [InlineData("/v1/images", 404)]
    [InlineData("/v1/chat/completions", 400)]
    public async Task BadRequests_GetProviderErrors(string path, int status)
    {
        var response = await Simulators.Create(time: _time).HandleAsync(Post(path, "not json"), Ct);

        Assert.Equal(status, response.StatusCode);
        var error = Json(response).GetProperty("error");
        Assert.Equal(["message", "type", "param", "code"], error.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task AConfiguredKey_IsRequired_AsBearerOrXApiKey()
    {
        var simulator = Simulators.Create(new SimulatorOptions { ApiKey = "k1" }, _time);

        Assert.Equal(401, (await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct)).StatusCode);
        Assert.Equal(401, (await simulator.HandleAsync(Post("/v1/chat/completions", Chat, auth: "Bearer k2"), Ct)).StatusCode);
        Assert.Equal(200, (await simulator.HandleAsync(Post("/v1/chat/completions", Chat, auth: "Bearer k1"), Ct)).StatusCode);
        var anthropic = await simulator.HandleAsync(Post("/v1/messages", """{"model":"m","max_tokens":5,"messages":[]}""", key: "k1"), Ct);
        Assert.Equal(200, anthropic.StatusCode);
        var denied = Json(await simulator.HandleAsync(Post("/v1/messages", """{"model":"m","max_tokens":5,"messages":[]}"""), Ct));
        Assert.Equal(("error", "authentication_error"), (denied.GetProperty("type").GetString(), denied.GetProperty("error").GetProperty("type").GetString()));
    }

    [Fact]
    public async Task RequestLimit_IsEnforcedPerSecond_With429AndRetryAfter()
    {
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 120 }, _time);

        var statuses = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            statuses.Add((await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct)).StatusCode);
        }

        var limited = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);
        Assert.Equal([200, 200, 429], statuses);
        Assert.Equal(429, limited.StatusCode);
        Assert.Equal("1", Header(limited, "retry-after"));
        Assert.InRange(int.Parse(Header(limited, "retry-after-ms"), System.Globalization.CultureInfo.InvariantCulture), 400, 500);
        Assert.Equal("120", Header(limited, "x-ratelimit-limit-requests"));
        Assert.Equal("0", Header(limited, "x-ratelimit-remaining-requests"));
        Assert.Equal("rate_limit_exceeded", Json(limited).GetProperty("error").GetProperty("code").GetString());

        _time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(200, (await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct)).StatusCode);
    }

    [Fact]
    public async Task RequestLimit_HoldsOverAMinute_AtTheConfiguredRate()
    {
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 600 }, _time);
        var admitted = 0;

        for (var tick = 0; tick < 600; tick++)
        {
            for (var i = 0; i < 5; i++)
            {
                if ((await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct)).StatusCode == 200)
                {
                    admitted++;
                }
            }

            _time.Advance(TimeSpan.FromMilliseconds(100));
        }

        Assert.InRange(admitted, 600, 611);
    }

    [Fact]
    public async Task TokenLimit_CountsPromptPlusMaxTokens_AtAdmission()
    {
        var simulator = Simulators.Create(new SimulatorOptions { TokensPerMinute = 60_000 }, _time);
        var big = """{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":600}""";

        Assert.Equal(200, (await simulator.HandleAsync(Post("/v1/chat/completions", big), Ct)).StatusCode);
        var limited = await simulator.HandleAsync(Post("/v1/chat/completions", big), Ct);

        Assert.Equal(429, limited.StatusCode);
        Assert.Equal("60000", Header(limited, "x-ratelimit-limit-tokens"));
        // "hello" is 2 tokens at 4 characters a token, plus max_tokens.
        Assert.Contains("counts 602 tokens", Json(limited).GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(200, (await simulator.HandleAsync(Post("/v1/chat/completions", big), Ct)).StatusCode);
    }

    [Fact]
    public async Task AnthropicLimits_UseAnthropicHeaders()
    {
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 60 }, _time);
        const string body = """{"model":"m","max_tokens":5,"messages":[]}""";

        var ok = await simulator.HandleAsync(Post("/v1/messages", body), Ct);
        var limited = await simulator.HandleAsync(Post("/v1/messages", body), Ct);

        Assert.Equal("60", Header(ok, "anthropic-ratelimit-requests-limit"));
        Assert.Equal("2026-11-28T12:00:01.000Z", Header(limited, "anthropic-ratelimit-requests-reset"));
        Assert.Equal("rate_limit_error", Json(limited).GetProperty("error").GetProperty("type").GetString());
    }

    [Theory]
    [InlineData(500)]
    [InlineData(503)]
    [InlineData(529)]
    public async Task ErrorFaults_AnswerWithTheirStatus(int status)
    {
        var options = status switch
        {
            500 => new SimulatorOptions { Error500Rate = 1 },
            503 => new SimulatorOptions { Error503Rate = 1 },
            _ => new SimulatorOptions { Error529Rate = 1 },
        };

        var response = await Simulators.Create(options, _time).HandleAsync(Post("/v1/messages", """{"model":"m","max_tokens":5,"messages":[]}"""), Ct);

        Assert.Equal(status, response.StatusCode);
        Assert.Equal("error", Json(response).GetProperty("type").GetString());
    }

    [Fact]
    public async Task A502_IsAProxysHtmlPage_AndErrorsCarryTheRetryAfterTheyAreGiven()
    {
        var simulator = Simulators.Create(new SimulatorOptions { Error502Rate = 1, ErrorRetryAfter = TimeSpan.FromSeconds(2) }, _time);

        var response = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);

        Assert.Equal(502, response.StatusCode);
        Assert.StartsWith("<html>", Encoding.UTF8.GetString(response.Body), StringComparison.Ordinal);
        Assert.Equal(("2", "2000"), (Header(response, "retry-after"), Header(response, "retry-after-ms")));
    }

    [Fact]
    public async Task ASuccess_CarriesNoRetryAfter_ThoughErrorsAreGivenOne()
    {
        var simulator = Simulators.Create(new SimulatorOptions { ErrorRetryAfter = TimeSpan.FromSeconds(2) }, _time);

        var response = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);

        Assert.Equal(200, response.StatusCode);
        Assert.DoesNotContain(response.Headers, h => h.Key.StartsWith("retry-after", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(401, false, "invalid_request_error", "invalid_api_key")]
    [InlineData(403, false, "invalid_request_error", "model_not_allowed")]
    [InlineData(401, true, "authentication_error", null)]
    [InlineData(403, true, "permission_error", null)]
    public async Task AKeyIsRefused_WithTheStatusAndBodyOfEachDialect(int status, bool anthropic, string type, string? code)
    {
        var simulator = Simulators.Create(new SimulatorOptions { ApiKey = "right", RefusedKeyStatus = status }, _time);

        var response = await simulator.HandleAsync(anthropic
            ? Post("/v1/messages", """{"model":"m","max_tokens":5,"messages":[]}""", key: "wrong")
            : Post("/v1/chat/completions", Chat, auth: "Bearer wrong"), Ct);

        Assert.Equal(status, response.StatusCode);
        var error = Json(response).GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        if (code is not null)
        {
            Assert.Equal(code, error.GetProperty("code").GetString());
        }
    }

    [Fact]
    public async Task ARequest_CountsAsWaitingOnTheClock_OnlyWhileItsLatencyRuns()
    {
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(100) }, _time);

        var answering = simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);
        Assert.Equal(1, simulator.WaitingOnTheClock);
        _time.Advance(TimeSpan.FromMilliseconds(100));
        await answering;

        Assert.Equal(0, simulator.WaitingOnTheClock);
    }

    [Fact]
    public async Task ResetFault_InProcess_IsAConnectionError()
    {
        var simulator = Simulators.Create(new SimulatorOptions { ResetRate = 1 }, _time);
        using var client = new HttpClient(new SimulatorHandler(simulator));

        var error = await Assert.ThrowsAsync<HttpRequestException>(() => client.PostAsync(new Uri("http://sim/v1/chat/completions"), new StringContent(Chat), Ct));

        Assert.Equal(HttpRequestError.ConnectionError, error.HttpRequestError);
        Assert.Equal(1, simulator.Stats().Resets);
    }

    [Fact]
    public async Task HangFault_NeverAnswers_UntilTheClientGivesUp()
    {
        var simulator = Simulators.Create(new SimulatorOptions { HangRate = 1 }, _time);
        using var giveUp = new CancellationTokenSource(TimeSpan.FromSeconds(10), _time);

        var answering = simulator.HandleAsync(Post("/v1/chat/completions", Chat), giveUp.Token);
        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.False(answering.IsCompleted);
        Assert.Equal(1, simulator.Stats().InFlight);
        _time.Advance(TimeSpan.FromSeconds(1));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => answering);
        Assert.Equal(1, simulator.Stats().Hangs);
    }

    [Fact]
    public async Task Latency_IsSpentOnTheInjectedClock()
    {
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(300) }, _time);

        var answering = simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);
        _time.Advance(TimeSpan.FromMilliseconds(299));
        Assert.False(answering.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.Equal(200, (await answering).StatusCode);
    }

    [Fact]
    public async Task FaultRates_AreDrawnAtTheConfiguredShare()
    {
        var simulator = Simulators.Create(new SimulatorOptions { Error503Rate = 0.2 }, _time, seed: 9);

        var failed = 0;
        for (var i = 0; i < 2000; i++)
        {
            failed += (await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct)).StatusCode == 503 ? 1 : 0;
        }

        Assert.InRange(failed, 340, 460);
    }

    [Theory]
    [InlineData(12, "12ms")]
    [InlineData(1500, "1.5s")]
    [InlineData(360_000, "6m0s")]
    public void Durations_ArePrintedTheWayOpenAIPrintsThem(int milliseconds, string expected)
    {
        Assert.Equal(expected, ProviderLimiter.GoDuration(TimeSpan.FromMilliseconds(milliseconds)));
    }

    [Fact]
    public void ImpossibleOptions_AreRefused()
    {
        Assert.Throws<ArgumentException>(() => Simulators.Create(new SimulatorOptions { Error500Rate = 0.6, Error503Rate = 0.6 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Simulators.Create(new SimulatorOptions { ResetRate = 1.5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Simulators.Create(new SimulatorOptions { RequestsPerMinute = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Simulators.Create(new SimulatorOptions { FlexUnavailableRate = 1.1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Simulators.Create(new SimulatorOptions { BatchExpireShare = -0.1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Simulators.Create(new SimulatorOptions { BatchLatency = TimeSpan.FromSeconds(-1) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Simulators.Create(new SimulatorOptions { BatchCancelLatency = TimeSpan.FromSeconds(-1) }));
    }

    [Fact]
    public async Task OverHttp_AResetBreaksTheConnection_AndStatsAreServed()
    {
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ResetRate = 0.5 }, seed: 2);
        using var client = new HttpClient { BaseAddress = server.BaseUrl };
        var outcomes = new List<string>();

        for (var i = 0; i < 20; i++)
        {
            try
            {
                using var response = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), new StringContent(Chat), Ct);
                outcomes.Add(((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (HttpRequestException)
            {
                outcomes.Add("reset");
            }
        }

        Assert.Contains("200", outcomes);
        Assert.Contains("reset", outcomes);
        var stats = JsonDocument.Parse(await client.GetStringAsync(new Uri("_sim/stats", UriKind.Relative), Ct)).RootElement;
        Assert.Equal(20, stats.GetProperty("requests").GetInt32());
        Assert.Equal(outcomes.Count(o => o == "reset"), stats.GetProperty("resets").GetInt32());
        Assert.Equal(outcomes.Count(o => o == "200"), stats.GetProperty("by_status").GetProperty("200").GetInt32());
        Assert.Equal(HttpStatusCode.NotFound, (await client.PostAsync(new Uri("v2/other", UriKind.Relative), new StringContent("{}"), Ct)).StatusCode);
    }

    [Fact]
    public async Task WhileDown_EveryConnectionIsDropped_AndNothingIsCounted()
    {
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 60 }, _time);
        simulator.Down = true;

        var dropped = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);
        simulator.Down = false;
        var answered = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);

        Assert.Equal(SimulatedFault.Reset, dropped.Fault);
        Assert.Equal(200, answered.StatusCode);
        Assert.Equal((2L, 1L), (simulator.Stats().Requests, simulator.Stats().Resets));
    }

    [Fact]
    public async Task Executions_CountOnlyWorkDone_SoDuplicatesAreWorkDoneTwice()
    {
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 60 }, _time);

        await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);
        var limited = await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);
        _time.Advance(TimeSpan.FromSeconds(1));
        await simulator.HandleAsync(Post("/v1/chat/completions", Chat), Ct);

        var key = SimulatedProvider.KeyOf(Encoding.UTF8.GetBytes(Chat));
        Assert.Equal(429, limited.StatusCode);
        Assert.Equal(3, simulator.ReceivedCounts()[key]);
        Assert.Equal(2, simulator.ExecutedCounts()[key]);
        Assert.Equal(1, simulator.Stats().Duplicates);
    }

    [Fact]
    public void CostOf_IsWhatTheLimiterCounts()
    {
        // 31 characters of text: 8 tokens, and max_tokens.
        Assert.Equal(8 + 200, SimulatedProvider.CostOf(Encoding.UTF8.GetBytes(Chat)));
        Assert.Equal(2 + 64, SimulatedProvider.CostOf("""{"model":"m","prompt":"hello"}"""u8));
        // Other rules: a per-message overhead, real tokens, and a scale.
        Assert.Equal(8 + 5 + 200, SimulatedProvider.CostOf(Encoding.UTF8.GetBytes(Chat), new SimulatorOptions { TokensPerMessage = 5 }));
        Assert.Equal(1 + 64, SimulatedProvider.CostOf("""{"model":"m","prompt":"hello"}"""u8, new SimulatorOptions { TokenCounting = TokenCounting.O200k }));
        Assert.Equal(1.5 + 64, SimulatedProvider.CostOf("""{"model":"m","prompt":"hello"}"""u8, new SimulatorOptions { TokenCounting = TokenCounting.O200k, TokenScale = 1.5 }));
    }
}
